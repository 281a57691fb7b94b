"""The API server's own job runner for embedded mode: no broker, so queued jobs run on this machine.

One thread takes the oldest queued job, runs it in a supervised child process (`EmbeddedJob`, the
same one a direct `regctl register` uses) and moves on; a validate job queued by a convert is just
the next queued job. The server process itself never imports torch or model code.

It also starts a pass over the due webhook deliveries (in a background thread of their own) after
each job and at every idle check, which is when retries whose backoff ran out go.
"""

from __future__ import annotations

import logging
import threading

from regctl.registry.jobs import list_jobs
from regctl.registry.settings import Settings
from regctl.service.dispatch import LocalRunnerHook, install_local_runner

log = logging.getLogger("regctl.runner")
IDLE_CHECK_S = 2.0
POLL_S = 0.2


class LocalRunner(LocalRunnerHook):
    """Runs queued jobs one at a time in child processes until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="regctl-runner", daemon=True)

    def start(self) -> LocalRunner:
        """Start the thread and become the runner that new jobs wake."""
        install_local_runner(self)
        self._thread.start()
        return self

    def notify(self) -> None:
        """New queued jobs exist: look now rather than at the next idle check."""
        self._wake.set()

    def stop(self) -> None:
        """Stop taking jobs; a running job is stopped with its child process."""
        install_local_runner(None)
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._send_webhooks()
            try:
                queued = list_jobs(self.settings, state="queued", limit=1000)
            except Exception:
                log.exception("cannot list queued jobs; trying again shortly")
                queued = []
            if not queued:
                self._wake.wait(IDLE_CHECK_S)
                self._wake.clear()
                continue
            self._run(min(queued, key=lambda job: job.id).id)

    def _run(self, job_id: int) -> None:
        from regctl.worker.supervisor.embedded import EmbeddedJob

        job = EmbeddedJob(self.settings, job_id)
        while not job.poll():
            if self._stopping.wait(POLL_S):
                job.stop("the API server stopped while the job ran")
                return

    def _send_webhooks(self) -> None:
        from regctl.worker.webhook_sender import send_in_background

        try:
            send_in_background(self.settings)
        except Exception:  # never stops the runner; the deliveries stay in the outbox
            log.exception("cannot start sending webhook deliveries")
