"""A stored blob linked into a job at once, its checksum checked in a thread beside the job's work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from regctl.registry.store.blobs import BlobRef


class BlobCheck:
    """One blob's check, running in a thread from the moment it is made (none: already checked).

    `wait` returns once the check passed and raises what it found (CorruptedArtifact) otherwise; every
    call does, so each place that must not go on past a damaged blob can ask.
    """

    def __init__(self, check: Callable[[], None] | None = None) -> None:
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if check is not None:
            self._thread = threading.Thread(target=self._run, args=(check,), name="regctl-blob-check")
            self._thread.daemon = True  # a cancelled job's check must not keep a stopping worker alive
            self._thread.start()

    def _run(self, check: Callable[[], None]) -> None:
        try:
            check()
        except BaseException as exc:  # handed to whoever waits: a thread's exception reaches no one
            self._error = exc

    def wait(self) -> None:
        """Block until the check is done; raise what it found."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class LinkedBlob:
    """A blob made to appear in a job's folder, and the check of its bytes (`check.wait()`)."""

    ref: BlobRef
    check: BlobCheck
