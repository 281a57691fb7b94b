"""Describe what a model returns, from its eager outputs over the whole battery.

Deployment targets need the output signature without running the model (Triton's config.pbtxt
declares every output's data type and dims), so the conversion report records it. One entry per
leaf of the output structure, in order:

    path     where the leaf is, as compare.py names it: "output", "output[0]", "output['logits']"
    within   the containers around it, outermost first: [] for a bare tensor, ["tuple"],
             ["dict"], ["tuple", "list"] ... (a named tuple is a "tuple")
    kind     "tensor", or the Python type of a non-tensor leaf: "int", "float", "bool", "str", "none"
    dtype    the tensor's dtype name ("float32"), None for non-tensors
    shape    per axis: an int when the size is the same on every battery input; the name of a
             dynamic input dim ("batch", "seq") when the size equals that dim on every input;
             -1 when it varies otherwise. None for non-tensors
    varies   True when the leaf is not there on every input, or its kind, dtype or rank changes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from regctl.worker.engine.battery import BatteryCase

_ROOT = "output"


def describe_outputs(battery: Sequence[BatteryCase], reference: Sequence[Any]) -> list[dict[str, Any]]:
    """The output signature over the battery (module docstring); [] for an empty battery."""
    per_case = [dict(_leaves(output, _ROOT, ())) for output in reference]
    paths: list[str] = []
    for leaves in per_case:
        paths += [p for p in leaves if p not in paths]
    return [_merge(path, battery, per_case) for path in paths]


def _leaves(value: Any, path: str, within: tuple[str, ...]) -> list[tuple[str, tuple[Any, ...]]]:
    if isinstance(value, tuple | list):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]", (*within, kind))]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}[{k!r}]", (*within, "dict"))]
    return [(path, (within, value))]


def _merge(path: str, battery: Sequence[BatteryCase], per_case: list[dict[str, Any]]) -> dict[str, Any]:
    present = [(case, leaves[path]) for case, leaves in zip(battery, per_case, strict=True) if path in leaves]
    within, first = present[0][1]
    values = [value for _, (_, value) in present]
    kinds = {_kind(v) for v in values}
    entry: dict[str, Any] = {
        "path": path,
        "within": list(within),
        "kind": _kind(first),
        "dtype": None,
        "shape": None,
        "varies": len(present) < len(per_case) or len(kinds) > 1,
    }
    if entry["varies"] or not isinstance(first, torch.Tensor):
        return entry
    dtypes = {v.dtype for v in values}
    ranks = {v.dim() for v in values}
    entry["dtype"] = str(first.dtype).removeprefix("torch.")
    if len(dtypes) > 1 or len(ranks) > 1:
        entry["varies"] = True
        return entry
    cases = [case for case, _ in present]
    entry["shape"] = [_axis([v.shape[axis] for v in values], cases) for axis in range(first.dim())]
    return entry


def _axis(sizes: list[int], cases: list[BatteryCase]) -> int | str:
    """A fixed size, the dynamic dim the size follows on every input, or -1."""
    if len(set(sizes)) == 1:
        return sizes[0]
    for name in cases[0].shape:
        if all(case.shape.get(name) == size for case, size in zip(cases, sizes, strict=True)):
            return name
    return -1


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "tensor"
    return "none" if value is None else type(value).__name__
