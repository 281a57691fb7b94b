"""When the remote client tries again (tenacity): a dropped connection is picked up where it left off.

A download resumes with a Range, and a job's event stream reconnects after looking the job up,
at once and at most RESUMES more times; a download also waits up to RESUME_WINDOW_S for a server
that refuses connections (restarting) to come back. A server that answers 429 or 503 with
Retry-After (its rate limits, server/throttle.py) is asked again after the wait it names, at most
WAITS times and never after a wait over MAX_WAIT_S (`RetryAfterTransport`). Any other error is final.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, stop_after_attempt

RESUMES = 3
RESUME_WINDOW_S = 60.0  # how long a download waits for a server that went away (a restart) to come back
WAITS = 3  # answers with Retry-After waited out per request
MAX_WAIT_S = 60.0  # a longer wait is the caller's to decide: the error is raised with it


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a 429 or 503 answer asks to wait (Retry-After in seconds), else None."""
    if response.status_code not in (429, 503):
        return None
    raw = response.headers.get("retry-after", "").strip()
    return float(raw) if raw.isascii() and raw.isdigit() else None


class RetryAfterTransport(httpx.HTTPTransport):
    """httpx's transport, waiting out a server's Retry-After (module docstring).

    Only a request whose body can be sent again is retried (no body, or bytes); a streamed upload
    gets the answer, and its caller opens the file again.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`; while the answer asks for a wait this client accepts, wait and send again."""
        for waited in range(WAITS + 1):
            response = super().handle_request(request)
            wait = retry_after(response)
            if wait is None or wait > MAX_WAIT_S or waited == WAITS or not _replayable(request):
                return response
            response.close()
            time.sleep(wait)
        raise AssertionError("unreachable")


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


def _last_outcome(state: RetryCallState) -> Any:
    """Give up with what the last try gave: its exception raised again, or its result."""
    assert state.outcome is not None  # tenacity gives up only after a try
    return state.outcome.result()


def resuming(dropped: Callable[[BaseException], bool]) -> Retrying:
    """Call a try again while it raises what `dropped` accepts or returns False.

    Up to RESUMES more times at once; while the server cannot be connected to at all (restarting),
    with growing waits for up to RESUME_WINDOW_S. A try returns True once it is complete; when the
    tries run out, the last one's exception is raised, or its False returned, as if there had been
    no retry.
    """
    return Retrying(
        stop=_stop_resuming,
        wait=_wait_resuming,
        retry=retry_if_exception(dropped) | retry_if_result(lambda complete: complete is False),
        retry_error_callback=_last_outcome,
    )


def _server_away(state: RetryCallState) -> bool:
    outcome = state.outcome
    return outcome is not None and outcome.failed and isinstance(outcome.exception(), httpx.ConnectError)


def _stop_resuming(state: RetryCallState) -> bool:
    if state.seconds_since_start > RESUME_WINDOW_S:
        return True
    return not _server_away(state) and state.attempt_number > RESUMES


def _wait_resuming(state: RetryCallState) -> float:
    # a dropped connection is resumed at once; a refused one waits 0.25, 0.5, 1, 2 s, then 2 s apart
    return min(2.0, 0.25 * 2 ** (state.attempt_number - 1)) if _server_away(state) else 0.0


def reconnecting(dropped: Callable[[BaseException], bool]) -> Retrying:
    """Tries to iterate over (`for attempt in …: with attempt: …`) while one raises what `dropped` accepts.

    At most RESUMES + 1 tries; after the last, the loop simply ends and the caller says why.
    """
    return Retrying(
        stop=stop_after_attempt(RESUMES + 1),
        retry=retry_if_exception(dropped),
        retry_error_callback=lambda _state: None,
    )
