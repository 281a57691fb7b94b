"""The latency measurement (worker/engine/latency.py): interleaved blocks, quartiles, noise, budget."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import torch

from regctl.worker.engine import latency
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.latency import (
    Latency,
    interleaved,
    noisy,
    overlap,
    ratio_range,
    rounds_of,
    slower_beyond_noise,
    spread,
    summarize,
)

CASE = BatteryCase("opt", "g", {}, (torch.ones(2, 3),))
CPU = torch.device("cpu")


def _figures(median: float, q1: float, q3: float) -> Latency:
    return Latency(median, q1, q3, runs=10, blocks=10)


def test_quartiles_and_median_of_the_blocks_in_milliseconds() -> None:
    measured = summarize([0.004, 0.001, 0.003, 0.002, 0.005], runs=50)
    assert (measured.q1_ms, measured.median_ms, measured.q3_ms) == pytest.approx((2.0, 3.0, 4.0))
    assert measured.iqr_ms == pytest.approx(2.0) and measured.runs == 50 and measured.blocks == 5
    single = summarize([0.002], runs=1)
    assert single.q1_ms == single.median_ms == single.q3_ms == pytest.approx(2.0)


def test_overlapping_or_wide_ranges_are_noisy_and_separate_tight_ones_are_not() -> None:
    eager, artifact = _figures(0.26, 0.25, 0.27), _figures(0.23, 0.22, 0.24)
    assert not overlap(eager, artifact) and not noisy(eager, artifact)
    assert noisy(eager, _figures(0.255, 0.24, 0.26))  # the ranges share 0.25-0.26
    wide = _figures(0.23, 0.10, 0.30)  # an IQR of 87% of its median
    assert spread(wide) > latency.NOISY_SPREAD and noisy(eager, wide)
    far_but_wide = _figures(10.0, 8.0, 12.5)  # no overlap with eager, but a 45% spread
    assert not overlap(eager, far_but_wide) and noisy(eager, far_but_wide)


def test_the_ratio_range_is_what_the_two_ranges_allow() -> None:
    low, high = ratio_range(_figures(0.26, 0.25, 0.28), _figures(0.23, 0.22, 0.24))
    assert (low, high) == pytest.approx((0.22 / 0.28, 0.24 / 0.25))


def test_slower_means_beyond_the_noise_and_the_tolerance() -> None:
    plain = _figures(1.0, 0.95, 1.05)
    assert slower_beyond_noise(_figures(1.2, 1.1, 1.3), plain)
    assert not slower_beyond_noise(_figures(1.2, 1.0, 1.3), plain)  # the ranges overlap
    assert not slower_beyond_noise(_figures(1.04, 1.06, 1.06), _figures(1.0, 1.0, 1.0))  # within 5%
    assert not slower_beyond_noise(_figures(0.8, 0.75, 0.85), plain)


def test_blocks_alternate_each_round_reversed() -> None:
    assert rounds_of(["eager", "plain", "optimized"], 3) == [
        ["eager", "plain", "optimized"],
        ["optimized", "plain", "eager"],
        ["eager", "plain", "optimized"],
    ]


def test_forms_run_interleaved_on_the_same_input_with_this_process_threads() -> None:
    calls: list[tuple[str, int, int]] = []

    def form(name: str) -> Any:
        def run(x: torch.Tensor) -> torch.Tensor:
            calls.append((name, id(x), torch.get_num_threads()))
            return x * 2

        return run

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measured = interleaved({"a": form("a"), "b": form("b")}, CASE, CPU, budget_s=0.01)
    finally:
        torch.set_num_threads(threads)
    assert set(measured) == {"a", "b"} and measured["a"].blocks == measured["b"].blocks >= 5
    assert len({x for _, x, _ in calls}) == 1  # one set of input tensors for every form
    assert {t for _, _, t in calls} == {2}  # this process's threads, not Timer's default of one
    names = [n for n, _, _ in calls]
    switches = sum(1 for x, y in itertools.pairwise(names) if x != y)
    assert switches >= measured["a"].blocks  # alternating blocks, not one form's run then the other's


def test_a_slow_form_still_gets_the_minimum_blocks_and_the_budget_bounds_the_rest() -> None:
    def slow(x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.004)  # the callable under test, not a wait in the test
        return x

    started = time.perf_counter()
    measured = interleaved({"eager": slow, "artifact": lambda x: x}, CASE, CPU, budget_s=0.01)
    took = time.perf_counter() - started
    assert measured["eager"].blocks == latency.MIN_BLOCKS and measured["eager"].runs == latency.MIN_BLOCKS
    assert measured["eager"].median_ms >= 4.0
    assert took < 30  # generous: about 40 ms of calls, on a machine many times slower than this one


@pytest.mark.parametrize(
    ("warm", "warm_up_calls"),
    # a plain callable (not TorchScript): one warm-up call, then the slow minimum of blocks; unless the
    # caller's own call on the input (the builder's, on the example) stands for that warm-up
    [(None, 1), ({"eager": 0.004}, 0)],
    ids=["warmed-up-once", "caller-already-called-it"],
)
def test_a_form_slower_than_the_slow_call_mark_is_warmed_up_once(
    monkeypatch: pytest.MonkeyPatch, warm: dict[str, float] | None, warm_up_calls: int
) -> None:
    monkeypatch.setattr(latency, "SLOW_CALL_S", 0.003)
    calls = []

    def slow(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        time.sleep(0.004)  # the callable under test, not a wait in the test
        return x

    measured = interleaved({"eager": slow}, CASE, CPU, budget_s=0.01, warm=warm)
    assert len(calls) == warm_up_calls + latency.MIN_SLOW_BLOCKS == warm_up_calls + measured["eager"].runs


def test_a_slow_torchscript_form_is_warmed_up_through_its_optimizing_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(latency, "SLOW_CALL_S", 0.0)  # every form is slow: the plan for large models
    blocks: dict[str, list[int]] = {}
    timed_block = latency._block

    def counting(timer: Any, number: int) -> float:
        name = "scripted" if isinstance(timer._globals["fn"], torch.jit.ScriptModule) else "eager"
        blocks.setdefault(name, []).append(number)
        return timed_block(timer, number)

    monkeypatch.setattr(latency, "_block", counting)
    eager = torch.nn.Linear(3, 3).eval()
    measured = interleaved({"eager": eager, "scripted": torch.jit.script(eager)}, CASE, CPU, budget_s=0.0)
    # eager: its first call, then its blocks; TorchScript: the profiling and the optimizing call first
    assert blocks["eager"] == [1] * (1 + latency.MIN_SLOW_BLOCKS)
    assert blocks["scripted"] == [1] * (2 + latency.MIN_SLOW_BLOCKS)
    assert measured["eager"].runs == measured["scripted"].runs == latency.MIN_SLOW_BLOCKS


def test_a_fast_form_costs_its_blocks_not_the_budget() -> None:
    started = time.perf_counter()
    measured = interleaved({"eager": lambda x: x, "artifact": lambda x: x}, CASE, CPU)
    took = time.perf_counter() - started
    for form in measured.values():
        assert form.blocks == latency.BLOCKS  # enough blocks for quartiles worth the name
        assert form.runs >= latency.BLOCKS * 2  # each block long enough for the clock: several calls
    assert took < 2 * latency.BUDGET_S * len(measured)  # a cost in blocks, far under the old budget


def test_a_form_slow_only_while_it_compiles_is_warmed_up_like_the_fast_ones() -> None:
    calls = []

    def compiling(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) <= 2:  # a frozen graph's first calls profile and optimize it
            time.sleep(latency.SLOW_CALL_S * 1.5)  # the callable under test, not a wait in the test
        return x

    measured = interleaved({"eager": lambda x: x, "optimized": compiling}, CASE, CPU, budget_s=0.01)
    # the slow calls were the warm-up: neither lands in a block and the figures are the steady state
    assert measured["optimized"].blocks >= latency.MIN_BLOCKS
    assert measured["optimized"].q3_ms < latency.SLOW_CALL_S * 1e3 / 10
