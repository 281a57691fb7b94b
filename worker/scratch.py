"""Each job's scratch directory, and the sweep that removes those whose process was killed.

A job killed at the hard time limit (SIGKILL from Celery's pool, or the embedded runner's kill)
never runs its own cleanup, and its directory can hold gigabytes: the extracted bundle, the
candidates, the exported program. Every scratch directory therefore holds an `owner.lock` that its
process keeps locked (flock) while it works; the kernel drops the lock when that process dies, however
it dies. `sweep_abandoned` removes every scratch directory whose lock it can take: nobody owns it.
It runs before each job and after a kill, so a killed job's files live until the next one at most.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = "regctl-job-"
LOCK_NAME = "owner.lock"
# Between mkdtemp and taking the lock a directory has no owner yet: leave young ones alone.
UNLOCKED_GRACE_S = 60.0


@contextlib.contextmanager
def job_scratch(job_id: int, root: str | None = None) -> Iterator[Path]:
    """A fresh directory for job `job_id`, locked by this process, removed when the block ends."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{job_id}-", dir=root))
    # Locked under a private name, then renamed: a sweeper never finds the lock file unlocked, which
    # would let it take the lock first and remove the folder this job is about to use.
    fd = os.open(path / f".{LOCK_NAME}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(path / f".{LOCK_NAME}", path / LOCK_NAME)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep_abandoned(root: str | None = None) -> list[Path]:
    """Remove the scratch directories no live process owns; return what was removed."""
    base = Path(root or tempfile.gettempdir())
    removed = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _abandoned(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False  # not ours: never follow a link out of the temp directory
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            return time.time() - path.stat().st_mtime > UNLOCKED_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Still the folder's lock file? Its owner may have been removing the folder as we looked.
        return os.stat(path / LOCK_NAME, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except BlockingIOError:
        return False  # its owner is alive and working
    except OSError:
        return False
    finally:
        os.close(fd)
