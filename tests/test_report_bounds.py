"""A report stays small whatever the model raises: warnings de-duplicated and capped where they are
raised and again where the judge assembles them, and the whole report capped before it is stored."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from regctl.worker.engine.bounds import (
    MAX_REPORT_BYTES,
    MAX_WARNING_CHARS,
    MAX_WARNINGS,
    bounded_warnings,
    json_size,
    trim_report,
)
from regctl.worker.engine.capture import WarningLog, WarningRecord, summarize
from regctl.worker.judge.report import add_warnings

TEN_KB = "x" * 10_000


def test_a_flood_of_distinct_warnings_is_kept_bounded_where_it_is_raised(tmp_path: Path) -> None:
    log = WarningLog(tmp_path)
    start = time.monotonic()
    with log.capture():
        for i in range(5000):
            warnings.warn(f"{i} {TEN_KB}", UserWarning, stacklevel=1)
    assert time.monotonic() - start < 30
    assert len(log.records) == MAX_WARNINGS
    assert log.dropped == 5000 - MAX_WARNINGS
    assert all(len(r.message) <= MAX_WARNING_CHARS for r in log.records)
    assert json_size(log.entries()) < 300_000


def test_a_repeated_warning_is_kept_once_with_its_count(tmp_path: Path) -> None:
    log = WarningLog(tmp_path)
    with log.capture():
        for _ in range(10_000):
            warnings.warn("the same", UserWarning, stacklevel=1)
    assert len(log.records) == 1 and log.dropped == 0
    assert log.count(log.records[0]) == 10_000
    assert log.entries()[0]["count"] == 10_000


def test_a_flood_of_the_models_warnings_never_hides_the_tracers(tmp_path: Path) -> None:
    import torch

    log = WarningLog(tmp_path)
    with log.capture():
        for i in range(500):
            warnings.warn(f"noise {i}", UserWarning, stacklevel=1)
        mark = len(log.records)
        warnings.warn("Converting a tensor to a Python boolean", torch.jit.TracerWarning, stacklevel=1)
    assert [r.category for r in log.since(mark)] == ["TracerWarning"]


def test_the_judge_bounds_a_hostile_model_sides_warnings_again() -> None:
    hostile = [
        WarningRecord("UserWarning", f"{i} " + "y" * 20_000, "model.py", i, from_torch=bool(i % 2))
        for i in range(50_000)
    ]
    report: dict = {}
    start = time.monotonic()
    add_warnings(report, hostile, dropped=123)
    assert time.monotonic() - start < 30
    assert len(report["torch_warnings"]) == len(report["model_warnings"]) == MAX_WARNINGS
    assert report["warnings_dropped"] == 123 + 50_000 - 2 * MAX_WARNINGS
    assert all(len(w["message"]) <= MAX_WARNING_CHARS for w in report["model_warnings"])
    assert json_size(report) < 500_000


def test_forged_fields_and_counts_are_made_harmless() -> None:
    class Forged:  # what a pydantic entry from the model side looks like, with a count of its own
        def __init__(self, count: object, line: object) -> None:
            self.category, self.message, self.file, self.line = "UserWarning", "m", "model.py", line
            self.from_torch, self.count = False, count

    report: dict = {}
    add_warnings(report, [Forged(2**40, 3), Forged(-5, "x"), Forged(True, 3)], dropped=-9)  # type: ignore[list-item]
    assert report["model_warnings"] == [
        {"category": "UserWarning", "message": "m", "file": "model.py", "line": 3, "count": 2**31 - 1},
        {"category": "UserWarning", "message": "m", "file": "model.py", "line": None, "count": 1},
    ]
    assert report["warnings_dropped"] == 0


def test_summarize_de_duplicates_in_first_seen_order_and_caps() -> None:
    records = [WarningRecord("UserWarning", f"m{i % 300}", None, None, False) for i in range(900)]
    summary = summarize(records)
    assert [w["message"] for w in summary] == [f"m{i}" for i in range(MAX_WARNINGS)]
    assert {w["count"] for w in summary} == {3}
    entries, dropped = bounded_warnings({"message": f"m{i % 300}"} for i in range(900))
    assert len(entries) == MAX_WARNINGS and dropped == 600


def test_a_report_that_fits_is_kept_as_it_is() -> None:
    report = {"method": "script", "model_warnings": [{"message": "m"}]}
    assert trim_report(report) is report


def test_a_huge_report_is_trimmed_below_the_cap_and_keeps_what_the_pipeline_reads() -> None:
    proved = {"torchscript": "a" * 64, "torchscript_file": "scripted.pt"}
    report = {
        "ok": True,
        "method": "trace",
        "why": "kept trace",
        "proved": proved,
        "sandbox": {"model": {"mode": "strict"}},
        "model_warnings": [{"message": TEN_KB, "count": 1} for _ in range(5000)],
        "candidates": {"trace": {"cases": [{"label": "c" * 500} for _ in range(20_000)]}},
    }
    assert json_size(report) > 50 * 1024 * 1024
    trimmed = trim_report(report)
    assert json_size(trimmed) <= MAX_REPORT_BYTES
    assert trimmed["proved"] == proved and trimmed["method"] == "trace"
    assert trimmed["sandbox"] == {"model": {"mode": "strict"}}
    assert trimmed["trimmed"]["original_bytes"] == json_size(report)
    json.dumps(trimmed, allow_nan=False)


def test_a_report_too_large_even_when_shrunk_keeps_only_small_sections() -> None:
    report = {"proved": {"torchscript": "b" * 64}, **{f"section{i}": ["z" * 200] * 10 for i in range(5000)}}
    trimmed = trim_report(report, max_bytes=64 * 1024)
    assert json_size(trimmed) <= 64 * 1024
    assert trimmed["proved"] == {"torchscript": "b" * 64} and "trimmed" in trimmed


def test_each_role_adds_its_warnings_and_the_same_warning_is_counted_not_repeated() -> None:
    report: dict = {"torch_warnings": [], "model_warnings": [], "warnings_dropped": 0}
    builder = [WarningRecord("DeprecationWarning", "`torch.jit.script` is deprecated", None, None, True)]
    runner = [
        WarningRecord("DeprecationWarning", "`torch.jit.script` is deprecated", None, None, True),
        WarningRecord("UserWarning", "mine", "model.py", 4, False),
    ]
    add_warnings(report, builder)
    add_warnings(report, runner, dropped=2)
    assert [(w["message"], w["count"]) for w in report["torch_warnings"]] == [
        ("`torch.jit.script` is deprecated", 2)
    ]
    assert [(w["message"], w["line"]) for w in report["model_warnings"]] == [("mine", 4)]
    assert report["warnings_dropped"] == 2
