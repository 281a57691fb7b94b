"""Run the eager model and a candidate artifact over the battery and compare them case by case.

The eager outputs are computed once (`eager_reference`) and every candidate (script, trace, the
optimized artifact, the exported program) is checked against them (`check_candidate`). Every
call gets fresh copies of the inputs and the same seed, so a model that writes into its inputs
or draws random numbers is judged fairly. `progress` is called about ten times per pass, never
from inside the try blocks that catch the model's exceptions, so an exception raised by the
callback (a cancelled job) propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import ModelFrames, describe_exception
from regctl.worker.engine.compare import Comparison, compare_outputs
from regctl.worker.engine.loader import reseed

Progress = Callable[[str], None]


class EagerFailure(Exception):
    """Raised when the eager model itself raises on a battery input: the model, not a candidate, is broken."""

    def __init__(self, message: str, label: str) -> None:
        super().__init__(message)
        self.label = label


@dataclass(frozen=True)
class CaseResult:
    """How one candidate did on one case."""

    case: BatteryCase
    comparison: Comparison


@dataclass
class CandidateCheck:
    """How one candidate did on the battery; `error` is one line, `failed_input` the first bad case."""

    ok: bool = True
    error: str | None = None
    failed_input: str | None = None
    results: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # labels of every failing case (full runs only)

    @property
    def max_abs_error(self) -> float:
        return max((r.comparison.max_abs_error for r in self.results), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.comparison.max_rel_error for r in self.results), default=0.0)

    def fail(self, label: str, error: str) -> None:
        if self.ok:
            self.ok, self.error, self.failed_input = False, error, label
        self.failures.append(label)


def call(fn: Callable[..., Any], case: BatteryCase, device: torch.device) -> Any:
    """One seeded, gradient-free call on fresh copies of the case's inputs."""
    reseed(device)
    with torch.no_grad():
        return fn(*case.clone_args(device))


def eager_reference(
    eager: Callable[..., Any],
    battery: list[BatteryCase],
    device: torch.device,
    frames: ModelFrames,
    progress: Progress,
) -> list[Any]:
    """The eager output of every case; raises EagerFailure naming the case if the model raises."""
    outputs, started = [], time.monotonic()
    for i, case in enumerate(battery):
        _tick(progress, "eager reference", i, len(battery), started)
        try:
            out = call(eager, case, device)
        except Exception as exc:
            message = f"forward raised {describe_exception(exc, frames)} on input {case.label!r}"
            raise EagerFailure(message, case.label) from exc
        outputs.append(_detached(out))
    _tick(progress, "eager reference", len(battery), len(battery), started)
    return outputs


def check_candidate(
    fn: Callable[..., Any],
    battery: list[BatteryCase],
    reference: list[Any],
    device: torch.device,
    *,
    rtol: float,
    atol: float,
    name: str,
    progress: Progress,
    stop_at_first: bool = True,
) -> CandidateCheck:
    """Run `fn` on every case and compare with eager; stop at the first mismatch unless told not to."""
    check, started = CandidateCheck(), time.monotonic()
    for i, (case, expected) in enumerate(zip(battery, reference, strict=True)):
        _tick(progress, f"{name}: battery", i, len(battery), started)
        try:
            actual = call(fn, case, device)
        except Exception as exc:
            check.fail(case.label, f"raised {describe_exception(exc)} on input {case.label!r}")
        else:
            comparison = compare_outputs(actual, expected, rtol=rtol, atol=atol)
            check.results.append(CaseResult(case, comparison))
            if not comparison.ok:
                check.fail(case.label, f"differs from eager on input {case.label!r}: {comparison.reason}")
        if not check.ok and stop_at_first:
            return check
    _tick(progress, f"{name}: battery", len(battery), len(battery), started)
    return check


def per_shape(results: list[CaseResult]) -> list[dict[str, Any]]:
    """The worst errors per battery shape group, for the report."""
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        g = groups.setdefault(
            r.case.group,
            {
                "label": r.case.group,
                "shape": dict(r.case.shape),
                "cases": 0,
                "max_abs_error": 0.0,
                "max_rel_error": 0.0,
            },
        )
        g["cases"] += 1
        g["max_abs_error"] = max(g["max_abs_error"], r.comparison.max_abs_error)
        g["max_rel_error"] = max(g["max_rel_error"], r.comparison.max_rel_error)
    return list(groups.values())


def _tick(progress: Progress, what: str, done: int, total: int, started: float) -> None:
    step = max(1, total // 10)
    if done == total or (done % step == 0 and done > 0):
        progress(f"{what} {done}/{total}{remaining(started, done, total)}")


def remaining(started: float, done: int, total: int) -> str:
    """`, ~N s left` from the pace so far (battery shapes differ in size, so it is an estimate)."""
    if done == 0 or done >= total:
        return ""
    left = (time.monotonic() - started) / done * (total - done)
    return f", ~{left:.0f} s left" if left >= 1 else ""


def _detached(value: Any) -> Any:
    """A private copy of an eager output: later calls must not be able to change it."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_detached(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value
