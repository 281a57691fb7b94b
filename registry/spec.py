"""The model spec (`regctl.toml`): typed dataclasses and the parser with its error messages.

Every error is one line that names the file, the key, the bad value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import keyword
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from regctl.registry.dtypes import SCALAR_DTYPES, TENSOR_DTYPES, canonical_dtype
from regctl.registry.errors import InvalidInput, InvalidSpec

SPEC_FILENAME = "regctl.toml"
METHODS = ("auto", "trace", "script")
# What a conversion produces: TorchScript always (it decides whether the version is ready), and on
# request an AOTInductor package compiled from the exported program (worker/judge/aoti.py).
FORMATS = ("torchscript", "aoti")
DEVICES = ("cpu", "cuda")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
RECORDED_INPUT_SUFFIXES = (".safetensors",)
MINIMAL_SPEC = (
    'entrypoint = "model.py:build" and one [[inputs]] table with '
    'name = "x", dtype = "float32", shape = [1, 8]'
)

_TOP_KEYS = (
    "entrypoint",
    "weights",
    "method",
    "device",
    "optimize",
    "formats",
    "inputs",
    "dims",
    "validation",
)
_INPUT_KEYS = ("name", "dtype", "shape", "low", "high")
_DIM_KEYS = ("min", "max", "opt", "batch")
# Sane caps: the battery runs every input at the dims' max several times; bigger means a typo.
MAX_SAMPLES = 1000
MAX_DIM = 2**24
MAX_ELEMENTS = 2**31
_VALIDATION_KEYS = ("rtol", "atol", "samples", "inputs")


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
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild a spec stored with `to_dict` (trusted input: no checks)."""
        inputs = tuple(
            InputSpec(**{**i, "shape": tuple(i["shape"]) if i.get("shape") is not None else None})
            for i in data.get("inputs", [])
        )
        dims = {name: DimSpec(**d) for name, d in data.get("dims", {}).items()}
        validation = ValidationSpec(**data.get("validation", {}))
        rest = {k: v for k, v in data.items() if k not in {"inputs", "dims", "validation", "formats"}}
        formats = tuple(data["formats"]) if data.get("formats") is not None else None
        return cls(**rest, inputs=inputs, dims=dims, validation=validation, formats=formats)


def load_spec(directory: Path) -> ModelSpec:
    """Read and check `DIR/regctl.toml`; raise InvalidSpec naming the file, key, value and expectation."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise InvalidSpec(
            f"model directory {directory} {what}; pass the directory that holds {SPEC_FILENAME}"
        )
    path = directory / SPEC_FILENAME
    if not path.is_file():
        raise InvalidSpec(
            f"model directory {directory} has no {SPEC_FILENAME}; create one with at least {MINIMAL_SPEC}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSpec(f"{path}: not valid TOML: {exc}; fix the syntax there") from None
    except RecursionError:
        raise InvalidSpec(
            f"{path}: tables or arrays nest too deeply to read; a spec needs only a few levels"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidSpec(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    return parse_spec(data, str(path), directory)


def parse_spec(data: dict[str, Any], source: str, directory: Path | None = None) -> ModelSpec:
    """Check a decoded `regctl.toml` and build its ModelSpec; `source` names the file in error messages.

    With `directory`, the files the spec names must exist inside it; without, only their form is checked.
    """
    check = _Checker(source, directory)
    check.known_keys(data, _TOP_KEYS, "")
    entrypoint = check.entrypoint(check.typed("entrypoint", data.get("entrypoint", "model.py:build"), str))
    weights = check.data_file("weights", data.get("weights"), WEIGHT_SUFFIXES)
    method = check.choice("method", data.get("method", "auto"), METHODS, "a conversion method")
    device = check.choice("device", data.get("device", "cpu"), DEVICES, "a device")
    optimize = check.typed("optimize", data.get("optimize", True), bool)
    formats = check.formats(data["formats"]) if "formats" in data else None
    dims = check.dims(data.get("dims"))
    inputs = check.inputs(data.get("inputs"), dims)
    check.all_dims_used(dims, inputs)
    validation = check.validation(data.get("validation"))
    return ModelSpec(
        entrypoint=entrypoint,
        weights=weights,
        method=method,  # type: ignore[arg-type]  # checked against METHODS
        device=device,  # type: ignore[arg-type]  # checked against DEVICES
        optimize=optimize,
        inputs=inputs,
        dims=dims,
        validation=validation,
        formats=formats,
    )


def _show(value: Any) -> str:
    """A value as it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + " }"
    return str(value)


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _kind(value: Any) -> str:
    return "a table" if isinstance(value, dict) else _KINDS.get(type(value), f"a {type(value).__name__}")


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _did_you_mean(word: str, choices: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


class _Checker:
    """Checks the values of one spec file and builds its one-line errors.

    Keys are full paths such as `inputs[0].dtype`; a bool never passes for an int or a number.
    """

    def __init__(self, source: str, directory: Path | None) -> None:
        self.source = source
        self.directory = directory

    def bad(self, key: str, value: Any, problem: str, expected: str) -> InvalidSpec:
        return InvalidSpec(f"{self.source}: {key} = {_show(value)} {problem}; expected {expected}")

    def missing(self, key: str, expected: str) -> InvalidSpec:
        return InvalidSpec(f"{self.source}: {key} is missing; expected {expected}")

    def known_keys(self, table: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}." if prefix else ""
                guess = _did_you_mean(key, allowed, where)
                message = (
                    f"{self.source}: unknown key {where}{key}{guess}; expected one of {', '.join(allowed)}"
                )
                if prefix and key in _TOP_KEYS:
                    message += "; top-level keys must come before the first [table] header"
                raise InvalidSpec(message)

    def typed(self, key: str, value: Any, kind: type, expected: str | None = None) -> Any:
        """`value`, which is None (absent) or of `kind` (float also takes an int)."""
        if value is None:
            return None
        kinds = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kinds):
            raise self.bad(key, value, f"is {_kind(value)}", expected or _EXPECTED[kind])
        return value

    def integer(self, key: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
        expected = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
        if value is None:
            raise self.missing(key, expected)
        if self.typed(key, value, int, expected) < minimum:
            raise self.bad(key, value, f"is less than {minimum}", expected)
        if maximum is not None and value > maximum:
            raise self.bad(key, value, f"is more than {maximum}", expected)
        return value

    def number(self, key: str, value: Any, minimum: float | None = None) -> float | None:
        expected = "a finite number" + ("" if minimum is None else f" >= {minimum:g}")
        if self.typed(key, value, float, expected) is not None and not math.isfinite(value):
            raise self.bad(key, value, "is not finite", expected)
        if value is not None and minimum is not None and value < minimum:
            raise self.bad(key, value, f"is less than {minimum:g}", expected)
        return value

    def choice(self, key: str, value: Any, choices: tuple[str, ...], what: str) -> str:
        if self.typed(key, value, str) not in choices:
            guess = _did_you_mean(value, choices)
            raise self.bad(key, value, f"is not {what}{guess}", f"one of {', '.join(choices)}")
        return value

    # -- files -----------------------------------------------------------------------------------------

    def relative(self, key: str, value: str, rel: str) -> str:
        """`rel` as a normalised POSIX path; it must be relative and must not climb out with `..`."""
        pure = PurePosixPath(rel.replace("\\", "/"))
        expected = "a path relative to the model directory, inside it"
        if pure.is_absolute() or rel[1:2] == ":" or str(pure) == ".":
            raise self.bad(key, value, "is not a relative path to a file", expected)
        if ".." in pure.parts:
            raise self.bad(key, value, "escapes the model directory", f"{expected}; copy the file in")
        return str(pure)

    def find(self, key: str, value: str, candidates: list[str], expected: str) -> str:
        """The first candidate that is a file inside the directory (the first one if no directory)."""
        if self.directory is None:
            return candidates[0]
        root = self.directory.resolve()
        for rel in candidates:
            try:
                real = (self.directory / rel).resolve()
            except (RuntimeError, OSError):  # a symlink loop
                fix = f"{expected}; replace the link with the file"
                raise self.bad(key, value, "is a symlink loop", fix) from None
            if not real.is_relative_to(root):
                problem = f"resolves to {real}, outside the model directory {root}"
                raise self.bad(key, value, problem, f"{expected}; copy the file in instead of linking to it")
            if real.is_file():
                return rel
            if real.exists() and not real.is_dir():
                raise self.bad(key, value, "is not a regular file (a pipe, socket or device)", expected)
        looked = " or ".join(str(self.directory / rel) for rel in candidates)
        raise self.bad(key, value, f"names a file that does not exist: looked for {looked}", expected)

    def data_file(self, key: str, value: Any, suffixes: tuple[str, ...]) -> str | None:
        if self.typed(key, value, str) is None:
            return None
        expected = f"an existing {' or '.join(suffixes)} file inside the model directory"
        if not value.endswith(suffixes):
            raise self.bad(key, value, "has the wrong file type", expected)
        return self.find(key, value, [self.relative(key, value, value)], expected)

    def entrypoint(self, value: str) -> str:
        expected = '"file.py:callable" or "package.module:callable" inside the model directory'
        module, _, attr = value.partition(":")
        if value.count(":") != 1 or not module or not attr:
            raise self.bad("entrypoint", value, "is not of the form module:callable", expected)
        if not all(_is_identifier(part) for part in attr.split(".")):
            raise self.bad(
                "entrypoint", value, f"names a callable {attr!r} that is not an identifier", expected
            )
        if module.endswith(".py"):
            candidates = [self.relative("entrypoint", value, module)]
        elif all(_is_identifier(part) for part in module.split(".")):
            candidates = entrypoint_files(value)
        else:
            raise self.bad("entrypoint", value, "is neither a .py file nor a dotted module name", expected)
        self.find("entrypoint", value, candidates, expected)
        return value

    # -- sections --------------------------------------------------------------------------------------

    def formats(self, raw: Any) -> tuple[str, ...]:
        expected = 'a list of formats with "torchscript", e.g. ["torchscript", "aoti"]'
        if not isinstance(raw, list) or not raw:
            raise self.bad("formats", raw, "is empty" if raw == [] else f"is {_kind(raw)}", expected)
        for item in raw:
            self.choice("formats", item, FORMATS, "a format")
        return check_formats(tuple(raw), lambda problem: self.bad("formats", raw, problem, expected))

    def dims(self, raw: Any) -> dict[str, DimSpec]:
        self.typed("dims", raw, dict, "a [dims] table like seq = { min = 1, max = 128 }")
        dims: dict[str, DimSpec] = {}
        for name, table in (raw or {}).items():
            dims[name] = dim = self.dim(f"dims.{name}", name, table)
            first = next(d.name for d in dims.values() if d.batch or d is dim)
            if dim.batch and first != name:
                problem = f"but dims.{first} is already the batch dim"
                raise self.bad(f"dims.{name}.batch", True, problem, "at most one batch dim")
        return dims

    def dim(self, key: str, name: str, table: Any) -> DimSpec:
        expected = "a table like { min = 1, max = 128 } with optional opt and batch"
        if not _is_identifier(name):
            raise self.bad(key, table, "is not named by a Python identifier", f"{expected}, named like seq")
        self.typed(key, table, dict, expected)
        self.known_keys(table, _DIM_KEYS, key)
        low = self.integer(f"{key}.min", table.get("min"), maximum=MAX_DIM)
        high = self.integer(f"{key}.max", table.get("max"), maximum=MAX_DIM)
        if low > high:
            raise self.bad(f"{key}.min", low, f"is greater than max = {high}", "1 <= min <= opt <= max")
        opt = self.integer(f"{key}.opt", table.get("opt", (low + high) // 2))
        if not low <= opt <= high:
            raise self.bad(f"{key}.opt", opt, f"is outside min = {low}, max = {high}", "min <= opt <= max")
        batch = self.typed(f"{key}.batch", table.get("batch", False), bool)
        return DimSpec(name=name, min=low, max=high, opt=opt, batch=batch)

    def inputs(self, raw: Any, dims: dict[str, DimSpec]) -> tuple[InputSpec, ...]:
        expected = 'at least one [[inputs]] table, e.g. name = "x", dtype = "float32", shape = [1, 8]'
        if raw is None:
            raise self.missing("inputs", expected)
        if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
            raise self.bad("inputs", raw, "is not an array of tables", expected)
        if not raw:
            raise self.bad("inputs", raw, "is empty", expected)
        specs: list[InputSpec] = []
        for i, table in enumerate(raw):
            spec = self.input(f"inputs[{i}]", table, dims)
            if any(s.name == spec.name for s in specs):
                raise self.bad(f"inputs[{i}].name", spec.name, "is taken by an earlier input", "unique names")
            specs.append(spec)
        return tuple(specs)

    def input(self, key: str, table: dict[str, Any], dims: dict[str, DimSpec]) -> InputSpec:
        self.known_keys(table, _INPUT_KEYS, key)
        expected = "the argument's name in forward(), a Python identifier"
        if (name := self.typed(f"{key}.name", table.get("name"), str)) is None:
            raise self.missing(f"{key}.name", expected)
        if not _is_identifier(name):
            raise self.bad(f"{key}.name", name, "is not a Python identifier", expected)
        if (dtype := self.typed(f"{key}.dtype", table.get("dtype"), str)) is None:
            raise self.missing(f"{key}.dtype", 'a torch dtype name such as "float32" (or int, float, bool)')
        shape = table.get("shape")
        low, high = self.number(f"{key}.low", table.get("low")), self.number(f"{key}.high", table.get("high"))
        if low is not None and high is not None and low >= high:
            raise self.bad(f"{key}.high", high, f"is not greater than low = {_show(low)}", "low < high")
        return InputSpec(
            name=name,
            dtype=self.dtype(f"{key}.dtype", dtype, scalar=shape is None),
            shape=None if shape is None else self.shape(f"{key}.shape", shape, dims),
            low=low,
            high=high,
        )

    def dtype(self, key: str, value: str, scalar: bool) -> str:
        canonical = canonical_dtype(value)
        scalars = ", ".join(SCALAR_DTYPES)
        if canonical is None and value not in SCALAR_DTYPES:
            problem = "is not a torch dtype" + _did_you_mean(value, [*TENSOR_DTYPES, *SCALAR_DTYPES])
            raise self.bad(
                key, value, problem, f"one of {', '.join(TENSOR_DTYPES)} (or {scalars} for a scalar input)"
            )
        if scalar and value not in SCALAR_DTYPES:
            problem = "is a tensor dtype but the input has no shape, which makes it a Python scalar"
            raise self.bad(key, value, problem, f"{scalars} for a scalar input, or a shape such as [1, 8]")
        return value if scalar else str(canonical)

    def shape(self, key: str, value: Any, dims: dict[str, DimSpec]) -> tuple[int | str, ...]:
        self.typed(key, value, list, 'an array of positive sizes and dim names, e.g. [1, "seq"]')
        expected = "a positive integer or the name of a dim declared in [dims]"
        for j, size in enumerate(value):
            if type(size) not in (int, str):
                raise self.bad(f"{key}[{j}]", size, f"is {_kind(size)}", expected)
            if isinstance(size, int) and size < 1:
                raise self.bad(f"{key}[{j}]", size, f"is a {'negative' if size else 'zero'} size", expected)
            if isinstance(size, int) and size > MAX_DIM:
                raise self.bad(f"{key}[{j}]", size, f"is more than {MAX_DIM}", expected)
            if isinstance(size, str) and size not in dims:
                declared = ", ".join(dims) or "none"
                problem = f"names a dim that is not declared in [dims] (declared: {declared})"
                fix = f" or add [dims] {size} = {{ min = 1, max = 64 }}"
                raise self.bad(f"{key}[{j}]", size, problem + _did_you_mean(size, dims), expected + fix)
        largest = math.prod(dims[s].max if isinstance(s, str) else s for s in value)
        if largest > MAX_ELEMENTS:
            problem = f"holds {largest:,} elements at the dims' max, more than {MAX_ELEMENTS:,}"
            raise self.bad(key, value, problem, "an input a battery can hold in memory; lower the dims' max")
        return tuple(value)

    def all_dims_used(self, dims: dict[str, DimSpec], inputs: tuple[InputSpec, ...]) -> None:
        used = {size for spec in inputs for size in spec.shape or () if isinstance(size, str)}
        for name, dim in dims.items():
            if name not in used:
                problem = "is declared but no input shape uses it (a typo?)"
                raise self.bad(
                    f"dims.{name}", {"min": dim.min, "max": dim.max}, problem, "every dim to be used"
                )

    def validation(self, raw: Any) -> ValidationSpec:
        self.typed("validation", raw, dict, "a [validation] table with rtol, atol, samples, inputs")
        raw = raw or {}
        self.known_keys(raw, _VALIDATION_KEYS, "validation")
        default = ValidationSpec()
        rtol = self.number("validation.rtol", raw.get("rtol", default.rtol), minimum=0)
        atol = self.number("validation.atol", raw.get("atol", default.atol), minimum=0)
        return ValidationSpec(
            rtol=float(rtol or 0.0),
            atol=float(atol or 0.0),
            samples=self.integer(
                "validation.samples", raw.get("samples", default.samples), maximum=MAX_SAMPLES
            ),
            inputs=self.data_file("validation.inputs", raw.get("inputs"), RECORDED_INPUT_SUFFIXES),
        )


def entrypoint_files(entrypoint: str) -> list[str]:
    """The files an entrypoint may live in, relative to the model directory, preferred first."""
    module = entrypoint.partition(":")[0]
    if module.endswith(".py"):
        return [str(PurePosixPath(module.replace("\\", "/")))]
    return [module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"]


def check_formats(formats: tuple[str, ...], error: Any) -> tuple[str, ...]:
    """Formats in their canonical order; `error(problem)` builds the exception for a bad list."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise error(f"names {unknown[0]!r}, which is not one of {', '.join(FORMATS)}")
    if "torchscript" not in formats:
        raise error("leaves out torchscript, which every conversion produces and proves first")
    if len(set(formats)) != len(formats):
        raise error("names a format twice")
    return tuple(f for f in FORMATS if f in formats)


def parse_formats(text: str, option: str = "--format") -> tuple[str, ...]:
    """`--format aoti` or `--format torchscript,aoti`: TorchScript is always included."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    wanted = tuple(dict.fromkeys(["torchscript", *names]))

    sep = "" if option.endswith("=") else " "  # an environment variable reads REGCTL_FORMATS=aoti

    def error(problem: str) -> InvalidInput:
        return InvalidInput(
            f"{option}{sep}{text!r} {problem}; use {option}{sep}aoti or {option}{sep}torchscript,aoti"
        )

    return check_formats(wanted, error)


def prepare_spec(
    directory: Path,
    method: str | None = None,
    device: str | None = None,
    formats: tuple[str, ...] | None = None,
    default_formats: tuple[str, ...] = ("torchscript",),
) -> ModelSpec:
    """Load the spec from `directory` and apply command-line overrides of method, device and formats.

    The formats are settled here for good: `formats` (from --format), else the file's, else the
    registry's default (REGCTL_FORMATS).
    """
    spec = load_spec(directory)
    wanted = parse_formats(",".join(formats)) if formats else None
    spec = dataclasses.replace(spec, formats=wanted or spec.formats or default_formats)
    if method is not None:
        if method not in METHODS:
            raise InvalidInput(f"--method {method!r} is not one of {', '.join(METHODS)}")
        spec = dataclasses.replace(spec, method=method)  # type: ignore[arg-type]
    if device is not None:
        if device not in DEVICES:
            raise InvalidInput(f"--device {device!r} is not one of {', '.join(DEVICES)}")
        spec = dataclasses.replace(spec, device=device)  # type: ignore[arg-type]
    return spec
