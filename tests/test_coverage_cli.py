"""The coverage the reference runner records inside its sandbox reaches the report and `versions show`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from regctl.cli.app import cli
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.settings import Settings

CONDITIONAL = Path(__file__).resolve().parents[1] / "examples" / "conditional"


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_versions_show_prints_the_coverage_line_recorded_in_the_sandbox(
    sqlite_settings: Settings, tmp_path: Path, mode: str
) -> None:
    env = {
        "REGCTL_HOME": str(sqlite_settings.home),
        "REGCTL_DATABASE_URL": "",
        "REGCTL_BROKER_URL": "",
        "REGCTL_ARTIFACT_STORE": "",
        "REGCTL_SANDBOX": mode,
    }
    runner = CliRunner()
    directory = shutil.copytree(CONDITIONAL, tmp_path / "conditional")
    registered = runner.invoke(cli, ["register", "cond", str(directory), "--wait"], env=env)
    assert registered.exit_code == 0, registered.output
    shown = runner.invoke(cli, ["versions", "show", "cond:1", "--json"], env=env)
    report = json.loads(shown.stdout)["summary"]["report"]
    section = report["coverage"]
    assert report["method"] == "script"  # the verdict the example has always had
    assert section["recorded"] is True, section["warning"]
    (point,) = section["decisions"]
    assert (point["file"], point["line"], point["one_way"]) == ("model.py", 11, False)
    text = runner.invoke(cli, ["versions", "show", "cond:1"], env=env).stdout
    line = next(line for line in text.splitlines() if "coverage" in line)
    assert (
        "1 of 1 decisions taken both ways" in line
        and f"{section['lines_run']}/{section['lines']} lines" in line
    )
