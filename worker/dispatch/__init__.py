"""Who runs queued jobs, chosen once from Settings, behind one interface (`Dispatcher`):

- `BrokerDispatcher` (broker.py): a broker is configured; Celery workers run the jobs.
- `InProcessDispatcher` (inprocess.py): the embedded default in a CLI or Python process; whoever
  follows a job runs it in a supervised child process.
- `ServerRunner` (server_runner.py): the embedded default in an API server that runs jobs; a thread
  of the server runs them.

This package is the only code that asks whether a broker is configured. Like dramatiq's
`set_broker`, the API server installs its runner as this process's dispatcher for its settings at
start-up (`serving`); any other caller gets the one its settings choose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from regctl.registry.errors import InvalidInput
from regctl.registry.settings import Settings
from regctl.worker.dispatch.base import Dispatcher

__all__ = ["Dispatcher", "dispatcher_for", "require_broker", "serving", "warmed"]

_installed: Dispatcher | None = None


def dispatcher_for(settings: Settings) -> Dispatcher:
    """The dispatcher for these settings: the one installed at start-up for them, else their own choice."""
    installed = _installed
    if installed is not None and installed.settings == settings:
        return installed
    return _chosen(settings)


@lru_cache(maxsize=16)
def _chosen(settings: Settings) -> Dispatcher:
    # Each implementation is imported only when chosen: the broker's pulls in Celery, the others the
    # database layer (200–250 ms each, measured after the CLI's start), and the CLI's start-up, which
    # imports this package, loads neither (tests/test_cli_imports.py).
    if settings.embedded:
        from regctl.worker.dispatch.inprocess import InProcessDispatcher

        return InProcessDispatcher(settings)
    from regctl.worker.dispatch.broker import BrokerDispatcher

    return BrokerDispatcher(settings)


@contextmanager
def warmed(settings: Settings | None) -> Iterator[None]:
    """Around registering a version this process will then follow: its job's runner warmed up first.

    `None` (the caller will not follow, or talks to a server) warms nothing. On the embedded default
    the job's child starts at once and imports torch while the files are hashed and stored; one no
    job took is dismissed on the way out.
    """
    if settings is None:
        yield
        return
    dispatcher = dispatcher_for(settings)
    dispatcher.warm_up()
    try:
        yield
    finally:
        dispatcher.cool_down()


@contextmanager
def serving(settings: Settings, *, run_jobs: bool = True) -> Iterator[Dispatcher]:
    """For an API server's lifetime: the dispatcher its requests use, started and installed.

    On the embedded default with `run_jobs` that is the server's own runner thread, stopped (with the
    job it runs) on the way out; otherwise the settings' own choice (without `run_jobs`, queued jobs
    wait for a follower).
    """
    global _installed
    if not (run_jobs and settings.embedded):
        yield dispatcher_for(settings)
        return
    from regctl.worker.dispatch.server_runner import ServerRunner  # the database layer: see _chosen

    runner = ServerRunner(settings)
    runner.start()
    _installed = runner
    try:
        yield runner
    finally:
        if _installed is runner:
            _installed = None
        runner.stop()


def require_broker(settings: Settings) -> Dispatcher:
    """The broker's dispatcher, for the commands that only serve one (worker, beat, reconcile)."""
    dispatcher = dispatcher_for(settings)
    if not dispatcher.uses_broker:
        raise InvalidInput(
            "no broker is configured; set REGCTL_BROKER_URL (e.g. redis://localhost:6379/0) "
            "or pass --broker-url"
        )
    return dispatcher
