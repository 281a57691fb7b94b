"""Confining the current process: namespaces, a private root, resource limits, an unprivileged uid.

Each step is tried in turn and recorded in a `Protections` record; in `strict` mode the first
step that fails ends the launch, in `auto` mode the process runs with what the machine allows and
the record says what is missing. Nothing here imports torch or model code.

The private root is a read-only tmpfs holding bind mounts of exactly what the process needs:
the system directories (/usr, /etc, /lib ...), the Python installation, the job's own
directories under /job (only `out` writable), a minimal /dev and a /proc of its own PID namespace.
Registry home, database file, artifact store, LibTorch cache and the user's home are simply not
there; where one of them lies inside a visible tree (a REGCTL_HOME inside the checkout), it is
covered by an empty read-only tmpfs. After the mounts the process gives up every capability, so it
cannot undo them.
"""

from __future__ import annotations

import errno
import os
import re
import resource
from dataclasses import dataclass, field
from typing import Any

from regctl.worker.sandbox import linux, seccomp_filter
from regctl.worker.sandbox.plan import DEVICE_NODES, JOB_ROOT, SYSTEM_DIRS, SandboxPlan, interpreter_paths

NAMESPACE_FLAGS = {
    "user": linux.CLONE_NEWUSER,
    "mount": linux.CLONE_NEWNS,
    "network": linux.CLONE_NEWNET,
    "pid": linux.CLONE_NEWPID,
    "ipc": linux.CLONE_NEWIPC,
    "uts": linux.CLONE_NEWUTS,
}


class SandboxRefused(Exception):
    """Raised in strict mode when a protection cannot be put in place."""


@dataclass
class Protections:
    """What is in force for one sandboxed process, for the report and `regctl worker`."""

    mode: str
    namespaces: list[str] = field(default_factory=list)
    network: str = "host network"
    filesystem: str = "the worker's file system"
    uid: str = "the worker's uid"
    limits: dict[str, int] = field(default_factory=dict)
    environment: str = "allowlist"
    process_tree: str = "process group killed with the job"
    seccomp: str = "none"
    dumpable: str = "dumpable (the kernel's default)"
    descriptors: str = "the zygote's standard streams"
    leftovers: str = "the role's process group is killed when it ends"
    missing: list[str] = field(default_factory=list)

    def lack(self, what: str, why: object) -> None:
        """Record a protection that is not in force; refuse in strict mode."""
        message = f"{what}: {why}"
        self.missing.append(message)
        if self.mode == "strict":
            raise SandboxRefused(message)

    def to_json(self) -> dict[str, Any]:
        """The report's `sandbox` section."""
        return {
            "mode": self.mode,
            "namespaces": self.namespaces,
            "network": self.network,
            "filesystem": self.filesystem,
            "uid": self.uid,
            "limits": self.limits,
            "environment": self.environment,
            "process_tree": self.process_tree,
            "seccomp": self.seccomp,
            "dumpable": self.dumpable,
            "descriptors": self.descriptors,
            "leftovers": self.leftovers,
            "missing": self.missing,
        }


def enter_namespaces(protections: Protections) -> None:
    """unshare() into new user (when not root), mount, network, PID, IPC and UTS namespaces."""
    names = ["mount", "network", "pid", "ipc", "uts"]
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        names.insert(0, "user")
    flags = 0
    for name in names:
        flags |= NAMESPACE_FLAGS[name]
    try:
        linux.unshare(flags)
        if uid != 0:
            _map_ids(uid, gid)
    except OSError as exc:
        protections.lack("namespaces", f"unshare failed ({exc.strerror}); no private network or file system")
        return
    protections.namespaces = names
    protections.network = "none (own network namespace: no route to any host, loopback included)"
    protections.process_tree = "own PID namespace: every process dies with the job"


def _map_ids(uid: int, gid: int) -> None:
    # An unprivileged user namespace may map only our own ids; same id inside and out.
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def build_private_root(plan: SandboxPlan, protections: Protections) -> bool:
    """Make a private root from the plan and pivot into it; False when it could not be done."""
    if "mount" not in protections.namespaces:
        return False
    try:
        _private_root(plan, protections)
    except OSError as exc:
        protections.lack("private file system", f"{exc.strerror or exc} ({exc.filename or 'mount'})")
        return False
    protections.filesystem = (
        f"private read-only root (submounts read-only too); writable: {plan.mounts['out'].inside} only; "
        "registry home, database, artifact store, LibTorch cache and home directories are not mounted"
    )
    return True


def _private_root(plan: SandboxPlan, protections: Protections) -> None:
    root = plan.scratch
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=16m,mode=755")
    # /tmp first: an interpreter or checkout that lives under /tmp is bound on top of it below.
    os.makedirs(root + "/tmp")
    linux.mount(plan.mounts["out"].host + "/tmp", root + "/tmp", None, linux.MS_BIND)
    visible: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            _bind(path, root + path, writable=False)
            visible.append(path)
    for path in interpreter_paths():
        if not any(path == v or path.startswith(v + "/") for v in visible):
            _bind(path, root + path, writable=False)
            visible.append(path)
    os.makedirs(root + JOB_ROOT, exist_ok=True)
    for mount in plan.mounts.values():
        _bind(mount.host, root + mount.inside, writable=mount.writable)
    _dev(root, plan.devices)
    _proc(root, protections)
    _mask(root, plan.masks, visible, [m.inside for m in plan.mounts.values()])
    os.mkdir(root + "/.old")
    linux.pivot_root(root, root + "/.old")
    os.chdir("/")
    linux.umount("/.old")
    os.rmdir("/.old")
    linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)


def _bind(source: str, target: str, *, writable: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(target, "w"):
                pass
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    # MS_REC brings every mount below `source` along, and a read-only remount covers only the top
    # one: remount each of them, or a tmpfs (or any file system) mounted inside stays writable.
    for point in [target, *_mounts_below(target)]:
        _remount(point, writable=writable)


def _remount(point: str, *, writable: bool) -> None:
    flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_NOSUID
    if not writable:
        flags |= linux.MS_RDONLY
    # A user namespace may not clear the flags a mount of its parent namespace has (they are
    # locked): keep them.
    current = os.statvfs(point).f_flag
    for st_flag, ms_flag in _KEPT_FLAGS:
        if current & st_flag:
            flags |= ms_flag
    linux.mount(None, point, None, flags)


_KEPT_FLAGS = (
    (os.ST_NODEV, linux.MS_NODEV),
    (os.ST_NOEXEC, 0x8),  # MS_NOEXEC
    (os.ST_NOATIME, 0x400),  # MS_NOATIME
    (os.ST_NODIRATIME, 0x800),  # MS_NODIRATIME
    (os.ST_RELATIME, 1 << 21),  # MS_RELATIME
)


def _mounts_below(target: str) -> list[str]:
    """Mount points strictly below `target` (from /proc/self/mountinfo), outermost first."""
    prefix = target.rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                point = _unescape(fields[4])
                if point.startswith(prefix):
                    points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p))


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _dev(root: str, devices: list[str]) -> None:
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICE_NODES:
        _bind(f"/dev/{name}", f"{root}/dev/{name}", writable=True)
    for device in devices:  # GPU nodes for cuda jobs, nothing else
        if os.path.exists(device):
            _bind(device, root + device, writable=True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
    ):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    os.makedirs(root + "/dev/shm")
    linux.mount("tmpfs", root + "/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=64m,mode=1777")


def _proc(root: str, protections: Protections) -> None:
    os.makedirs(root + "/proc", exist_ok=True)
    try:
        linux.mount("proc", root + "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | 0x8)
    except OSError as exc:
        protections.lack("/proc", f"cannot mount a /proc of its own ({exc.strerror}); it has none")


def _mask(root: str, masks: list[str], visible: list[str], job: list[str]) -> None:
    """Cover secret paths that lie inside a visible tree, unless a needed mount lies below them."""
    needed = [*visible, *job]
    covered: list[str] = []
    # Shortest first, but every one on its own merit: a secret inside the checkout must be covered
    # even when an outer secret path (/tmp, holding the checkout) is not visible and so not covered.
    for secret in sorted({os.path.realpath(m) for m in masks}, key=len):
        inside_visible = any(secret == v or secret.startswith(v + "/") for v in visible)
        holds_needed = any(n == secret or n.startswith(secret + "/") for n in needed)
        already = any(secret == c or secret.startswith(c + "/") for c in covered)
        target = root + secret
        if not inside_visible or holds_needed or already or not os.path.lexists(target):
            continue
        covered.append(secret)
        if os.path.isdir(target) and not os.path.islink(target):
            linux.mount(
                "tmpfs", target, "tmpfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV, "size=4k"
            )
        else:
            linux.mount("/dev/null", target, None, linux.MS_BIND)


def apply_limits(plan: SandboxPlan, protections: Protections) -> None:
    """setrlimit for memory, CPU time, file size, processes and open files; no core dumps."""
    limits = plan.limits
    wanted = {
        "memory_bytes": (resource.RLIMIT_DATA, limits.memory_bytes),
        "cpu_seconds": (resource.RLIMIT_CPU, limits.cpu_seconds),
        "file_bytes": (resource.RLIMIT_FSIZE, limits.file_bytes),
        "processes": (resource.RLIMIT_NPROC, limits.processes),
        "open_files": (resource.RLIMIT_NOFILE, limits.open_files),
    }
    for name, (which, value) in wanted.items():
        try:
            resource.setrlimit(which, (value, value))
            protections.limits[name] = value
        except (OSError, ValueError) as exc:
            protections.lack(f"limit {name}", exc)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def drop_privileges(plan: SandboxPlan, protections: Protections) -> None:
    """As root: switch to the plan's unprivileged uid. Otherwise: give up the namespace's capabilities."""
    try:
        if os.getuid() == 0:
            _drop_bounding_set()
            os.setgroups([])
            os.setresgid(plan.uid, plan.uid, plan.uid)
            os.setresuid(plan.uid, plan.uid, plan.uid)
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            if plan.own_uid:
                protections.uid = (
                    f"{plan.uid} (unprivileged, no capabilities; this role's own, for this job only)"
                )
                protections.leftovers = (
                    "every process of the role's uid is killed when it ends, and again when the job ends"
                )
            else:
                protections.uid = f"{plan.uid} (unprivileged, no capabilities; shared with other roles)"
                protections.lack("per-role uid", f"uid {plan.uid} was not leased for this role and job alone")
        elif "user" in protections.namespaces:
            linux.drop_capabilities()
            protections.uid = f"{os.getuid()} (the worker's own uid, not root; no capabilities)"
        else:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            protections.uid = f"{os.getuid()} (the worker's own uid, not root)"
    except OSError as exc:
        protections.lack("unprivileged uid", exc.strerror or exc)


def _drop_bounding_set() -> None:
    for cap in range(linux._LAST_CAP + 1):
        try:
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise


def filter_system_calls(protections: Protections) -> None:
    """Load the seccomp filter (seccomp_filter.py) into this process and every process it forks."""
    try:
        denied = seccomp_filter.install()
    except seccomp_filter.SeccompUnavailable as exc:
        protections.lack("seccomp filter", exc)
        return
    protections.seccomp = seccomp_filter.summary(denied)


def forbid_tracing(protections: Protections) -> None:
    """PR_SET_DUMPABLE(0) on this process: after the change of uid, which may set it again."""
    try:
        linux.not_dumpable()
    except OSError as exc:
        protections.lack("not dumpable", exc.strerror or exc)
        return
    protections.dumpable = (
        "not dumpable: init, the launcher and the role (until it runs a program of its own): "
        "no core dumps, no tracing, no /proc/<pid>/fd or mem by its own uid"
    )
