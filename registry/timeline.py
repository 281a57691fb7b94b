"""A job's stage timeline: the stages its progress named, each with when it began and how long it lasted.

Shared by the pages and `regctl jobs show`; plain data, no web or terminal code.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from regctl.registry.entities import JobInfo


def timeline(job: JobInfo) -> list[dict[str, Any]]:
    """The job's stages, oldest first, each with when it began and how long it lasted.

    A stage lasts until the next one begins; the last lasts until the job finished (the final
    "done", "failed" or "cancelled" entry has no length), or is still going. Malformed entries, which
    only a forged row could hold, are left out.
    """
    found = []
    for entry in job.stages:
        at = parse_moment(entry.get("at"))
        stage = entry.get("stage")
        if at is not None and isinstance(stage, str) and stage:
            found.append({"stage": stage, "at": at, "seconds": None, "final": False})
    for here, after in itertools.pairwise(found):
        here["seconds"] = max(0.0, (after["at"] - here["at"]).total_seconds())
    if found and job.finished:
        found[-1]["final"] = True
    return found


def parse_moment(value: Any) -> datetime | None:
    """An ISO 8601 time as stored in JSON (naive ones are UTC); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
