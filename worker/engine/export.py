"""The secondary artifact: a `torch.export` program (`model.pt2`), validated on the same battery.

Every dynamic dim of the spec becomes one `torch.export.Dim(name, min=..., max=...)` shared by
all inputs that use it, with the spec's own range (a min of 1 included); a dim whose min equals
its max is static. torch.export specializes a dim whose *example* size is 0 or 1, so the example
is the first battery case (opt shape first) where every dynamic dim is at least 2, and the report
notes when that is not the opt shape; the battery then checks size 1 as well.

Python scalar inputs are passed as they are: torch.export specializes them to the example's
value, so the battery fails on other values and the program is not kept. The model side exports
and saves (`export_program`); the judge has the archive checked (program_check.py: no string
torch would eval, exec or import, no pickle but plain tensors), loads it with tensors and plain
data only (`plain_data_only`) and runs its `.module()` against eager on the battery (`judge_program`).
Nothing here ever fails the conversion: every problem becomes `ExportOutcome.error`.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase, used_dims
from regctl.worker.engine.capture import describe_exception
from regctl.worker.engine.evaluate import CandidateCheck, Progress, check_candidate
from regctl.worker.engine.loader import LoadedModel
from regctl.worker.engine.program_check import ProgramRefused, check_program


@dataclass
class ExportOutcome:
    """Where the program is once exported (model side) or once it matched eager (judge side); else why not."""

    saved: Path | None = None
    error: str | None = None
    detail: str | None = None
    failed_input: str | None = None
    notes: list[str] = field(default_factory=list)
    check: CandidateCheck | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.saved is not None


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


def judge_program(
    path: Path,
    spec: ModelSpec,
    device: torch.device,
    battery: list[BatteryCase],
    reference: list[Any],
    progress: Progress,
) -> ExportOutcome:
    """Load a saved program (judge side) and run it against eager on the battery."""
    start = time.perf_counter()
    outcome = ExportOutcome()
    try:
        # torch.export.load evals the program's shape strings and .module() execs its guards: the
        # archive passes the checker first, or torch never sees it.
        check_program(path)
    except ProgramRefused as exc:
        outcome.error = f"the exported program was refused before loading: {exc}"
        outcome.seconds = time.perf_counter() - start
        return outcome
    try:
        with quiet_torch(), plain_data_only():
            runnable = torch.export.load(str(path)).module()
    except Exception as exc:
        outcome.error = f"saving or loading the exported program failed: {describe_exception(exc)}"
        return outcome
    check = check_candidate(
        runnable,
        battery,
        reference,
        device,
        rtol=spec.validation.rtol,
        atol=spec.validation.atol,
        name="export",
        progress=progress,
    )
    outcome.check = check
    if check.ok:
        outcome.saved = path
    else:
        outcome.error = f"the exported program {check.error}"
        outcome.failed_input = check.failed_input
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


class PickledObjectRefused(Exception):
    """Raised when a saved program asks to unpickle an arbitrary object."""


@contextmanager
def plain_data_only() -> Iterator[None]:
    """While loading a saved program, unpickle tensors and plain data only.

    torch.export.load unpickles weights and constants with `weights_only=False`, and opaque
    constants with `pickle.loads`: a program written by a hostile model process could run code in
    the judge. Inside this block every torch.load is weights-only and the other two refuse.
    """
    import pickle

    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PickledObjectRefused(
            "the program holds a pickled object; only tensors and plain data are loaded"
        )

    saved = (torch.load, pickle.loads, torch._C._pickle_load_obj)
    torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only_load, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = saved


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


@contextmanager
def quiet_torch() -> Iterator[io.StringIO]:
    """torch.export logs its guesses and prints partial graphs on stderr; keep them for the report instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    printed = io.StringIO()
    try:
        with redirect_stderr(printed):
            yield printed
    finally:
        logger.setLevel(level)
