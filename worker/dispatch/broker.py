"""The broker's dispatcher (Celery on Redis): a message per job on its queue, workers run them.

The only dispatcher that imports Celery, so it is loaded only when a broker is configured.
"""

from __future__ import annotations

from collections.abc import Iterator

from regctl.registry.entities import JobInfo
from regctl.worker.dispatch.base import Dispatcher
from regctl.worker.dispatch.publishing import check_broker, publish, publish_due_deliveries
from regctl.worker.follow import follow


class BrokerDispatcher(Dispatcher):
    """Publishes to the broker's queues; following a job only reads its rows."""

    uses_broker = True

    def preflight(self) -> None:
        """Fail within seconds, before anything is written, when the broker does not answer."""
        check_broker(self.settings)

    def publish(self, jobs: list[JobInfo]) -> None:
        """One message per job on its queue; the reconciler re-sends any that get lost."""
        publish(self.settings, jobs)

    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Poll the job rows; a worker runs the jobs."""
        return follow(self.settings, job)

    def send_webhooks(self) -> None:
        """Put the due deliveries on the broker's webhooks queue."""
        publish_due_deliveries(self.settings)
