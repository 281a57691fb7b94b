"""A job's server-sent-event stream, read with httpx-sse: `event: job` at each change, `event: end` last.

The server sends a keep-alive comment every 15 s, so a read timeout well above that means the
connection is gone, not the job quiet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

EVENTS_TIMEOUT = httpx.Timeout(30.0, read=60.0)


def job_events(
    http: httpx.Client, job_id: int, error: Callable[[httpx.Response], Exception]
) -> Iterator[dict[str, Any]]:
    """Each `job` event's data (the job as JSON) until `end`; `error(response)` is raised for a 4xx/5xx."""
    with connect_sse(http, "GET", f"/jobs/{job_id}/events", timeout=EVENTS_TIMEOUT) as source:
        if source.response.status_code >= 400:
            source.response.read()
            raise error(source.response)
        for event in source.iter_sse():
            if event.event == "job":
                yield event.json()
            elif event.event == "end":
                return
