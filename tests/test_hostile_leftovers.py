"""Two hostile models seen closer than the shared suite looks: what they leave must change nothing.

- `sympify` puts Python into a symbolic-shape string of its `.pt2`: the version is proved by its
  TorchScript, the exported program is refused before torch reads it, the payload never runs, and
  no format (ExecuTorch, ONNX) is built from the refused program.
- `deepnest` leaves a tree no recursive cleanup survives: its job and every later job succeed, and
  nothing is left in the work directory, not even a folder set aside as undeletable.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from regctl.worker.supervisor.scratch import remove_tree, sweep_abandoned
from tests.factories import linear_model
from tests.hostile import hostile_model
from tests.test_hostile import Victims, _assert_victims_intact
from tests.test_hostile import victims as victims  # the module-scoped registry under attack


@pytest.fixture
def workdir_victims(victims: Victims, tmp_path: Path) -> Iterator[Victims]:
    """The same registry, its jobs run in a work directory of their own that the test can inspect."""
    work = tmp_path / "work"
    work.mkdir()
    yield dataclasses.replace(victims, env={**victims.env, "REGCTL_WORK_DIR": str(work)})
    remove_tree(work)  # pytest's own cleanup is recursive: no deep tree may outlive the test


def _report(version: dict) -> dict:
    uri = next(a["uri"] for a in version["artifacts"] if a["kind"] == "conversion-report")
    return json.loads(Path(uri).read_text())


def test_code_in_a_shape_string_never_runs_and_the_torchscript_still_proves_the_version(
    victims: Victims,
) -> None:
    canary = Path(victims.targets.home) / "sympify-canary"
    directory = hostile_model(victims.root / "sympify-close", "sympify", victims.targets)
    # the program is exported (and so judged) only when a format asks for it
    formats = "exported,executorch,onnx"
    done = victims.regctl("register", "sympify-close", str(directory), "--format", formats, "--wait")
    assert done.returncode == 0, done.stderr[-2000:]
    version = victims.show("sympify-close:1")
    assert version["status"] == "ready"
    assert "exported" not in [a["kind"] for a in version["artifacts"]]
    export = _report(version)["export"]
    assert export["ok"] is False
    assert export["error"].startswith(
        "the exported program was refused before loading: models/model.json expr_str: refused expression"
    ), export["error"]
    assert "\n" not in export["error"]
    report = _report(version)
    for fmt in ("executorch", "onnx"):
        assert fmt not in [a["kind"] for a in version["artifacts"]]
        assert report[fmt]["error"].startswith("not exportable, so no "), report[fmt]["error"]
        assert "refused before loading" in report[fmt]["error"]
        assert fmt not in report["sandbox"], "a format stage started on a refused program"
    assert not canary.exists(), "the payload in the program's shape string ran"
    assert "PWNED" not in done.stdout + done.stderr
    _assert_victims_intact(victims)


def test_a_tree_no_recursion_can_remove_breaks_no_later_job(workdir_victims: Victims) -> None:
    victims = workdir_victims
    work = Path(victims.env["REGCTL_WORK_DIR"])
    directory = hostile_model(victims.root / "deepnest-close", "deepnest", victims.targets)
    done = victims.regctl("register", "deepnest-close", str(directory), "--wait")
    assert done.returncode == 0, done.stderr[-2000:]
    assert victims.show("deepnest-close:1")["status"] == "ready"

    honest = victims.regctl(
        "register", "honest-after-deepnest", str(linear_model(victims.root / "h")), "--wait"
    )
    assert honest.returncode == 0, honest.stderr[-2000:]
    assert victims.show("honest-after-deepnest:1")["status"] == "ready"
    # `--wait` returns once the job is recorded, and the command's exit may cut its cleanup short;
    # what is left then is what the next job's sweep removes: do that sweep, then nothing may remain.
    sweep_abandoned(str(work))
    assert sorted(p.name for p in work.iterdir()) == [], "scratch was left in the work directory"
    doctor = victims.regctl("doctor", "--quick", "--json")
    problems = json.loads(doctor.stdout)["problems"]
    assert [p for p in problems if p["kind"] == "undeletable_scratch"] == []
    _assert_victims_intact(victims)
