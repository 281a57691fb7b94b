"""Issue 25: past a weights size, a first round saves only the preferred candidate.

The other one is held back, neither compiled nor saved nor run, while the preferred one passes;
should the preferred one fail, the full round compiles, saves and judges every candidate. The size
limit is lowered here so that small models take the large-model path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from regctl.registry.spec import InputSpec, ModelSpec, ValidationSpec
from regctl.worker.inprocess import convert_model
from regctl.worker.judge import verdicts
from regctl.worker.model import model_side
from tests.engine.conftest import EXAMPLES, example_spec, write_model

# Script compiles the scripting branch (wrong), the trace records the eager one (right).
SCRIPT_IS_WRONG = """
import torch


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        if torch.jit.is_scripting():
            return x * 2.0
        return self.lin(x)


def build():
    torch.manual_seed(0)
    return Model()
"""


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model counts as large: its weights are over the limit."""
    monkeypatch.setattr(model_side, "UNKEPT_MAX_BYTES", 0)
    monkeypatch.setattr(verdicts, "UNKEPT_MAX_BYTES", 0)


@pytest.mark.usefixtures("large")
def test_a_large_models_other_candidate_is_neither_compiled_nor_saved_nor_run(tmp_path: Path) -> None:
    result = convert_model(EXAMPLES / "linear", example_spec("linear"), tmp_path / "out", seed=3)
    assert result.ok and result.report["method"] == "script"
    trace = result.report["candidates"]["trace"]
    assert (trace["judged_on"], trace["inputs_run"], trace["cases"]) == ("not run", 0, [])
    assert trace["error"] is None and trace["ok"] is False
    note = trace["judged_note"]
    assert note.startswith("trace was not compiled or run because script compiled first and was kept")
    assert "weights up to 0 MB" in note
    assert note.endswith("had script failed, trace would have been built and judged in full")
    assert trace["compile_s"] == 0 and trace["warnings"] == []  # not traced at all
    assert result.report["why"] == f"script matches eager on all 14 inputs; {trace['judged_note']}"
    assert [p.name for p in (tmp_path / "out" / "builder").glob("*.pt")] == ["script.pt"]
    assert "first_round" not in result.report  # one round: nothing failed


def test_a_small_models_other_candidate_is_still_judged_on_the_deciding_inputs(tmp_path: Path) -> None:
    result = convert_model(EXAMPLES / "linear", example_spec("linear"), tmp_path / "out", seed=3)
    trace = result.report["candidates"]["trace"]
    assert (trace["judged_on"], trace["inputs_run"], trace["ok"]) == ("deciding inputs", 3, True)
    assert sorted(p.name for p in (tmp_path / "out" / "builder").glob("*.pt")) == ["script.pt", "trace.pt"]


@pytest.mark.usefixtures("large")
@pytest.mark.parametrize("optimize", [False, True])
def test_when_the_preferred_candidate_fails_the_full_round_judges_the_one_held_back(
    tmp_path: Path, optimize: bool
) -> None:
    model = write_model(tmp_path / "m", SCRIPT_IS_WRONG)
    spec = ModelSpec(inputs=(InputSpec("x", "float32", (2, 3)),), validation=ValidationSpec(samples=2))
    spec = dataclasses.replace(spec, optimize=optimize)
    result = convert_model(model, spec, tmp_path / "out", seed=3)
    assert result.ok, result.error
    assert result.report["method"] == "trace"
    first = result.report["first_round"]["candidates"]
    assert first["script"]["ok"] is False and first["script"]["failed_input"] is not None
    assert first["trace"]["error"] == "trace was not saved in the first round; the full round judges it"
    trace = result.report["candidates"]["trace"]
    assert (trace["judged_on"], trace["inputs_run"]) == ("battery", result.report["battery_size"])
    assert result.torchscript_path == tmp_path / "out" / "full" / "builder" / "trace.pt"


def test_a_candidate_held_back_in_the_full_round_is_an_error_not_a_pass() -> None:
    # The full round saves every candidate: a builder claiming otherwise gets no verdict from it.
    entry = verdicts.held_back_entry("trace", "script", True, 10**9)
    assert entry == {"error": "the model process did not save the trace artifact"}
    assert verdicts.held_back_entry("trace", None, False, 10**9)["error"].startswith("trace was not saved")
