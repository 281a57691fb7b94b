"""Publishing jobs and webhook deliveries to the broker: rows are committed first, then messages sent.

The Celery side of `regctl.worker.dispatch.broker`, also used by the tasks and the reconciler.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from regctl.registry.deliveries import due_deliveries
from regctl.registry.engines import redact
from regctl.registry.entities import JobInfo
from regctl.registry.errors.services import BrokerUnreachable
from regctl.registry.jobs import mark_published
from regctl.registry.settings import Settings
from regctl.worker.app import make_app
from regctl.worker.queues import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, WEBHOOK_QUEUE


@lru_cache(maxsize=4)
def app_for(settings: Settings) -> Celery:
    """The Celery app for these settings, made once per process."""
    return make_app(settings)


def broker_unavailable(settings: Settings, exc: BaseException) -> BrokerUnreachable:
    """The error for a broker that cannot be reached, naming its URL without the password."""
    return BrokerUnreachable(url=redact(settings.broker_url or ""), reason=f"{type(exc).__name__}: {exc}")


def check_broker(settings: Settings) -> None:
    """Fail fast (within a few seconds) if the broker is unreachable, before anything is written."""
    try:
        with app_for(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        raise broker_unavailable(settings, exc) from exc


def publish(settings: Settings, jobs: list[JobInfo]) -> None:
    """Send one message per job to its queue and record it; the reconciler re-sends any that get lost."""
    if not jobs:
        return
    _send(settings, RUN_JOB_TASK, [(job.id, job.queue) for job in jobs])
    mark_published(settings, [job.id for job in jobs])


def publish_deliveries(
    settings: Settings, delivery_ids: list[int], *, countdown: float | None = None
) -> None:
    """Send one message per webhook delivery to the webhooks queue (`countdown`: not before then).

    A message only says "try delivery N"; the claim makes a duplicate harmless, and the reconciler
    re-sends the due deliveries whose message got lost.
    """
    if not delivery_ids:
        return
    _send(settings, DELIVER_WEBHOOK_TASK, [(i, WEBHOOK_QUEUE) for i in delivery_ids], countdown=countdown)


def _send(
    settings: Settings, task: str, messages: list[tuple[int, str]], *, countdown: float | None = None
) -> None:
    """One message per (id, queue) on one producer; an unreachable broker is ServiceUnavailable."""
    app = app_for(settings)
    try:
        with app.producer_or_acquire() as producer:
            for ident, queue in messages:
                app.send_task(
                    task,
                    args=[ident],
                    queue=queue,
                    routing_key=queue,
                    countdown=countdown,
                    producer=producer,
                    retry=False,
                )
    except Exception as exc:
        raise broker_unavailable(settings, exc) from exc


def publish_due_deliveries(settings: Settings) -> list[int]:
    """Publish every delivery due now (after a commit that may have added some); their ids."""
    due = due_deliveries(settings)
    publish_deliveries(settings, due)
    return due
