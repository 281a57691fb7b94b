"""What the launcher and the PID-namespace init do once they only wait for their one child.

Both are forks of the zygote, so each maps everything the zygote imported (torch: a few hundred MB
of pages). Once their child is forked they exec a bare `python -S -I` running this file (`become`):
the same pid, the same children, the descriptors they pass on, a few MB of memory. Where that
interpreter cannot be started they call the same functions in place. So this file may import the
standard library only, and both keep PR_SET_PDEATHSIG across the exec.

execve() makes a process dumpable again, so each waiter first sets PR_SET_DUMPABLE(0); the init's
then closes GO_FD, the pipe the role waits on before it runs model code: the role never sees its
init dumpable (it could open /proc/1/fd, the status pipe among them).

    python -S -I waiters.py init ROLE_PID STATUS_FD GO_FD     reap, write the role's status, exit 0
    python -S -I waiters.py launcher INIT_PID STATUS_FD CODE  wait, then end the way the role ended
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import NoReturn

PR_SET_DUMPABLE = 4


def not_dumpable() -> None:
    """PR_SET_DUMPABLE(0) through libc (this file may not import regctl): undo what execve() did."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl PR_SET_DUMPABLE")


def reap(pid: int) -> int:
    """Wait for the role, reaping any orphan the PID namespace hands to this init meanwhile."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if done == pid:
            return status


def init_waits(role: int, status_w: int) -> NoReturn:
    """The init's last part: reap until the role ends, report its status on the pipe."""
    os.write(status_w, str(reap(role)).encode())
    os._exit(0)


def launcher_waits(init: int, status_r: int, no_status: int) -> NoReturn:
    """The launcher's last part: wait for the init, then end the way the role did."""
    _, status = os.waitpid(init, 0)
    reported = os.read(status_r, 64).decode().strip()
    reproduce(int(reported) if reported.lstrip("-").isdigit() else status, no_status)


def reproduce(status: int, no_status: int) -> NoReturn:
    """Exit the way the role did: its exit code, or its signal; `no_status` when neither is known."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be caught anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal whose default is to be ignored
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else no_status)


def become(which: str, *numbers: int, keep: tuple[int, ...] = ()) -> None:
    """exec a bare interpreter running `which` ("init" or "launcher") of this file; return if it cannot.

    `keep` are the descriptors it needs; every other one was closed or is close-on-exec.
    """
    for fd in keep:
        os.set_inheritable(fd, True)
    try:
        os.execv(
            sys.executable, [sys.executable, "-S", "-I", os.path.abspath(__file__), which, *map(str, numbers)]
        )
    except OSError:
        for fd in keep:
            os.set_inheritable(fd, False)


def _main(which: str, numbers: list[int]) -> NoReturn:
    try:
        not_dumpable()
    except OSError:
        os._exit(1)  # never leave a dumpable init beside the role: the role dies with it
    if which == "init":
        role, status_w, go_w = numbers
        os.close(go_w)  # the role may run model code now
        init_waits(role, status_w)
    launcher_waits(*numbers)


if __name__ == "__main__":
    _main(sys.argv[1], [int(n) for n in sys.argv[2:]])
