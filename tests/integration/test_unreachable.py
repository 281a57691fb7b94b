"""An unreachable broker or database makes commands fail fast with exit code 4, never hang."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REGCTL, base_env, linear_model

BROKER = "redis://:secret@127.0.0.1:1/0"
DATABASE = "postgresql://x:secret@127.0.0.1:1/db"
# "Within seconds": a few seconds more than a command that reaches everything takes on this machine now.
WITHIN_S = 5.0


def _regctl(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [REGCTL, *args],
        env={**base_env(), "REGCTL_HOME": str(tmp_path / "home"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def command_s(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Seconds a command that reaches its (embedded) registry takes: the measured baseline."""
    done, took = _regctl(tmp_path_factory.mktemp("baseline"), "models", "list", "--json")
    assert done.returncode == 0, done.stderr
    return took


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "secret" not in stderr
    return lines[0]


def test_register_fails_within_seconds_with_exit_code_4_when_the_broker_is_unreachable(
    tmp_path: Path, command_s: float
) -> None:
    directory = linear_model(tmp_path / "lin")

    done, took = _regctl(tmp_path, "register", "lin", str(directory), REGCTL_BROKER_URL=BROKER)

    assert done.returncode == 4, done.stderr
    assert took < 3 * command_s + WITHIN_S, (took, command_s)
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in _one_line_error(done.stderr)
    listed, _ = _regctl(tmp_path, "models", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", "nothing is written before the check"


@pytest.mark.parametrize("command", [("jobs", "list"), ("register", "lin", "MODEL")])
def test_commands_fail_within_seconds_with_exit_code_4_when_the_database_is_unreachable(
    tmp_path: Path, command: tuple[str, ...], command_s: float
) -> None:
    directory = linear_model(tmp_path / "lin")
    args = [str(directory) if a == "MODEL" else a for a in command]

    done, took = _regctl(tmp_path, *args, REGCTL_DATABASE_URL=DATABASE)

    assert done.returncode == 4, done.stderr
    assert took < 3 * command_s + WITHIN_S, (took, command_s)
    line = _one_line_error(done.stderr)
    assert "cannot reach the database at postgresql" in line
    assert "x:***@127.0.0.1:1/db" in line
