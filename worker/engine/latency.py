"""Latency of several forms of one model (eager, a candidate, its optimized form), measured interleaved.

Measured with `torch.utils.benchmark.Timer` (its clock synchronizes the accelerator), in this process,
on the same input tensors and with this process's intra-op thread count for every form (Timer
defaults to one thread). After `WARMUP` calls each (TorchScript's profiling executor specializes a
graph on its first runs), the forms take turns in blocks, the order reversed every round
(A B C, C B A, ...), so a second job starting, a CPU frequency change or a cache warming up falls on
every form alike instead of on whichever ran last. A block repeats a call enough times to last at
least `BLOCK_S` (30 us, some 100 times the 0.3 us Timer's clock adds to a block, measured); each
block gives one per-call time, and a form's figures are the median and interquartile range of its
blocks. Blocks are short so that on a busy machine the ones the OS preempted are a minority the
median ignores, rather than a share of every long block.

Cost is counted in blocks, not seconds: the quartiles' worth is their number of blocks, and a block
need only be long enough for the clock. `BLOCKS` (41) per form, fewer when they would take more
than `BUDGET_S` (0.08 s) of timed calls, never fewer than `MIN_BLOCKS` (5). A model that answers in
10 us is timed in about 1.5 ms per form, warm-up included, so that the figure costs a small model a
share of its proof like a real one's (it was 80 ms per form, then 5 ms with blocks of 0.1 ms: the
spreads of 30 us blocks are as tight, measured on a Linear(10, 2)).
Fewer than about 40 blocks let two validations beside a second job claim ratio ranges that miss
each other (15 blocks: one run in two, measured). The rounds stop at a deadline (twice the plan) on
a busy machine. A call slower than a block runs `WARMUP + MIN_BLOCKS` (8) times per form at least.
Where every form's first call takes `SLOW_CALL_S` (30 ms) or more, the calls are the model's own
cost, not a compile's: each form runs `MIN_SLOW_BLOCKS` (3) blocks of one call after its first call,
and a TorchScript form one more call first, the one that optimizes its graph (30-45% slower than the
next on BERT-base, measured: in a block it would widen the range of three). On BERT-base that is 14
calls of about 90 ms for eager, the candidate and its optimized form, where the fast plan took 24;
13 when the builder's own call of eager on the example stands for eager's first (`warm`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils import common

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.devices import reseed

# TorchScript's profiling executor profiles a graph on its first call and optimizes it on the
# second; the least of the second and third plans the blocks (the second alone, slowed by the
# optimization, planned too few blocks on a fast model, measured).
WARMUP = 3
SLOW_CALL_S = 0.03  # every form's first call this slow: the model's cost, warmed up once (_warm_up_slow)
BUDGET_S = 0.08  # at most this many timed seconds per form, past the minimum of blocks
BLOCK_S = 3e-5  # short: a block the OS preempted lands in the upper quartile, not in every block
BLOCKS = 41  # per form: quartiles worth the name, at a cost that follows the model's own
MIN_BLOCKS = 5  # fewer give no quartiles worth the name
MIN_SLOW_BLOCKS = 3  # for a form whose call takes SLOW_CALL_S or more: a median and a range
CALIBRATE_S = BLOCK_S  # a fast form's calls timed together once, to plan its blocks
NOISY_SPREAD = 0.2  # an interquartile range over 20% of the median: the machine was busy
SLOWER_TOLERANCE = 1.05  # "slower" means a median over 5% above the other's, beyond both ranges


class Figures(Protocol):
    """A median and its quartiles in milliseconds: a `Latency` or its JSON form (exchange.py)."""

    median_ms: float
    q1_ms: float
    q3_ms: float


@dataclass(frozen=True)
class Latency:
    """One form's per-call time: median and quartiles over `blocks` blocks of `runs` calls in all."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    blocks: int

    @property
    def iqr_ms(self) -> float:
        """The interquartile range, q3 - q1."""
        return self.q3_ms - self.q1_ms


def measure(fn: Callable[..., Any], case: BatteryCase, device: torch.device) -> Latency:
    """One form alone (see the module docstring); `interleaved` when there is something to compare."""
    return interleaved({"form": fn}, case, device)["form"]


def interleaved(
    forms: dict[str, Callable[..., Any]],
    case: BatteryCase,
    device: torch.device,
    *,
    budget_s: float = BUDGET_S,
    warm: dict[str, float] | None = None,
) -> dict[str, Latency]:
    """Each form's latency on `case`, the forms timed in alternating blocks (module docstring).

    `warm` names forms this process has just called on `case`, with the seconds that call took:
    it stands for their first call (eager on the builder's example: 0.2 s of BERT-base's latency).
    """
    warm = warm or {}
    args = case.clone_args(device)
    threads = torch.get_num_threads()
    timers = {
        name: Timer(stmt="fn(*args)", globals={"fn": fn, "args": args}, num_threads=threads)
        for name, fn in forms.items()
    }
    reseed(device)
    with torch.no_grad():
        # profiles a TorchScript graph; the next call optimizes it
        first = {name: warm[name] if name in warm else _block(timer, 1) for name, timer in timers.items()}
        # Slow is the model's cost, not a compile's: a frozen, optimized form's first calls take
        # 0.1-0.3 s where its eager model takes 10 ms, and those calls belong in the warm-up.
        slow = min(first.values()) >= SLOW_CALL_S
        per_call = {
            name: _warm_up_slow(timer, forms[name], first[name]) if slow else _warm_up(timer)
            for name, timer in timers.items()
        }
        numbers = {name: max(1, round(BLOCK_S / t)) for name, t in per_call.items()}
        slowest = max(numbers[n] * per_call[n] for n in forms)
        # A form this slow costs seconds a block: three give a median and a range worth their cost.
        least = MIN_SLOW_BLOCKS if slowest >= SLOW_CALL_S else MIN_BLOCKS
        rounds = max(least, min(BLOCKS, math.floor(budget_s / slowest)))
        times: dict[str, list[float]] = {name: [] for name in forms}
        # A busy machine stretches every block: past twice the plan, the rounds so far are enough.
        deadline = time.perf_counter() + 2 * rounds * slowest * len(forms)
        for done, order in enumerate(rounds_of(list(forms), rounds), start=1):
            for name in order:
                times[name].append(_block(timers[name], numbers[name]) / numbers[name])
            if done >= least and time.perf_counter() > deadline:
                break
    return {name: summarize(times[name], numbers[name] * len(times[name])) for name in forms}


def rounds_of(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order blocks run in: every name once per round, every other round reversed."""
    return [list(names) if i % 2 == 0 else list(reversed(names)) for i in range(rounds)]


def summarize(per_call_s: Sequence[float], runs: int) -> Latency:
    """Median and quartiles, in milliseconds, of per-call times in seconds (one per block)."""
    ms = sorted(t * 1e3 for t in per_call_s)
    if len(ms) == 1:
        return Latency(ms[0], ms[0], ms[0], runs, 1)
    q1, median, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    return Latency(median, q1, q3, runs, len(ms))


def overlap(a: Figures, b: Figures) -> bool:
    """Whether the two interquartile ranges share any time."""
    return a.q1_ms <= b.q3_ms and b.q1_ms <= a.q3_ms


def spread(a: Figures) -> float:
    """The interquartile range as a fraction of the median."""
    return (a.q3_ms - a.q1_ms) / a.median_ms if a.median_ms > 0 else math.inf


def noisy(a: Figures, b: Figures) -> bool:
    """No difference can be claimed: the ranges overlap, or either spread is over `NOISY_SPREAD`."""
    return overlap(a, b) or spread(a) > NOISY_SPREAD or spread(b) > NOISY_SPREAD


def ratio_range(eager: Figures, artifact: Figures) -> tuple[float, float]:
    """The artifact / eager ratios the two ranges allow: (artifact q1 / eager q3, artifact q3 / eager q1)."""
    low = artifact.q1_ms / eager.q3_ms if eager.q3_ms > 0 else math.inf
    high = artifact.q3_ms / eager.q1_ms if eager.q1_ms > 0 else math.inf
    return low, high


def slower_beyond_noise(candidate: Figures, baseline: Figures) -> bool:
    """`candidate` is slower than `baseline`: a median over `SLOWER_TOLERANCE` above and no overlap."""
    return candidate.median_ms > baseline.median_ms * SLOWER_TOLERANCE and candidate.q1_ms > baseline.q3_ms


def _warm_up(timer: Timer) -> float:
    """After a first call, `WARMUP - 1` more and a block's worth: seconds per call, to plan blocks from.

    The least of the calls after the first: one the OS preempted would plan blocks far too short. A single
    fast call is mostly the clock's own overhead, so fast calls are also timed together. Where every
    form's first call took `SLOW_CALL_S` or more, `_warm_up_slow` warms up instead: each saved call
    is a large model's latency.
    """
    taken = [_block(timer, 1) for _ in range(WARMUP - 1)]
    number = max(1, round(CALIBRATE_S / max(min(taken), 1e-7)))
    if number > 1:
        taken.append(_block(timer, number) / number)
    return max(min(taken), 1e-7)


def _warm_up_slow(timer: Timer, fn: Callable[..., Any], first: float) -> float:
    """A slow form's warm-up: its first call, and a TorchScript form's second, which optimizes its graph.

    Eager needs no second call; a profiling executor's optimizing call would otherwise be one of the
    form's few blocks. Seconds per call, to plan blocks from: the least of the calls.
    """
    if not isinstance(fn, torch.jit.ScriptModule | torch.jit.ScriptFunction):
        return first
    return min(first, _block(timer, 1))


def _block(timer: Timer, number: int) -> float:
    """Seconds `number` calls take, on Timer's clock and thread count.

    `Timer.timeit` would first re-run max(number // 100, 2) warm-up calls on every block, which for
    a model slower than a block triples the cost when forms alternate; its `_timeit` is the block
    alone. Both are Timer's own; this is the one place that chooses.
    """
    with common.set_torch_threads(timer._task_spec.num_threads):
        return timer._timeit(number)
