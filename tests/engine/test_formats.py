"""The executorch and onnx stages on their own: what they refuse to build from, and what the
supervisor refuses to store.

A program the archive checker refuses never reaches torch in either stage (the payload would write
a canary); a program whose sha256 is not the proved one is not built from; a built file whose
bytes changed after its stage proved them is not stored.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from regctl.registry.digests import sha256_file
from regctl.registry.spec import ModelSpec
from regctl.registry.store import open_store
from regctl.worker.contract import FORMAT_FILES, empty_format_section
from regctl.worker.judge.format_role import FORMATS, build_and_judge
from regctl.worker.supervisor.pipeline import _proved_format
from tests.engine.test_program_check import edit_program, first_expr, saved_program


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_refused_program_never_reaches_torch_in_either_stage(tmp_path: Path, fmt: str) -> None:
    canary = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(canary)!r}).write_text('pwned')"
    path = edit_program(saved_program(tmp_path), lambda doc: first_expr(doc).update(expr_str=payload))
    out = tmp_path / "out"
    out.mkdir()
    section = build_and_judge(
        fmt, path, sha256_file(path), ModelSpec(), [], [], out, torch.device("cpu"), lambda s: None
    )
    assert section["ok"] is False and "refused before loading" in section["error"], section["error"]
    assert not canary.exists(), "the payload in the program ran"
    assert list(out.iterdir()) == [], "a file was built from a refused program"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_program_that_is_not_the_proved_one_is_not_built_from(tmp_path: Path, fmt: str) -> None:
    path = saved_program(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    section = build_and_judge(fmt, path, "0" * 64, ModelSpec(), [], [], out, torch.device("cpu"), print)
    assert section == {**section, "ok": False, "build_s": None, "sha256": None}
    assert section["error"] == "the exported program changed after the judge proved it; not built"
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_changed_after_its_stage_proved_it_is_never_stored(tmp_path: Path, fmt: str) -> None:
    built = tmp_path / FORMAT_FILES[fmt]
    built.write_bytes(b"the bytes the stage ran")
    section = {**empty_format_section(fmt, True), "ok": True, "sha256": sha256_file(built)}
    report = {fmt: section, "proved": {fmt: section["sha256"], f"{fmt}_file": built.name}}
    built.write_bytes(b"the bytes a late writer put there")  # after the proof, before the store
    work = SimpleNamespace(store=open_store(str(tmp_path / "store")))
    assert _proved_format(work, report, fmt, built, "2.13.0") == []  # type: ignore[arg-type]
    assert section["ok"] is False
    assert section["error"].endswith("changed after it was proved; not stored")

    honest = tmp_path / f"honest-{fmt}"
    honest.write_bytes(b"proved and unchanged")
    report = {fmt: {**section, "ok": True}, "proved": {fmt: sha256_file(honest)}}
    kept = _proved_format(work, report, fmt, honest, "2.13.0")  # type: ignore[arg-type]
    assert [(a.kind, a.blob.sha256) for a in kept] == [(fmt, report["proved"][fmt])]
