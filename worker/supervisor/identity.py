"""Who runs a job: the `host:pid` a runner records on the jobs it claims, and whether that process is gone.

Its own module, light to import: the process that follows an embedded job (a CLI, the API server)
names its child's identity without importing the pipeline.
"""

from __future__ import annotations

import os
import socket


def worker_identity(pid: int | None = None) -> str:
    """`host:pid` of this process (or of process `pid` on this host), as recorded on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def owner_is_dead_here(worker: str) -> bool:
    """True when `worker` names a process on this host that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
