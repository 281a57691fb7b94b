"""Coverage and decision points recorded while eager runs the battery: the report's `coverage` section."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from regctl.cli.catalog import _coverage_line
from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec
from regctl.worker.inprocess import convert_model
from regctl.worker.judge.coverage import coverage_section
from regctl.worker.model import recorder
from regctl.worker.model import search as search_module
from tests.engine.conftest import write_model

SEED = 7  # a fixed battery, so the verdicts compared are of the same inputs


@pytest.fixture(autouse=True)
def _search_by_forwards_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search's time budget off: its forwards alone bound it, so a loaded machine changes nothing."""
    monkeypatch.setattr(search_module, "MIN_SEARCH_SECONDS", 3600.0)


AMAX_MODEL = """
import torch
from torch import nn


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.extra = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        if h.amax() > 1.0:
            h = h + torch.relu(self.extra(h))
        return self.head(h.mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    model = Gated()
    with torch.no_grad():
        model.stem.bias.fill_(1.5)  # strong enough that every battery input takes the branch
    return model
"""


def _amax_spec(method: str) -> ModelSpec:
    return ModelSpec(
        method=method,
        inputs=(InputSpec("x", "float32", ("batch", 3, 8, 8)),),
        dims={"batch": DimSpec("batch", min=1, max=2, opt=1)},
        validation=ValidationSpec(samples=2),
    )


def test_the_issue_model_under_trace_is_not_proven_on_one_side_of_its_branch(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", AMAX_MODEL)
    result = convert_model(model, _amax_spec("trace"), tmp_path / "out", seed=SEED)
    assert not result.ok and result.method is None
    size = result.report["battery_size"]
    searched = result.report["coverage"]["search"]["tried"]
    assert searched == 48  # the spec's default budget, spent: the bias keeps every input on one side
    assert result.error == (
        f"trace baked model.py:15 `if h.amax() > 1.0:`, which took the same branch on all {size} inputs "
        f"and {searched} searched ones; script the model, add recorded inputs that take the other branch, "
        'or accept it with accept_baked = ["model.py:15"] under [validation]'
    )
    trace = result.report["candidates"]["trace"]
    assert trace["failed_input"] is None and all(c["ok"] for c in trace["cases"])  # it matched: not enough
    section = result.report["coverage"]
    assert section["recorded"] and section["warning"] is None
    (point,) = section["decisions"]
    assert (point["file"], point["line"], point["kind"]) == ("model.py", 15, "__bool__")
    assert point["source"] == "if h.amax() > 1.0:"
    assert (point["one_way"], point["baked"], point["accepted"], point["flipped_by_search"]) == (
        True,
        True,
        False,
        False,
    )
    assert point["reached"] == size
    assert point["taken"] == [{"value": True, "inputs": list(range(size))}]
    # forward's four lines, every one run; __init__ and build ran at load, before the battery, and
    # are not counted as lines it missed
    assert (section["lines_run"], section["lines"]) == (4, 4)
    assert section["files"] == [
        {
            "file": "model.py",
            "lines_run": 4,
            "lines": 4,
            "never_run": [],
            "some_run": [],
            "all_run": [14, 15, 16, 17],
        }
    ]
    json.dumps(result.report, allow_nan=False)
    line = _coverage_line(result.report)
    assert line == (
        "4/4 lines; 0 of 1 decisions taken both ways; model.py:15 one way only; search found 0 of 48 tried"
    )


def test_without_a_record_of_the_decision_the_trace_is_left_to_the_battery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model(tmp_path / "m", AMAX_MODEL)
    monkeypatch.setattr(recorder.CoverageRecord, "recording", lambda self: contextlib.nullcontext(self))
    unrecorded = convert_model(model, _amax_spec("trace"), tmp_path / "plain", seed=SEED)
    # a baked line with no recorded decision (its conversion ran in library code) is not judged here
    assert unrecorded.report["coverage"]["decisions"] == []
    assert unrecorded.ok and unrecorded.method == "trace"
    assert unrecorded.report["coverage"]["search"]["tried"] == 0


def test_a_branch_taken_both_ways_shows_both_values_and_the_inputs(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "conditional"
    from regctl.registry.spec import load_spec

    result = convert_model(example, load_spec(example), tmp_path / "out")
    assert result.ok and result.method == "script"
    section = result.report["coverage"]
    (point,) = section["decisions"]
    assert point["line"] == 11 and point["one_way"] is False
    values = {t["value"]: t["inputs"] for t in point["taken"]}
    assert set(values) == {True, False}
    assert sorted(values[True] + values[False]) == list(range(result.report["battery_size"]))
    assert section["branches_run"] == section["branches"] == 2
    assert (
        _coverage_line(result.report)
        == f"{section['lines_run']}/{section['lines']} lines; 1 of 1 decisions taken both ways"
    )


def _one_decision(file: str = "model.py", inputs: list[dict] | None = None) -> str:
    """A coverage.json holding one decision point, as the reference runner writes it."""
    point = {"file": file, "line": 1, "source": "", "kind": "item", "inputs": inputs or []}
    return json.dumps({"decisions": [point], "decisions_dropped": 0})


@pytest.mark.parametrize(
    "written",
    [
        "not json",
        json.dumps({"decisions": "many"}),
        _one_decision(file="../etc/passwd", inputs=[]),
        _one_decision(inputs=[{"input": 999, "values": [1]}]),  # outside a battery of 10
        _one_decision(inputs=[{"input": 1, "values": [1]}] * 2),  # an input listed twice
        "[" * 100_000,
        " " * (9 * 1024 * 1024),
    ],
)
def test_a_malformed_coverage_file_is_a_warning(tmp_path: Path, written: str) -> None:
    (tmp_path / "coverage.json").write_text(written)
    section = coverage_section(tmp_path, [f"i{n}" for n in range(10)])
    assert section["recorded"] is False and section["warning"]
    assert section["decisions"] == []


def test_a_file_outside_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = write_model(tmp_path / "m", "x = 1\n")
    record = {
        "decisions": [{"file": "other.py", "line": 1, "source": "", "kind": "item", "inputs": []}],
        "decisions_dropped": 0,
    }
    (tmp_path / "coverage.json").write_text(json.dumps(record))
    assert coverage_section(tmp_path, [f"i{n}" for n in range(10)])["recorded"] is True
    refused = coverage_section(tmp_path, [f"i{n}" for n in range(10)], bundle)
    assert refused["recorded"] is False and "'other.py' is not a file of the bundle" in refused["warning"]


def test_a_hostile_reference_side_gets_a_warning_and_cannot_prove_a_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model(tmp_path / "m", AMAX_MODEL)
    honest = convert_model(model, _amax_spec("auto"), tmp_path / "honest", seed=SEED)
    monkeypatch.setattr(
        recorder.CoverageRecord, "as_json", lambda self, size: {"decisions": [{"file": "/abs"}] * 5000}
    )
    hostile = convert_model(model, _amax_spec("auto"), tmp_path / "hostile", seed=SEED)
    assert (hostile.ok, hostile.method, hostile.error) == (honest.ok, honest.method, honest.error)
    assert hostile.method == "script"
    assert hostile.report["coverage"]["recorded"] is False
    assert "invalid coverage.json" in hostile.report["coverage"]["warning"]
    assert _coverage_line(hostile.report).startswith("not recorded (the reference runner wrote an invalid")
    trace = hostile.report["candidates"]["trace"]["error"]
    assert trace.startswith("trace baked model.py:15, and the battery's coverage could not be read")


def test_the_tensor_methods_are_torchs_own_again_after_recording(tmp_path: Path) -> None:
    from regctl.worker.engine.capture import ModelFrames

    before = {name: torch.Tensor.__dict__.get(name) for name in recorder.CONVERSIONS}
    record = recorder.CoverageRecord(ModelFrames(tmp_path))
    with record.recording():
        assert bool(torch.tensor(1.0)) and torch.tensor([2]).tolist() == [2]
    assert {name: torch.Tensor.__dict__.get(name) for name in recorder.CONVERSIONS} == before
    assert record.points == {}  # the conversions above ran outside the model's files


def test_the_cli_line_is_safe_and_bounded() -> None:
    report = {
        "coverage": {
            "recorded": True,
            "lines_run": 41,
            "lines": 43,
            "decisions": [{"file": f"m\x1b[31m{i}.py", "line": i, "one_way": True} for i in range(5)]
            + [{"file": "model.py", "line": 9, "one_way": False}],
        }
    }
    line = _coverage_line(report)
    assert line is not None and "\x1b" not in line
    assert line.startswith("41/43 lines; 1 of 6 decisions taken both ways; ")
    assert line.endswith("(+2 more) one way only")
    assert _coverage_line({}) is None and _coverage_line(None) is None


def test_the_cli_line_says_what_the_search_found_and_what_the_owner_accepted() -> None:
    report = {
        "coverage": {
            "recorded": True,
            "lines_run": 9,
            "lines": 9,
            "decisions": [
                {"file": "model.py", "line": 14, "one_way": False, "flipped_by_search": True},
                {"file": "model.py", "line": 20, "one_way": True, "accepted": True},
            ],
            "search": {"ran": True, "tried": 48, "found": [{"input": 14}]},
        }
    }
    assert _coverage_line(report) == (
        "9/9 lines; 1 of 2 decisions taken both ways; model.py:20 one way only; "
        "search found 1 of 48 tried; model.py:20 accepted baked"
    )
