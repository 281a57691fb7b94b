"""Folders a live process owns, told apart from those a killed process left behind.

A job's scratch folder (worker/supervisor/scratch.py) and a server's upload folder hold an
`owner.lock` that their process keeps locked (flock) while it works; the kernel drops the lock
when that process dies, however it dies. A folder whose lock can be taken is nobody's: the sweeps
remove it, and `regctl doctor` names it. Only the check lives here, so that the doctor can look
without importing the worker.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

JOB_PREFIX = "regctl-job-"  # a job's scratch folder
UPLOAD_PREFIX = "regctl-upload-"  # an upload a server is receiving and unpacking
LOCK_NAME = "owner.lock"
# Between mkdtemp and taking the lock a folder has no owner yet: leave young ones alone.
UNLOCKED_GRACE_S = 60.0


def abandoned_folders(root: str | None, prefix: str) -> list[Path]:
    """The folders named `prefix*` under `root` (None: the system's temp) that no live process owns."""
    base = Path(root or tempfile.gettempdir())
    try:
        candidates = sorted(p for p in base.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []
    return [path for path in candidates if abandoned(path)]


def abandoned(path: Path) -> bool:
    """True when `path` is a real folder whose owner lock is free (or missing past the grace period)."""
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
