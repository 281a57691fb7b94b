"""The secondary artifact: a `torch.export` program (`model.pt2`), validated on the same battery.

Every dynamic dim of the spec becomes one `torch.export.Dim(name, min=..., max=...)` shared by
all inputs that use it, with the spec's own range (a min of 1 included); a dim whose min equals
its max is static. torch.export specializes a dim whose *example* size is 0 or 1, so the example
is the first battery case (opt shape first) where every dynamic dim is at least 2, and the report
notes when that is not the opt shape; the battery then checks size 1 as well.

Python scalar inputs are passed as they are: torch.export specializes them to the example's
value, so the battery fails on other values and the program is not kept. The model side exports
and saves (`export_program`, here); the judge has the archive checked (program_check.py: no string
torch would eval, exec or import, no pickle but plain tensors), loads it with tensors and plain
data only and runs its `.module()` against eager on the battery (worker/judge/program.py).
Nothing here ever fails the conversion: every problem becomes `ExportOutcome.error`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase, used_dims
from regctl.worker.engine.capture import describe_exception
from regctl.worker.engine.exported import ExportOutcome, quiet_torch
from regctl.worker.model.loader import LoadedModel


class FunctionModule(nn.Module):
    """Makes a plain function of tensors exportable."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def export_program(
    model: LoadedModel, spec: ModelSpec, battery: list[BatteryCase], dest: Path
) -> ExportOutcome:
    """Export the program and save it at `dest` (model side), unjudged; or `error` says why not.

    Saved straight to the file: holding a large model's program as bytes would cost two more
    copies of its weights in memory (the buffer and the bytes taken from it).
    """
    start = time.perf_counter()
    outcome = ExportOutcome()
    example = export_example(spec, battery)
    if example is not battery[0]:
        outcome.notes.append(
            f"exported on input {example.label!r}: torch.export specializes sizes 0 and 1, "
            "which the opt shape has"
        )
    with quiet_torch() as printed:
        program = _export(model, spec, example, outcome)
    if program is None and printed.getvalue().strip():
        outcome.detail = f"{outcome.detail}\n\ntorch.export printed:\n{printed.getvalue().strip()[:4000]}"
    if program is not None:
        try:
            torch.export.save(program, str(dest))
            outcome.saved = dest
        except Exception as exc:
            dest.unlink(missing_ok=True)
            outcome.error = f"saving the exported program failed: {describe_exception(exc)}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def export_example(spec: ModelSpec, battery: list[BatteryCase]) -> BatteryCase:
    """The first case (opt shape first) whose dynamic dims are all >= 2 where their range allows it."""
    wanted = {n: min(2, spec.dims[n].max) for n in used_dims(spec)}
    for case in battery:
        if all(case.shape.get(n, 0) >= size for n, size in wanted.items()):
            return case
    return battery[0]


def _export(model: LoadedModel, spec: ModelSpec, example: BatteryCase, outcome: ExportOutcome) -> Any:
    target = model.module if model.module is not None else FunctionModule(model.eager)
    args = example.clone_args(model.device)
    if any(i.is_scalar for i in spec.inputs):
        outcome.notes.append("scalar inputs are specialized by torch.export to the example's values")
    try:
        return torch.export.export(target, args, dynamic_shapes=dynamic_shapes(spec, model.is_function))
    except Exception as exc:
        outcome.error = f"torch.export failed: {_summary(exc, model)}"
        outcome.detail = str(exc)[:4000]
        return None


def dynamic_shapes(spec: ModelSpec, wrapped: bool) -> Any:
    """torch.export's dynamic_shapes for the spec's inputs (nested in one tuple for a *args wrapper)."""
    dims: dict[str, Any] = {}
    for name in used_dims(spec):
        d = spec.dims[name]
        if d.min < d.max:
            dims[name] = torch.export.Dim(_identifier(name), min=d.min, max=d.max)
    per_input = tuple(
        None
        if inp.is_scalar
        else ({axis: dims[s] for axis, s in enumerate(inp.shape or ()) if s in dims} or None)
        for inp in spec.inputs
    )
    return (per_input,) if wrapped else per_input


def _summary(exc: Exception, model: LoadedModel) -> str:
    """The one-line error, plus torch's explanation line for a constraint violation ("- You marked ...")."""
    head = re.sub(r" For more information[^(]*", "", describe_exception(exc, model.frames))
    reasons = [ln.strip()[2:].split(". ")[0] for ln in str(exc).splitlines() if ln.strip().startswith("- ")]
    return f"{head} {reasons[0]}" if reasons else head


def _identifier(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if cleaned.isidentifier() else f"d_{cleaned}"
