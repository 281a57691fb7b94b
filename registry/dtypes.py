"""Torch dtype names as a static table, so the registry can check specs without importing torch."""

from __future__ import annotations

# Canonical names, in the order error messages list them (the common ones first).
TENSOR_DTYPES: tuple[str, ...] = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "complex32",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
)

# torch's alternative names for the same dtypes (torch.float is torch.float32, torch.int is torch.int32, ...).
DTYPE_ALIASES: dict[str, str] = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
    "chalf": "complex32",
}

SCALAR_DTYPES: tuple[str, ...] = ("int", "float", "bool")


def canonical_dtype(name: str) -> str | None:
    """The canonical torch dtype name for `name` ("long" -> "int64", "torch.half" -> "float16"), or None."""
    name = name.removeprefix("torch.")
    if name in TENSOR_DTYPES:
        return name
    return DTYPE_ALIASES.get(name)


def all_dtype_names() -> list[str]:
    """Every name `canonical_dtype` accepts (without the optional "torch." prefix)."""
    return [*TENSOR_DTYPES, *DTYPE_ALIASES]
