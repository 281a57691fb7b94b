"""The search for the untaken side, and a trace proven only where the battery took both sides."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec
from regctl.worker.engine import battery as battery_module
from regctl.worker.engine.exchange import ExchangeError, FoundInput, SearchSide
from regctl.worker.engine.probes import MAX_PROBES, probe, structured
from regctl.worker.inprocess import convert_model
from regctl.worker.judge.coverage import found_inputs
from regctl.worker.model import search as search_module
from tests.engine.conftest import write_model
from tests.engine.test_coverage import AMAX_MODEL, _amax_spec

SEED = 11


@pytest.fixture(autouse=True)
def _search_by_forwards_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search's time budget off: its forwards alone bound it, so a loaded machine changes nothing."""
    monkeypatch.setattr(search_module, "MIN_SEARCH_SECONDS", 3600.0)


# a branch only values far below the battery's scales take: 0 < max|x| < 1e-3 (zeros stay out)
QUIET_MODEL = """
import torch
from torch import nn


class Quiet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        m = x.abs().amax()
        quiet = (m < 1e-3) & (m > 0)
        if quiet:
            x = x * 1e3
        return self.lin(x)


def build():
    torch.manual_seed(0)
    return Quiet()
"""

# a branch decided by a buffer: no input within the spec can flip it
BUFFER_MODEL = """
import torch
from torch import nn


class Flagged(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("mode", torch.ones(1))

    def forward(self, x):
        if self.mode.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


def build():
    torch.manual_seed(0)
    return Flagged()
"""

# a branch decided by a size the spec's range crosses
SIZE_MODEL = """
import torch
from torch import nn


class Clipped(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        if x.size(1) > 16:
            x = x[:, :16]
        return self.lin(x).sum(1)


def build():
    torch.manual_seed(0)
    return Clipped()
"""

# every decision is taken both ways by the battery itself
SIGN_MODEL = """
import torch
from torch import nn


class Sign(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return torch.relu(x)
        return -x


def build():
    return Sign()
"""


def _flat_spec(method: str, **validation: object) -> ModelSpec:
    return ModelSpec(
        method=method,
        inputs=(InputSpec("x", "float32", (2, 4)),),
        validation=ValidationSpec(samples=4, **validation),  # type: ignore[arg-type]
    )


def test_a_branch_only_a_small_scale_input_flips_is_found_and_the_trace_fails_on_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", QUIET_MODEL)
    result = convert_model(model, _flat_spec("trace"), tmp_path / "out", seed=SEED)
    section = result.report["coverage"]
    search = section["search"]
    assert search["targets"] == ["model.py:14"]
    assert search["stopped"] == "every decision took both sides"
    (found,) = search["found"]
    assert found["flips"] == ["model.py:14"]
    label = section["inputs"][found["input"]]
    assert label.startswith("found by search for model.py:14 (probe ")
    (point,) = [d for d in section["decisions"] if d["line"] == 14]
    assert point["one_way"] is False and point["flipped_by_search"] is True
    taken = {t["value"]: t["inputs"] for t in point["taken"]}
    assert taken[True] == [found["input"]]
    # the trace baked the quiet branch as not taken: it fails on the found input, which is named
    assert not result.ok
    trace = result.report["candidates"]["trace"]
    assert trace["failed_input"] == label
    assert label in result.error


def test_auto_keeps_script_and_judges_it_on_the_found_input(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", QUIET_MODEL)
    result = convert_model(model, _flat_spec("auto"), tmp_path / "out", seed=SEED)
    assert result.ok and result.method == "script"
    found = result.report["coverage"]["search"]["found"][0]["input"]
    labels = [c["label"] for c in result.report["candidates"]["script"]["cases"]]
    assert result.report["coverage"]["inputs"][found] in labels
    libtorch = result.report["libtorch"]
    assert not libtorch["ran"] or libtorch["cases"] == len(labels)  # the C++ stage runs the found input too


def test_a_buffer_branch_is_reported_and_accepted_only_when_the_owner_says_so(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", BUFFER_MODEL)
    refused = convert_model(model, _flat_spec("trace", search=8), tmp_path / "refused", seed=SEED)
    assert not refused.ok
    assert refused.error.startswith("trace baked model.py:13 `if self.mode.sum() > 0:`, which took the same")
    assert "and 8 searched ones" in refused.error
    search = refused.report["coverage"]["search"]
    assert search["stopped"] == "used its 8 forwards"
    assert search["probes"] == [f"scale {s:g}" for s in (1e-4, 1e-3, 1e-2, 0.1, 10, 100, 1e4)] + ["zeros"]
    assert search["random"] == 0 and search["found"] == []

    accepted = convert_model(
        model, _flat_spec("trace", search=8, accept_baked=("model.py:13",)), tmp_path / "ok", seed=SEED
    )
    assert accepted.ok and accepted.method == "trace"
    section = accepted.report["coverage"]
    assert section["accept_baked"] == ["model.py:13"]
    (point,) = section["decisions"]
    assert (point["one_way"], point["baked"], point["accepted"]) == (True, True, True)


def test_auto_keeps_script_and_reports_the_gap_as_a_warning(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", BUFFER_MODEL)
    result = convert_model(model, _flat_spec("auto", search=4), tmp_path / "out", seed=SEED)
    assert result.ok and result.method == "script"
    assert result.report["candidates"]["trace"]["error"].startswith("trace baked model.py:13")
    gaps = [w for w in result.report["model_warnings"] if w["category"] == "CoverageGap"]
    assert [g["message"].split(" `")[0] for g in gaps] == ["model.py:13"]
    assert "the other branch was never run against eager" in gaps[0]["message"]


def test_a_size_branch_the_battery_covers_shows_both_sides(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", SIZE_MODEL)
    spec = ModelSpec(
        method="auto",
        inputs=(InputSpec("x", "float32", (2, "seq", 4)),),
        dims={"seq": DimSpec("seq", min=8, max=32, opt=12)},
        validation=ValidationSpec(samples=2),
    )
    result = convert_model(model, spec, tmp_path / "out", seed=SEED)
    assert result.ok and result.method == "script"
    (point,) = result.report["coverage"]["decisions"]
    assert (point["line"], point["kind"], point["one_way"]) == (12, "shape", False)
    sides = {t["value"]: t["inputs"] for t in point["taken"]}
    labels = result.report["coverage"]["inputs"]
    assert all("seq=32" in labels[i] or "seq=20" in labels[i] for i in sides[True])
    assert all("seq=8" in labels[i] or "seq=12" in labels[i] for i in sides[False])
    assert result.report["coverage"]["search"]["tried"] == 0
    # the trace baked the size test, and the battery's seq=32 inputs prove it wrong
    assert result.report["candidates"]["trace"]["failed_input"].startswith("seq=")


def test_the_search_adds_nothing_where_every_decision_took_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = []
    monkeypatch.setattr(search_module, "probe", lambda *a: probed.append(a) or probe(*a))
    model = write_model(tmp_path / "m", SIGN_MODEL)
    result = convert_model(model, _flat_spec("auto"), tmp_path / "out", seed=SEED)
    assert result.ok and result.method == "script"
    search = result.report["coverage"]["search"]
    assert (search["ran"], search["tried"], search["targets"], search["stopped"]) == (
        False,
        0,
        [],
        "nothing to search for",
    )
    assert probed == []


def test_the_search_keeps_to_its_time_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "MIN_SEARCH_SECONDS", 0.0)
    monkeypatch.setattr(search_module, "SEARCH_TIME_SHARE", 0.0)
    model = write_model(tmp_path / "m", BUFFER_MODEL)
    result = convert_model(model, _flat_spec("auto", search=1000), tmp_path / "out", seed=SEED)
    search = result.report["coverage"]["search"]
    assert search["tried"] <= 1 and search["stopped"] == "used its 0 s"


def test_a_search_report_that_cannot_be_true_is_refused() -> None:
    spec = _flat_spec("trace", search=8)
    honest = SearchSide(found=[FoundInput(probe=3, flips=["model.py:1"])], tried=8)
    (case,) = found_inputs(honest, spec, SEED)
    assert case.label.startswith("found by search for model.py:1 (probe 3: ")
    assert torch.equal(case.args[0], probe(spec, SEED, 3).args[0])  # rebuilt from the seed, not read
    twice = SearchSide(found=[FoundInput(probe=3, flips=["m.py:1"]), FoundInput(probe=3, flips=["m.py:1"])])
    with pytest.raises(ExchangeError, match="lists a probe twice"):
        found_inputs(twice, spec, SEED)
    with pytest.raises(ExchangeError, match="more than its 8 forwards"):
        found_inputs(SearchSide(found=[FoundInput(probe=8, flips=["m.py:1"])]), spec, SEED)
    with pytest.raises(ExchangeError, match="more than its 8 forwards"):
        found_inputs(SearchSide(found=[FoundInput(probe=1, flips=["m.py:1"])], tried=9), spec, SEED)
    with pytest.raises(ValueError):
        FoundInput(probe=MAX_PROBES, flips=["m.py:1"])
    with pytest.raises(ValueError):
        FoundInput(probe=1, flips=["no line number"])


def test_a_hostile_reference_runner_claiming_extra_inputs_fails_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = search_module.search_untaken

    def lying(*args: object, **kwargs: object) -> search_module.SearchOutcome:
        outcome = real(*args, **kwargs)  # type: ignore[arg-type]
        outcome.found.append((5000, ["model.py:8"]))
        return outcome

    monkeypatch.setattr("regctl.worker.model.model_side.search_untaken", lying)
    model = write_model(tmp_path / "m", SIGN_MODEL)
    result = convert_model(model, _flat_spec("auto"), tmp_path / "out", seed=SEED)
    assert not result.ok and "more than its 48 forwards" in result.error


def test_probes_are_deterministic_and_stay_inside_the_spec() -> None:
    spec = ModelSpec(
        inputs=(
            InputSpec("x", "float32", (1, "seq", 3), low=-2.0, high=0.5),
            InputSpec("ids", "int64", (1, "seq"), low=3, high=7),
            InputSpec("mask", "bool", (1, "seq")),
        ),
        dims={"seq": DimSpec("seq", min=2, max=9, opt=4)},
    )
    fixed = len(structured(spec))
    assert fixed >= 20
    for index in range(fixed + 30):
        case = probe(spec, SEED, index)
        again = probe(spec, SEED, index)
        x, ids, mask = case.args
        assert all(torch.equal(a, b) for a, b in zip(case.args, again.args, strict=True))
        assert 2 <= x.shape[1] <= 9 and x.dtype == torch.float32
        assert x.min() >= -2.0 and x.max() < 0.5
        assert ids.dtype == torch.int64 and ids.min() >= 3 and ids.max() < 7
        assert mask.dtype == torch.bool
    labels = [probe(spec, SEED, i).label for i in range(fixed)]
    assert "probe 0: seq=4 scale 0.0001" in labels and "probe 7: seq=4 zeros" in labels
    assert any("seq at max" in label for label in labels)
    assert not torch.equal(probe(spec, SEED, fixed).args[0], probe(spec, SEED + 1, fixed).args[0])


def test_the_battery_has_small_and_zero_inputs_inside_the_range() -> None:
    spec = ModelSpec(
        inputs=(InputSpec("x", "float32", (3,)), InputSpec("y", "float32", (3,), low=1.0, high=2.0))
    )
    cases = battery_module.build_battery(spec, seed=SEED)
    small, zeros = cases[-2:]
    assert (small.label, zeros.label) == ("static small", "static zeros")
    assert 0 < small.args[0].abs().max() < 0.01
    assert torch.equal(zeros.args[0], torch.zeros(3)) and torch.equal(zeros.args[1], torch.ones(3))
    assert small.args[1].min() >= 1.0 and small.args[1].max() < 2.0
    ints_only = dataclasses.replace(spec, inputs=(InputSpec("ids", "int64", (3,)),))
    assert [c.label for c in battery_module.build_battery(ints_only, seed=SEED)][-1] == "static draw 3"
    assert math.isclose(battery_module.SMALL_SCALE, 1e-3)


def test_the_issue_model_as_written_is_refused_under_trace_on_a_battery_input_it_gets_wrong(
    tmp_path: Path,
) -> None:
    source = AMAX_MODEL.replace("model.stem.bias.fill_(1.5)", "pass")
    assert source != AMAX_MODEL
    model = write_model(tmp_path / "m", source)
    result = convert_model(model, _amax_spec("trace"), tmp_path / "out", seed=SEED)
    (point,) = result.report["coverage"]["decisions"]
    assert point["one_way"] is False  # the battery's quiet inputs take the other side
    assert not result.ok
    failed = result.report["candidates"]["trace"]["failed_input"]
    assert failed in result.error
    other_side = {t["value"]: t["inputs"] for t in point["taken"]}
    labels = result.report["coverage"]["inputs"]
    # the first input the trace fails on took the side the trace's example did not
    assert failed in [labels[i] for i in other_side[False]]
