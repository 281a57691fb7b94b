"""The embedded default's dispatcher in a CLI or Python process: no broker and no server, so whoever
follows a job runs it, in a supervised child process (`EmbeddedJob`), while following it.

Publishing does nothing: the committed row waits, queued, for the next follower (a `--wait`, a
`jobs watch`, or `register` itself on this default). Webhook deliveries go from a background thread.

A caller that will follow the job it is about to register warms up first: the job's child starts
then, and its zygote imports torch (1.4 s on BERT-base's register, measured) while registration
hashes and stores the files, instead of after.
"""

from __future__ import annotations

import subprocess
from collections.abc import Generator, Iterator

from regctl.registry.entities import JobInfo
from regctl.worker.dispatch.base import Dispatcher
from regctl.worker.supervisor.embedded import EmbeddedJob, dismiss_child, start_child

# Following and webhooks need the database layer (0.25 s to import): imported where used, so that
# `warm_up` starts the job's child (and its zygote's torch import) that much sooner.


class InProcessDispatcher(Dispatcher):
    """Runs each queued job of a chain in a child of this process while following it."""

    runs_jobs_when_followed = True
    _warm: subprocess.Popen[bytes] | None = None  # a child started by warm_up, waiting for its job

    def warm_up(self) -> None:
        """Start the next job's child now, unless one already waits."""
        if self._warm is None or self._warm.poll() is not None:
            self._warm = start_child()

    def cool_down(self) -> None:
        """Dismiss a child that warm_up started and no job took."""
        warm, self._warm = self._warm, None
        if warm is not None:
            dismiss_child(warm)

    def publish(self, jobs: list[JobInfo]) -> None:
        """Nothing to hand over: the queued rows run when followed."""

    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Follow the chain, running each job that is still queued when its turn comes."""
        from regctl.worker.follow import follow

        return follow(self.settings, job, self._run_and_watch)

    def send_webhooks(self) -> None:
        """Send the due deliveries from a background thread, so a slow receiver never holds the caller."""
        from regctl.worker.webhook_sender import send_in_background

        send_in_background(self.settings)

    def _run_and_watch(self, job: JobInfo) -> Generator[JobInfo, None, JobInfo]:
        from regctl.worker.follow import watch

        if job.state != "queued":  # running elsewhere (another follower) or already over: only watch
            return (yield from watch(self.settings, job))
        warm, self._warm = self._warm, None
        child = EmbeddedJob(self.settings, job.id, warm)
        try:
            last = yield from watch(self.settings, job, child)
        except BaseException as exc:
            # The follower stopped early (Ctrl-C, a wait timeout, an error): the job would be left
            # `running` with nobody to finish it, so stop its child and put the job back in the queue.
            if child.running:
                try:
                    child.stop("the command running it stopped following it")
                except Exception as cleanup:  # what stopped the follower matters more; say what is left
                    exc.add_note(f"job {job.id} may still show as running: {cleanup}")
            raise
        # The job ran here, so its webhook deliveries go from here; its outcome is already recorded.
        self.send_webhooks()
        if last.finished:
            child.finish()
        return last
