"""Handing new jobs to whatever runs them: the broker when one is configured, else this machine.

The rows are always committed first; a message only says "look at job N", and the reconciler
re-sends any message that gets lost, so a job never depends on the publish succeeding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from regctl.registry.entities import JobInfo
from regctl.registry.settings import Settings

_local_runner: LocalRunnerHook | None = None
log = logging.getLogger("regctl.webhooks")


class LocalRunnerHook:
    """Something in this process that runs queued jobs when there is no broker (the API server's runner)."""

    def notify(self) -> None:  # pragma: no cover - interface
        """Wake up: new queued jobs exist."""
        raise NotImplementedError


def install_local_runner(runner: LocalRunnerHook | None) -> None:
    """Register (or with None, remove) the in-process runner that `start` wakes in embedded mode."""
    global _local_runner
    _local_runner = runner


def preflight(settings: Settings) -> None:
    """Before writing anything for a job: make sure the broker (if any) answers, so we fail fast."""
    if not settings.embedded:
        from regctl.worker.dispatch import check_broker

        check_broker(settings)


def start(settings: Settings, jobs: Iterable[JobInfo]) -> None:
    """Publish the jobs to the broker, or wake this process's runner in embedded mode.

    Without a broker and without a runner (a direct command), the caller runs the job itself while
    following it (`worker.follow.follow(..., run_here=True)`).
    """
    jobs = [job for job in jobs if job.state == "queued"]
    if not jobs:
        return
    if not settings.embedded:
        from regctl.worker.dispatch import publish

        publish(settings, jobs)
    elif _local_runner is not None:
        _local_runner.notify()


def runs_here(settings: Settings) -> bool:
    """True when whoever follows a job in this process must also run it (embedded, no runner)."""
    return settings.embedded and _local_runner is None


def send_webhooks(settings: Settings) -> None:
    """After a commit that may have added webhook deliveries: hand the due ones to the broker's webhooks
    queue, or (embedded) send them from a background thread of this process.

    Never raises: the change is committed either way, and what this misses stays in the outbox for
    the reconciler (distributed) or the next embedded sender.
    """
    try:
        if settings.embedded:
            from regctl.worker.webhook_sender import send_in_background

            send_in_background(settings)
        else:
            from regctl.worker.dispatch import publish_due_deliveries

            publish_due_deliveries(settings)
    except Exception as exc:
        log.warning("webhook deliveries stay queued for now: %s", exc)
