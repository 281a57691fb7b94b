"""Hostile models on the embedded default: real `regctl register --wait` processes, real sandboxes.

One registry per module holds the victims: a ready model with `@prod`, a version never converted,
the LibTorch runner every job trusts. Each hostile model runs through the real command line (so a
process left behind that holds the CLI's pipe would hang the test), and after each one every
victim is checked: same bytes on fetch, same alias, same status, nothing planted, nothing left
running.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories import linear_model
from tests.hostile import (
    ATTACKS,
    CANARIES,
    CANARY_VALUES,
    EXPECTED,
    LIMITS_ENV,
    Targets,
    check_error,
    hostile_model,
    processes_with,
    report_text,
    require_full_sandbox,
    sha256_of,
)

REGCTL = str(Path(sys.executable).with_name("regctl"))
JOB_TIMEOUT_S = 300


@dataclass
class Victims:
    """The registry under attack and what must stay as it is."""

    env: dict[str, str]
    root: Path
    home: Path  # REGCTL_HOME
    targets: Targets
    fetched_sha: str
    runner_sha: str

    def regctl(self, *args: str, timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REGCTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )

    def show(self, ref: str) -> dict:
        shown = self.regctl("versions", "show", ref, "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)


@pytest.fixture(scope="module")
def victims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victims]:
    require_full_sandbox()
    from regctl.worker.judge.libtorch import runner_path

    root = tmp_path_factory.mktemp("hostile")
    user_home = root / "user"
    (user_home / ".aws").mkdir(parents=True)
    (user_home / ".aws" / "credentials").write_text(
        "[default]\naws_secret_access_key = canary-credentials-file-aa41\n"
    )
    home = user_home / ".regctl"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("REGCTL_") or k.startswith("REGCTL_LIBTORCH")
    }
    env.update(CANARIES)
    env.update(LIMITS_ENV)
    env.update({"HOME": str(user_home), "REGCTL_HOME": str(home), "REGCTL_JOB_TIME_LIMIT": "120"})
    # a signing key in the registry home: one more secret no model may reach; prod needs a signed version
    keyed = subprocess.run([REGCTL, "keys", "init"], env=env, capture_output=True, text=True, timeout=60)
    assert keyed.returncode == 0, keyed.stderr
    done = subprocess.run(
        [REGCTL, "register", "victim", str(linear_model(root / "victim")), "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    partial = Victims(env, root, home, None, "", "")  # type: ignore[arg-type]
    assert partial.regctl("alias", "set", "victim@prod", "1").returncode == 0
    idle = partial.regctl("register", "idle", str(linear_model(root / "idle")), "--no-convert")
    assert idle.returncode == 0, idle.stderr
    assert partial.regctl("fetch", "victim@prod", "-o", str(root / "before.pt")).returncode == 0
    runner = runner_path(Path(env["REGCTL_LIBTORCH_CACHE"]))
    assert runner.is_file(), "the victim's conversion should have built the LibTorch runner"
    blobs = [a["uri"] for a in partial.show("victim:1")["artifacts"]]
    database = str(home / "registry.db")
    targets = Targets(
        store=str(home / "artifacts"),
        home=str(home),
        runner=str(runner),
        secret_files=[str(user_home / ".aws" / "credentials"), database],
        database_files=[database],
        victim_blobs=blobs,
    )
    yield Victims(env, root, home, targets, sha256_of(root / "before.pt"), sha256_of(runner))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_model_fails_with_one_line_or_leaves_no_trace(victims: Victims, attack: str) -> None:
    directory = hostile_model(victims.root / attack, attack, victims.targets)
    database_before = _database_bytes(victims.home)
    done = victims.regctl("register", attack, str(directory), "--wait")
    expected = EXPECTED[attack]
    version = victims.show(f"{attack}:1")
    convert = version["jobs"][0]
    problems = check_error(attack, convert["error"])
    assert version["status"] == expected.status, (convert["error"], done.stderr[-2000:])
    assert done.returncode == (0 if expected.status == "ready" else 1), done.stderr[-2000:]
    leaked = [c for c in CANARY_VALUES if c in done.stdout + done.stderr + report_text(version["summary"])]
    assert not leaked, f"secrets leaked: {leaked}"
    assert not problems, problems
    if attack == "blind":
        assert "torchscript" not in [a["kind"] for a in version["artifacts"]]
    # Nothing the model wrote reaches the operator's terminal as a control sequence.
    hidden = [c for c in ("\x1b", "\x07", "\x9b", "\u202e") if c in done.stdout + done.stderr]
    assert not hidden, f"{hidden} reached the operator's output: {done.stderr[-2000:]!r}"
    if attack == "markup":
        _assert_shown_as_text(victims, attack)
    if attack == "warnings":
        _assert_report_bounded(version, _database_bytes(victims.home) - database_before)
    _assert_victims_intact(victims)


def _assert_shown_as_text(victims: Victims, attack: str) -> None:
    """The human views of a job whose error holds markup and a bidi override work, and show it as text."""
    wide = {**victims.env, "COLUMNS": "1000"}  # no table cell wraps the text under test
    for args in (("jobs", "list"), ("versions", "show", f"{attack}:1"), ("jobs", "list", "--json")):
        shown = subprocess.run(
            [REGCTL, *args], env=wide, capture_output=True, text=True, timeout=60, cwd=victims.root
        )
        assert shown.returncode == 0, (args, shown.stderr[-2000:])
        assert "[/x] [bold red]boom" in shown.stdout, (args, shown.stdout[-2000:])
        assert "\u202e" not in shown.stdout + shown.stderr


def _assert_report_bounded(version: dict, database_growth: int) -> None:
    """A flood of warnings leaves a bounded report, says how many it dropped, and a small database."""
    report = version["summary"]["report"]
    assert len(json.dumps(version["summary"])) < 1024 * 1024
    assert len(report["model_warnings"]) <= 100
    assert all(len(w["message"]) <= 2000 for w in report["model_warnings"])
    assert report["warnings_dropped"] > 0, "the report says how many warnings it did not keep"
    assert database_growth < 4 * 1024 * 1024, f"registry.db grew by {database_growth} bytes"


def _database_bytes(home: Path) -> int:
    # SQLite's write-ahead log holds what is not yet checkpointed: count it too.
    return sum(p.stat().st_size for p in home.glob("registry.db*") if p.is_file())


def _assert_victims_intact(victims: Victims) -> None:
    after = victims.root / f"after-{time.monotonic_ns()}.pt"
    fetched = victims.regctl("fetch", "victim@prod", "-o", str(after))
    assert fetched.returncode == 0, fetched.stderr
    assert sha256_of(after) == victims.fetched_sha, "the deployed artifact changed"
    assert victims.show("victim:1")["status"] == "ready"
    aliases = json.loads(victims.regctl("models", "show", "victim", "--json").stdout)["aliases"]
    assert aliases == {"prod": 1}
    assert victims.show("idle:1")["status"] == "registered", "a never-converted version changed status"
    for blob in victims.targets.victim_blobs:
        assert _blob_sha_matches(Path(blob)), f"blob {blob} no longer holds the bytes it is named by"
    assert sha256_of(Path(victims.targets.runner)) == victims.runner_sha, "the LibTorch runner was rewritten"
    for directory in (Path(victims.targets.store), victims.home):
        assert not (directory / "evil.txt").exists() and not (directory / "sha256" / "evil.txt").exists()
    with sqlite3.connect(victims.home / "registry.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    _wait_gone(victims.targets.marker)


def _blob_sha_matches(blob: Path) -> bool:
    # Blobs live at sha256/ab/cdef...: the two directory digits and the file name make the hash.
    return sha256_of(blob) == blob.parent.name + blob.name


def _wait_gone(marker: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while processes_with(marker):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes the model started are still running: {processes_with(marker)}")
        time.sleep(0.1)
