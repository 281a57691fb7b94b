"""The reconciler: puts back jobs the broker lost or whose worker stopped heart-beating, and hands due
webhook deliveries (retries past a short backoff, lost messages, expired leases) to the webhooks queue."""

from __future__ import annotations

from dataclasses import dataclass

from regctl.registry.jobs import jobs_to_republish, requeue_stale, stale_running_jobs
from regctl.registry.settings import Settings
from regctl.worker.dispatch.publishing import publish, publish_due_deliveries


@dataclass(frozen=True)
class ReconcileReport:
    """What one reconciler pass did."""

    requeued: tuple[int, ...]
    failed: tuple[int, ...]
    republished: tuple[int, ...]
    webhooks: tuple[int, ...] = ()  # deliveries handed to the webhooks queue

    def to_json(self) -> dict[str, list[int]]:
        """The report as a JSON-safe dict."""
        return {
            "requeued": list(self.requeued),
            "failed": list(self.failed),
            "republished": list(self.republished),
            "webhooks": list(self.webhooks),
        }


def reconcile(settings: Settings, queued_older_than: float | None = None) -> ReconcileReport:
    """One pass: stale running jobs go back to queued (or fail past the cap), lost queued jobs are re-sent.

    Re-sending a job (or a webhook delivery) that still has a message is harmless: the claim lets only
    one delivery run it.
    """
    requeued, failed = [], []
    for job in stale_running_jobs(settings):
        after = requeue_stale(settings, job.id, f"the worker {job.worker} stopped heart-beating")
        (requeued if after.state == "queued" else failed).append(job.id)
    threshold = settings.queued_timeout if queued_older_than is None else queued_older_than
    lost = jobs_to_republish(settings, threshold)
    publish(settings, lost)
    # After the jobs: a job failed just above adds deliveries of its own.
    webhooks = publish_due_deliveries(settings)
    return ReconcileReport(tuple(requeued), tuple(failed), tuple(j.id for j in lost), tuple(webhooks))
