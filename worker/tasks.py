"""Celery tasks: thin adapters that take a job id and hand it to `worker.pipeline`.

No SQL and no torch here. What only the pool's parent process can see (a child killed by a signal,
the hard time limit) is recorded on the job by `JobRequest`.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from functools import lru_cache
from types import FrameType

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from billiard.process import current_process
from celery import Task, shared_task
from celery.signals import worker_process_init
from celery.worker.request import Request

from regctl.registry.db import dispose_engines
from regctl.registry.jobs import note_attempt_error
from regctl.registry.schema import utcnow
from regctl.registry.settings import Settings
from regctl.worker.dispatch.publishing import publish, publish_due_deliveries
from regctl.worker.queues import DELIVER_WEBHOOK_TASK, RECONCILE_TASK, RUN_JOB_TASK, WEBHOOK_QUEUE
from regctl.worker.reconciler import reconcile
from regctl.worker.runtime import init_child
from regctl.worker.supervisor.pipeline import fail_unless_finished, run_job
from regctl.worker.supervisor.scratch import sweep_abandoned
from regctl.worker.webhook_sender import deliver

# A retry due within this many seconds is scheduled with a countdown; later ones are left to the
# reconciler, since Redis hands a message held past its visibility timeout to a second worker.
SHORT_RETRY_S = 120.0
log = logging.getLogger("regctl.webhooks")


@lru_cache(maxsize=1)
def settings() -> Settings:
    """This worker's settings, from the environment `regctl worker` prepared."""
    return Settings.from_env()


class JobRequest(Request):
    """Records, from the pool's parent, why a child stopped: lost to a signal or past the time limit."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """The hard limit fails the job (the child is killed and the message acknowledged)."""
        super().on_timeout(soft, timeout)
        if not soft:
            fail_unless_finished(
                settings(),
                self.args[0],
                f"stopped at the hard time limit of {timeout:g}s "
                "(REGCTL_JOB_TIME_LIMIT); the model took too long or hung",
            )
            sweep_abandoned(settings().work_dir)  # the killed child never cleaned up; the next job sweeps too
            _publish_webhooks(settings())

    def on_failure(self, exc_info, send_failed_event: bool = True, return_ok: bool = False) -> None:  # type: ignore[no-untyped-def]
        """A lost child is noted on the job before the message goes back to the queue for another attempt."""
        how = _how_the_child_ended(exc_info.exception)
        if how is not None and self.args:
            note_attempt_error(settings(), self.args[0], f"the worker process died with {how}")
            sweep_abandoned(settings().work_dir)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def _how_the_child_ended(exc: BaseException) -> str | None:
    """`signal 6 (SIGABRT)` or `exitcode 3` when a pool child was lost, else None."""
    if isinstance(exc, ExceptionWithTraceback):  # how billiard hands over a lost child's error
        exc = exc.exc
    if isinstance(exc, SystemExit):  # the model called sys.exit(); Celery treats it as a lost child
        return f"exitcode {exc.code}" if isinstance(exc.code, int) else f"SystemExit({exc.code!r})"
    if isinstance(exc, WorkerLostError):
        found = re.search(r"(signal \d+ \(\w+\)|exitcode \d+)", str(exc))
        return found.group(1) if found else str(exc)
    return None


class JobTask(Task):
    """Base class of regctl tasks: our request class, late acknowledgement."""

    Request = JobRequest
    acks_late = True
    reject_on_worker_lost = True


class SoftTimeLimitReached(BaseException):
    """Raised in a pool child at the soft time limit.

    Not an Exception (unlike Celery's SoftTimeLimitExceeded), so the engine, which reports any
    Exception from a model's code as the model's own error, lets it through to the task.
    """


def _raise_soft_limit(signum: int, frame: FrameType | None) -> None:
    raise SoftTimeLimitReached()


@shared_task(name=RUN_JOB_TASK, base=JobTask, ignore_result=True)
def run_job_task(job_id: int) -> None:
    """Run job `job_id`, then publish its follow-ups; a repeated delivery of a done or live job is a no-op."""
    config = settings()
    # The pool signals the soft time limit with SIGUSR1 (billiard installs its handler after our
    # child init, so it is replaced here, for this task only).
    here = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGUSR1, _raise_soft_limit) if here else None
    try:
        _, follow_ups = run_job(config, job_id, device="cpu" if config.gpu_on_cpu else None)
    except SoftTimeLimitReached:
        fail_unless_finished(
            config,
            job_id,
            f"stopped at the soft time limit of {config.job_soft_time_limit:g}s "
            "(REGCTL_JOB_SOFT_TIME_LIMIT); the model took too long or hung",
        )
        return
    finally:
        if here:
            signal.signal(signal.SIGUSR1, previous)
    publish(config, follow_ups)
    _publish_webhooks(config)


def _publish_webhooks(config: Settings) -> None:
    """Hand the deliveries the job's outcome added to the webhooks queue; the reconciler is the backstop."""
    try:
        publish_due_deliveries(config)
    except Exception:
        log.warning("webhook deliveries wait for the reconciler", exc_info=True)


@shared_task(
    name=DELIVER_WEBHOOK_TASK,
    ignore_result=True,
    # Each POST ends within DELIVERY_TIMEOUT_S (10 s); the limits only back that up.
    soft_time_limit=30,
    time_limit=40,
)
def deliver_webhook_task(delivery_id: int) -> None:
    """One attempt at a webhook delivery; a failed one that is due again soon is scheduled right away."""
    config = settings()
    after = deliver(config, delivery_id)
    if after is None or after.state != "pending" or after.next_attempt_at is None:
        return
    wait = max(0.0, (after.next_attempt_at - utcnow()).total_seconds())
    if wait <= SHORT_RETRY_S:
        deliver_webhook_task.apply_async(args=[delivery_id], countdown=wait, queue=WEBHOOK_QUEUE)


@shared_task(name=RECONCILE_TASK, ignore_result=True)
def reconcile_task() -> dict[str, list[int]]:
    """One reconciler pass (scheduled by `regctl beat`)."""
    return reconcile(settings()).to_json()


@worker_process_init.connect
def _init_child(**_: object) -> None:
    dispose_engines(close=False)  # connections inherited from the parent belong to it
    init_child(getattr(current_process(), "index", 0) or 0, settings().worker_gpus)
