"""How a worker process ended, in plain words: shared by the embedded runner and the supervisor."""

from __future__ import annotations

import signal


def describe_exit(exitcode: int) -> str:
    """Plain words for how a worker process ended (`signal 6 (SIGABRT)`, `exit code 3`)."""
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
