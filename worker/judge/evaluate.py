"""Run a candidate artifact over the battery and compare it with the eager outputs case by case.

The eager outputs are computed once, on the model side (`eager_reference` in worker/model/eager.py),
and every candidate (script, trace, the optimized artifact, the exported program) is checked
against them (`check_candidate`). Every call gets fresh copies of the inputs and the same seed
(worker/engine/calls.py), so a model that writes into its inputs or draws random numbers is
judged fairly. `progress` is called about ten times per pass, never
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
from regctl.worker.engine.calls import Progress, call, tick
from regctl.worker.engine.capture import describe_exception
from regctl.worker.judge.compare import Comparison, compare_outputs


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
        tick(progress, f"{name}: battery", i, len(battery), started)
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
    tick(progress, f"{name}: battery", len(battery), len(battery), started)
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


def deciding_inputs(battery: list[BatteryCase], coverage: dict[str, Any]) -> list[int]:
    """The inputs that decide a candidate nobody keeps: each shape's first draw, every input the search
    found, and the first input to take each side of each recorded decision (battery indexes, sorted)."""
    chosen: dict[str, int] = {}
    for i, case in enumerate(battery):
        chosen.setdefault(repr(sorted(case.shape.items())) + case.group, i)
    picked = set(chosen.values())
    for found in (coverage.get("search") or {}).get("found", []):
        picked.add(found["input"])
    for decision in coverage.get("decisions", []):
        picked.update(min(t["inputs"]) for t in decision.get("taken", []) if t.get("inputs"))
    return sorted(i for i in picked if 0 <= i < len(battery))
