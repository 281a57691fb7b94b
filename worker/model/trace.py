"""The `trace` candidate: `torch.jit.trace` on the opt-shape example, with its TracerWarnings.

A trace records the tensor operations of one run: Python control flow that depends on the
data, and Python arithmetic on sizes, are baked in. Torch says so with a TracerWarning at trace
time; each one is kept with the model file and line it came from (the innermost frame of the
model's code on the stack when it was raised, see capture.py), and the first is the hint when
the battery rejects the trace.

Python scalar inputs cannot be traced (a traced graph takes tensors only, so the value would
be baked in), so a spec with scalar inputs gets no trace at all and says why. Outputs holding a
dict or a list need `strict=False`; the outcome records when it was used. `check_trace` is off:
the battery is a stronger check than torch's single re-run. Every tensor the model's own code turns
into a Python value while tracing is recorded (`baked`): the judge asks whether the battery took
each such decision both ways (worker/judge/baked.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import WarningLog, WarningRecord, describe_exception
from regctl.worker.model.loader import LoadedModel
from regctl.worker.model.recorder import CoverageRecord

# the tracer prints the whole offending output (tensor values included) between these two parts
_UNSUPPORTED_OUTPUT = re.compile(
    r"^output (\d+) \(.*?(of traced region cannot be understood by the tracer.*)$", re.S
)
_OUTPUT_HINT = (
    "a trace can output tensors and tuples, lists and dicts of them, where dict values are tensors "
    "or tuples of tensors; script handles other output structures"
)


@dataclass(frozen=True)
class TraceOutcome:
    """A traced artifact, or why there is none, plus what the tracer warned about."""

    artifact: Any  # torch.jit.ScriptModule | torch.jit.ScriptFunction | None
    error: str | None = None
    hint: str | None = None
    warnings: list[WarningRecord] = field(default_factory=list)
    strict: bool = True
    note: str | None = None
    seconds: float = 0.0
    baked: list[str] = field(default_factory=list)  # "model.py:14": tensors the trace turned into values


def trace_model(
    model: LoadedModel, spec: ModelSpec, example: BatteryCase, example_output: Any, log: WarningLog
) -> TraceOutcome:
    """Trace the eager model on `example` (whose eager output is `example_output`)."""
    scalars = [i for i in spec.inputs if i.is_scalar]
    if scalars:
        first = scalars[0]
        return TraceOutcome(
            artifact=None,
            error=(
                f"trace cannot take the Python scalar input {first.name!r} ({first.dtype}): a traced graph "
                "has tensor inputs only, so its value would be baked in"
            ),
            hint='use method = "script", or pass the value as a tensor input',
        )
    strict = not _has_mutable_container(example_output)
    note = None if strict else "traced with strict=False because the output contains a dict or a list"
    start_warnings = len(log.records)
    start = time.perf_counter()
    watch = CoverageRecord(model.frames)
    try:
        with torch.no_grad(), watch.converting():
            artifact = torch.jit.trace(
                model.eager, example.clone_args(model.device), check_trace=False, strict=strict
            )
    except Exception as exc:
        unsupported = _UNSUPPORTED_OUTPUT.search(str(exc))
        return TraceOutcome(
            artifact=None,
            error=(
                f"tracing failed: output {unsupported.group(1)} {unsupported.group(2)}"
                if unsupported
                else f"tracing failed: {describe_exception(exc, model.frames)}"
            ),
            hint=_OUTPUT_HINT if unsupported else None,
            warnings=tracer_warnings(log.since(start_warnings)),
            strict=strict,
            note=note,
            seconds=time.perf_counter() - start,
        )
    found = tracer_warnings(log.since(start_warnings))
    return TraceOutcome(
        artifact,
        hint=warning_hint(found),
        warnings=found,
        strict=strict,
        note=note,
        seconds=time.perf_counter() - start,
        baked=watch.points_seen(),
    )


def tracer_warnings(records: list[WarningRecord]) -> list[WarningRecord]:
    """Only the TracerWarnings among `records`."""
    return [r for r in records if r.category == "TracerWarning"]


def warning_hint(found: list[WarningRecord]) -> str | None:
    """A hint pointing at the first model line the tracer warned about."""
    if not found:
        return None
    first = found[0]
    where = f" at {first.file}:{first.line}" if first.file else ""
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (
        f"the tracer warned{where}{more}: {first.message.split('.')[0]}; a trace bakes in values "
        "and control flow computed from tensors"
    )


def _has_mutable_container(value: Any) -> bool:
    if isinstance(value, dict | list):
        return True
    if isinstance(value, tuple):
        return any(_has_mutable_container(v) for v in value)
    return False
