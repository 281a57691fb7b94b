"""The supervisor reads what a sandbox left without blocking, following links or passing on escapes.

A model controls its work directory: `role.log` and `result.json` may be a FIFO, a link, a huge
file, and their text may carry terminal escape sequences. Real files, real FIFOs, no mocks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from regctl.registry.settings import Settings
from regctl.worker.sandbox.client import RoleOutcome
from regctl.worker.sandbox.launch import EXIT_ROLE_ERROR
from regctl.worker.supervisor.files import read_regular
from regctl.worker.supervisor.supervisor import _log_tail, role_failure

DEADLINE_S = 30.0  # a blocked open never returns; a correct one returns in milliseconds
HOSTILE_TAIL = (
    "Traceback (most recent call last):\n  boom\n\x1b]0;pwned\x07\x1b[2J verified OK \u202egnp.exe\n"
)


def _returns_within(deadline_s: float, call):  # type: ignore[no-untyped-def]
    """Run `call` in a thread; its result, or a failure if it has not returned by the deadline."""
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.update(value=call()), daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():  # the fifo fixture's writer releases the stuck thread afterwards
        pytest.fail(f"did not return within {deadline_s} s: the supervisor blocked on a FIFO")
    return box["value"]


@pytest.fixture
def fifo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A FIFO planted where the supervisor expects a file; a writer unblocks any reader at the end."""
    path = tmp_path / "role.log"
    os.mkfifo(path)
    yield path
    # If a blocking open is stuck on it, this non-blocking writer open releases it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def test_a_fifo_planted_as_role_log_is_skipped_at_once(fifo: Path) -> None:
    start = time.monotonic()
    assert _returns_within(DEADLINE_S, lambda: _log_tail(fifo)) == ""
    assert time.monotonic() - start < DEADLINE_S


def test_a_fifo_planted_as_result_json_is_refused_at_once(fifo: Path) -> None:
    assert _returns_within(DEADLINE_S, lambda: read_regular(fifo, 1024)) is None


def test_a_link_planted_as_role_log_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("canary-secret")
    (tmp_path / "role.log").symlink_to(secret)
    assert _log_tail(tmp_path / "role.log") == ""
    assert read_regular(tmp_path / "role.log", 1024) is None


def test_the_tail_is_bounded_and_its_escape_sequences_are_visible(tmp_path: Path) -> None:
    log = tmp_path / "role.log"
    with log.open("wb") as out:
        out.truncate(1 << 30)  # a sparse gigabyte first: only the end is read
        out.seek(0, os.SEEK_END)
        out.write(HOSTILE_TAIL.encode())
    tail = _log_tail(log, size=4096)
    assert len(tail) <= 4 * 4096
    assert "\x1b" not in tail and "\x07" not in tail and "\u202e" not in tail and "\x00" not in tail
    assert tail.endswith("\\x1b]0;pwned\\x07\\x1b[2J verified OK \\u202egnp.exe\n")
    assert "  boom\n" in tail  # line breaks stay: the worker's log keeps the traceback readable


def test_a_role_that_exits_91_leaves_a_job_error_and_a_log_line_without_escapes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "role.log").write_text(HOSTILE_TAIL)
    outcome = RoleOutcome(status=EXIT_ROLE_ERROR << 8, protections=None, refused=None)
    settings = Settings.from_env({}, home=tmp_path / "home")
    with caplog.at_level(logging.ERROR, logger="regctl.worker.supervisor.supervisor"):
        error = role_failure("the model process", outcome, settings, tmp_path)
    assert "\\x1b]0;pwned\\x07\\x1b[2J verified OK \\u202egnp.exe" in error
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "boom" in logged
    for text in (error, logged):
        assert not any(char in text for char in ("\x1b", "\x07", "\u202e"))


def test_a_role_that_exits_91_with_a_fifo_as_its_log_fails_at_once(fifo: Path, tmp_path: Path) -> None:
    outcome = RoleOutcome(status=EXIT_ROLE_ERROR << 8, protections=None, refused=None)
    settings = Settings.from_env({}, home=tmp_path / "home")
    error = _returns_within(DEADLINE_S, lambda: role_failure("the judge", outcome, settings, fifo.parent))
    assert "no output" in error
