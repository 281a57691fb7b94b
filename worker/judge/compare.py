"""Compare an artifact's output with the eager model's output: structure, dtype, shape and values.

Outputs may be tensors, Python scalars, None, strings, and tuples, named tuples, lists and dicts
of those, nested. A named tuple turns into a plain tuple in TorchScript, so tuples compare
positionally whatever their class; a list and a tuple are different structures. Tensor values
follow `torch.allclose` semantics (|actual - expected| <= atol + rtol * |expected|) with NaN equal
to NaN; integer, bool and Python int/bool values must be exactly equal.

The relative error is measured only over elements whose eager magnitude exceeds atol: near zero
it is meaningless and the absolute tolerance decides anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

_ROOT = "output"


@dataclass(frozen=True)
class Comparison:
    """The verdict for one output pair; `reason` is one line naming the first mismatch."""

    ok: bool
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    reason: str | None = None
    # The worst |actual - expected| / (atol + rtol * |expected|) over float elements: at most 1 passes.
    # inf for a mismatch no tolerance can excuse (structure, dtype, shape, integers).
    tolerance_used: float = 0.0


class _Mismatch(Exception):
    """Internal: stops the walk at the first structural or value mismatch."""


class _Walk:
    """Walks two output structures side by side, collecting the worst errors."""

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol = rtol
        self.atol = atol
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.used = 0.0

    def visit(self, actual: Any, expected: Any, path: str) -> None:
        if isinstance(expected, torch.Tensor):
            self._tensor(actual, expected, path)
        elif isinstance(expected, tuple | list):
            self._sequence(actual, expected, path)
        elif isinstance(expected, dict):
            self._mapping(actual, expected, path)
        else:
            self._scalar(actual, expected, path)

    def _sequence(self, actual: Any, expected: tuple | list, path: str) -> None:
        kind = "list" if isinstance(expected, list) else "tuple"
        if not isinstance(actual, list if kind == "list" else tuple):
            raise _Mismatch(f"{path} is {_kind_of(actual)}, eager gives a {kind}")
        if len(actual) != len(expected):
            raise _Mismatch(f"{path} has {len(actual)} items, eager has {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            self.visit(a, e, f"{path}[{i}]")

    def _mapping(self, actual: Any, expected: dict, path: str) -> None:
        if not isinstance(actual, dict):
            raise _Mismatch(f"{path} is {_kind_of(actual)}, eager gives a dict")
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing keys {_keys(missing)}")
            if extra:
                parts.append(f"extra keys {_keys(extra)}")
            raise _Mismatch(f"{path} dict has {' and '.join(parts)} compared with eager")
        for key, e in expected.items():
            self.visit(actual[key], e, f"{path}[{key!r}]")

    def _scalar(self, actual: Any, expected: Any, path: str) -> None:
        if isinstance(actual, torch.Tensor) or type(actual) is not type(expected):
            raise _Mismatch(f"{path} is {_kind_of(actual)}, eager gives {_kind_of(expected)}")
        if isinstance(expected, float):
            self._float_scalar(actual, expected, path)
        elif actual != expected:
            raise _Mismatch(f"{path} is {actual!r}, eager gives {expected!r}")

    def _float_scalar(self, actual: float, expected: float, path: str) -> None:
        if actual == expected or (math.isnan(actual) and math.isnan(expected)):
            return
        err = abs(actual - expected)
        allowed = self.atol + self.rtol * abs(expected)
        used = err / allowed if allowed > 0 else math.inf
        self._note(err, err / abs(expected) if abs(expected) > self.atol else 0.0, used)
        if not err <= allowed:
            raise _Mismatch(f"{path} is {actual!r}, eager gives {expected!r} (abs error {err:.3g})")

    def _tensor(self, actual: Any, expected: torch.Tensor, path: str) -> None:
        if not isinstance(actual, torch.Tensor):
            raise _Mismatch(f"{path} is {_kind_of(actual)}, eager gives a tensor")
        if actual.dtype != expected.dtype:
            raise _Mismatch(f"{path} dtype {_dtype(actual)} != eager {_dtype(expected)}")
        if actual.shape != expected.shape:
            raise _Mismatch(f"{path} shape {tuple(actual.shape)} != eager {tuple(expected.shape)}")
        if actual.numel() == 0:
            return
        actual, expected = actual.detach().cpu(), expected.detach().cpu()
        if torch.equal(actual, expected):  # the common case, and cheap: no error to measure
            return
        if actual.is_floating_point() or actual.is_complex():
            self._float_tensor(actual, expected, path)
        elif not torch.equal(actual, expected):
            where = (actual != expected).nonzero()[0].tolist()
            a, e = actual[tuple(where)].item(), expected[tuple(where)].item()
            raise _Mismatch(f"{path} values differ at index {tuple(where)}: {a!r} != eager {e!r}")

    def _float_tensor(self, actual: torch.Tensor, expected: torch.Tensor, path: str) -> None:
        high = torch.complex128 if actual.is_complex() else torch.float64
        a, e = actual.to(high), expected.to(high)
        same = (a == e) | (a.isnan() & e.isnan())
        err = torch.where(same, torch.zeros((), dtype=torch.float64), (a - e).abs())
        err = torch.nan_to_num(err, nan=math.inf)
        magnitude = e.abs()
        rel = torch.where(magnitude > self.atol, err / magnitude, torch.zeros((), dtype=torch.float64))
        allowed = self.atol + self.rtol * magnitude
        used = torch.where(same, torch.zeros((), dtype=torch.float64), err / allowed)
        self._note(
            float(err.max()),
            float(torch.nan_to_num(rel, nan=math.inf).max()),
            float(torch.nan_to_num(used, nan=math.inf).max()),
        )
        bad = ~(same | (err <= allowed))
        if bool(bad.any()):
            worst = divmod_index(int(torch.where(bad, err, -1.0).argmax()), tuple(err.shape))
            raise _Mismatch(
                f"{path} values differ: max abs error {float(err.max()):.3g} at index {worst} "
                f"(got {a[worst].item():.6g}, eager {e[worst].item():.6g}; "
                f"rtol {self.rtol:g}, atol {self.atol:g})"
            )

    def _note(self, abs_err: float, rel_err: float, used: float) -> None:
        self.max_abs = max(self.max_abs, abs_err)
        self.max_rel = max(self.max_rel, rel_err)
        self.used = max(self.used, used)


def compare_outputs(actual: Any, expected: Any, *, rtol: float, atol: float) -> Comparison:
    """Compare `actual` (the artifact's output) with `expected` (eager's); never raises on a mismatch."""
    walk = _Walk(rtol, atol)
    try:
        walk.visit(actual, expected, _ROOT)
    except _Mismatch as mismatch:
        used = walk.used if walk.used > 1 else math.inf  # a mismatch that is not about float values
        return Comparison(False, walk.max_abs, walk.max_rel, str(mismatch), used)
    return Comparison(True, walk.max_abs, walk.max_rel, None, walk.used)


def divmod_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The multi-dimensional index of element `flat` of a contiguous tensor of `shape`."""
    index = []
    for size in reversed(shape):
        flat, rest = divmod(flat, size)
        index.append(rest)
    return tuple(reversed(index))


def _kind_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {tuple(value.shape)}"
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _keys(keys: list[Any]) -> str:
    shown = ", ".join(repr(k) for k in keys[:5])
    return shown + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
