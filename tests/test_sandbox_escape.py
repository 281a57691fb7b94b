"""A sandbox a role cannot climb out of: seccomp, not dumpable, no stray descriptors, uids per job and role,
nothing left running, read-only submounts, and none of an editable checkout's other files.

Real processes throughout: `launch()` forked from the test process as the zygote forks it (the
harness of tests/test_sandbox.py), real uid leases, real kill sweeps. What a role sees is checked
from inside the role and sent back on the progress pipe; what it must not hold (its init's
descriptors, its dumpable flag) is checked from outside, by the test process as root.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from regctl.worker.sandbox import launch as launch_module
from regctl.worker.sandbox import linux
from regctl.worker.sandbox.uids import UidLeaseError, lease_uids, processes_of, sweep
from regctl.worker.sandbox.zygote import Zygote
from regctl.worker.supervisor.probe import describe, probe
from tests.conftest import wait_until
from tests.hostile import processes_with
from tests.test_sandbox import (
    DEADLINE_S,
    Job,
    _launch,
    _plan,
    _running,
    _settings,
    job,
    needs_root,
)

__all__ = ["job"]  # the fixture, shared with tests/test_sandbox.py

CHECKOUT = Path(__file__).resolve().parents[1]
# System calls glibc has no wrapper for, by architecture.
SYSCALLS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "clone3": 435},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "clone3": 435},
}[os.uname().machine]
PTRACE_ATTACH = 16
KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_USER_KEYRING = -4
CLONE_NEWUSER = 0x10000000


# Leases these tests take from a folder of their own start here, clear of the range real jobs lease
# (64000-64999 by default): leasing a block sweeps its uids, which must never kill the sandboxed
# processes of a job that another test (or another pytest-xdist worker) runs meanwhile.
PRIVATE_UIDS = 66000


def _marker() -> str:
    """A unique argument for sleep: a duration of about an hour that no other process has."""
    return f"3601.{uuid.uuid4().int % 10**12:012d}"


def _errno_of(result: int) -> str:
    """'allowed' for a call that succeeded, else the errno's name."""
    return "allowed" if result != -1 else errno.errorcode.get(ctypes.get_errno(), "?")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _report(progress_fd: int, found: dict[str, Any]) -> None:
    os.write(progress_fd, b"P " + json.dumps(found).encode() + b"\n")


def _guarded(role: Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]) -> Callable:
    """A role that reports what `role` found, or its traceback (a crash must fail the test, not pass)."""

    def run(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
        try:
            found = role(args, paths)
        except BaseException:
            found = {"crash": traceback.format_exc()}
        _report(progress_fd, found)

    return run


# -- seccomp -------------------------------------------------------------------------------------------------


def _try_the_forbidden(args: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    libc = _libc()
    # A sibling of our own uid that runs a program of its own: dumpable, so only seccomp stops us.
    sibling = subprocess.Popen(["/bin/sleep", "60"])
    try:
        local = ctypes.create_string_buffer(16)
        iov_local = (ctypes.c_void_p * 2)(ctypes.cast(local, ctypes.c_void_p), 16)
        iov_remote = (ctypes.c_void_p * 2)(0x400000, 16)
        found = {
            "ptrace_init": _errno_of(libc.ptrace(PTRACE_ATTACH, 1, 0, 0)),
            "ptrace_parent": _errno_of(libc.ptrace(PTRACE_ATTACH, os.getppid(), 0, 0)),
            "ptrace_sibling": _errno_of(libc.ptrace(PTRACE_ATTACH, sibling.pid, 0, 0)),
            "process_vm_readv": _errno_of(libc.process_vm_readv(sibling.pid, iov_local, 1, iov_remote, 1, 0)),
            "add_key": _errno_of(
                libc.syscall(
                    SYSCALLS["add_key"], b"user", b"regctl-test-key", b"secret", 6, KEY_SPEC_USER_KEYRING
                )
            ),
            "keyctl": _errno_of(libc.syscall(SYSCALLS["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, None)),
            "request_key": _errno_of(
                libc.syscall(SYSCALLS["request_key"], b"user", b"regctl-test-key", None, 0)
            ),
            "unshare_user": _errno_of(libc.unshare(CLONE_NEWUSER)),
            "clone_newuser": _errno_of(libc.syscall(56, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0))
            if os.uname().machine == "x86_64"
            else "EPERM",
            "clone3": _errno_of(libc.syscall(SYSCALLS["clone3"], None, 0)),
            "mount": _errno_of(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None)),
            "fork_still_works": os.waitpid(_fork_and_exit(7), 0)[1] >> 8,
            "seccomp_mode": _status_field("Seccomp"),
        }
    finally:
        sibling.kill()
        sibling.wait()
    return found


def _fork_and_exit(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid


def _status_field(name: str, pid: str = "self") -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


@needs_root
def test_a_role_can_neither_trace_nor_read_another_process_nor_touch_keys_namespaces_or_mounts(
    tmp_path: Path, job: Job
) -> None:
    launched = _launch(_plan(_settings(tmp_path / "home", "auto"), job), job, _guarded(_try_the_forbidden))
    found = launched.reported()
    assert "crash" not in found, found.get("crash")
    assert launched.exit_code == 0, launched.log
    for call in (
        "ptrace_init",
        "ptrace_parent",
        "ptrace_sibling",
        "process_vm_readv",
        "add_key",
        "keyctl",
        "request_key",
        "unshare_user",
        "clone_newuser",
        "mount",
    ):
        assert found[call] == "EPERM", (call, found)
    assert found["clone3"] == "ENOSYS", "glibc must fall back to clone(), whose flags the filter sees"
    assert found["fork_still_works"] == 7
    assert found["seccomp_mode"] == "2", "a filter is loaded (mode 2)"
    assert "ptrace" in launched.protections["seccomp"]
    assert "add_key" in launched.protections["seccomp"]


# -- not dumpable, no descriptor to the worker's output ------------------------------------------------------


def _look_at_init(args: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    def fd_of_init() -> str:
        try:
            return os.readlink("/proc/1/fd/1")
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]

    def write_init_stdout() -> str:
        try:
            with open("/proc/1/fd/1", "w") as f:
                f.write("\x1b]0;owned\x07\x1b[2J verified OK\n")
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "allowed"

    return {
        "dumpable": linux.dumpable(),
        "init_fd": fd_of_init(),
        "write_init_stdout": write_init_stdout(),
        "init_mem": _attempt_open("/proc/1/mem"),
        "init_environ": _attempt_open("/proc/1/environ"),
    }


def _attempt_open(path: str) -> str:
    try:
        open(path, "rb").close()
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "allowed"


@needs_root
def test_the_role_and_its_init_are_not_dumpable_so_the_role_cannot_reach_the_inits_descriptors(
    tmp_path: Path, job: Job
) -> None:
    launched = _launch(_plan(_settings(tmp_path / "home", "auto"), job), job, _guarded(_look_at_init))
    found = launched.reported()
    assert "crash" not in found, found.get("crash")
    assert found["dumpable"] is False
    # the init has exec'd its waiter by now, which set it not dumpable again before the role went on
    for what in ("init_fd", "write_init_stdout", "init_mem", "init_environ"):
        assert found[what] == "EACCES", (what, found)
    assert launched.protections["dumpable"].startswith("not dumpable")


def _block(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    os.write(progress_fd, b'P {"blocking": true}\n')
    select.select([], [], [])  # until killed


def _children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if int(_status_field("PPid", name) or 0) == pid:
                    found.append(int(name))
    return found


def _std_streams(pid: int) -> list[str]:
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)]


@needs_root
def test_the_launcher_and_init_hold_no_descriptor_to_the_workers_output_and_nothing_is_dumpable(
    tmp_path: Path, job: Job
) -> None:
    plan = _plan(_settings(tmp_path / "home", "auto"), job)
    with _running(plan, job) as (launcher, _):
        init = wait_until(lambda: _children(launcher), DEADLINE_S, "the sandbox's init")[0]
        role = wait_until(lambda: _children(init), DEADLINE_S, "the role")[0]
        assert _std_streams(launcher) == ["/dev/null"] * 3
        assert _std_streams(init) == ["/dev/null"] * 3
        role_streams = _std_streams(role)
        assert role_streams[0] == "/dev/null"
        assert role_streams[1].endswith("/role.log") and role_streams[2].endswith("/role.log")
        worker_log = str(job.root / "launcher.log")
        for pid in (launcher, init, role):
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            assert worker_log not in links, (pid, links)
            # A process that is not dumpable has its /proc files owned by root, whatever its uid.
            assert os.stat(f"/proc/{pid}/fd").st_uid == 0, pid
        assert int(_status_field("Uid", str(role)).split()[0]) == plan.uid
        assert int(_status_field("Uid", str(init)).split()[0]) == plan.uid
        assert _status_field("Seccomp", str(init)) == "2"
        assert _status_field("Seccomp", str(role)) == "2"


# -- nothing left running ------------------------------------------------------------------------------------


def _daemonize(args: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """setsid, a new process group, a double fork, then exec: the classic escape from a job."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.setpgid(0, 0)
            os.execv("/bin/sleep", ["sleep", args["marker"]])
        os._exit(0)
    deadline = time.monotonic() + DEADLINE_S
    while not processes_with(args["marker"]) and time.monotonic() < deadline:
        time.sleep(0.05)  # a poll with a deadline: the grandchild execs on its own time
    return {"started": bool(processes_with(args["marker"]))}


@needs_root
def test_a_process_that_daemonizes_does_not_outlive_its_role(tmp_path: Path, job: Job) -> None:
    marker = _marker()
    plan = _plan(_settings(tmp_path / "home", "auto"), job)
    launched = _launch(plan, job, _guarded(_daemonize), {"marker": marker})
    assert launched.reported() == {"started": True}, launched.log
    wait_until(lambda: not processes_with(marker), 10, "the daemonized process to be gone")
    assert not processes_of([plan.uid])


def _escaped_process(uid: int, marker: str) -> None:
    """A process of `uid` outside any sandbox: what an escape from the PID namespace would leave."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", marker])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    wait_until(lambda: processes_with(marker), 10, "the escaped process to start")


@needs_root
def test_when_a_role_ends_the_zygote_kills_every_process_of_its_leased_uid(tmp_path: Path, job: Job) -> None:
    assert job.lease is not None
    plan = _plan(_settings(tmp_path / "home", "auto"), job)
    marker = _marker()
    _escaped_process(plan.uid, marker)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = os.fork()
    if zygote == 0:  # the real zygote's loop, without torch (the role here is the probe's: nothing)
        try:
            ours.close()
            Zygote(theirs).serve()
        finally:
            os._exit(0)
    theirs.close()
    try:
        read_end, write_end = os.pipe()
        message = {"op": "run", "role": "probe", "plan": plan.to_json(), "args": {}}
        socket.send_fds(ours, [json.dumps(message).encode()], [write_end])
        os.close(write_end)
        started = json.loads(ours.recv(1 << 16))["started"]
        ours.settimeout(DEADLINE_S)
        exited = json.loads(ours.recv(1 << 16))
        os.close(read_end)
        assert exited == {"exited": started, "status": 0}
        # the zygote swept before it answered
        assert not processes_with(marker), "a process of the role's uid outlived the role"
    finally:
        ours.close()
        os.waitpid(zygote, 0)
        sweep([plan.uid])


# -- uid leases ----------------------------------------------------------------------------------------------


def test_two_leases_never_share_a_uid_within_one_process_or_across_processes(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("uid leases are made by a root worker")
    leases_dir = tmp_path / "leases"
    held = [lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=8) for _ in range(3)]
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            lease = lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=8)
            os.write(ready_w, json.dumps(lease.uids).encode())
            os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        other = json.loads(os.read(ready_r, 4096))
        ours = [uid for lease in held for uid in lease.uids]
        roles = ("builder", "reference", "judge", "aoti", "executorch", "onnx")
        assert len(set(ours)) == len(ours) == 3 * len(roles)
        assert not set(ours) & set(other)
        assert held[0].by_role == dict(zip(roles, held[0].uids, strict=True))
        assert all(PRIVATE_UIDS <= uid < PRIVATE_UIDS + 8 * len(roles) for uid in ours + other)
    finally:
        os.write(done_w, b"x")
        os.waitpid(child, 0)
        for lease in held:
            lease.release()


def test_a_block_whose_holder_died_is_free_again_and_a_full_range_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("uid leases are made by a root worker")
    leases_dir = tmp_path / "leases"
    child = os.fork()
    if child == 0:
        try:
            lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=1)
            os.kill(os.getpid(), signal.SIGKILL)  # dies holding it, never released
        finally:
            os._exit(1)
    os.waitpid(child, 0)
    with lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=1) as lease:
        assert lease.uids == [PRIVATE_UIDS + i for i in range(6)]
        with pytest.raises(UidLeaseError, match="all 1 blocks"):
            lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=1)


def test_a_lease_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("uid leases are made by a root worker")
    leases_dir = tmp_path / "open"
    leases_dir.mkdir()
    os.chmod(leases_dir, 0o777)
    with pytest.raises(UidLeaseError, match="only uid 0 can write"):
        lease_uids(PRIVATE_UIDS, lease_dir=leases_dir)


def test_leasing_and_releasing_a_block_kills_what_its_uids_left_running(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("uid leases are made by a root worker")
    leases_dir = tmp_path / "leases"
    before = _marker()
    _escaped_process(PRIVATE_UIDS + 2, before)  # left by a holder that died: block 0, third role
    lease = lease_uids(PRIVATE_UIDS, lease_dir=leases_dir, blocks=1)
    try:
        assert not processes_with(before), "acquiring a block must end its uids' processes first"
        during = _marker()
        _escaped_process(lease.uid("aoti"), during)
    finally:
        lease.release()
    assert not processes_with(during), "releasing a block must end its uids' processes"


# -- read-only submounts, the checkout out of sight ----------------------------------------------------------


def _write_below(args: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    target = os.path.join(paths["model"], "sub", "planted")
    try:
        with open(target, "w") as f:
            f.write("planted")
    except OSError as exc:
        return {"write": errno.errorcode[exc.errno or 0], "listing": os.listdir(os.path.dirname(target))}
    return {"write": "allowed"}


@needs_root
def test_a_file_system_mounted_inside_a_read_only_mount_is_read_only_too(tmp_path: Path, job: Job) -> None:
    sub = job.model / "sub"
    sub.mkdir()
    linux.mount("tmpfs", str(sub), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=1m,mode=777")
    try:
        (sub / "there.txt").write_text("mounted")
        launched = _launch(_plan(_settings(tmp_path / "home", "auto"), job), job, _guarded(_write_below))
        found = launched.reported()
        assert found == {"write": "EROFS", "listing": ["there.txt"]}, found
        assert not (sub / "planted").exists()
    finally:
        linux.umount(str(sub))


def _look_at_the_checkout(args: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    checkout = args["checkout"]
    imported = subprocess.run(
        [sys.executable, "-c", "import regctl.worker.sandbox.plan, regctl.registry.spec; print('imported')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {
        "git_config": os.path.exists(os.path.join(checkout, ".git", "config")),
        "pyproject": os.path.exists(os.path.join(checkout, "pyproject.toml")),
        "tests": os.path.exists(os.path.join(checkout, "tests")),
        "worker": os.path.isdir(os.path.join(checkout, "worker")),
        "import": imported.stdout.strip() or imported.stderr[-2000:],
    }


@needs_root
def test_an_editable_checkout_shows_only_its_package_folders_and_regctl_still_imports(
    tmp_path: Path, job: Job
) -> None:
    if not (CHECKOUT / ".git").exists() or not (CHECKOUT / "worker").is_dir():
        pytest.skip("not run from an editable checkout")
    launched = _launch(
        _plan(_settings(tmp_path / "home", "auto"), job),
        job,
        _guarded(_look_at_the_checkout),
        {"checkout": str(CHECKOUT)},
    )
    found = launched.reported()
    assert "crash" not in found, found.get("crash")
    assert found["import"] == "imported", found["import"]
    if not str(CHECKOUT).startswith("/tmp/"):  # a checkout under /tmp is hidden by the job's /tmp
        assert found["worker"] is True
    assert found["git_config"] is False
    assert found["pyproject"] is False
    assert found["tests"] is False


# -- what the probe and strict mode say ----------------------------------------------------------------------


@needs_root
def test_the_probe_lists_every_new_protection_and_off_mode_has_none(tmp_path: Path) -> None:
    found = probe(_settings(tmp_path / "home", "auto"))
    assert found["missing"] == [], found
    assert "ptrace" in found["seccomp"] and "keyctl" in found["seccomp"]
    assert found["dumpable"].startswith("not dumpable")
    assert "/dev/null" in found["descriptors"]
    assert "this role's own, for this job only" in found["uid"]
    assert "every process of the role's uid is killed" in found["leftovers"]
    assert "submounts read-only too" in found["filesystem"]
    text = "\n".join(describe(found))
    for label in ("seccomp:", "tracing:", "descriptors:", "leftovers:"):
        assert label in text
    off = probe(_settings(tmp_path / "home", "off"))
    assert off["seccomp"] == "none"
    assert off["dumpable"].startswith("dumpable")
    assert "own" not in off["uid"]


@needs_root
def test_strict_mode_refuses_a_role_whose_uid_was_not_leased_for_it_alone(tmp_path: Path, job: Job) -> None:
    plan = replace(_plan(_settings(tmp_path / "home", "strict"), job), own_uid=False)
    launched = _launch(plan, job)
    assert launched.first.startswith("E per-role uid"), launched.lines
    assert launched.exit_code == launch_module.EXIT_REFUSED
    assert not (job.out / "role.log").exists(), "the role process must never have started"


def test_a_block_that_holds_nobody_or_minus_one_is_never_leased(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("uid leases are made by a root worker")
    # blocks of six roles from 65528: 65528-65533, 65534-65539 (nobody, 65535), 65540-65545
    leases = [lease_uids(65528, lease_dir=tmp_path / "leases", blocks=3) for _ in range(2)]
    try:
        assert sorted(lease.uids[0] for lease in leases) == [65528, 65540]
        with pytest.raises(UidLeaseError):
            lease_uids(65528, lease_dir=tmp_path / "leases", blocks=3)
    finally:
        for lease in leases:
            lease.release()


@needs_root
def test_regctl_sandbox_shows_the_new_protections_and_strict_refuses_nothing_here(tmp_path: Path) -> None:
    regctl = str(Path(sys.executable).with_name("regctl"))
    env = {**os.environ, "REGCTL_HOME": str(tmp_path / "home"), "REGCTL_SANDBOX": "strict"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([regctl, *args], env=env, capture_output=True, text=True, timeout=120)

    shown = run("sandbox")
    assert shown.returncode == 0, shown.stderr
    labels = ("seccomp:      Docker-like filter", "tracing:      not dumpable", "descriptors:", "leftovers:")
    for label in labels:
        assert label in shown.stdout, shown.stdout
    assert "NOT IN FORCE" not in shown.stdout
    as_json = run("sandbox", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert "clone3 (ENOSYS)" in json.loads(as_json.stdout)["seccomp"]
