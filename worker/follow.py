"""Following a job and the jobs it leads to (convert -> validate) from the database."""

from __future__ import annotations

import time
from collections.abc import Iterator

from regctl.registry.entities import JobInfo
from regctl.registry.jobs import following_job, get_job
from regctl.registry.settings import Settings
from regctl.worker.supervisor.embedded import EmbeddedJob

POLL_S = 0.2


def follow(settings: Settings, job: JobInfo, *, run_here: bool = False) -> Iterator[JobInfo]:
    """Yield the job each time its state or progress changes, then its follow-up jobs, until the chain ends.

    With `run_here` (embedded mode) each job is run in a child process of this one first.
    """
    current: JobInfo | None = job
    while current is not None:
        last = yield from _follow_one(settings, current, run_here)
        current = following_job(settings, last.id) if last.state == "succeeded" else None


def _follow_one(settings: Settings, job: JobInfo, run_here: bool) -> Iterator[JobInfo]:
    running = EmbeddedJob(settings, job.id) if run_here and job.state == "queued" else None
    try:
        return (yield from _watch(settings, job, running))
    except BaseException as exc:
        # The follower stopped early (Ctrl-C, a wait timeout, an error): a job run here would be
        # left `running` with nobody to finish it, so stop its child and put the job back in the queue.
        if running is not None and running.running:
            try:
                running.stop("the command running it stopped following it")
            except Exception as cleanup:  # what stopped the follower matters more; say what is left
                exc.add_note(f"job {job.id} may still show as running: {cleanup}")
        raise


def _watch(settings: Settings, job: JobInfo, running: EmbeddedJob | None) -> Iterator[JobInfo]:
    seen = None
    while True:
        gone = running.poll() if running is not None else False
        current = get_job(settings, job.id)
        if running is not None and (current.finished or gone):
            _send_webhooks(settings)
        if (current.state, current.progress, current.attempts) != seen:
            seen = (current.state, current.progress, current.attempts)
            yield current
        if current.finished:
            if running is not None:
                running.finish()
            return current
        if gone:
            # The child exited without finishing the job (a duplicate or a lost claim): stop following.
            return current
        time.sleep(POLL_S)


def _send_webhooks(settings: Settings) -> None:
    # The job ran here, so its webhook deliveries are sent from here, in the background: the job's
    # outcome is already recorded and this process's caller need not wait for a slow receiver.
    from regctl.worker.webhook_sender import send_in_background

    send_in_background(settings)
