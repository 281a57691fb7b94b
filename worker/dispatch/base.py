"""The dispatcher interface: how committed jobs reach whatever runs them, and how a caller follows them.

Every job row is committed before its dispatcher hears of it; a message (or a wake-up) only says
"look at job N", so nothing is lost when a publish fails: the reconciler, the server's runner or the
next follower finds the queued row. Modelled on dramatiq's `Broker` (`dramatiq/broker.py`) with its
`brokers/stub.py`: one interface, one implementation chosen once (see `regctl.worker.dispatch`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from regctl.registry.entities import JobInfo
from regctl.registry.settings import Settings


class Dispatcher(abc.ABC):
    """Hands queued jobs and due webhook deliveries to whatever runs them; follows job chains."""

    # True only where nobody but a follower runs jobs: a caller that does not follow leaves them queued.
    runs_jobs_when_followed: bool = False
    # True where a broker carries the messages (the worker, beat and reconcile commands need one).
    uses_broker: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def preflight(self) -> None:  # noqa: B027  (most dispatchers have nothing to reach)
        """Before anything is written for a job: fail fast if whatever runs jobs cannot be reached."""

    @abc.abstractmethod
    def publish(self, jobs: list[JobInfo]) -> None:
        """Hand over queued jobs whose rows are committed."""

    @abc.abstractmethod
    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Yield the job at each change, then the job its success created, until the chain ends."""

    @abc.abstractmethod
    def send_webhooks(self) -> None:
        """Hand on the webhook deliveries due now (after a commit that may have added some)."""

    def warm_up(self) -> None:  # noqa: B027  (only a dispatcher that runs jobs in this process can)
        """A job this caller will follow is about to be registered: get ready to run it (optional)."""

    def cool_down(self) -> None:  # noqa: B027
        """Release what `warm_up` prepared and no job used."""

    def start(self) -> None:  # noqa: B027  (only a dispatcher with a thread of its own needs it)
        """Begin serving (the server's runner starts its thread)."""

    def stop(self) -> None:  # noqa: B027
        """Stop serving; a job this dispatcher runs is stopped with it."""
