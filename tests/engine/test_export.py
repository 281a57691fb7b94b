"""The torch.export program: produced and validated where the model exports, never fatal where it does not."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regctl.worker.inprocess import ConversionResult, convert_model
from tests.engine.conftest import EXAMPLES, example_spec, seq_spec, write_model

EXPORTED = ("torchscript", "exported")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ConversionResult]:
    """convert_model on an example whose formats ask for the exported program, once per module."""
    results: dict[str, ConversionResult] = {}

    def get(name: str) -> ConversionResult:
        if name not in results:
            spec = dataclasses.replace(example_spec(name), formats=EXPORTED)
            results[name] = convert_model(EXAMPLES / name, spec, tmp_path_factory.mktemp(name))
        return results[name]

    return get


def test_the_default_formats_export_nothing_and_asking_for_exported_gets_a_pt2(converted, exported) -> None:
    default = converted("linear")
    assert default.ok and default.exported_path is None
    assert not list(default.torchscript_path.parent.glob("*.pt2"))
    section = default.report["export"]
    assert (section["requested"], section["ok"], section["error"]) == (False, False, None)
    assert section["skipped"].startswith('not asked for: add "exported"')
    assert "export_s" not in default.report["timings"] or default.report["timings"]["export_s"] == 0
    asked = exported("linear")
    assert asked.exported_path is not None and asked.exported_path.is_file()
    assert asked.report["export"]["requested"] is True


def test_linear_exports_a_pt2_with_a_dynamic_batch(exported) -> None:
    result = exported("linear")
    # proved where the model process saved it, not copied
    assert result.exported_path == result.torchscript_path.parent / "model.pt2"
    assert result.report["export"]["ok"] is True and result.report["export"]["error"] is None
    proved = result.report["proved"]
    assert proved["exported"] == hashlib.sha256(result.exported_path.read_bytes()).hexdigest()
    assert proved["torchscript"] == hashlib.sha256(result.torchscript_path.read_bytes()).hexdigest()
    program = torch.export.load(str(result.exported_path)).module()
    x = torch.randn(7, 10)  # a batch size the export example did not have
    with torch.no_grad():
        eager = torch.nn.Linear(10, 2)
        eager.load_state_dict(_linear_state())
        assert torch.allclose(program(x), eager(x), atol=1e-6)


def _linear_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(10, 2).state_dict()


def test_a_model_that_cannot_export_still_converts_and_says_why(exported) -> None:
    result = exported("conditional")
    assert result.ok and result.exported_path is None
    export = result.report["export"]
    assert export["ok"] is False
    assert export["error"].startswith("torch.export failed: ") and "(model.py:11)" in export["error"]
    assert "exported" not in result.report["proved"]


def test_an_export_that_specializes_a_scalar_is_not_kept(exported) -> None:
    result = exported("dynamic-loop")
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
        model_dir, seq_spec(features=4, formats=EXPORTED), tmp_path / "out"
    )  # seq opt 4, but dim 0 is fixed 1
    assert result.ok and result.report["export"]["ok"], result.report["export"]
    spec = dataclasses.replace(example_spec("varlen-sequence"), formats=EXPORTED)  # batch opt is 1
    export = convert_model(EXAMPLES / "varlen-sequence", spec, tmp_path / "v").report["export"]
    assert export["error"] == (
        "torch.export failed: UserError: Constraints violated (seq)! "
        "You marked seq as dynamic but your code specialized it to be a constant (64)"
    )
    notes = export["notes"]
    assert notes == [
        "exported on input 'example batch=2 seq=64': torch.export specializes sizes 0 and 1, "
        "which the opt shape has"
    ]


class _Payload:
    """Unpickling this touches a file: what a hostile model process would hide in its program."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, (f"touch {self.marker}",))


def _hostile_program(path: Path, marker: Path) -> None:
    """An honest .pt2 of Linear(10, 2) whose first weight is swapped for a pickled payload."""
    import io
    import json
    import zipfile

    program = torch.export.export(torch.nn.Linear(10, 2), (torch.randn(2, 10),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("weights/model_weights_config.json"):
                config = json.loads(data)
                config["config"]["weight"]["use_pickle"] = True
                data = json.dumps(config).encode()
            elif item.filename.endswith("weights/weight_0"):
                data = payload.getvalue()
            target.writestr(item, data)


def test_a_saved_program_that_would_unpickle_an_object_is_refused_and_the_payload_never_runs(
    tmp_path: Path,
) -> None:
    from regctl.worker.engine.battery import build_battery
    from regctl.worker.judge.program import judge_program, plain_data_only

    program, marker = tmp_path / "model.pt2", tmp_path / "payload-ran"
    _hostile_program(program, marker)
    spec = example_spec("linear")
    outcome = judge_program(program, spec, torch.device("cpu"), build_battery(spec), [], lambda s: None)
    assert not outcome.ok
    assert re.fullmatch(
        r"the exported program was refused before loading: data/weights/weight_0: "
        r"the pickle names '(posix|os)\.system', not plain tensor data",
        outcome.error or "",
    )
    assert not marker.exists(), "the judge ran the program's pickled payload"
    # The second gate, on its own: were the checker bypassed, loading refuses the pickled object too.
    with pytest.raises(Exception, match="Weights only load failed"), plain_data_only():
        torch.export.load(str(program))
    assert not marker.exists(), "plain_data_only let the program's pickled payload run"
    # The control: torch.export.load on its own does run it, so the file really is hostile.
    with pytest.raises(Exception, match=r"not an instance of torch\.nn\.Parameter"):
        torch.export.load(str(program))
    assert marker.exists()
