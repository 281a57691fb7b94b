"""AOTInductor packages compiled from the proved exported program and judged in Python and in C++.

Real compiles, kept to one per model (about half a minute each on two cores): the tiny transformer's
package is compiled once and judged against its own eager outputs and against another model's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from regctl.registry.digests import sha256_file
from regctl.worker.contract import PACKAGE_FILE, empty_aoti_section
from regctl.worker.inprocess import convert_model
from regctl.worker.inprocess.convert import BUILDER_DIR, REFERENCE_DIR
from regctl.worker.judge.aoti import compile_and_judge, judge_package
from regctl.worker.judge.inputs import judge_inputs
from regctl.worker.judge.libtorch import build_runner
from tests.engine.conftest import EXAMPLES, example_spec

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Compiled:
    section: dict[str, Any]
    package: Path
    model_dir: Path
    reference_dir: Path
    seed: int


def _inputs(model_dir: Path, reference_dir: Path, seed: int) -> tuple[list[Any], list[Any]]:
    spec = example_spec(model_dir.name)
    _, battery, reference, _ = judge_inputs(model_dir, spec, reference_dir, seed, lambda s: None)
    return battery, reference


@pytest.fixture(scope="module")
def transformer(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    model_dir = EXAMPLES / "tiny-transformer"
    out = tmp_path_factory.mktemp("tiny-transformer")
    result = convert_model(model_dir, example_spec("tiny-transformer"), out)
    assert result.ok and result.report["export"]["ok"], result.report["export"]
    program = result.exported_path
    assert program is not None
    seed = result.report["battery_seed"]
    battery, reference = _inputs(model_dir, out / REFERENCE_DIR, seed)
    package_dir = tmp_path_factory.mktemp("package")
    section = compile_and_judge(
        program,
        sha256_file(program),
        example_spec("tiny-transformer"),
        battery,
        reference,
        package_dir,
        torch.device("cpu"),
        build_runner(),
        lambda s: None,
    )
    return Compiled(section, package_dir / PACKAGE_FILE, model_dir, out / REFERENCE_DIR, seed)


def test_a_transformer_with_dynamic_batch_and_sequence_passes_in_python_and_in_cpp(
    transformer: Compiled,
) -> None:
    section = transformer.section
    assert section["ok"], section["error"]
    battery, _ = _inputs(transformer.model_dir, transformer.reference_dir, transformer.seed)
    sizes = {(c.shape["batch"], c.shape["seq"]) for c in battery}
    assert {(1, 1), (4, 32)} <= sizes, "the battery reaches both ends of both dims"
    assert len(section["cases"]) == len(battery) and all(c["ok"] for c in section["cases"])
    libtorch = section["libtorch"]
    assert libtorch["ran"] and libtorch["ok"] and libtorch["cases"] == len(battery), libtorch
    assert section["sha256"] == sha256_file(transformer.package)
    assert section["compile_s"] > 0 and section["latency_ms"] > 0


def test_a_package_that_does_not_match_eager_is_refused_in_python(
    transformer: Compiled, tmp_path: Path
) -> None:
    # The same architecture with other weights: its eager outputs are what the package must match.
    other = tmp_path / "other"
    other.mkdir()
    source = (transformer.model_dir / "model.py").read_text().replace("manual_seed(0)", "manual_seed(1)")
    (other / "model.py").write_text(source)
    (other / "regctl.toml").write_text((transformer.model_dir / "regctl.toml").read_text())
    spec = example_spec("tiny-transformer")
    result = convert_model(other, spec, tmp_path / "out")
    assert result.ok
    seed = result.report["battery_seed"]
    _, battery, reference, _ = judge_inputs(
        other, spec, tmp_path / "out" / REFERENCE_DIR, seed, lambda s: None
    )
    section = judge_package(
        empty_aoti_section(True),
        transformer.package,
        spec,
        battery,
        reference,
        torch.device("cpu"),
        "not needed: Python refuses it first",
        lambda s: None,
    )
    assert not section["ok"]
    assert section["error"].startswith("the AOTInductor package differs from eager on input ")
    assert section["failed_input"] == battery[0].label
    assert section["cases"][-1]["tolerance_used"] > 1


def test_a_program_that_changed_after_it_was_proved_is_not_compiled(
    transformer: Compiled, tmp_path: Path
) -> None:
    program = next((transformer.reference_dir.parent / BUILDER_DIR).glob("*.pt2"))
    battery, reference = _inputs(transformer.model_dir, transformer.reference_dir, transformer.seed)
    section = compile_and_judge(
        program,
        "0" * 64,
        example_spec("tiny-transformer"),
        battery,
        reference,
        tmp_path,
        torch.device("cpu"),
        "unused",
        lambda s: None,
    )
    assert section == {**section, "ok": False, "compile_s": None}
    assert section["error"] == "the exported program changed after the judge proved it; not compiled"
    assert not (tmp_path / PACKAGE_FILE).exists()
