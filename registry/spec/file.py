"""`regctl.toml` as written, as pydantic models: they check a file and give its JSON Schema.

Each model forbids unknown keys, and takes types strictly (a bool is never an integer, a string never a
number), as TOML readers expect. Checks that need more than one key, or the model directory (passed as
the validation context's `directory`), are validators here; every failure is turned into one line by
registry/spec/messages.py. The checked spec the rest of regctl uses is registry/spec/checked.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from regctl.registry.dtypes import SCALAR_DTYPES, TENSOR_DTYPES, all_dtype_names, canonical_dtype
from regctl.registry.formats import check_formats
from regctl.registry.spec import paths
from regctl.registry.spec.checked import (
    BAKED_POINT,
    DEFAULT_SEARCH,
    MAX_DIM,
    MAX_DIMS,
    MAX_ELEMENTS,
    MAX_INPUTS,
    MAX_SAMPLES,
    MAX_SEARCH,
    RECORDED_INPUT_SUFFIXES,
    WEIGHT_SUFFIXES,
)
from regctl.registry.spec.messages import EXPECTED, did_you_mean, fail, is_identifier, kind, show

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"

_SIZE = "a positive integer or the name of a dim declared in [dims]"
_NAMED = [*dict.fromkeys([*all_dtype_names(), *SCALAR_DTYPES])]
_DTYPES = [*_NAMED, *(f"torch.{name}" for name in all_dtype_names())]  # what canonical_dtype() takes


def _directory(info: ValidationInfo) -> Path | None:
    return (info.context or {}).get("directory")


def _size(value: Any) -> int | str:
    if type(value) not in (int, str):
        raise fail(f"is {kind(value)}", _SIZE)
    if isinstance(value, int) and value < 1:
        raise fail(f"is a {'negative' if value else 'zero'} size", _SIZE)
    if isinstance(value, int) and value > MAX_DIM:
        raise fail(f"is more than {MAX_DIM}", _SIZE)
    return value


def _finite(value: Any) -> int | float:
    # Kept as written (an int stays an int): the battery draws integers from an integer range.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"is {kind(value)}", "a finite number")
    if not math.isfinite(value):
        raise fail("is not finite", "a finite number")
    return value


Size = Annotated[
    Any,
    AfterValidator(_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_DIM, "description": "A fixed size"},
                {"type": "string", "pattern": IDENTIFIER, "description": "A dim declared in [dims]"},
            ]
        }
    ),
]
Number = Annotated[Any, AfterValidator(_finite), WithJsonSchema({"type": "number"})]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InputTable(_Table):
    """One [[inputs]] table: a positional input of forward(), a tensor (with a shape) or a Python scalar."""

    name: str = Field(
        description="The argument's name in forward()", json_schema_extra={"pattern": IDENTIFIER}
    )
    dtype: str = Field(
        description='A torch dtype ("float32", "int64", "long", ...) for a tensor; int, float or bool for a '
        "Python scalar (an input without a shape)",
        json_schema_extra={"enum": _DTYPES},
    )
    shape: list[Size] | None = Field(
        default=None,
        description='Ints are fixed sizes, strings name a dim declared in [dims], e.g. [1, "seq"]; leave it '
        "out for a Python scalar",
    )
    low: Number | None = Field(default=None, description="The least value generated data takes")
    high: Number | None = Field(default=None, description="Generated data stays below this value")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not is_identifier(name):
            raise fail("is not a Python identifier", EXPECTED["inputs[].name"])
        return name

    @model_validator(mode="after")
    def _dtype_and_range(self) -> InputTable:
        scalars = ", ".join(SCALAR_DTYPES)
        scalar = self.shape is None
        if canonical_dtype(self.dtype) is None and self.dtype not in SCALAR_DTYPES:
            problem = "is not a torch dtype" + did_you_mean(self.dtype, [*TENSOR_DTYPES, *SCALAR_DTYPES])
            expected = f"one of {', '.join(TENSOR_DTYPES)} (or {scalars} for a scalar input)"
            raise fail(problem, expected, "dtype", value=self.dtype)
        if scalar and self.dtype not in SCALAR_DTYPES:
            problem = "is a tensor dtype but the input has no shape, which makes it a Python scalar"
            expected = f"{scalars} for a scalar input, or a shape such as [1, 8]"
            raise fail(problem, expected, "dtype", value=self.dtype)
        if self.low is not None and self.high is not None and self.low >= self.high:
            problem = f"is not greater than low = {show(self.low)}"
            raise fail(problem, "low < high", "high", value=self.high)
        return self


class DimTable(_Table):
    """A named dynamic dimension: the validator sweeps min, opt and max."""

    min: int = Field(ge=1, le=MAX_DIM, description="The smallest size the model must take")
    max: int = Field(ge=1, le=MAX_DIM, description="The largest size the model must take")
    opt: int | None = Field(
        default=None, ge=1, description="The size traced and timed (default: midway between min and max)"
    )
    batch: bool = Field(default=False, description="The batch dim (Triton folds it into max_batch_size)")

    @model_validator(mode="after")
    def _ordered(self) -> DimTable:
        if self.min > self.max:
            raise fail(f"is greater than max = {self.max}", "1 <= min <= opt <= max", "min", value=self.min)
        if self.opt is not None and not self.min <= self.opt <= self.max:
            problem = f"is outside min = {self.min}, max = {self.max}"
            raise fail(problem, "min <= opt <= max", "opt", value=self.opt)
        return self


class ValidationTable(_Table):
    """Tolerances and sampling for the validation battery."""

    rtol: float = Field(default=1e-4, ge=0, allow_inf_nan=False, description="Relative tolerance")
    atol: float = Field(default=1e-5, ge=0, allow_inf_nan=False, description="Absolute tolerance")
    samples: int = Field(default=4, ge=1, le=MAX_SAMPLES, description="Random draws per shape")
    inputs: str | None = Field(
        default=None,
        description="A .safetensors file of recorded real inputs, relative to the model directory",
    )
    search: int = Field(
        default=DEFAULT_SEARCH,
        ge=0,
        le=MAX_SEARCH,
        description="Eager forwards the search for a decision's untaken side may spend (0: no search)",
    )
    accept_baked: list[Annotated[str, Field(pattern=BAKED_POINT, max_length=300)]] = Field(
        default_factory=list,
        max_length=200,
        description='Decision points a trace may bake though tested one way only, as "file.py:14"',
    )

    @field_validator("inputs")
    @classmethod
    def _recorded(cls, value: str | None, info: ValidationInfo) -> str | None:
        found = paths.data_file(value, RECORDED_INPUT_SUFFIXES, _directory(info))
        if found is not None:
            paths.recorded_inputs(found, _directory(info))
        return found


class SpecFile(_Table):
    """A model directory's regctl.toml: how to build the model, its inputs, and how to validate it."""

    model_config = ConfigDict(extra="forbid", strict=True, title="regctl.toml")

    entrypoint: str = Field(
        default="model.py:build",
        validate_default=True,
        description='"file.py:callable" or "package.module:callable", relative to the model directory; '
        "it returns an nn.Module or a plain function of tensors",
    )
    weights: str | None = Field(
        default=None,
        description="A .safetensors file, or a state_dict .pt/.pth loaded with weights_only=True",
    )
    method: Literal["auto", "trace", "script"] = Field(
        default="auto", description="auto tries both and keeps the one proven right (script when both are)"
    )
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="The queue the job goes to")
    optimize: bool = Field(default=True, description="Freeze and optimize_for_inference after conversion")
    formats: list[Literal["torchscript", "exported", "aoti", "executorch", "onnx"]] | None = Field(
        default=None,
        min_length=1,
        description='What a conversion produces: always "torchscript"; "exported" (a torch.export .pt2), '
        '"aoti" (an AOTInductor package), "executorch" (a .pte) and "onnx" only on request',
        json_schema_extra={"contains": {"const": "torchscript"}, "uniqueItems": True},
    )
    inputs: list[InputTable] = Field(
        min_length=1, max_length=MAX_INPUTS, description="One table per positional input of forward()"
    )
    dims: dict[str, DimTable] = Field(
        default_factory=dict,
        max_length=MAX_DIMS,
        description="The dynamic dims the inputs' shapes name, e.g. seq = { min = 1, max = 128 }",
        json_schema_extra={"propertyNames": {"pattern": IDENTIFIER}},
    )
    validation: ValidationTable = Field(
        default_factory=ValidationTable, description="How the converted model is proven against eager PyTorch"
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str, info: ValidationInfo) -> str:
        return paths.entrypoint(value, _directory(info))

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        return paths.data_file(value, WEIGHT_SUFFIXES, _directory(info))

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None

        def error(problem: str) -> Exception:
            return fail(problem, EXPECTED["formats"])

        return list(check_formats(tuple(value), error))

    @field_validator("dims", mode="before")
    @classmethod
    def _dim_names(cls, raw: Any) -> Any:
        for name, table in raw.items() if isinstance(raw, dict) else ():
            if not is_identifier(name):
                expected = f"{EXPECTED['dims.*']}, named like seq"
                raise fail("is not named by a Python identifier", expected, name, value=table)
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> SpecFile:
        batch = [name for name, dim in self.dims.items() if dim.batch]
        if len(batch) > 1:
            problem = f"but dims.{batch[0]} is already the batch dim"
            raise fail(problem, "at most one batch dim", "dims", batch[1], "batch", value=True)
        names: set[str] = set()
        for i, table in enumerate(self.inputs):
            self._shape_fits(i, table.shape)
            if table.name in names:
                problem = "is taken by an earlier input"
                raise fail(problem, "unique names", "inputs", i, "name", value=table.name)
            names.add(table.name)
        used = {size for table in self.inputs for size in table.shape or () if isinstance(size, str)}
        for name, dim in self.dims.items():
            if name not in used:
                problem = "is declared but no input shape uses it (a typo?)"
                value = {"min": dim.min, "max": dim.max}
                raise fail(problem, "every dim to be used", "dims", name, value=value)
        return self

    def _shape_fits(self, i: int, shape: list[int | str] | None) -> None:
        for j, size in enumerate(shape or ()):
            if isinstance(size, str) and size not in self.dims:
                declared = ", ".join(self.dims) or "none"
                problem = f"names a dim that is not declared in [dims] (declared: {declared})"
                fix = f"{_SIZE} or add [dims] {size} = {{ min = 1, max = 64 }}"
                raise fail(problem + did_you_mean(size, self.dims), fix, "inputs", i, "shape", j, value=size)
        if shape is not None:
            largest = math.prod(self.dims[s].max if isinstance(s, str) else s for s in shape)
            if largest > MAX_ELEMENTS:
                problem = f"holds {largest:,} elements at the dims' max, more than {MAX_ELEMENTS:,}"
                expected = "an input a battery can hold in memory; lower the dims' max"
                raise fail(problem, expected, "inputs", i, "shape", value=shape)


# The model of each table by its key's pattern (messages.py): its fields are the keys it allows.
TABLES: dict[str, type[BaseModel]] = {
    "": SpecFile,
    "inputs[]": InputTable,
    "dims.*": DimTable,
    "validation": ValidationTable,
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of regctl.toml, for editors (Even Better TOML, taplo) to check it as you type."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_without_null(SpecFile.model_json_schema()),
    }


def _without_null(node: Any) -> Any:
    """TOML has no null: an optional key is one left out, so `X | None` is just X in the schema."""
    if isinstance(node, list):
        return [_without_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _without_null(v) for k, v in node.items() if not (k == "default" and v is None)}
    branches = [b for b in node.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in node and len(branches) == 1:
        return {**{k: v for k, v in node.items() if k != "anyOf"}, **branches[0]}
    return node
