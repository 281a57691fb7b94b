"""The checked spec: the frozen dataclasses the rest of regctl passes around, and the spec's vocabulary.

`registry/spec/file.py` describes `regctl.toml` as written; these describe it as understood (dims by
name with their opt filled in, canonical dtypes, shapes as tuples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from regctl.registry.formats import PROGRAM_FORMATS

SPEC_FILENAME = "regctl.toml"
METHODS = ("auto", "trace", "script")
DEVICES = ("cpu", "cuda")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
RECORDED_INPUT_SUFFIXES = (".safetensors",)
MINIMAL_SPEC = (
    'entrypoint = "model.py:build" and one [[inputs]] table with '
    'name = "x", dtype = "float32", shape = [1, 8]'
)
# Sane caps: the battery runs every input at the dims' max several times; bigger means a typo.
MAX_SAMPLES = 1000
DEFAULT_SEARCH = 48  # eager forwards a job's search for untaken sides may spend
MAX_SEARCH = 10_000
BAKED_POINT = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py:[1-9][0-9]{0,6}$"  # "model.py:14", "pkg/layers.py:7"
MAX_DIM = 2**24
# A spec's own size and breadth: far beyond any real model's, small enough that every check stays cheap.
MAX_SPEC_BYTES = 256 * 1024
MAX_INPUTS = 256
MAX_RECORDED_TENSORS = 10_000  # tensors in a recorded-inputs file: each one joins the battery
MAX_DIMS = 64
MAX_ELEMENTS = 2**31


@dataclass(frozen=True)
class InputSpec:
    """One positional input of forward(): a tensor (with a shape) or a Python scalar (no shape)."""

    name: str
    dtype: (
        str  # a torch dtype name for tensors ("float32", "int64", ...); "int" | "float" | "bool" for scalars
    )
    shape: tuple[int | str, ...] | None = None  # ints are fixed sizes, strings name a dynamic dim
    low: float | None = None
    high: float | None = None

    @property
    def is_scalar(self) -> bool:
        """True for a Python scalar argument (int, float or bool), which has no shape."""
        return self.shape is None


@dataclass(frozen=True)
class DimSpec:
    """A named dynamic dimension and the sizes the validator sweeps."""

    name: str
    min: int
    max: int
    opt: int
    batch: bool = False  # the dim is the batch dimension (Triton folds it into max_batch_size)


@dataclass(frozen=True)
class ValidationSpec:
    """Tolerances and sampling for the validation battery."""

    rtol: float = 1e-4
    atol: float = 1e-5
    samples: int = 4
    inputs: str | None = None  # a .safetensors file of recorded real inputs, relative to the model dir
    search: int = (
        DEFAULT_SEARCH  # eager forwards the search for untaken sides may spend (worker/model/search.py)
    )
    accept_baked: tuple[str, ...] = ()  # "model.py:14": decisions a trace may bake though tested one way


@dataclass(frozen=True)
class ModelSpec:
    """A parsed and checked `regctl.toml`."""

    entrypoint: str = "model.py:build"
    weights: str | None = None
    method: Literal["auto", "trace", "script"] = "auto"
    device: Literal["cpu", "cuda"] = "cpu"
    optimize: bool = True
    inputs: tuple[InputSpec, ...] = ()
    dims: dict[str, DimSpec] = field(default_factory=dict)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    # None until registration settles it: --format, else the file's `formats`, else REGCTL_FORMATS.
    formats: tuple[str, ...] | None = None

    def wants(self, fmt: str) -> bool:
        """True when the conversion should produce `fmt` (TorchScript always)."""
        return fmt == "torchscript" or fmt in (self.formats or ())

    def wants_program(self) -> bool:
        """True when a format asked for is the exported program or built from it: only then is it exported."""
        return any(self.wants(fmt) for fmt in PROGRAM_FORMATS)

    def data_files(self) -> list[str]:
        """The non-code files the spec names, relative to the model directory."""
        return [f for f in (self.weights, self.validation.inputs) if f]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict that `ModelSpec.from_dict` turns back into an equal spec."""
        data = asdict(self)
        data["inputs"] = [
            {**i, "shape": list(i["shape"]) if i["shape"] is not None else None} for i in data["inputs"]
        ]
        data["formats"] = list(self.formats) if self.formats is not None else None
        data["validation"]["accept_baked"] = list(self.validation.accept_baked)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild a spec stored with `to_dict` (trusted input: no checks)."""
        inputs = tuple(
            InputSpec(**{**i, "shape": tuple(i["shape"]) if i.get("shape") is not None else None})
            for i in data.get("inputs", [])
        )
        dims = {name: DimSpec(**d) for name, d in data.get("dims", {}).items()}
        stored = data.get("validation", {})
        validation = ValidationSpec(**{**stored, "accept_baked": tuple(stored.get("accept_baked", ()))})
        rest = {k: v for k, v in data.items() if k not in {"inputs", "dims", "validation", "formats"}}
        formats = tuple(data["formats"]) if data.get("formats") is not None else None
        return cls(**rest, inputs=inputs, dims=dims, validation=validation, formats=formats)
