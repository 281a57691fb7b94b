"""A fresh block of unprivileged uids for one job, one per role, and a sweep that ends their processes.

When the worker runs as root, each sandboxed role runs as a uid of its own, leased for one job:
two roles of a job cannot signal, trace or read each other's files by uid, and no later job ever
inherits a uid whose processes or keys an earlier job could have left behind. The uid range is
split into blocks of `len(roles)` uids from `base`; block `n` is leased by holding an exclusive
flock on `<lease_dir>/<n>.lock`. The kernel drops the lock when its holder dies, so a block whose
holder is gone is free again, across pool children and across workers on one machine (they share
the lease directory, which only root may write).

On acquiring a block and on releasing it, every process owned by one of its uids is killed: a
process that outlived its job dies before the uid is used again. Where the machine has cgroup v2 a
cgroup per job would do this without a scan; this sweep works everywhere root runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("builder", "reference", "judge", "aoti", "executorch", "onnx")  # one uid each, in this order
DEFAULT_LEASE_DIR = Path("/run/regctl-uids")
BLOCKS = 166  # with six roles: base .. base+995, within the range the pool children used before
RESERVED = {65534, 65535, 4294967294, 4294967295}  # nobody, and (uid_t) -1 in 16 and 32 bits
SWEEP_ROUNDS = 50
SWEEP_DEADLINE_S = 5.0


class UidLeaseError(Exception):
    """Raised when no uid block is free, or the lease directory is not root's alone."""


@dataclass
class UidLease:
    """A block of uids held for one job; `uid(role)` names each role's."""

    base: int
    roles: tuple[str, ...]
    _fd: int = field(default=-1, repr=False)

    def uid(self, role: str) -> int:
        """The uid `role` runs as in this job (a ValueError for a role the lease was not made for)."""
        return self.base + self.roles.index(role)

    @property
    def by_role(self) -> dict[str, int]:
        """Each role's uid, by role name (what WorkDir.create takes)."""
        return {role: self.uid(role) for role in self.roles}

    @property
    def uids(self) -> list[int]:
        """Every uid of the block."""
        return [self.base + i for i in range(len(self.roles))]

    def release(self) -> None:
        """Kill whatever the block's uids still run, then give the block back. Idempotent."""
        if self._fd == -1:
            return
        try:
            sweep(self.uids)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> UidLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_uids(
    base: int,
    roles: Iterable[str] = ROLES,
    lease_dir: Path = DEFAULT_LEASE_DIR,
    blocks: int = BLOCKS,
) -> UidLease:
    """Lease a free block of uids from `base` (root only); use it as a context manager, or release()."""
    roles = tuple(roles)
    _own_directory(lease_dir)
    start = os.getpid() % blocks  # spread concurrent workers over the range; any free block will do
    for step in range(blocks):
        block = (start + step) % blocks
        first = base + block * len(roles)
        if RESERVED & set(range(first, first + len(roles))):
            continue
        fd = os.open(
            lease_dir / f"{block}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise
        lease = UidLease(first, roles, fd)
        try:
            sweep(lease.uids)  # a process left by a holder that died before its release
        except BaseException:
            lease.release()
            raise
        return lease
    raise UidLeaseError(
        f"all {blocks} blocks of sandbox uids from {base} are leased by running jobs; "
        "run fewer jobs at once on this machine, or raise the pool's limit after widening the range"
    )


@contextlib.contextmanager
def job_uids(base: int, enabled: bool, lease_dir: Path = DEFAULT_LEASE_DIR) -> Iterator[UidLease | None]:
    """The lease for one job, or None where roles keep the worker's uid (not root, or sandbox off)."""
    if not enabled or os.getuid() != 0:
        yield None
        return
    with lease_uids(base, lease_dir=lease_dir) as lease:
        yield lease


def _own_directory(path: Path) -> None:
    """Make `path` root's own (0700) or refuse: whoever could write it could steal or forge leases."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise UidLeaseError(f"{path} must be a directory that only uid {os.getuid()} can write")


def processes_of(uids: Iterable[int]) -> list[int]:
    """Pids of live processes whose real, effective, saved or file-system uid is one of `uids`."""
    wanted = {str(u) for u in uids}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue  # a zombie holds nothing; its parent reaps it
        if wanted & set(fields.get("Uid", "").split()):
            found.append(int(name))
    return found


def sweep(uids: Iterable[int]) -> list[int]:
    """SIGKILL every process of `uids` until none is left (bounded); the pids still alive, if any.

    Per uid, a child forked from this root process takes that uid and calls kill(-1): the kernel
    signals every process of the uid in one pass, so a fork loop cannot outrun it; a scan of /proc
    then checks, and the whole repeats while anything is left.
    """
    uids = [u for u in uids if u != 0 and u != os.getuid()]  # never ourselves, never root
    if os.getuid() != 0 or not uids:
        return []
    deadline = time.monotonic() + SWEEP_DEADLINE_S
    left = processes_of(uids)
    for _ in range(SWEEP_ROUNDS):
        if not left or time.monotonic() > deadline:
            break
        for uid in uids:
            _kill_all_as(uid)
        for pid in left:  # a process whose real uid is another one, but that holds one of ours
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = processes_of(uids)
    return left


def _kill_all_as(uid: int) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, but not the caller
            code = 0
        except BaseException:  # ESRCH: nothing of the uid runs; anything else: the scan sees it
            pass
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
