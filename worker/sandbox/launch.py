"""Starting one role process in its sandbox, from a fresh fork of the zygote.

Three processes per role, each forked (no exec, so torch stays imported in the role); the launcher
and the init exec a bare interpreter once they only wait (waiters.py), so they stop holding torch:

    launcher  (the zygote's child) new session; unshare(); waits, then dies the way the role died
    init      PID 1 of the new PID namespace; builds the private root, sets the limits, drops
              privileges, becomes not dumpable, loads the seccomp filter, forks the role and reaps;
              when it exits the kernel kills everything left
    role      runs the model side or the judge, writing files and progress lines

From the launcher on, standard input, output and error are /dev/null: nothing of the sandbox holds
the worker's log or the operator's terminal (the role writes its own output to `role.log`). The
launcher keeps one close-on-exec copy of the zygote's stderr for its own tracebacks, which the init
closes first thing. The role waits for the init's waiter to close a "go" pipe before it runs any
model code: exec makes a process dumpable again, and the waiter undoes that first (waiters.py).

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

from regctl.worker.contract import ROLE_LOG, handed_path
from regctl.worker.sandbox import linux
from regctl.worker.sandbox.confine import (
    Protections,
    SandboxRefused,
    apply_limits,
    build_private_root,
    drop_privileges,
    enter_namespaces,
    filter_system_calls,
    forbid_tracing,
)
from regctl.worker.sandbox.plan import SandboxPlan
from regctl.worker.sandbox.protocol import PROTECTIONS, REFUSED
from regctl.worker.sandbox.waiters import become, init_waits, launcher_waits

EXIT_REFUSED = 90  # strict mode could not set up the sandbox
EXIT_ROLE_ERROR = 91  # the role's own code raised (an engine bug, never the model's error)
DESCRIPTORS = "standard streams of the launcher and init on /dev/null; the role's go to role.log"

_diagnostics = -1  # the launcher's copy of the zygote's stderr, for its own tracebacks only
_unreported = -1  # the progress pipe, until this process's first line (S or E) is written on it


def launch(
    plan: SandboxPlan, role: str, args: dict, progress_fd: int, handed: dict[str, int] | None = None
) -> NoReturn:
    """Run in the zygote's child: confine, run `role`, exit with the role's status. Never returns.

    `handed` names open files the supervisor passed (close-on-exec): the role finds each under
    paths[name] as /proc/self/fd/N; the launcher and the init drop theirs when they exec a waiter.
    """
    global _unreported
    _unreported = progress_fd
    try:
        _launcher(plan, role, args, progress_fd, dict(handed or {}))
    except BaseException:
        _report_crash(traceback.format_exc())
    os._exit(EXIT_ROLE_ERROR)


def _report_crash(text: str) -> None:
    """A traceback of the sandbox's own code: to the worker's log (launcher) or as the pipe's E line."""
    with contextlib.suppress(OSError):
        if _diagnostics != -1:
            os.write(_diagnostics, text.encode(errors="replace"))
        elif _unreported == -1:
            sys.stderr.write(text)  # the role: its role.log
    if _unreported != -1:  # nothing said yet: the supervisor shows this as the reason
        last = text.strip().splitlines()[-1] if text.strip() else "unknown"
        with contextlib.suppress(OSError):
            os.write(
                _unreported,
                REFUSED.encode() + b"internal error in the sandbox's setup: " + last.encode()[:2000] + b"\n",
            )


def _launcher(plan: SandboxPlan, role: str, args: dict, progress_fd: int, handed: dict[str, int]) -> NoReturn:
    global _diagnostics, _unreported
    os.setsid()
    linux.die_with_parent(signal.SIGKILL)
    _close_fds_except({0, 1, 2, progress_fd, *handed.values()})
    with contextlib.suppress(OSError):
        _diagnostics = os.dup(2)  # close-on-exec: gone once this process execs its waiter
    _null_standard_streams()
    # This process dies by the role's signal to report it: never with a core dump of a root process.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir("/")
    protections = Protections(plan.mode)
    protections.descriptors = DESCRIPTORS
    zygote = os.getppid()
    try:
        if plan.mode != "off":
            forbid_tracing(protections)
            enter_namespaces(protections)
    except SandboxRefused as exc:
        _refuse(progress_fd, str(exc))
    _rearm_death_signal(zygote)
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _init(plan, role, args, progress_fd, status_w, protections, handed)
    os.close(status_w)
    os.close(progress_fd)
    _unreported = -1
    become("launcher", pid, status_r, EXIT_ROLE_ERROR, keep=(status_r,))
    launcher_waits(pid, status_r, EXIT_ROLE_ERROR)  # only where the interpreter could not be run afresh


def _init(
    plan: SandboxPlan,
    role: str,
    args: dict,
    progress_fd: int,
    status_w: int,
    protections: Protections,
    handed: dict[str, int],
) -> NoReturn:
    global _diagnostics, _unreported
    if _diagnostics != -1:  # the worker's log is no business of the init's, nor of the role's
        os.close(_diagnostics)
        _diagnostics = -1
    launcher = os.getppid()
    try:
        linux.die_with_parent(signal.SIGKILL)
        private = False
        if plan.mode != "off":
            private = build_private_root(plan, protections)
            apply_limits(plan, protections)
            drop_privileges(plan, protections)
            forbid_tracing(protections)  # after the change of uid, which can make it dumpable again
            filter_system_calls(protections)  # last: the steps above need mount, unshare, setresuid
        else:
            protections.environment = "allowlist (sandbox off: nothing else is confined)"
    except SandboxRefused as exc:
        _refuse(progress_fd, str(exc))
    _rearm_death_signal(launcher)
    os.write(progress_fd, PROTECTIONS.encode() + json.dumps(protections.to_json()).encode() + b"\n")
    _unreported = -1
    paths = {name: (m.inside if private else m.host) for name, m in plan.mounts.items()}
    paths.update({name: handed_path(fd) for name, fd in handed.items()})
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(status_w)
        os.close(go_w)
        _role(plan, role, args, paths, progress_fd, go_r)
    os.close(progress_fd)
    os.close(go_r)
    become("init", pid, status_w, go_w, keep=(status_w, go_w))
    os.close(go_w)  # not exec'd, so still not dumpable: the role may go on
    init_waits(pid, status_w)  # only where the interpreter could not be run afresh


def _rearm_death_signal(parent: int) -> None:
    """Set the parent-death signal again: a change of credentials (dropping privileges, a user
    namespace) clears it, and without it this process and the role would outlive a killed parent."""
    linux.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(EXIT_ROLE_ERROR)


def _role(
    plan: SandboxPlan, role: str, args: dict, paths: dict[str, str], progress_fd: int, go_r: int
) -> NoReturn:
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
    log = os.open(os.path.join(out, ROLE_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    # Here, not at the top: the supervisor imports this module (probe.py, supervisor.py), and the
    # roles import torch when they run. Preloaded by the zygote; bound in the role.
    from regctl.worker.sandbox.roles import run_role

    os.read(go_r, 1)  # until the init's waiter is not dumpable again (end of file; or the init died)
    os.close(go_r)
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


def _null_standard_streams() -> None:
    """Point fds 0, 1 and 2 at /dev/null: the zygote's are the worker's log or the operator's terminal."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _refuse(progress_fd: int, reason: str) -> NoReturn:
    os.write(progress_fd, REFUSED.encode() + reason.encode()[:3000] + b"\n")
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
