"""The search for the untaken side, in the reference runner after eager has run the battery.

A decision point (worker/model/recorder.py) that took one value on every battery input has an
untaken side. The search runs the probes of worker/engine/probes.py in eager, in order, under the
same recorder, and keeps each probe that took a value one of those points had not taken; a point
that has taken a second value is no longer searched for. It stops when no point is left, after
`spec.validation.search` forwards, or when it has spent SEARCH_TIME_SHARE of the battery's own eager
time (at least MIN_SEARCH_SECONDS), whichever comes first. Where every decision already took both
sides it runs no forward at all.

What it keeps joins the battery: their eager outputs are appended to the reference, and the runner
reports only their probe indexes and the points each flipped, so the judge rebuilds the inputs from
the seed itself. Size decisions (kind "shape") are read from coverage.py only once recording stops,
so they are not searched for; the dims' extremes are in the battery already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.calls import Progress, call, detached, tick
from regctl.worker.engine.probes import MAX_PROBES, probe
from regctl.worker.model.recorder import CoverageRecord

SEARCH_TIME_SHARE = 1.0  # of the eager battery's own time: the search at most doubles eager's cost
MIN_SEARCH_SECONDS = 2.0  # a tiny model's battery takes milliseconds; a few probes still fit


@dataclass
class SearchOutcome:
    """What the search tried and what it found; `outputs` are the found inputs' eager outputs."""

    targets: list[str] = field(default_factory=list)  # "model.py:14" points one way after the battery
    found: list[tuple[int, list[str]]] = field(default_factory=list)  # (probe index, points it flipped)
    outputs: list[Any] = field(default_factory=list)
    tried: int = 0
    raised: int = 0  # probes eager raised on (skipped: the model need not take every input)
    seconds: float = 0.0
    budget_forwards: int = 0
    budget_seconds: float = 0.0
    stopped: str = "nothing to search for"


def search_untaken(
    eager: Any,
    spec: ModelSpec,
    seed: int,
    battery_size: int,
    device: torch.device,
    record: CoverageRecord,
    battery_seconds: float,
    progress: Progress,
) -> SearchOutcome:
    """Search for inputs that take the untaken sides of `record`'s one-way points (module docstring)."""
    contexts = {str(i) for i in range(battery_size)}
    open_points = record.one_way(contexts)
    outcome = SearchOutcome(
        targets=[f"{f}:{line}" for f, line in sorted(open_points)],
        budget_forwards=min(spec.validation.search, MAX_PROBES),
        budget_seconds=round(max(MIN_SEARCH_SECONDS, SEARCH_TIME_SHARE * battery_seconds), 3),
    )
    if not open_points:
        return outcome
    if outcome.budget_forwards == 0:
        outcome.stopped = "search = 0 in the spec"
        return outcome
    started = time.monotonic()
    outcome.stopped = f"used its {outcome.budget_forwards} forwards"
    for index in range(outcome.budget_forwards):
        if time.monotonic() - started > outcome.budget_seconds:
            outcome.stopped = f"used its {outcome.budget_seconds:g} s"
            break
        tick(progress, "searching for untaken branches", index, outcome.budget_forwards, started)
        case = probe(spec, seed, index)
        context = f"p{index}"
        record.switch(context)
        outcome.tried += 1
        try:
            out = call(eager, case, device)
        except Exception:
            outcome.raised += 1
            continue
        flipped = record.new_sides(context, open_points, contexts)
        if not flipped:
            continue
        record.kept.append(context)
        contexts.add(context)
        outcome.outputs.append(detached(out))
        outcome.found.append((index, [f"{f}:{line}" for f, line in flipped]))
        open_points -= set(flipped)
        if not open_points:
            outcome.stopped = "every decision took both sides"
            break
    outcome.seconds = round(time.monotonic() - started, 4)
    return outcome
