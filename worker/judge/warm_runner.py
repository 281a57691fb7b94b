"""LibTorch runner processes started before their artifact is known, so no judge waits for LibTorch's start.

The runner binary spends about 0.23 s loading libtorch and running its static initialisers before
`main` (measured: 226 ms to print its usage, 275-310 ms for a Linear's whole 14-input run). A small
model's convert job ran it twice, one after the other (the kept candidate on the battery, then the
other on its deciding inputs): 0.52 s of a 0.89 s job. Given "-" for its artifact, the runner reads
the path from its standard input (libtorch_runner.cpp), so the judge starts one as soon as it knows
the device and that a candidate file waits, and when it hands that one an artifact while another
candidate file waits, it starts a spare: the spare's start overlaps the run before it.

Each artifact still runs in a process of its own, as before: one candidate's run leaves nothing
(threads, generators, grad mode) behind for the next. Every process started here stays this
object's to end: leaving the `with` block (`close`) kills the spare nobody took and any taken one
still running, as when the job is cancelled between taking a process and handing it its artifact.
"""

from __future__ import annotations

import subprocess
from types import TracebackType

from regctl.worker.judge.libtorch import Runner, discard, start_process


class WarmRunners:
    """At most one runner process waiting for its artifact, for `expected` runs on one device."""

    def __init__(self, runner: Runner, device: str, expected: int, kind: str = "torchscript") -> None:
        self.runner, self.device, self.kind = runner, device, kind
        self.left = expected  # runs still to come: a spare is started only while one is
        self._waiting: subprocess.Popen[bytes] | None = None
        self._started: list[subprocess.Popen[bytes]] = []
        self._start()

    def take(self) -> subprocess.Popen[bytes] | None:
        """The waiting process for the next run (None: it could not start; the caller starts one),
        and a spare started to wait when more runs are to come."""
        process, self._waiting = self._waiting, None
        self.left -= 1
        self._start()
        return process

    def close(self) -> None:
        """Kill every process started here that has not ended (a run collects its own before)."""
        self.left, self._waiting = 0, None
        for process in self._started:
            discard(process)
        self._started.clear()

    def _start(self) -> None:
        if self._waiting is None and self.left > 0:
            try:
                self._waiting = start_process(self.runner, self.device, self.kind)
            except OSError:
                return  # the run itself starts one, and says why it could not
            self._started.append(self._waiting)

    def __enter__(self) -> WarmRunners:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
