"""Each job's scratch directory, and the sweep that removes those whose process was killed.

A job killed at the hard time limit (SIGKILL from Celery's pool, or the embedded runner's kill)
never runs its own cleanup, and its directory can hold gigabytes: the extracted bundle, the
candidates, the exported program. Every scratch directory therefore holds an `owner.lock` that its
process keeps locked (flock) while it works; the kernel drops the lock when that process dies, however
it dies. `sweep_abandoned` removes every scratch directory whose lock it can take: nobody owns it.
It runs before each job and after a kill, so a killed job's files live until the next one at most.

Removal (`remove_tree`) trusts nothing the model left: it works without recursion, fd-relative and
bottom-up, never follows a symlink, never crosses into another filesystem (a mount is reported, not
emptied), unlinks FIFOs, sockets and device nodes without opening them, and gives a directory of
mode 000 or 0o500 back its owner's access first. Memory stays bounded: the state is one (device,
inode) pair per level of depth, and a wide directory is read a little at a time. A folder that still
cannot be removed (an immutable file, a mount point, files of a uid this process cannot touch) is
logged once and renamed `regctl-undeletable-*` beside it: no sweep retries it, no job fails for it,
and `regctl doctor` lists it until an operator removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from regctl.registry.ops.doctor import UNDELETABLE_PREFIX
from regctl.registry.ops.owned import JOB_PREFIX, LOCK_NAME, UNLOCKED_GRACE_S, abandoned_folders

__all__ = [
    "LOCK_NAME",
    "PREFIX",
    "UNLOCKED_GRACE_S",
    "discard",
    "job_prefix",
    "job_scratch",
    "locked_folder",
    "sweep_abandoned",
]

logger = logging.getLogger(__name__)

PREFIX = JOB_PREFIX
# Entries of one directory that could not be removed and are stepped over; past this the directory
# is given up whole (a model that plants a million immutable files must not make us remember them).
MAX_SKIPPED_PER_DIR = 64
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def job_scratch(job_id: int, root: str | None = None) -> Iterator[Path]:
    """A fresh directory for job `job_id`, locked by this process, removed when the block ends."""
    with locked_folder(job_prefix(job_id), root) as path:
        yield path


def job_prefix(job_id: int) -> str:
    """The name every scratch folder of job `job_id` starts with (`sweep_abandoned`'s prefix for it)."""
    return f"{PREFIX}{job_id}-"


@contextlib.contextmanager
def locked_folder(prefix: str, root: str | None = None) -> Iterator[Path]:
    """A fresh directory `prefix*` under `root`, locked by this process, removed when the block ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    # Locked under a private name, then renamed: a sweeper never finds the lock file unlocked, which
    # would let it take the lock first and remove the folder this job is about to use.
    fd = os.open(path / f".{LOCK_NAME}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(path / f".{LOCK_NAME}", path / LOCK_NAME)
        yield path
    finally:
        # The lock goes last: were this process killed while removing a large tree, the next sweep
        # finds the lock free and finishes the job at once, instead of waiting out the grace period.
        discard(path, last=LOCK_NAME)
        os.close(fd)


def sweep_abandoned(root: str | None = None, prefix: str = PREFIX) -> list[Path]:
    """Remove the folders `prefix*` (jobs' scratch by default) no live process owns; return them."""
    removed = abandoned_folders(root, prefix)
    for path in removed:
        discard(path)
    return removed


def discard(path: Path, last: str | None = None) -> bool:
    """Remove a scratch folder (its entry `last`, if given, after all the others); never raises.

    Returns True when the folder is gone. What cannot go is logged once, and the folder is renamed
    `regctl-undeletable-*` in the same parent, so that no sweep tries it again and `regctl doctor`
    lists it.
    """
    try:
        failure = None
        if last is not None:
            with os.scandir(path) as entries:
                first = [e.name for e in entries if e.name != last]  # the supervisor's few folders
            for name in first:
                why = remove_tree(path / name)  # each one tried, whatever the others did
                failure = failure or why
        why = remove_tree(path)
        failure = failure or why
    except FileNotFoundError:
        return True
    except Exception as exc:  # a cleanup bug must never fail the job it runs after
        failure = f"{type(exc).__name__}: {exc}"
    if failure is None:
        return True
    try:
        kept = path.with_name(f"{UNDELETABLE_PREFIX}{path.name}")
        os.rename(path, kept)
    except OSError as exc:
        kept = path
        failure += f" (and renaming it failed: {exc.strerror})"
    logger.warning("scratch folder %s could not be removed: %s; left as %s", path, failure, kept)
    return False


def remove_tree(path: Path) -> str | None:
    """Remove `path` and everything under it; None when it is gone, else the first reason it is not.

    Without recursion, fd-relative, bottom-up; see the module docstring for what it never does.
    """
    try:
        parent = os.open(path.parent, OPEN_DIR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot open {path.parent}: {exc.strerror}"
    try:
        try:
            info = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return _unlink(parent, path.name, info, path)
        remover = _Remover(path, info.st_dev)
        return remover.remove(parent, path.name, info)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        os.close(parent)


@dataclass
class _Level:
    """One directory on the way down: how to find it again from its parent, and what stays in it."""

    name: str
    ino: int
    skipped: set[str] = field(default_factory=set)


class _Remover:
    """The walk of remove_tree: one open directory at a time, a stack of (name, inode) to climb back."""

    def __init__(self, top: Path, device: int) -> None:
        self.top = top
        self.device = device
        self.failure: str | None = None
        self.stack: list[_Level] = []

    def note(self, where: str, why: str) -> None:
        """Remember the first thing that could not be removed (the one reason reported)."""
        if self.failure is None:
            self.failure = f"{where}: {why}"

    def remove(self, parent: int, name: str, info: os.stat_result) -> str | None:
        """Empty and remove directory `name` of the open directory `parent`."""
        stack = self.stack = [_Level(name, info.st_ino)]
        fd = self._open_dir(parent, name, info.st_ino)
        if fd is None:
            return self.failure
        try:
            while stack:
                level = stack[-1]
                child = self._clear_files(fd, level)
                if child is not None:  # go down into it
                    opened = self._open_dir(fd, child[0], child[1].st_ino)
                    if opened is None:
                        self._skip(level, child[0])
                        continue
                    os.close(fd)
                    fd = opened
                    stack.append(_Level(child[0], child[1].st_ino))
                    continue
                # Empty but for what was skipped: climb to the parent and remove this one from there.
                stack.pop()
                up = self._climb(fd, stack[-1]) if stack else parent
                os.close(fd)
                fd = -1
                if up is None:
                    return self.failure
                if stack:
                    fd = up
                self._remove_emptied(level, up)
        finally:
            if fd != -1:
                os.close(fd)
        return self.failure

    def _remove_emptied(self, level: _Level, parent: int) -> None:
        """rmdir a directory the walk emptied; one that keeps entries is stepped over in its parent."""
        if not level.skipped:
            try:
                os.rmdir(level.name, dir_fd=parent)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                self.note(self._where(level.name), exc.strerror or str(exc))
        if self.stack:
            self._skip(self.stack[-1], level.name)

    def _clear_files(self, fd: int, level: _Level) -> tuple[str, os.stat_result] | None:
        """Unlink every non-directory in `fd`; the first subdirectory still to empty, or None."""
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.name in level.skipped:
                    continue
                try:
                    info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if info.st_dev != self.device:
                        self.note(self._where(entry.name), "another filesystem is mounted here")
                        self._skip(level, entry.name)
                        continue
                    return entry.name, info
                if self._unlink_in(fd, entry.name, info) is not None:
                    self._skip(level, entry.name)
        return None

    def _unlink_in(self, fd: int, name: str, info: os.stat_result) -> str | None:
        why = _unlink(fd, name, info, Path(name))
        if why is not None:
            self.note(self._where(name), why.split(": ", 1)[-1])
        return why

    def _skip(self, level: _Level, name: str) -> None:
        level.skipped.add(name)
        if len(level.skipped) > MAX_SKIPPED_PER_DIR:
            raise OSError(errno.ENOTEMPTY, f"more than {MAX_SKIPPED_PER_DIR} entries of {level.name} stay")

    def _open_dir(self, parent: int, name: str, ino: int) -> int | None:
        """Open subdirectory `name` (never a symlink), giving its owner access first if it lacks it."""
        for attempt in range(2):
            try:
                fd = os.open(name, OPEN_DIR, dir_fd=parent)
            except PermissionError as exc:
                if attempt == 0 and _grant_access(parent, name):
                    continue
                self.note(self._where(name), exc.strerror or str(exc))
                return None
            except OSError as exc:
                self.note(self._where(name), exc.strerror or str(exc))
                return None
            info = os.fstat(fd)
            if info.st_ino != ino or info.st_dev != self.device:
                os.close(fd)
                self.note(self._where(name), "it changed while being removed")
                return None
            # Unlinking inside needs write and search permission on it, which the model may have taken.
            if info.st_mode & 0o700 != 0o700:
                _grant_access(parent, name)
            return fd
        return None

    def _climb(self, fd: int, level: _Level) -> int | None:
        """The directory above `fd`, checked to be the one we came down through."""
        try:
            up = os.open("..", OPEN_DIR, dir_fd=fd)
        except OSError as exc:
            self.note(self._where(""), exc.strerror or str(exc))
            return None
        if os.fstat(up).st_ino != level.ino:
            os.close(up)
            self.note(self._where(""), "it moved while being removed")
            return None
        return up

    def _where(self, name: str) -> str:
        """The path of `name` in the directory the walk stands in (for the one report)."""
        return str(self.top.parent.joinpath(*(lv.name for lv in self.stack), name))


def _unlink(dir_fd: int, name: str, info: os.stat_result, shown: Path) -> str | None:
    """Unlink a non-directory (file, symlink, FIFO, socket, device node): never opened, never followed."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return None
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{shown}: {exc.strerror or exc}"


def _grant_access(parent: int, name: str) -> bool:
    """chmod u+rwx a directory through an O_PATH descriptor (needs no permission on it, follows no link)."""
    try:
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return False
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.chmod(f"/proc/self/fd/{fd}", mode | 0o700)
        return True
    except OSError:
        return False  # not ours to change (another uid, or immutable): reported by the caller
    finally:
        os.close(fd)
