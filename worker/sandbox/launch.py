"""Starting one role process in its sandbox, from a fresh fork of the zygote.

Three processes per role, each forked (no exec, so torch stays imported in the role); the launcher
and the init exec a bare interpreter once they only wait (waiters.py), so they stop holding torch:

    launcher  (the zygote's child) new session; unshare(); waits, then dies the way the role died
    init      PID 1 of the new PID namespace; builds the private root, sets the limits, drops
              privileges, forks the role and reaps; when it exits the kernel kills everything left
    role      runs the model side or the judge, writing files and progress lines

Progress and status travel as lines on a pipe the supervisor passed in: first the init writes
`S <protections json>` (or `E <reason>` when strict mode refuses), then the role writes
`P <text>` lines. The role's exit status is reproduced by the launcher, so the zygote sees the
role's own exit code or signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import traceback
from typing import NoReturn

from regctl.worker.sandbox import linux
from regctl.worker.sandbox.confine import (
    Protections,
    SandboxRefused,
    apply_limits,
    build_private_root,
    drop_privileges,
    enter_namespaces,
)
from regctl.worker.sandbox.plan import SandboxPlan
from regctl.worker.sandbox.waiters import become, init_waits, launcher_waits

EXIT_REFUSED = 90  # strict mode could not set up the sandbox
EXIT_ROLE_ERROR = 91  # the role's own code raised (an engine bug, never the model's error)


def launch(plan: SandboxPlan, role: str, args: dict, progress_fd: int) -> NoReturn:
    """Run in the zygote's child: confine, run `role`, exit with the role's status. Never returns."""
    try:
        _launcher(plan, role, args, progress_fd)
    except BaseException:
        traceback.print_exc()
    os._exit(EXIT_ROLE_ERROR)


def _launcher(plan: SandboxPlan, role: str, args: dict, progress_fd: int) -> NoReturn:
    os.setsid()
    linux.die_with_parent(signal.SIGKILL)
    _close_fds_except({0, 1, 2, progress_fd})
    # This process dies by the role's signal to report it: never with a core dump of a root process.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir("/")
    protections = Protections(plan.mode)
    zygote = os.getppid()
    try:
        if plan.mode != "off":
            enter_namespaces(protections)
    except SandboxRefused as exc:
        _refuse(progress_fd, str(exc))
    _rearm_death_signal(zygote)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _init(plan, role, args, progress_fd, status_w, protections)
    os.close(status_w)
    os.close(progress_fd)
    become("launcher", pid, status_r, EXIT_ROLE_ERROR, keep=(status_r,))
    launcher_waits(pid, status_r, EXIT_ROLE_ERROR)  # only where the interpreter could not be run afresh


def _init(
    plan: SandboxPlan, role: str, args: dict, progress_fd: int, status_w: int, protections: Protections
) -> NoReturn:
    launcher = os.getppid()
    try:
        linux.die_with_parent(signal.SIGKILL)
        private = False
        if plan.mode != "off":
            private = build_private_root(plan, protections)
            apply_limits(plan, protections)
            drop_privileges(plan, protections)
        else:
            protections.environment = "allowlist (sandbox off: nothing else is confined)"
    except SandboxRefused as exc:
        _refuse(progress_fd, str(exc))
    _rearm_death_signal(launcher)
    os.write(progress_fd, b"S " + json.dumps(protections.to_json()).encode() + b"\n")
    paths = {name: (m.inside if private else m.host) for name, m in plan.mounts.items()}
    pid = os.fork()
    if pid == 0:
        os.close(status_w)
        _role(plan, role, args, paths, progress_fd)
    os.close(progress_fd)
    become("init", pid, status_w, keep=(status_w,))
    init_waits(pid, status_w)  # only where the interpreter could not be run afresh


def _rearm_death_signal(parent: int) -> None:
    """Set the parent-death signal again: a change of credentials (dropping privileges, a user
    namespace) clears it, and without it this process and the role would outlive a killed parent."""
    linux.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(EXIT_ROLE_ERROR)


def _role(plan: SandboxPlan, role: str, args: dict, paths: dict[str, str], progress_fd: int) -> NoReturn:
    linux.die_with_parent(signal.SIGKILL)
    out = paths["out"]
    os.environ.clear()
    os.environ.update(
        {
            **plan.env,
            "HOME": out,
            "TMPDIR": os.path.join(out, "tmp"),
            "OMP_NUM_THREADS": str(plan.threads),
            "MKL_NUM_THREADS": str(plan.threads),
            "TORCHINDUCTOR_CACHE_DIR": os.path.join(out, "tmp", "inductor"),
        }
    )
    log = os.open(
        os.path.join(out, "role.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
    )
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from regctl.worker.sandbox.roles import run_role

    code = 0
    try:
        run_role(role, args, paths, progress_fd, plan.threads)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = EXIT_ROLE_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _refuse(progress_fd: int, reason: str) -> NoReturn:
    os.write(progress_fd, b"E " + reason.encode()[:3000] + b"\n")
    os._exit(EXIT_REFUSED)


def _close_fds_except(keep: set[int]) -> None:
    """Close every inherited descriptor but `keep` (above all the zygote's control socket)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
