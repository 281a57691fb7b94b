"""Median latency of one callable on one input, after warm-up, within a small time budget.

Three warm-up calls (TorchScript's profiling executor specializes the graph on its first runs),
then timed calls until `budget_s` is spent or `max_runs` is reached, but at least `min_runs`.
The inputs are prepared once outside the timed region; on CUDA every call is synchronized.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.devices import reseed

WARMUP = 3
BUDGET_S = 0.1
MIN_RUNS = 5
MAX_RUNS = 30


@dataclass(frozen=True)
class Latency:
    """A median over `runs` timed calls, in milliseconds."""

    median_ms: float
    runs: int


def measure(
    fn: Callable[..., Any],
    case: BatteryCase,
    device: torch.device,
    *,
    warmup: int = WARMUP,
    budget_s: float = BUDGET_S,
    min_runs: int = MIN_RUNS,
    max_runs: int = MAX_RUNS,
) -> Latency:
    """Time `fn` on the inputs of `case` (see the module docstring)."""
    args = case.clone_args(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync
    reseed(device)
    with torch.no_grad():
        for _ in range(warmup):
            fn(*args)
        sync()
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
            start = time.perf_counter()
            fn(*args)
            sync()
            times.append(time.perf_counter() - start)
    return Latency(statistics.median(times) * 1e3, len(times))


def _no_sync() -> None:
    return None
