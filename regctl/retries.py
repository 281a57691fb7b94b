"""When the remote client tries again (tenacity): a dropped connection is picked up where it left off.

A download resumes with a Range, and a job's event stream reconnects after looking the job up,
at once and at most RESUMES more times; any other error is final.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, stop_after_attempt

RESUMES = 3


def _last_outcome(state: RetryCallState) -> Any:
    """Give up with what the last try gave: its exception raised again, or its result."""
    assert state.outcome is not None  # tenacity gives up only after a try
    return state.outcome.result()


def resuming(dropped: Callable[[BaseException], bool]) -> Retrying:
    """Call a try up to RESUMES more times while it raises what `dropped` accepts or returns False.

    A try returns True once it is complete; when the tries run out, the last one's exception is
    raised, or its False returned, as if there had been no retry.
    """
    return Retrying(
        stop=stop_after_attempt(RESUMES + 1),
        retry=retry_if_exception(dropped) | retry_if_result(lambda complete: complete is False),
        retry_error_callback=_last_outcome,
    )


def reconnecting(dropped: Callable[[BaseException], bool]) -> Retrying:
    """Tries to iterate over (`for attempt in …: with attempt: …`) while one raises what `dropped` accepts.

    At most RESUMES + 1 tries; after the last, the loop simply ends and the caller says why.
    """
    return Retrying(
        stop=stop_after_attempt(RESUMES + 1),
        retry=retry_if_exception(dropped),
        retry_error_callback=lambda _state: None,
    )
