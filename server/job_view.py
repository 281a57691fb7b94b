"""A job as the pages show it: its stage and, where the progress line counts, a percentage.

Progress lines read like "trace: battery 12/40, ~3 s left" or "storing artifacts"; the count is the
stage's own, so the percentage is of the stage (the job's stages differ too much in length to add up).
static/live.js reads the same lines the same way for the live updates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from regctl.registry.entities import JobInfo
from regctl.registry.timeline import timeline

_COUNT = re.compile(r"(\d+)/(\d+)")


def progress_parts(text: str | None) -> tuple[str, int | None]:
    """The stage named by a progress line and the percentage of it done (None when it does not count)."""
    text = (text or "").strip()
    match = _COUNT.search(text)
    if match is None:
        return text, None
    done, total = int(match.group(1)), int(match.group(2))
    stage = text[: match.start()].rstrip(" :") or text
    return stage, (min(100, round(100 * done / total)) if total else None)


def clock(value: datetime) -> str:
    """'02:35:12 UTC': a stage's start, on a page whose facts already give the day."""
    return value.astimezone(UTC).strftime("%H:%M:%S UTC")


def job_row(job: JobInfo) -> dict[str, Any]:
    """The fields a job table row and the job page show.

    A finished job has no stage and no percentage: its state says it all, and a bar stuck at 15% on
    a failed job (or a second "done") would only mislead.
    """
    stage, percent = progress_parts(job.progress)
    if job.finished:
        stage, percent = None, None
    duration = None
    if job.started_at is not None and job.finished_at is not None:
        duration = (job.finished_at - job.started_at).total_seconds()
    return {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "ref": f"{job.model}:{job.version}",
        "kind": job.kind,
        "state": job.state,
        "queue": job.queue,
        "method": job.method,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "worker": job.worker,
        "progress": job.progress,
        "stage": stage,
        "percent": percent,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration_s": duration,
        "finished": job.finished,
        "parent_id": job.parent_id,
        "timeline": timeline(job),
    }
