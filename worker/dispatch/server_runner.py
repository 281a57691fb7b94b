"""The API server's dispatcher on the embedded default: no broker, so queued jobs run on this machine.

One thread of the server takes the oldest queued job, runs it in a supervised child process
(`EmbeddedJob`, the same one the in-process dispatcher uses) and moves on; a validate job queued by a
convert is just the next queued job. Publishing wakes the thread; following only reads the rows, since
the thread runs the jobs whoever follows them. The server process itself never imports torch or model
code.

The thread also starts a pass over the due webhook deliveries (in a background thread of their own)
after each job and at every idle check, which is when retries whose backoff ran out go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from regctl.registry.entities import JobInfo
from regctl.registry.jobs import list_jobs
from regctl.registry.settings import Settings
from regctl.worker.dispatch.base import Dispatcher
from regctl.worker.follow import follow
from regctl.worker.supervisor.embedded import EmbeddedJob
from regctl.worker.webhook_sender import send_in_background

log = logging.getLogger("regctl.runner")
IDLE_CHECK_S = 2.0
POLL_S = 0.2


class ServerRunner(Dispatcher):
    """Runs queued jobs one at a time in child processes, from a thread of the API server, until stopped."""

    def __init__(self, settings: Settings, *, idle_check_s: float = IDLE_CHECK_S) -> None:
        super().__init__(settings)
        self.idle_check_s = idle_check_s
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="regctl-runner", daemon=True)

    def publish(self, jobs: list[JobInfo]) -> None:
        """New queued jobs exist: look now rather than at the next idle check."""
        self._wake.set()

    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Poll the job rows; the runner's thread runs the jobs."""
        return follow(self.settings, job)

    def send_webhooks(self) -> None:
        """Send the due deliveries from a background thread of the server."""
        send_in_background(self.settings)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop taking jobs; a running job is stopped with its child process."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    @property
    def idle(self) -> bool:
        """True while the thread waits for work (nothing was queued at its last look)."""
        return self._idle.is_set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._send_due_webhooks()
            try:
                queued = list_jobs(self.settings, state="queued", limit=1000)
            except Exception:
                log.exception("cannot list queued jobs; trying again shortly")
                queued = []
            if not queued:
                self._idle.set()
                self._wake.wait(self.idle_check_s)
                self._wake.clear()
                self._idle.clear()
                continue
            self._run(min(queued, key=lambda job: job.id).id)

    def _run(self, job_id: int) -> None:
        job = EmbeddedJob(self.settings, job_id)
        while not job.poll():
            if self._stopping.wait(POLL_S):
                job.stop("the API server stopped while the job ran")
                return

    def _send_due_webhooks(self) -> None:
        try:
            self.send_webhooks()
        except Exception:  # never stops the runner; the deliveries stay in the outbox
            log.exception("cannot start sending webhook deliveries")
