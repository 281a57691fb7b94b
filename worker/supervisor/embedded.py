"""Embedded mode: with no broker, jobs run on this machine, supervised by a child process.

The child is the job's supervisor (worker/supervisor/supervisor.py): it starts the sandboxed model process and
judge, so a model that calls `os.abort()` or segfaults kills only its sandboxed process, and the
job fails with the reason. The child itself is killed at the job's hard time limit should it ever
hang, which takes its sandboxes with it (they die with their parent).

The child is a clean interpreter, `python -P -m regctl.worker.supervisor.embedded PARENT_PID`, never a
multiprocessing "spawn" child: spawn re-imports the caller's `__main__`, so a training script that
calls `regctl.register_module` without an `if __name__ == "__main__":` guard would train (and
register) again inside the child. `-P` keeps the caller's folder off `sys.path`, so no file of
theirs can shadow a module the supervisor imports. The settings travel as JSON on the child's
stdin (never on its command line, where `ps` would show a database password), and the child asks
the kernel to kill it when this process dies, so a killed CLI leaves no job running behind it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from regctl.registry.settings import Settings
from regctl.worker.sandbox.client import shared_zygote
from regctl.worker.supervisor.exits import describe_exit
from regctl.worker.supervisor.identity import worker_identity

CLEANUP_GRACE_S = 60.0  # a finished job's child removing a large scratch folder
CHILD_MODULE = "regctl.worker.supervisor.embedded"


def start_child() -> subprocess.Popen[bytes]:
    """A job child, started and waiting on stdin for its settings and job (see the module docstring)."""
    # A fresh interpreter, not fork (the parent may hold database connections and rich's refresh
    # thread) and not spawn (it re-runs the caller's script): see the module docstring.
    # Its own session: a Ctrl-C at the terminal reaches only the caller, which stops the child
    # and puts the job back in the queue (`stop`), rather than interrupting it mid-write.
    return subprocess.Popen(
        [sys.executable, "-P", "-m", CHILD_MODULE, str(os.getpid())],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def dismiss_child(child: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Send a waiting child away without a job: it sees its stdin close and exits; killed past `grace_s`."""
    if child.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
    try:
        child.wait(grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class EmbeddedJob:
    """One job running in a child process, with the hard time limit enforced from here."""

    def __init__(self, settings: Settings, job_id: int, child: subprocess.Popen[bytes] | None = None) -> None:
        """Run the job in `child` (a `start_child` still waiting for one), else in a child started now."""
        self.settings, self.job_id = settings, job_id
        self.process = child if child is not None and child.poll() is None else start_child()
        self.started = time.monotonic()
        stdin = self.process.stdin
        try:
            if stdin is not None:
                with stdin:
                    stdin.write(json.dumps({"job": int(job_id), "settings": settings.to_env()}).encode())
        except BrokenPipeError:
            pass  # the child died before it read them: poll() reports how it ended

    def poll(self) -> bool:
        """Return True once the child is gone; record a crash or a time-limit kill on the job."""
        if self.process.poll() is None:
            if time.monotonic() - self.started <= self.settings.job_time_limit:
                return False
            self._kill()
            self._fail(
                f"stopped at the time limit of {self.settings.job_time_limit:g}s "
                "(REGCTL_JOB_TIME_LIMIT); the model took too long or hung"
            )
            return True
        if self.process.returncode:
            self._fail(
                f"the model crashed the worker process: it died with {describe_exit(self.process.returncode)}"
            )
        return True

    def finish(self, grace_s: float = CLEANUP_GRACE_S) -> None:
        """Let a child whose job is recorded remove its scratch and exit; kill it past `grace_s`.

        A caller that returned at once would leave the child to the parent-death signal, which
        kills it mid-cleanup and leaves its job's folder to the next sweep.
        """
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._kill()
            self._sweep()

    def stop(self, reason: str = "the process running it stopped") -> None:
        """Kill the child now and put its job back in the queue (or fail it past the attempt cap)."""
        # Here, not at the top: SQLAlchemy costs the child 0.85 s (measured) before its zygote starts.
        from regctl.registry.jobs import requeue_stale

        self._kill()
        requeue_stale(self.settings, self.job_id, reason)
        self._sweep()

    @property
    def worker(self) -> str:
        """The `host:pid` the child records on the job it claims."""
        return worker_identity(self.process.pid)

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process.poll() is None

    def _kill(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _fail(self, reason: str) -> None:
        # The pipeline (33–66 ms, measured) only in the child (see main) or when a job failed.
        from regctl.worker.supervisor.pipeline import fail_unless_finished

        fail_unless_finished(self.settings, self.job_id, reason)
        self._sweep()

    def _sweep(self) -> None:
        """Remove the scratch the killed child never cleaned up: its job's folders, no one else's.

        Other abandoned folders are the next job's to sweep (run_job). Ctrl-C waits for this, and a
        shared work dir may hold another job's tree of millions of entries (tests/test_hostile*.py).
        """
        # Here: scratch costs 15–30 ms (measured after the dispatcher) that the CLI or server process
        # holding an EmbeddedJob pays only when a job is stopped or killed.
        from regctl.worker.supervisor.scratch import job_prefix, sweep_abandoned

        sweep_abandoned(self.settings.work_dir, job_prefix(self.job_id))


def _die_with_parent(parent: int) -> None:
    """Be killed when the process that started this one dies; exit now if it already has."""
    if sys.platform == "linux":
        from regctl.worker.sandbox.linux import die_with_parent  # Linux only (prctl), the child only

        # The kernel sends it when the thread that started us ends: EmbeddedJob's users (a CLI's
        # main thread, the server's runner thread) outlive the job, and finish() waits for it.
        die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was armed
        raise SystemExit(f"regctl: the process that started job runner {os.getpid()} is gone")


def main(argv: list[str] | None = None) -> int:
    """The child: `python -P -m regctl.worker.supervisor.embedded PARENT_PID`; job and settings on stdin."""
    (parent,) = (int(arg) for arg in (argv if argv is not None else sys.argv[1:]))
    _die_with_parent(parent)
    # The zygote first: it imports torch in the background while this process imports the pipeline
    # (0.5 s in the child), waits for its job and claims and fetches it; the pipeline at the top would
    # also cost the parent, which imports this module, 33–66 ms (measured).
    shared_zygote()
    from regctl.worker.supervisor.pipeline import run_job

    received = sys.stdin.read()
    if not received:  # dismissed before any job was registered (dismiss_child)
        return 0
    message = json.loads(received)
    run_job(Settings.from_env(message["settings"]), int(message["job"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
