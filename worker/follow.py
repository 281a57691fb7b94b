"""Following a job and the jobs it leads to (convert -> validate) by reading their rows.

Every dispatcher follows this way; the in-process one also runs each job while it watches it
(`regctl.worker.dispatch.inprocess`), handing `watch` the child process that runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator

from regctl.registry.entities import JobInfo
from regctl.registry.jobs import following_job, get_job
from regctl.registry.settings import Settings
from regctl.worker.supervisor.embedded import EmbeddedJob

POLL_S = 0.2
# Follows one job of a chain: yields it at each change and returns it as it ended.
FollowOne = Callable[[JobInfo], Generator[JobInfo, None, JobInfo]]


def follow(settings: Settings, job: JobInfo, follow_one: FollowOne | None = None) -> Iterator[JobInfo]:
    """Yield the job each time its state or progress changes, then its follow-up jobs, until the chain ends.

    `follow_one` follows each job of the chain (by default `watch`, which only reads its row).
    """
    step = follow_one or (lambda one: watch(settings, one))
    current: JobInfo | None = job
    while current is not None:
        last = yield from step(current)
        current = following_job(settings, last.id) if last.state == "succeeded" else None


def watch(
    settings: Settings, job: JobInfo, child: EmbeddedJob | None = None
) -> Generator[JobInfo, None, JobInfo]:
    """Yield the job at each change of state, progress or attempts until it finishes; return it.

    With `child` (the process meant to run the job here), the watch also ends when that child is
    gone without finishing the job, unless another runner holds it: a child that lost the claim (the
    API server's runner, or a second follower, took the job first) leaves it running elsewhere, and
    the watch goes on reading its row until that runner finishes it.
    """
    seen = None
    while True:
        gone = child.poll() if child is not None else False
        current = get_job(settings, job.id)
        if (current.state, current.progress, current.attempts) != seen:
            seen = (current.state, current.progress, current.attempts)
            yield current
        if current.finished:
            return current
        if gone:
            assert child is not None
            if current.state != "running" or current.worker == child.worker:
                return current
            child = None
        time.sleep(POLL_S)
