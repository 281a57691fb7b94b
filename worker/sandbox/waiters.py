"""The two processes of a sandboxed role that only wait, as small fresh programs instead of torch forks.

The launcher and the PID-namespace init are forks of the zygote, so each maps everything the zygote
imported (torch: a few hundred MB of pages). Once they have forked their one child they only wait
for it, so they exec a bare `python -S -I -c` running the code below: the same pid, the same
children, the same descriptors they pass on, a few MB of memory. Nothing here may import anything
beyond the interpreter's builtins, and both keep PR_SET_PDEATHSIG across the exec.
"""

from __future__ import annotations

import os
import sys

# Runs as PID 1 of the role's namespace: reap every orphan, report the role's status on the pipe.
INIT_WAIT = """
import os, sys
role, status_w = int(sys.argv[1]), int(sys.argv[2])
status = 0
while True:
    try:
        done, code = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if done == role:
        status = code
        break
os.write(status_w, str(status).encode())
os._exit(0)
"""

# Runs as the launcher: wait for init, then die the way the role did (its exit code or its signal).
LAUNCHER_WAIT = """
import os, signal, sys
init, status_r, refused = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
_, status = os.waitpid(init, 0)
reported = os.read(status_r, 64).decode().strip()
status = int(reported) if reported.lstrip("-").isdigit() else status
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else refused)
"""


def become(code: str, *numbers: int, keep: tuple[int, ...] = ()) -> None:
    """exec a bare interpreter running `code` with `numbers` as its arguments; return if it cannot.

    `keep` are descriptors the program needs; every other one was closed or is close-on-exec.
    """
    for fd in keep:
        os.set_inheritable(fd, True)
    try:
        os.execv(sys.executable, [sys.executable, "-S", "-I", "-c", code, *map(str, numbers)])
    except OSError:
        for fd in keep:
            os.set_inheritable(fd, False)
