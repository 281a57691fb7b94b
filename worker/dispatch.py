"""Publishing jobs and webhook deliveries to the broker: rows are committed first, then messages sent."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from regctl.registry.db import redact
from regctl.registry.entities import JobInfo
from regctl.registry.errors import ServiceUnavailable
from regctl.registry.jobs import mark_published
from regctl.registry.settings import Settings
from regctl.worker.queues import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, WEBHOOK_QUEUE


@lru_cache(maxsize=4)
def app_for(settings: Settings) -> Celery:
    """The Celery app for these settings, made once per process."""
    from regctl.worker.app import make_app

    return make_app(settings)


def broker_unavailable(settings: Settings, exc: BaseException) -> ServiceUnavailable:
    """The error for a broker that cannot be reached, naming its URL without the password."""
    return ServiceUnavailable(
        f"cannot reach the broker at {redact(settings.broker_url or '')} ({type(exc).__name__}: {exc}); "
        "check REGCTL_BROKER_URL and that Redis is running"
    )


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
    app = app_for(settings)
    try:
        with app.producer_or_acquire() as producer:
            for job in jobs:
                app.send_task(
                    RUN_JOB_TASK,
                    args=[job.id],
                    queue=job.queue,
                    routing_key=job.queue,
                    producer=producer,
                    retry=False,
                )
    except Exception as exc:
        raise broker_unavailable(settings, exc) from exc
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
    app = app_for(settings)
    try:
        with app.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                app.send_task(
                    DELIVER_WEBHOOK_TASK,
                    args=[delivery_id],
                    queue=WEBHOOK_QUEUE,
                    routing_key=WEBHOOK_QUEUE,
                    countdown=countdown,
                    producer=producer,
                    retry=False,
                )
    except Exception as exc:
        raise broker_unavailable(settings, exc) from exc


def publish_due_deliveries(settings: Settings) -> list[int]:
    """Publish every delivery due now (after a commit that may have added some); their ids."""
    from regctl.registry.deliveries import due_deliveries

    due = due_deliveries(settings)
    publish_deliveries(settings, due)
    return due
