"""The sandbox that model code runs in: what the probe reports, what strict mode refuses, what a process
inside can and cannot reach, and the supervisor's side of the pipe (lines, environment, secret paths).

The processes are real: `launch()` is forked from the test process the way the zygote forks it (no
torch needed), and what a role sees is checked from inside the role and sent back on the sandbox's own
progress pipe.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from regctl.registry.settings import Settings
from regctl.worker.engine.runner_location import default_cache_dir
from regctl.worker.sandbox import launch as launch_module
from regctl.worker.sandbox import plan as plan_module
from regctl.worker.sandbox.client import MAX_PENDING, _Lines, allowlisted_env
from regctl.worker.sandbox.plan import JOB_ROOT, Mount, SandboxPlan, outermost
from regctl.worker.sandbox.uids import UidLease, job_uids
from regctl.worker.supervisor.probe import probe
from regctl.worker.supervisor.supervisor import (
    MAX_ERROR_CHARS,
    one_line,
    plan_for,
    sandbox_uid,
    scrub,
    secret_paths,
)

DEADLINE_S = 30.0

needs_root = pytest.mark.skipif(
    os.getuid() != 0, reason="these checks expect the worker to run as root (it drops to the sandbox uid)"
)


def _settings(home: Path, mode: str, **overrides: Any) -> Settings:
    return Settings.from_env({}, home=home, sandbox=mode, **overrides)


def _uid_of(protections: dict[str, Any]) -> int:
    """The numeric uid at the start of the protections' `uid` entry ("64410 (unprivileged, ...)")."""
    return int(protections["uid"].split()[0])


# -- running launch() from a fork of this process ---------------------------------------------------------


@dataclass
class Job:
    """A job's host directories laid out like probe() and WorkDir do: `out` owned by the sandbox uid."""

    root: Path
    out: Path
    model: Path
    scratch: Path
    lease: UidLease | None  # the job's own uids, as the supervisor leases them (None: not root)


@pytest.fixture
def job() -> Iterator[Job]:
    # Not under pytest's tmp_path: its parents are 0700, and a sandbox without a private root runs on
    # the host's paths as the sandbox uid, which must be able to reach `out`.
    root = Path(tempfile.mkdtemp(prefix="regctl-test-sandbox-"))
    out, model, scratch = root / "out", root / "model", root / "root"
    (out / "tmp").mkdir(parents=True)
    model.mkdir()
    (model / "model.py").write_text("# the model's source\n")
    scratch.mkdir()
    os.chmod(root, 0o711)
    os.chmod(model, 0o755)
    os.chmod(model / "model.py", 0o644)
    with job_uids(Settings.from_env({}, home=root / "home").sandbox_uid, True) as lease:
        yield Job(root, out, model, scratch, lease)
    shutil.rmtree(root, ignore_errors=True)


def _mounts(job: Job) -> dict[str, Mount]:
    return {
        "model": Mount(str(job.model), f"{JOB_ROOT}/model"),
        "out": Mount(str(job.out), f"{JOB_ROOT}/out", writable=True),
    }


def _plan(settings: Settings, job: Job, scratch: Path | None = None, role: str = "builder") -> SandboxPlan:
    """A plan as the supervisor makes it: as root, with the uid leased to `role` for this job alone."""
    if job.lease is None or settings.sandbox == "off":
        return plan_for(settings, "cpu", _mounts(job), scratch or job.scratch)
    uid = job.lease.uid(role)
    for path in (job.out, job.out / "tmp"):
        os.chown(path, uid, uid)
    return replace(plan_for(settings, "cpu", _mounts(job), scratch or job.scratch, uid=uid), own_uid=True)


@dataclass
class Launched:
    """What one launch() said on its pipe and how its launcher process ended."""

    lines: list[str]
    status: int
    log: str  # what the launcher and the role wrote to stdout and stderr, for failure messages

    @property
    def first(self) -> str:
        return self.lines[0] if self.lines else ""

    @property
    def protections(self) -> dict[str, Any]:
        assert self.first.startswith("S "), f"the sandbox's first line is not a status line: {self.lines}"
        return json.loads(self.first[2:])

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    def reported(self) -> dict[str, Any]:
        """The JSON a test role sent back as `P <json>`; fails with the role's log if there is none."""
        for line in self.lines[1:]:
            if line.startswith("P {"):
                return json.loads(line[2:])
        raise AssertionError(f"the role reported nothing (status {self.status}); its log:\n{self.log}")


RoleFn = Callable[[dict[str, Any], dict[str, str], int], None]


def _launch(
    plan: SandboxPlan,
    job: Job,
    role: RoleFn | None = None,
    args: dict | None = None,
    handed: dict[str, int] | None = None,
) -> Launched:
    """Fork, and in the child run launch() as the zygote would: role "probe", or `role` in its place,
    with the open files `handed` to it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest, whatever happens
        try:
            os.close(read_end)
            if role is not None:
                from regctl.worker.sandbox import roles

                def run_role(name: str, args: dict, paths: dict, progress_fd: int, threads: int) -> None:
                    role(args, paths, progress_fd)

                roles.run_role = run_role  # this child's copy only
            # like the zygote's: the launcher's own output goes to a log, not to pytest's capture
            log = os.open(job.root / "launcher.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            # A worker may allow core dumps; the sandbox, and the launcher that dies by the role's
            # signal to report it, must forbid them.
            resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))
            os.chdir(job.root)
            launch_module.launch(plan, "probe", args or {}, write_end, handed)
        finally:
            os._exit(99)
    os.close(write_end)
    pidfd = os.pidfd_open(pid)
    try:
        data = _read_to_end(read_end, pid)
        status = _wait(pid, pidfd)
    finally:
        os.close(read_end)
        os.close(pidfd)
    logs = []
    for path in (job.root / "launcher.log", job.out / "role.log"):
        if path.is_file():
            logs.append(f"{path.name}:\n{path.read_text(errors='replace')}")
    return Launched(data.decode("utf-8", "replace").splitlines(), status, "\n".join(logs) or "(no logs)")


def _read_to_end(fd: int, pid: int) -> bytes:
    """Everything on the pipe until every writer is gone; kills the sandbox if that takes too long."""
    deadline = time.monotonic() + DEADLINE_S
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the launcher leads the sandbox's session
            os.waitpid(pid, 0)
            raise AssertionError(
                f"the sandbox's pipe stayed open for {DEADLINE_S}s; got {b''.join(chunks)!r}"
            )
        if select.select([fd], [], [], left)[0]:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _wait(pid: int, pidfd: int) -> int:
    if not select.select([pidfd], [], [], DEADLINE_S)[0]:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the sandbox's launcher did not exit within {DEADLINE_S}s")
    return os.waitpid(pid, 0)[1]


# -- probe() -----------------------------------------------------------------------------------------------


@needs_root
def test_the_probe_in_auto_mode_reports_every_protection_in_force_and_nothing_missing(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home", "auto")
    found = probe(settings)
    assert found["missing"] == [], found
    assert "refused" not in found
    assert found["mode"] == "auto"
    assert {"mount", "network", "pid"} <= set(found["namespaces"])
    assert found["network"].startswith("none")
    assert found["filesystem"].startswith("private read-only root")
    assert found["process_tree"].startswith("own PID namespace")
    uid = _uid_of(found)
    assert uid >= settings.sandbox_uid
    assert uid != 0
    assert "unprivileged" in found["uid"]
    assert found["limits"]["processes"] == settings.sandbox_processes
    assert found["limits"]["file_bytes"] == settings.sandbox_file_mb * 1024 * 1024
    assert set(found["limits"]) == {"memory_bytes", "cpu_seconds", "file_bytes", "processes", "open_files"}


@needs_root
def test_the_probe_in_strict_mode_runs_when_the_machine_allows_every_protection(tmp_path: Path) -> None:
    found = probe(_settings(tmp_path / "home", "strict"))
    assert "refused" not in found, found
    assert found["mode"] == "strict"
    assert found["missing"] == []
    assert "pid" in found["namespaces"]


def test_the_probe_in_off_mode_reports_no_namespaces_and_no_confinement(tmp_path: Path) -> None:
    found = probe(_settings(tmp_path / "home", "off"))
    assert found["mode"] == "off"
    assert found["namespaces"] == []
    assert found["network"] == "host network"
    assert found["filesystem"] == "the worker's file system"
    assert found["limits"] == {}
    assert "sandbox off" in found["environment"]
    assert found["missing"] == []


# -- strict and auto when a protection cannot be put in place ----------------------------------------------


@needs_root
def test_strict_mode_refuses_to_run_when_the_private_file_system_cannot_be_built(
    tmp_path: Path, job: Job
) -> None:
    missing_scratch = job.root / "no-such-directory"
    launched = _launch(_plan(_settings(tmp_path / "home", "strict"), job, missing_scratch), job)
    assert launched.first.startswith("E "), launched.lines
    assert "private file system" in launched.first
    assert len(launched.lines) == 1, "nothing may run after a refusal"
    assert launched.exit_code == launch_module.EXIT_REFUSED
    assert not (job.out / "role.log").exists(), "the role process must never have started"


@needs_root
def test_auto_mode_runs_without_the_private_file_system_and_says_it_is_missing(
    tmp_path: Path, job: Job
) -> None:
    settings = _settings(tmp_path / "home", "auto")
    launched = _launch(_plan(settings, job, job.root / "no-such-directory"), job)
    protections = launched.protections
    assert [m for m in protections["missing"] if m.startswith("private file system")], protections
    assert protections["filesystem"] == "the worker's file system"
    assert "pid" in protections["namespaces"]  # the rest is still in force
    assert _uid_of(protections) >= settings.sandbox_uid
    assert launched.exit_code == 0, launched.log
    assert (job.out / "role.log").is_file(), "the role ran, on the host's paths"


# -- inside the sandbox ------------------------------------------------------------------------------------


def _attempt(action: Callable[[], object]) -> str:
    """'allowed', or the errno name of the OSError the action raised."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, f"OSError {exc}")
    return "allowed"


def _write(path: str) -> None:
    with open(path, "w") as f:
        f.write("planted")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _open_sockets() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [link for link in links if link.startswith("socket:")]


def _look_around(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    """Runs as the role, inside the sandbox: try what model code must not do, and report."""
    try:
        found: dict[str, Any] = {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
            "groups": os.getgroups(),
            "cap_eff": _status_field("CapEff"),
            "no_new_privs": _status_field("NoNewPrivs"),
            "cwd": os.getcwd(),
            "paths": paths,
            "inherited_sockets": _open_sockets(),  # before this role opens any
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "connect_loopback": _attempt(
                lambda: socket.create_connection(("127.0.0.1", args["port"]), timeout=5).close()
            ),
            "connect_redis": _attempt(
                lambda: socket.create_connection(("127.0.0.1", 6379), timeout=5).close()
            ),
            "list_home": _attempt(lambda: os.listdir(args["home"])),
            "read_database": _attempt(lambda: open(args["database"], "rb").close()),
            "list_store": _attempt(lambda: os.listdir(args["store"])),
            "list_host_job": _attempt(lambda: os.listdir(args["host_out"])),
            "read_model": _read(os.path.join(paths["model"], "model.py")),
            "write_out": _attempt(lambda: _write(os.path.join(paths["out"], "written.txt"))),
            "write_tmp": _attempt(lambda: _write("/tmp/written.txt")),
            "write_model": _attempt(lambda: _write(os.path.join(paths["model"], "planted.py"))),
            "write_job_root": _attempt(lambda: _write(f"{JOB_ROOT}/planted")),
            "write_root": _attempt(lambda: _write("/planted")),
            "write_usr": _attempt(lambda: _write("/usr/planted")),
            "write_checkout": _attempt(lambda: _write(os.path.join(args["checkout"], args["plant"]))),
            "env_secrets": sorted(k for k in os.environ if k.startswith(("REGCTL_", "AWS_"))),
            "home_env": os.environ.get("HOME"),
            "rlimit_nproc": resource.getrlimit(resource.RLIMIT_NPROC),
            "rlimit_fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
            "rlimit_core": resource.getrlimit(resource.RLIMIT_CORE),
        }
    except BaseException:  # report it: a crash in here must fail the test, not pass silently
        found = {"crash": traceback.format_exc()}
    os.write(progress_fd, b"P " + json.dumps(found).encode() + b"\n")


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on the host's loopback that accepts connections (the test process can reach it)."""
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        yield server.getsockname()[1]


@needs_root
def test_a_role_inside_the_sandbox_sees_no_secrets_no_network_and_writes_only_its_output(
    tmp_path: Path, job: Job, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGCTL_DATABASE_URL", "postgresql://admin:hunter2@db/registry")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-models")
    home = tmp_path / "home"
    (home / "artifacts").mkdir(parents=True)
    (home / "registry.db").write_text("secret rows")
    settings = _settings(home, "auto", database_url=f"sqlite:///{home / 'registry.db'}")
    checkout = str(Path(launch_module.__file__).resolve().parents[2])  # holds worker/: mounted read-only
    plant = f"planted-by-test-{os.getpid()}"
    socket.create_connection(("127.0.0.1", listener), timeout=5).close()  # reachable from out here
    plan = _plan(settings, job)
    args = {
        "port": listener,
        "home": str(home),
        "database": str(home / "registry.db"),
        "store": settings.artifact_store,
        "host_out": str(job.out),
        "checkout": checkout,
        "plant": plant,
    }
    try:
        launched = _launch(plan, job, _look_around, args)
    finally:
        planted_in_checkout = os.path.exists(os.path.join(checkout, plant))
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(checkout, plant))
    found = launched.reported()
    assert "crash" not in found, found.get("crash")
    assert launched.exit_code == 0, launched.log
    assert launched.protections["missing"] == []

    assert found["uid"] == found["euid"] == found["gid"] == plan.uid
    assert plan.uid >= settings.sandbox_uid
    assert found["groups"] == []
    assert int(found["cap_eff"], 16) == 0
    assert found["no_new_privs"] == "1"
    assert found["pids"] == [1, 2], "only its own init and itself in its PID namespace"

    assert found["inherited_sockets"] == [], "the listener (like the zygote's control socket) stays outside"
    assert found["connect_loopback"] == "ENETUNREACH", "its own network namespace has no loopback either"
    assert found["connect_redis"] == "ENETUNREACH"

    assert found["list_home"] == "ENOENT"
    assert found["read_database"] == "ENOENT"
    assert found["list_store"] == "ENOENT"
    assert found["list_host_job"] == "ENOENT"
    assert found["env_secrets"] == []

    assert found["paths"] == {"model": f"{JOB_ROOT}/model", "out": f"{JOB_ROOT}/out"}
    assert found["cwd"] == found["home_env"] == f"{JOB_ROOT}/out"
    assert found["read_model"] == "# the model's source\n"
    assert found["write_out"] == "allowed"
    assert (job.out / "written.txt").read_text() == "planted"
    assert found["write_tmp"] == "allowed"
    assert (job.out / "tmp" / "written.txt").is_file(), "/tmp inside is the job's out/tmp"
    for where in ("write_model", "write_job_root", "write_root", "write_usr"):
        assert found[where] == "EROFS", (where, found[where])  # read-only mounts, whatever the uid
    assert found["write_checkout"] != "allowed"
    assert not (job.model / "planted.py").exists()
    assert not planted_in_checkout

    assert found["rlimit_nproc"] == [plan.limits.processes] * 2
    assert found["rlimit_fsize"] == [plan.limits.file_bytes] * 2
    assert found["rlimit_core"] == [0, 0]


def _look_at_masks(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    found: dict[str, Any] = {
        "home": _attempt(lambda: os.listdir(args["home"])),
        "cache": _attempt(lambda: _read(args["cache"])),
    }
    try:
        found["home_listing"] = os.listdir(args["home"])
        found["cache_text"] = _read(args["cache"])
    except OSError as exc:
        found["error"] = str(exc)
    os.write(progress_fd, b"P " + json.dumps(found).encode() + b"\n")


@needs_root
def test_a_secret_path_inside_a_visible_tree_is_covered(job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    # The package folders are mounted, so a registry home or LibTorch cache inside one would be
    # visible; the sandbox covers a directory with an empty tmpfs and a file with /dev/null. Both
    # stand-ins are only read, never written.
    package = Path(plan_module.__file__).resolve().parent
    home, cache = package.parent / "engine", package / "plan.py"
    assert os.listdir(home) and cache.read_text(), "the stand-ins must have content on the host"
    monkeypatch.setenv("REGCTL_LIBTORCH_CACHE", str(cache))
    plan = _plan(_settings(home, "auto"), job)
    assert {str(home), str(cache)} <= set(plan.masks)
    launched = _launch(plan, job, _look_at_masks, {"home": str(home), "cache": str(cache)})
    found = launched.reported()
    assert launched.exit_code == 0, launched.log
    assert launched.protections["missing"] == []
    # ENOENT when the package is out of sight: a checkout under /tmp is hidden by the job's /tmp
    if not str(package).startswith(tempfile.gettempdir() + "/"):
        assert found["home"] == "allowed", found
    if found["home"] == "allowed":
        assert found["home_listing"] == []
        assert found["cache_text"] == ""
    else:
        assert found["home"] == "ENOENT", found
        assert found["cache"] == "ENOENT", found


def _leave_a_process_behind(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    started_r, started_w = os.pipe()
    if os.fork() == 0:  # holds the progress pipe's write end for as long as it lives
        os.setsid()  # out of the launcher's process group: only the PID namespace can end it
        os.write(progress_fd, b'P {"orphan": %d}\n' % os.getpid())
        os.write(started_w, b"1")
        select.select([], [], [])  # blocks until killed
        os._exit(0)
    os.close(started_w)
    assert os.read(started_r, 1) == b"1", "the orphan did not start"
    os.write(progress_fd, b'P {"role": "done"}\n')


@needs_root
def test_a_process_the_role_leaves_behind_dies_with_the_sandbox(tmp_path: Path, job: Job) -> None:
    launched = _launch(_plan(_settings(tmp_path / "home", "auto"), job), job, _leave_a_process_behind)
    # _launch returns only once every holder of the pipe is gone, the orphan included
    assert launched.exit_code == 0, launched.log
    assert any(line.startswith('P {"orphan"') for line in launched.lines), launched.lines
    assert launched.protections["process_tree"].startswith("own PID namespace")


def _block(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    os.write(progress_fd, b'P {"blocking": %d}\n' % os.getpid())
    select.select([], [], [])  # until killed


@contextlib.contextmanager
def _running(plan: SandboxPlan, job: Job, role: Callable = _block) -> Iterator[tuple[int, int]]:
    """A sandbox whose role blocks: yields the launcher's pid and the progress pipe once the role said so;
    kills it all after."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            from regctl.worker.sandbox import roles

            roles.run_role = lambda name, args, paths, fd, threads: role(args, paths, fd)
            log = os.open(job.root / "launcher.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(job.root)
            launch_module.launch(plan, "probe", {}, write_end)
        finally:
            os._exit(99)
    os.close(write_end)
    try:
        seen = b""
        deadline = time.monotonic() + DEADLINE_S
        while b"blocking" not in seen and time.monotonic() < deadline:
            if select.select([read_end], [], [], 1)[0]:
                data = os.read(read_end, 4096)
                if not data:
                    break
                seen += data
        assert b"blocking" in seen, (seen, _logs(job))
        yield pid, read_end
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _read_to_end(read_end, pid)
        os.close(read_end)


def _logs(job: Job) -> str:
    path = job.root / "launcher.log"
    return path.read_text(errors="replace") if path.is_file() else "(no launcher log)"


@needs_root
def test_the_role_dies_when_its_launcher_is_killed_even_after_dropping_privileges(
    tmp_path: Path, job: Job
) -> None:
    # Dropping privileges clears the kernel's parent-death signal; the init must arm it again, or
    # it and the role outlive a killed launcher (as they would a killed zygote or worker).
    plan = _plan(_settings(tmp_path / "home", "auto"), job)
    with _running(plan, job) as (launcher, read_end):
        os.kill(launcher, signal.SIGKILL)  # the launcher alone, not its process group
        os.waitpid(launcher, 0)
        # the pipe reaches its end only once the role, which holds it, is gone too
        rest = _read_to_end(read_end, launcher)
        assert b"blocking" not in rest


def _exit_three(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    sys.exit(3)


def _kill_itself(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _write_too_much(args: dict[str, Any], paths: dict[str, str], progress_fd: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; a model's C++ code would not
    with open(os.path.join(paths["out"], "big.bin"), "wb") as f:
        f.write(b"x" * (2 * 1024 * 1024))


@needs_root
@pytest.mark.parametrize(
    ("role", "exited", "signalled"),
    [
        (_exit_three, 3, None),
        (_kill_itself, None, signal.SIGKILL),
        (_write_too_much, None, signal.SIGXFSZ),
    ],
    ids=["exit code", "killed", "over the file size limit"],
)
def test_the_launcher_ends_the_way_the_role_ended(
    tmp_path: Path, job: Job, role: RoleFn, exited: int | None, signalled: int | None
) -> None:
    settings = _settings(tmp_path / "home", "auto", sandbox_file_mb=1)
    launched = _launch(_plan(settings, job), job, role)
    assert launched.protections["limits"]["file_bytes"] == 1024 * 1024
    if exited is not None:
        assert launched.exit_code == exited, launched.log
    else:
        assert os.WIFSIGNALED(launched.status), launched.status
        assert os.WTERMSIG(launched.status) == signalled
    if role is _write_too_much:
        assert (job.out / "big.bin").stat().st_size == 1024 * 1024, "the write stopped at the limit"


# -- the supervisor's side of the pipe ---------------------------------------------------------------------


def test_the_first_line_is_the_sandboxs_status_and_a_later_status_line_from_the_role_is_ignored() -> None:
    lines = _Lines()
    status = {"mode": "auto", "missing": []}
    assert lines.feed(b"S " + json.dumps(status).encode() + b"\nP loading model\n") == ["loading model"]
    forged = {"mode": "auto", "missing": [], "uid": "0 (forged by the role)"}
    assert lines.feed(b"S " + json.dumps(forged).encode() + b"\n") == []
    assert lines.feed(b"E refused after all\n") == []
    assert lines.protections == status
    assert lines.refused is None


def test_an_error_line_first_is_the_refusal_and_later_lines_cannot_replace_it() -> None:
    lines = _Lines()
    assert lines.feed(b"E private file system: No such file or directory\nS {}\n") == []
    assert lines.refused == "private file system: No such file or directory"
    assert lines.protections is None


def test_progress_lines_split_across_reads_become_progress_and_other_lines_are_dropped() -> None:
    lines = _Lines()
    assert lines.feed(b'S {"mode": "off"}\nP buil') == []
    assert lines.feed(b"ding battery\nnoise from the role\nP case 1/") == ["building battery"]
    assert lines.feed(b"8\n") == ["case 1/8"]
    assert lines.feed("P ünïcode \udcff".encode("utf-8", "surrogateescape") + b"\n") == ["ünïcode \ufffd"]
    assert lines.protections == {"mode": "off"}


def test_a_line_without_a_newline_longer_than_the_cap_is_dropped() -> None:
    lines = _Lines()
    lines.feed(b'S {"mode": "auto"}\n')
    assert lines.feed(b"P " + b"x" * MAX_PENDING) == []
    assert len(lines.pending) == 0, "the role must not make the supervisor hold an unbounded line"
    assert lines.feed(b"still the same line\nP next\n") == ["next"]
    assert lines.protections == {"mode": "auto"}


def test_a_status_line_that_is_not_json_leaves_no_protections() -> None:
    lines = _Lines()
    lines.feed(b"S [not, json\n")
    assert lines.protections is None
    assert lines.refused is None


def test_the_allowlisted_environment_drops_registry_settings_cloud_keys_and_tokens() -> None:
    source = {
        "PATH": "/usr/bin:/bin",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "LANG": "C.UTF-8",
        "REGCTL_DATABASE_URL": "postgresql://u:p@db/x",
        "REGCTL_BROKER_URL": "redis://:secret@redis:6379/0",
        "REGCTL_HOME": "/var/lib/regctl",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "GITHUB_TOKEN": "ghp_x",
        "HF_TOKEN": "hf_x",
        "HOME": "/root",
        "SSH_AUTH_SOCK": "/tmp/agent",
    }
    assert allowlisted_env(source) == {
        "PATH": "/usr/bin:/bin",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "LANG": "C.UTF-8",
    }


def test_the_allowlisted_environment_reads_this_processs_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGCTL_DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    env = allowlisted_env()
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert "REGCTL_DATABASE_URL" not in env


def test_plans_carry_only_the_allowlisted_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("PATH", "/usr/bin")
    plan = plan_for(_settings(tmp_path / "home", "auto"), "cpu", {}, tmp_path / "root")
    assert plan.env["PATH"] == "/usr/bin"
    assert not [k for k in plan.env if k.startswith(("AWS_", "REGCTL_"))]
    assert SandboxPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


# -- secret paths and masks --------------------------------------------------------------------------------


def test_secret_paths_hold_the_home_the_store_the_database_directory_and_the_libtorch_cache(
    tmp_path: Path,
) -> None:
    settings = _settings(
        tmp_path / "home",
        "auto",
        database_url=f"sqlite:///{tmp_path / 'db' / 'registry.db'}",
        artifact_store=str(tmp_path / "store"),
    )
    secrets = secret_paths(settings)
    assert str(tmp_path / "home") in secrets
    assert str(tmp_path / "store") in secrets
    assert str(tmp_path / "db") in secrets
    assert str(default_cache_dir()) in secrets
    assert os.path.expanduser("~") in secrets
    assert secrets == sorted(set(secrets))
    assert all(os.path.isabs(p) for p in secrets)


def test_a_file_url_store_is_a_secret_path_and_a_remote_store_is_not(tmp_path: Path) -> None:
    local = secret_paths(_settings(tmp_path / "home", "auto", artifact_store=f"file://{tmp_path / 'fs'}"))
    assert str(tmp_path / "fs") in local
    remote = secret_paths(_settings(tmp_path / "home", "auto", artifact_store="s3://bucket/prefix"))
    assert not [p for p in remote if "bucket" in p]


def test_a_sqlite_database_in_the_working_directory_makes_that_directory_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secrets = secret_paths(_settings(tmp_path / "home", "auto", database_url="sqlite:///registry.db"))
    assert str(tmp_path) in secrets


def test_outermost_keeps_only_paths_not_inside_another() -> None:
    paths = ["/a/b", "/a", "/ab", "/c/d/e", "/c/d", "/a/b/c", "/a", "/x/"]
    assert outermost(paths) == ["/a", "/ab", "/c/d", "/x/"]
    assert outermost({"/", "/usr", "/home/u"}) == ["/"]
    assert outermost([]) == []


# -- error text fit for a database and a terminal ---------------------------------------------------------


def test_one_line_flattens_whitespace_and_escapes_control_characters_visibly() -> None:
    text = "model\x00 failed\n  at line 3\r\n\tbecause \x1b[31mred\x1b[0m\x7f\x08!"
    assert one_line(text) == "model\\x00 failed at line 3 because \\x1b[31mred\\x1b[0m\\x7f\\x08!"
    assert one_line(None) is None


def test_one_line_escapes_bidi_overrides_and_zero_width_characters() -> None:
    assert (
        one_line("ValueError: [/x] \u202egnp.exe\u200b\ufeff")
        == "ValueError: [/x] \\u202egnp.exe\\u200b\\ufeff"
    )


def test_one_line_of_an_enormous_error_is_bounded_and_says_it_was_cut() -> None:
    flat = one_line("\x1b" * 10_000_000)
    assert flat is not None and len(flat) == MAX_ERROR_CHARS and flat.endswith("…")
    assert one_line(" " * 1_000_000 + "x") == "…"  # cut before the word: said so


def test_one_line_bounds_the_length_of_an_error() -> None:
    flat = one_line("word " * 10_000)
    assert flat is not None
    assert len(flat) == MAX_ERROR_CHARS
    assert flat.endswith("…")
    exact = "y" * MAX_ERROR_CHARS
    assert one_line(exact) == exact


def test_scrub_escapes_nul_and_control_characters_in_every_string_of_a_report() -> None:
    report = {
        "error\x00": "bad\x00 thing\x1b]0;title\x07",
        "nested": {"list": ["a\x00b", 3, None, {"k": "\x01\x02c\u202e"}]},
        "ok": False,
        "ratio": 0.5,
    }
    assert scrub(report) == {
        "error\\x00": "bad\\x00 thing\\x1b]0;title\\x07",
        "nested": {"list": ["a\\x00b", 3, None, {"k": "\\x01\\x02c\\u202e"}]},
        "ok": False,
        "ratio": 0.5,
    }
    assert "\x00" not in json.dumps(scrub(report), ensure_ascii=False)


def test_scrub_keeps_the_line_breaks_of_multi_line_details() -> None:
    # a traceback in a report stays readable; one_line is what flattens a job's error
    assert scrub({"detail": "Traceback:\n  line 1\n"}) == {"detail": "Traceback:\n  line 1\n"}


def test_the_sandbox_uid_is_one_of_the_unprivileged_range_and_none_when_off(tmp_path: Path) -> None:
    auto = _settings(tmp_path / "home", "auto")
    uid = sandbox_uid(auto)
    if os.getuid() == 0:
        assert uid is not None
        assert auto.sandbox_uid <= uid < auto.sandbox_uid + 1000
    else:
        assert uid is None
    assert sandbox_uid(replace(auto, sandbox="off")) is None


def test_a_cuda_job_gets_the_gpu_device_nodes_and_a_cpu_job_none(tmp_path: Path) -> None:
    from regctl.worker.supervisor.supervisor import gpu_device_nodes

    settings = _settings(tmp_path / "home", "auto")
    out = Mount(str(tmp_path / "out"), "/job/out", writable=True)
    cuda = plan_for(settings, "cuda", {"out": out}, tmp_path / "root")
    cpu = plan_for(settings, "cpu", {"out": out}, tmp_path / "root")
    assert cuda.devices == gpu_device_nodes()
    assert all(d.startswith("/dev/nvidia") for d in cuda.devices)
    assert cpu.devices == []
