"""`regctl doctor` lists the job scratch folders the worker set aside because they could not be removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regctl.registry.migrate import upgrade
from regctl.registry.ops.doctor import UNDELETABLE_PREFIX
from regctl.registry.settings import Settings
from tests.conftest import direct_cli


def test_doctor_lists_a_scratch_folder_that_could_not_be_removed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(settings.database_url)
    work = tmp_path / "work"
    kept = work / f"{UNDELETABLE_PREFIX}regctl-job-7-abc"
    kept.mkdir(parents=True)
    (work / "regctl-job-8-live").mkdir()  # a job's live scratch is no problem
    monkeypatch.setenv("REGCTL_WORK_DIR", str(work))

    human = direct_cli(settings, "doctor", "--quick")
    assert human.exit_code == 6, human.output
    assert human.stdout.splitlines() == [
        f"undeletable_scratch: {kept} is a job's scratch folder that could not be removed (a mount, "
        "an immutable file or another uid's files inside); the worker's log says why: remove it as root"
    ]
    report = json.loads(direct_cli(settings, "doctor", "--quick", "--json").stdout)
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [("undeletable_scratch", str(kept))]

    kept.rmdir()
    assert direct_cli(settings, "doctor", "--quick").exit_code == 0
