"""The torch.export program: produced and validated where the model exports, never fatal where it does not."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.engine.conftest import EXAMPLES, example_spec, seq_spec, write_model
from worker.engine import convert_model


def test_linear_exports_a_pt2_with_a_dynamic_batch(converted) -> None:
    result = converted("linear")
    assert result.exported_path == result.torchscript_path.parent / "model.pt2"
    assert result.report["export"]["ok"] is True and result.report["export"]["error"] is None
    program = torch.export.load(str(result.exported_path)).module()
    x = torch.randn(7, 10)  # a batch size the export example did not have
    with torch.no_grad():
        eager = torch.nn.Linear(10, 2)
        eager.load_state_dict(_linear_state())
        assert torch.allclose(program(x), eager(x), atol=1e-6)


def _linear_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(10, 2).state_dict()


def test_a_model_that_cannot_export_still_converts_and_says_why(converted) -> None:
    result = converted("conditional")
    assert result.ok and result.exported_path is None
    export = result.report["export"]
    assert export["ok"] is False
    assert export["error"].startswith("torch.export failed: ") and "(model.py:11)" in export["error"]
    assert not (result.torchscript_path.parent / "model.pt2").exists()


def test_an_export_that_specializes_a_scalar_is_not_kept(converted) -> None:
    result = converted("dynamic-loop")
    export = result.report["export"]
    assert result.ok and result.exported_path is None and export["ok"] is False
    assert "length=" in export["failed_input"]
    assert any("scalar inputs are specialized" in note for note in export["notes"])


def test_a_size_one_opt_is_exported_on_a_larger_example(tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path / "m",
        """
        import torch

        def build():
            torch.manual_seed(0)
            return torch.nn.Linear(4, 3)
    """,
    )
    result = convert_model(
        model_dir, seq_spec(features=4), tmp_path / "out"
    )  # seq opt 4, but dim 0 is fixed 1
    assert result.ok and result.report["export"]["ok"], result.report["export"]
    spec = example_spec("varlen-sequence")  # batch opt is 1
    export = convert_model(EXAMPLES / "varlen-sequence", spec, tmp_path / "v").report["export"]
    assert export["error"] == (
        "torch.export failed: UserError: Constraints violated (seq)! "
        "You marked seq as dynamic but your code specialized it to be a constant (64)"
    )
    notes = export["notes"]
    assert notes == [
        "exported on input 'batch=2 seq=64 draw 0 negative': torch.export specializes sizes 0 and 1, "
        "which the opt shape has"
    ]
