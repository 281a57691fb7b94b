"""Progress and heartbeats of a running job, written to the database; cancel checks at stage boundaries."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

from regctl.registry.jobs import record_progress, stage_of
from regctl.registry.outcomes import record_failure
from regctl.registry.schema import utcnow
from regctl.registry.settings import Settings
from regctl.registry.text import visible

MAX_PROGRESS_CHARS = 500


class JobCancelled(Exception):
    """Raised at a stage boundary when the user cancelled the running job (or it was taken over)."""


class JobTimedOut(Exception):
    """Raised at the next progress report once a job has run past its soft time limit."""


class JobReporter:
    """Writes progress text and a heartbeat while a job runs, at most one commit per `min_interval`.

    Every line is kept, but lines are written together: one arriving within `min_interval` of the
    last write waits (at most that long) for the next, and each new stage keeps the time it began
    in the job's timeline. A background thread writes what waits and beats through a long stage (a
    slow forward pass), so the reconciler only takes over jobs whose process is really gone; a beat
    is skipped when a line was written within the heartbeat interval.
    """

    def __init__(self, settings: Settings, job_id: int, worker: str, min_interval: float = 2.0) -> None:
        self.settings, self.job_id, self.worker = settings, job_id, worker
        self.min_interval = min_interval
        self.cancelled = False
        # Checked here as well as by Celery: the engine treats an exception inside a model's forward
        # (Celery's SoftTimeLimitExceeded included) as that candidate failing, and carries on.
        self.soft_deadline = time.monotonic() + settings.job_soft_time_limit
        self._cancel_seen: float | None = None
        self._text: str | None = None
        self._unwritten: str | None = None  # the newest line, until it is written
        self._began: list[tuple[str, datetime]] = []  # stages begun since the last write, with their times
        self._last_write = float("-inf")  # the first line is written at once
        self._last_beat = time.monotonic()  # claiming the job wrote its first heartbeat
        self._lock = threading.Lock()  # one write at a time, from either thread
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._thread = threading.Thread(target=self._beat, name=f"regctl-heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> JobReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def __call__(self, text: str) -> None:
        """Record progress: written at once when the last write is `min_interval` old, else soon after.

        The text may quote the model (a stage's detail): one line, bounded, hidden characters as
        visible escapes (registry/text.py) before it reaches the database, the CLI and the pages.
        """
        text = visible(" ".join(text.split()), multiline=False)[:MAX_PROGRESS_CHARS]
        with self._wake:
            # The timeline's own rule: "eager reference 4/28" is the stage of "eager reference 2/28"
            if self._text is None or stage_of(text) != stage_of(self._text):
                self._began.append((text, utcnow()))
            self._text = self._unwritten = text
            if time.monotonic() - self._last_write >= self.min_interval:
                self._write()
            else:
                self._wake.notify()  # the beat thread writes it when the interval is up
        self.check()  # a cancel or the soft limit stops the job here, naming this stage

    def unwritten_stages(self) -> list[tuple[str, datetime]]:
        """Hand over the stages begun since the last write, with their times, and forget them.

        The job's outcome is recorded with them (record_success, record_failure): its timeline ends
        where the job did, in the same commit.
        """
        with self._wake:
            began, self._began, self._unwritten = self._began, [], None
            return began

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

    def _write(self) -> None:
        # Called with the lock held; a line is taken as written only once its commit succeeded.
        if record_progress(self.settings, self.job_id, self.worker, self._unwritten, began=self._began):
            self.cancelled = True
        self._last_write = self._last_beat = time.monotonic()
        self._unwritten, self._began = None, []

    def _due(self) -> float:
        """Seconds until the next write: a beat (which carries what waits), what waits, a cancel's check."""
        due = self._last_beat + (1.0 if self.cancelled else self.settings.heartbeat_interval)
        if self._unwritten is not None:
            due = min(due, self._last_write + self.min_interval)
        return due - time.monotonic()

    def _beat(self) -> None:
        with self._wake:
            while not self._stop:
                due = self._due()
                if due > 0:
                    self._wake.wait(due)
                    continue
                try:
                    self._write()
                except Exception:  # a database hiccup must not kill the job; the next beat retries
                    self._last_write = self._last_beat = time.monotonic()
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
