"""benchmarks/unmeasured.py: convert_model with coverage recording and the latency measurement as no-ops,
and both back as they were afterwards (in-process engine, a real conversion of examples/conditional)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.unmeasured import measurements_off
from regctl.registry.spec import load_spec
from regctl.worker.engine import latency
from regctl.worker.inprocess import convert_model
from regctl.worker.model import model_side

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conditional"


def test_both_measurements_are_off_inside_and_back_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGCTL_LIBTORCH", "0")
    spec = load_spec(EXAMPLE)
    with measurements_off():
        unmeasured = convert_model(EXAMPLE, spec, tmp_path / "off", seed=3)
    measured = convert_model(EXAMPLE, spec, tmp_path / "on", seed=3)
    assert unmeasured.ok and measured.ok and unmeasured.method == measured.method == "script"
    off, on = unmeasured.report, measured.report
    # off: one stand-in figure per form and no line recorded; on: real blocks and model.py's lines
    assert off["latency"]["runs"] == {"eager": 1, "artifact": 1}
    assert off["coverage"]["lines"] is None and off["coverage"]["decisions"] == []
    assert on["latency"]["runs"]["eager"] > 1 and on["coverage"]["lines"] == 3
    assert on["coverage"]["decisions"][0]["file"] == "model.py"
    assert model_side.interleaved is latency.interleaved
