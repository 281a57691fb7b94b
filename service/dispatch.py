"""The service layer's calls into the dispatcher its settings choose (`regctl.worker.dispatch`).

The rows are always committed first; a message only says "look at job N", and the reconciler (or
the next follower) picks up any job whose message got lost, so a job never depends on the publish.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from regctl.registry.entities import JobInfo
from regctl.registry.settings import Settings
from regctl.worker.dispatch import dispatcher_for

log = logging.getLogger("regctl.webhooks")


def preflight(settings: Settings) -> None:
    """Before writing anything for a job: make sure whatever runs jobs answers, so we fail fast."""
    dispatcher_for(settings).preflight()


def start(settings: Settings, jobs: Iterable[JobInfo]) -> None:
    """Hand the queued ones of these committed jobs to the dispatcher (those already over are skipped)."""
    queued = [job for job in jobs if job.state == "queued"]
    if queued:
        dispatcher_for(settings).publish(queued)


def send_webhooks(settings: Settings) -> None:
    """After a commit that may have added webhook deliveries: hand the due ones on (to the broker's
    webhooks queue, or to a background thread of this process).

    Never raises: the change is committed either way, and what this misses stays in the outbox for
    the reconciler or the next sender.
    """
    try:
        dispatcher_for(settings).send_webhooks()
    except Exception as exc:
        log.warning("webhook deliveries stay queued for now: %s", exc)
