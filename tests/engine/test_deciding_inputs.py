"""A candidate nobody keeps is judged until its verdict is decided; the kept one on the whole battery."""

from __future__ import annotations

from pathlib import Path

from regctl.registry.spec import InputSpec, ModelSpec, ValidationSpec
from regctl.worker.engine.battery import build_battery
from regctl.worker.inprocess import convert_model
from regctl.worker.judge.evaluate import deciding_inputs
from tests.engine.conftest import seq_spec, write_model

# the trace bakes the sign its example took; only some of the opt shape's draws take the other
SIGN_MODEL = """
import torch


def build():
    def gate(x):
        if x.sum() > 0:
            return torch.relu(x)
        return -x
    return gate
"""


def test_the_deciding_inputs_are_each_shapes_first_draw_the_found_ones_and_one_per_side() -> None:
    battery = build_battery(seq_spec(samples=3), seed=5)
    plain = deciding_inputs(battery, {})
    shapes = [c.shape for c in battery]
    assert [battery[i].label for i in plain] == [
        "seq=4 draw 0 mixed",
        "seq=1 draw 0 positive",
        "seq=8 draw 0 negative",
    ]
    assert all(shapes.index(battery[i].shape) == i for i in plain)
    coverage = {
        "search": {"found": [{"input": len(battery) - 1}]},
        "decisions": [{"taken": [{"value": True, "inputs": [4, 7]}, {"value": False, "inputs": [2, 9]}]}],
        # a hostile section cannot add inputs outside the battery
    }
    coverage["decisions"].append({"taken": [{"value": 1, "inputs": [10_000]}]})
    assert deciding_inputs(battery, coverage) == sorted({*plain, len(battery) - 1, 4, 2})


def test_a_trace_that_fails_on_an_interior_input_is_rejected_when_it_is_the_only_candidate(
    tmp_path: Path,
) -> None:
    model = write_model(tmp_path / "m", SIGN_MODEL)
    spec = ModelSpec(
        method="trace", inputs=(InputSpec("x", "float32", (3,)),), validation=ValidationSpec(samples=4)
    )
    result = convert_model(model, spec, tmp_path / "out", seed=5)
    assert not result.ok
    trace = result.report["candidates"]["trace"]
    assert trace["judged_on"] == "battery"
    failed = trace["failed_input"]
    assert failed is not None and "draw 0" not in failed  # not a corner: the whole battery was run
