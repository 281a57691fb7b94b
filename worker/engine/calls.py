"""Calling a model, or a candidate, on one battery case, saying how far a pass has got, and timing
the steps: shared by the model side (the eager reference) and the judge (the candidates), so both
call alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.devices import reseed

Progress = Callable[[str], None]


def call(fn: Callable[..., Any], case: BatteryCase, device: torch.device) -> Any:
    """One seeded, gradient-free call on fresh copies of the case's inputs."""
    reseed(device)
    with torch.no_grad():
        return fn(*case.clone_args(device))


def tick(progress: Progress, what: str, done: int, total: int, started: float) -> None:
    step = max(1, total // 10)
    if done == total or (done % step == 0 and done > 0):
        progress(f"{what} {done}/{total}{remaining(started, done, total)}")


def remaining(started: float, done: int, total: int) -> str:
    """`, ~N s left` from the pace so far (battery shapes differ in size, so it is an estimate)."""
    if done == 0 or done >= total:
        return ""
    left = (time.monotonic() - started) / done * (total - done)
    return f", ~{left:.0f} s left" if left >= 1 else ""


def detached(value: Any) -> Any:
    """A private copy of an eager output: later calls must not be able to change it."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(detached(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(detached(v) for v in value)
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    return value


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to `timings[key]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
