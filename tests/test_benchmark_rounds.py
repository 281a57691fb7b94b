"""benchmarks/rounds.py: sides take turns, and a ratio's figures are each metric's median over the rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.rounds import in_turns


def test_sides_alternate_their_order_and_report_each_metrics_median(tmp_path: Path) -> None:
    ran: list[tuple[str, int]] = []
    walls = {"bare": [20.0, 17.0, 30.0], "regctl": [26.0, 40.0, 25.0]}

    def side(name: str) -> Any:
        def run(folder: Path, index: int) -> dict[str, Any]:
            assert folder.is_dir() and not any(folder.iterdir())  # a fresh folder per side and round
            ran.append((name, index))
            return {"wall_s": walls[name][index], "written_mb": 100.0 + index, "loadavg_1m": [1.0, 2.0]}

        return run

    sides = in_turns({"bare": side("bare"), "regctl": side("regctl")}, 3, tmp_path)
    assert ran == [("bare", 0), ("regctl", 0), ("regctl", 1), ("bare", 1), ("bare", 2), ("regctl", 2)]
    # the disturbed round (bare 30 s, regctl 40 s) moves neither median
    assert sides["bare"]["wall_s"] == 20.0 and sides["regctl"]["wall_s"] == 26.0
    assert sides["bare"]["written_mb"] == 101.0
    assert [r["wall_s"] for r in sides["regctl"]["rounds"]] == walls["regctl"]


def test_a_round_that_fails_fails_its_side_and_the_other_sides_still_run(tmp_path: Path) -> None:
    def flaky(folder: Path, index: int) -> dict[str, Any]:
        if index == 1:
            raise RuntimeError("the worker never answered")
        return {"wall_s": 1.0}

    sides = in_turns({"bare": lambda f, i: {"wall_s": 1.0}, "worker": flaky}, 2, tmp_path)
    assert sides["worker"]["error"] == "RuntimeError: the worker never answered"
    assert sides["worker"]["failed_rounds"] == 1 and sides["worker"]["rounds_run"] == 2
    assert sides["bare"]["wall_s"] == 1.0 and len(sides["bare"]["rounds"]) == 2
