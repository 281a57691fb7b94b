"""Embedded mode: with no broker, jobs run on this machine, supervised by a child process.

The child is the job's supervisor (worker/supervisor.py): it starts the sandboxed model process and
judge, so a model that calls `os.abort()` or segfaults kills only its sandboxed process, and the
job fails with the reason. The child itself is killed at the job's hard time limit should it ever
hang, which takes its sandboxes with it (they die with their parent).
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from multiprocessing.process import BaseProcess

from regctl.registry.settings import Settings

CLEANUP_GRACE_S = 60.0  # a finished job's child removing a large scratch folder


def _child(settings: Settings, job_id: int) -> None:
    from regctl.registry.db import dispose_engines
    from regctl.worker.pipeline import run_job
    from regctl.worker.sandbox.client import shared_zygote

    shared_zygote()  # imports torch in the background while the job is claimed and fetched
    dispose_engines(close=False)
    run_job(settings, job_id)


def describe_exit(exitcode: int) -> str:
    """Plain words for how a worker process ended (`signal 6 (SIGABRT)`, `exit code 3`)."""
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class EmbeddedJob:
    """One job running in a child process, with the hard time limit enforced from here."""

    def __init__(self, settings: Settings, job_id: int) -> None:
        self.settings, self.job_id = settings, job_id
        # spawn, not fork: the parent may hold database connections and rich's refresh thread.
        self.process: BaseProcess = multiprocessing.get_context("spawn").Process(
            target=_child, args=(settings, job_id), name=f"regctl-job-{job_id}", daemon=True
        )
        self.started = time.monotonic()
        self.process.start()

    def poll(self) -> bool:
        """Return True once the child is gone; record a crash or a time-limit kill on the job."""
        if self.process.is_alive():
            if time.monotonic() - self.started <= self.settings.job_time_limit:
                return False
            self._kill()
            self._fail(
                f"stopped at the time limit of {self.settings.job_time_limit:g}s "
                "(REGCTL_JOB_TIME_LIMIT); the model took too long or hung"
            )
            return True
        self.process.join()
        if self.process.exitcode:
            self._fail(
                f"the model crashed the worker process: it died with {describe_exit(self.process.exitcode)}"
            )
        return True

    def finish(self, grace_s: float = CLEANUP_GRACE_S) -> None:
        """Let a child whose job is recorded remove its scratch and exit; kill it past `grace_s`.

        The child is a daemon: a caller that returned at once would kill it mid-cleanup on exit,
        leaving its job's folder to the next sweep.
        """
        self.process.join(grace_s)
        if self.process.is_alive():
            from regctl.worker.scratch import sweep_abandoned

            self._kill()
            sweep_abandoned(self.settings.work_dir)

    def stop(self, reason: str = "the process running it stopped") -> None:
        """Kill the child now and put its job back in the queue (or fail it past the attempt cap)."""
        from regctl.registry.jobs import requeue_stale

        self._kill()
        requeue_stale(self.settings, self.job_id, reason)

    def _kill(self) -> None:
        self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def _fail(self, reason: str) -> None:
        from regctl.worker.pipeline import fail_unless_finished
        from regctl.worker.scratch import sweep_abandoned

        fail_unless_finished(self.settings, self.job_id, reason)
        sweep_abandoned(self.settings.work_dir)  # the killed child never ran its own cleanup
