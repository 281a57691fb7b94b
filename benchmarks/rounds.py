"""Sides of a benchmark measured in rounds, taking turns, and each metric's median over the rounds.

On a shared machine one run of each side says little: five single rounds of identical code gave
BERT-base wall ratios from 1.20 to 1.60 (the bare script itself took 16.3-21.2 s). Here every side
runs once per round, the order reversed every other round (bare, embedded, worker; worker,
embedded, bare; ...) so a drift in the machine's speed falls on every side alike, and each metric
a ratio is taken of is the median over the rounds: a side that another process disturbed in one
round moves it no further than the middle run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

# what ratios are taken of, and what a round's entry keeps (the rest is the middle round's)
METRICS = ("wall_s", "peak_rss_mb", "peak_pss_mb", "written_mb", "cpu_s", "other_cpu_s", "loadavg_1m")

Side = Callable[[Path, int], dict[str, Any]]  # (its scratch directory, the round's index) -> result


def in_turns(sides: dict[str, Side], rounds: int, here: Path) -> dict[str, dict[str, Any]]:
    """Each side run `rounds` times in alternating order; per side, `combined` over its rounds.

    A side that raises is recorded as {"error": ...} for that round, and the others still run.
    """
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for index in range(rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            folder = here / (name if rounds == 1 else f"{name}-{index + 1}")
            folder.mkdir(parents=True)
            try:
                results[name].append(sides[name](folder, index))
            except Exception as exc:  # a side that cannot run fails its targets; the others still run
                results[name].append({"error": f"{type(exc).__name__}: {exc}"})
    return {name: combined(runs) for name, runs in results.items()}


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result for a side's rounds: the first failure if any round failed, else the round whose
    wall time is the median's, with every metric replaced by its median and each round's metrics
    under `rounds`."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return {**failed[0], "failed_rounds": len(failed), "rounds_run": len(runs)}
    if len(runs) == 1:
        return runs[0]
    middle = sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]
    medians = {
        metric: round(statistics.median(run[metric] for run in runs), 4)
        for metric in METRICS
        if all(isinstance(run.get(metric), int | float) for run in runs)
    }
    return {**middle, **medians, "rounds": [{m: run.get(m) for m in METRICS} for run in runs]}
