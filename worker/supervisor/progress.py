"""Progress and heartbeats of a running job, written to the database; cancel checks at stage boundaries."""

from __future__ import annotations

import os
import threading
import time

from regctl.registry.jobs import record_progress, stage_of
from regctl.registry.outcomes import record_failure
from regctl.registry.settings import Settings
from regctl.registry.text import visible

MAX_PROGRESS_CHARS = 500


class JobCancelled(Exception):
    """Raised at a stage boundary when the user cancelled the running job (or it was taken over)."""


class JobTimedOut(Exception):
    """Raised at the next progress report once a job has run past its soft time limit."""


class JobReporter:
    """Writes progress text (throttled) and a heartbeat from a background thread while a job runs.

    The heartbeat thread keeps beating through a long stage (a slow forward pass), so the reconciler
    only takes over jobs whose process is really gone.
    """

    def __init__(self, settings: Settings, job_id: int, worker: str, min_interval: float = 0.25) -> None:
        self.settings, self.job_id, self.worker = settings, job_id, worker
        self.min_interval = min_interval
        self.cancelled = False
        # Checked here as well as by Celery: the engine treats an exception inside a model's forward
        # (Celery's SoftTimeLimitExceeded included) as that candidate failing, and carries on.
        self.soft_deadline = time.monotonic() + settings.job_soft_time_limit
        self._cancel_seen: float | None = None
        self._text: str | None = None
        self._last_write = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"regctl-heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> JobReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __call__(self, text: str) -> None:
        """Record progress; throttled, except that every new stage is written at once.

        The text may quote the model (a stage's detail): one line, bounded, hidden characters as
        visible escapes (registry/text.py) before it reaches the database, the CLI and the pages.
        """
        text = visible(" ".join(text.split()), multiline=False)[:MAX_PROGRESS_CHARS]
        # The timeline's own rule: "eager reference 4/28" is the stage of "eager reference 2/28"
        stage_changed = self._text is None or stage_of(text) != stage_of(self._text)
        self._text = text
        self.check()  # a cancel or the soft limit stops the job here, naming this stage
        if stage_changed or time.monotonic() - self._last_write >= self.min_interval:
            self._write(text)

    def check(self) -> None:
        """Raise JobCancelled or JobTimedOut when the job must stop now (each progress line, and between)."""
        if time.monotonic() > self.soft_deadline:
            raise JobTimedOut(
                f"stopped at the soft time limit of {self.settings.job_soft_time_limit:g}s "
                "(REGCTL_JOB_SOFT_TIME_LIMIT); the model took too long or hung"
            )
        if self.cancelled:
            stage = (self._text or "the job").split(":")[0]
            raise JobCancelled(f"cancelled by the user during {stage}; its sandboxed processes were stopped")

    def checkpoint(self, stage: str) -> None:
        """Announce a new stage and stop here if cancel was requested."""
        self(stage)
        if self.cancelled:
            raise JobCancelled(f"cancelled by the user before {stage}")

    def _write(self, text: str | None) -> None:
        self._last_write = time.monotonic()
        if record_progress(self.settings, self.job_id, self.worker, text):
            self.cancelled = True

    def _beat(self) -> None:
        while not self._stop.wait(min(self.settings.heartbeat_interval, 1.0 if self.cancelled else 1e9)):
            try:
                self._write(None)
            except Exception:  # a database hiccup must not kill the job; the next beat retries
                continue
            if self.cancelled:
                self._enforce_cancel()

    def _enforce_cancel(self) -> None:
        # A stage that never reaches a checkpoint (a forward pass that hangs) is ended after the
        # grace period: record the cancellation, then end this process; the pool replaces it.
        now = time.monotonic()
        self._cancel_seen = self._cancel_seen or now
        if now - self._cancel_seen < self.settings.cancel_grace:
            return
        try:
            record_failure(
                self.settings,
                self.job_id,
                self.worker,
                "cancelled by the user; the running stage "
                f"did not stop within {self.settings.cancel_grace:g}s and was terminated",
                state="cancelled",
            )
        finally:
            os._exit(75)
