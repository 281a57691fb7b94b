"""validate_artifact: re-proves a stored artifact against the eager model, without changing it."""

from __future__ import annotations

from pathlib import Path

import torch

from regctl.worker.inprocess import validate_artifact
from tests.engine.conftest import EXAMPLES, example_spec


def test_a_fresh_artifact_validates_with_per_shape_errors_and_latency(converted) -> None:
    path = converted("varlen-sequence").torchscript_path
    before = path.read_bytes()
    result = validate_artifact(EXAMPLES / "varlen-sequence", example_spec("varlen-sequence"), path)
    assert result.ok and result.error is None
    report = result.report
    assert report["battery_size"] == 12 and report["failures"] == 0  # 5 shapes x 2 draws, small, zeros
    assert {s["label"] for s in report["shapes"]} == {
        "batch=1 seq=16",
        "batch=1 seq=1",
        "batch=2 seq=64",
        "batch=2 seq=16",
        "batch=1 seq=64",
    }
    assert report["latency"]["artifact_ms"] > 0 and report["versions"]["torch"] == torch.__version__
    # the reference runner timed the stored artifact beside eager, on the same public example
    assert report["latency"]["measured_by"].startswith("the reference runner (model side)")
    assert report["latency"]["input"] == converted("varlen-sequence").report["latency"]["input"]
    assert path.read_bytes() == before


def test_an_artifact_of_another_model_fails_on_every_input(converted, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pt"
    other = torch.nn.Linear(10, 2)
    with torch.no_grad():
        other.weight.fill_(0.5)  # same signature, other weights
        other.bias.fill_(-1.0)  # and other biases: the zeros input sees only those
    torch.jit.save(torch.jit.script(other), str(wrong))
    result = validate_artifact(EXAMPLES / "linear", example_spec("linear"), wrong)
    assert not result.ok
    assert result.report["failures"] == result.report["battery_size"] == 14
    assert result.error.startswith(
        "the artifact differs from eager on input 'batch=4 draw 0 mixed': output values differ"
    )
    assert result.error.endswith("(and 13 more inputs)")
    assert result.report["failed_inputs"][:2] == ["batch=4 draw 0 mixed", "batch=4 draw 1 positive"]


def test_an_unreadable_artifact_is_a_clear_failure(tmp_path: Path) -> None:
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"not a zip")
    result = validate_artifact(EXAMPLES / "linear", example_spec("linear"), junk)
    assert not result.ok and result.error.startswith("cannot load the artifact model.pt: ")
