"""The distributed service for real: Redis, a fresh PostgreSQL database and `regctl worker` processes.

Every test gets a Redis database number of its own (REGCTL_TEST_REDIS_DB, default 11, plus the
pytest-xdist worker's number: gw1 flushes 12) flushed before and after, a PostgreSQL database
created for it and dropped afterwards, and a factory that starts workers as subprocesses (in their
own session, so a whole worker can be killed with its pool) and stops them at teardown. A failing
test shows the logs of the workers it started.

Two kinds of time limit, kept apart so that the suite passes on a loaded machine (a second job
converting beside it) as on a quiet one:
- what a test waits out (a lost message re-sent after REGCTL_QUEUED_TIMEOUT, a hung model stopped
  at a soft limit a test sets itself) is small, and only ever races something that truly never
  finishes, so a slow machine cannot make it fire early;
- what would only cut short an honest job that is merely slow (the job time limits, a live worker's
  heartbeat) is minutes, far above a quiet machine's seconds: no test waits it out.
Polling deadlines (how long a test waits for something to happen) are generous for the same reason;
they cost nothing when things are fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from regctl.registry.entities import JobInfo, VersionInfo
from regctl.registry.settings import Settings
from tests.conftest import (
    create_postgres_database,
    drop_postgres_database,
    service_missing,
    wait_until,
    xdist_index,
)
from tests.factories import ABORT, FAST, HANG, SLOW, STUBBORN, linear_model  # noqa: F401  (re-exported)

# Each pytest-xdist worker flushes a database of its own: the base number plus the worker's (gw1: 12).
REDIS_DB = str(int(os.environ.get("REGCTL_TEST_REDIS_DB", "11")) + xdist_index())
REDIS_URL = os.environ.get("REGCTL_TEST_REDIS_URL") or f"redis://127.0.0.1:6379/{REDIS_DB}"
REGCTL = str(Path(sys.executable).with_name("regctl"))

FAST_ENV = {
    "REGCTL_HEARTBEAT_INTERVAL": "0.5",
    # A live worker beats every 0.5 s; only a stall of a minute (60 missed beats) lets the reconciler
    # or a second delivery take its job over. A test that kills a worker passes a small timeout to
    # its own reconciler pass (DEAD_WORKER_HEARTBEAT_TIMEOUT) instead of waiting this out.
    "REGCTL_HEARTBEAT_TIMEOUT": "60",
    # A lost message is re-sent after 1 s; re-sending one that merely waits is harmless by design.
    "REGCTL_QUEUED_TIMEOUT": "1",
    # An honest job of these tests takes seconds on a quiet machine; minutes leave room for a machine
    # many times slower. A test of the limits themselves sets its own, against a model that hangs.
    "REGCTL_JOB_TIME_LIMIT": "600",
    "REGCTL_JOB_SOFT_TIME_LIMIT": "540",
    "REGCTL_MAX_ATTEMPTS": "3",
    # the tests' webhook receivers listen on loopback, which deliveries refuse by default
    "REGCTL_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
    "REGCTL_CANCEL_GRACE": "2",
}
# For a test's own reconciler pass once it killed a worker: that worker's heartbeat never comes again.
DEAD_WORKER_HEARTBEAT_TIMEOUT = 3.0
WORKER_READY_S = 120.0
WORKER_STOP_S = 10.0  # a warm shutdown waits for the running job: waited out at teardown
JOB_DONE_S = 240.0


def base_env() -> dict[str, str]:
    """This process's environment without regctl's settings (the engine's LibTorch cache is kept)."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("REGCTL_") or k.startswith("REGCTL_LIBTORCH")
    }


def process_exists(pid: int) -> bool:
    """True while process `pid` runs (a zombie, killed but not yet reaped, does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def pid_of(job: JobInfo) -> int:
    """The process id in a job's `host:pid` worker field."""
    assert job.worker, f"job {job.id} has no worker recorded"
    return int(job.worker.rpartition(":")[2])


def parent_pid(pid: int) -> int | None:
    """The parent of process `pid` from /proc, or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


@dataclass
class WorkerProcess:
    """One `regctl worker` subprocess (the pool's parent) in a session of its own."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The pool parent's process id (also the process group id)."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the pool parent runs."""
        return self.process.poll() is None

    def child_pids(self) -> set[int]:
        """The pool's child processes, from /proc."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and parent_pid(int(entry.name)) == self.pid:
                found.add(int(entry.name))
        return found

    def kill(self) -> None:
        """kill -9 the whole worker: the parent and every pool child."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=WORKER_STOP_S)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL to the group after a deadline."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=WORKER_STOP_S)
        self._signal_group(signal.SIGKILL)  # pool children left behind, if any
        self.process.wait(timeout=WORKER_STOP_S)

    def log_text(self, limit: int = 30_000) -> str:
        """The end of the worker's log."""
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return "(no log)"

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)


@dataclass
class Service:
    """The distributed service under test: settings, the test's Redis database, the CLI."""

    settings: Settings
    redis: Any  # redis.Redis on the test's database
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        """A process environment with exactly these settings (no stray REGCTL_* from the caller)."""
        return {**base_env(), **self.settings.to_env(), "PYTHONUNBUFFERED": "1", **overrides}

    def regctl(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the real `regctl` command line with this service's environment."""
        return subprocess.run(
            [REGCTL, *args],
            env=self.env(**env),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(
        self, queues: str = "cpu", *, concurrency: int = 1, wait: bool = True, **env: str
    ) -> WorkerProcess:
        """Start `regctl worker` and (by default) wait until it answers a ping over the broker."""
        name = f"w{len(self.workers) + 1}-{queues.replace(',', '-')}@regctl-test"
        log = self.workdir / f"worker-{len(self.workers) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    REGCTL,
                    "worker",
                    "--queues",
                    queues,
                    "--concurrency",
                    str(concurrency),
                    "--hostname",
                    name,
                    "--loglevel",
                    "INFO",
                ],
                env=self.env(**env),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(name, process, log)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def start_beat(self, **env: str) -> WorkerProcess:
        """Start `regctl beat`, which sends the reconciler task every REGCTL_RECONCILE_INTERVAL seconds."""
        log = self.workdir / "beat.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [REGCTL, "beat", "--loglevel", "INFO"],
                env=self.env(**env),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        beat = WorkerProcess("beat", process, log)
        self.workers.append(beat)
        return beat

    def wait_ready(self, worker: WorkerProcess) -> None:
        """Poll the worker with a broadcast ping until it answers (or fail with its log)."""
        from regctl.worker.dispatch.publishing import app_for

        control = app_for(self.settings).control

        def answered() -> bool:
            if not worker.alive():
                raise AssertionError(
                    f"worker {worker.name} exited with {worker.process.returncode} before it was ready:\n"
                    f"{worker.log_text()}"
                )
            return bool(control.ping(destination=[worker.name], timeout=0.5))

        wait_until(answered, WORKER_READY_S, f"worker {worker.name} to answer a ping", interval=0.2)

    def register(
        self, name: str, directory: Path, *, convert: bool = True, new_version: bool = False
    ) -> VersionInfo:
        """Register a version through the service layer, which publishes its convert job."""
        from regctl.registry.access import local_caller
        from regctl.registry.requests import RegisterRequest
        from regctl.service.models import register_directory

        request = RegisterRequest(name, convert=convert, new_version=new_version)
        return register_directory(self.settings, local_caller(), request, directory)

    def version(self, ref: str) -> VersionInfo:
        """A version with its artifacts and jobs."""
        from regctl.registry.refs import parse_ref
        from regctl.registry.versions import get_version

        return get_version(self.settings, parse_ref(ref))

    def job(self, job_id: int) -> JobInfo:
        """A job as it stands now."""
        from regctl.registry.jobs import get_job

        return get_job(self.settings, job_id)

    def wait_version(self, ref: str, timeout: float = JOB_DONE_S) -> VersionInfo:
        """Wait until a version is ready or failed (and its last job finished); return it."""

        def settled() -> VersionInfo | None:
            version = self.version(ref)
            done = version.status in ("ready", "failed") and all(j.finished for j in version.jobs)
            return version if done else None

        return wait_until(settled, timeout, f"{ref} to become ready or failed", interval=0.1)

    def wait_job(self, job_id: int, timeout: float = JOB_DONE_S) -> JobInfo:
        """Wait until a job is finished; return it."""

        def finished() -> JobInfo | None:
            job = self.job(job_id)
            return job if job.finished else None

        return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.1)

    def wait_running(self, job_id: int, stage: str = "", timeout: float = JOB_DONE_S) -> JobInfo:
        """Wait until a job runs (and its timeline has reached `stage`); return it.

        The timeline, not the progress text: a job writes its progress at most every couple of
        seconds, so a short stage may never show as the progress, but it always joins the timeline.
        """

        def running() -> JobInfo | None:
            job = self.job(job_id)
            assert not job.finished, f"job {job_id} finished ({job.state}: {job.error}) before it was seen"
            reached = not stage or any(s.get("stage") == stage for s in job.stages or ())
            return job if job.state == "running" and reached else None

        return wait_until(running, timeout, f"job {job_id} to run {stage!r}", interval=0.05)

    def queue_length(self, queue: str) -> int:
        """Messages waiting in a broker queue."""
        return int(self.redis.llen(queue))


_WORKERS_KEY = pytest.StashKey[list[WorkerProcess]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the logs of the test's workers to its report when it fails."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for worker in item.stash.get(_WORKERS_KEY, []):
            report.sections.append((f"worker {worker.name} log", worker.log_text()))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test's own Redis database, flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {REDIS_URL}", exc)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own, upgraded to head, dropped afterwards."""
    from regctl.registry.migrate import upgrade

    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="session")
def prebuilt_libtorch_runner(libtorch_runner_cache: Path) -> None:
    """Build the engine's LibTorch runner into the session's cache before any worker starts.

    As a worker image does; otherwise the session's first job compiles it (10 s or more) inside the
    small time limits used here. A failed build is not an error: the engine then skips that stage.
    """
    subprocess.run(
        [sys.executable, "-m", "regctl.worker.judge.libtorch"],
        env=base_env(),
        capture_output=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def honest_job_s(tmp_path_factory: pytest.TempPathFactory, prebuilt_libtorch_runner: None) -> float:
    """Seconds an honest job takes on this machine as it is loaded now: a measured baseline.

    `regctl register --wait` of the Linear model, embedded: the same model process, judge and
    LibTorch runner as a worker's job, plus a command's start-up, so it errs on the long side. For a
    test whose worker must also serve honest jobs under a time limit it waits out.
    """
    root = tmp_path_factory.mktemp("honest-job")
    directory = linear_model(root / "lin")
    env = {**base_env(), "REGCTL_HOME": str(root / "home"), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [REGCTL, "register", "lin", str(directory), "--wait"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return took


@pytest.fixture
def service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_url: str,
    postgres_database: str,
    prebuilt_libtorch_runner: None,
) -> Iterator[Service]:
    """Settings on Redis and PostgreSQL with small thresholds; the workers it started stop at teardown."""
    import redis

    home = tmp_path / "home"
    settings = Settings.from_env(
        FAST_ENV,
        home=home,
        database_url=postgres_database,
        artifact_store=str(home / "artifacts"),
        broker_url=redis_url,
    )
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    workdir = tmp_path / "run"
    workdir.mkdir()
    running = Service(settings, client, workdir)
    request.node.stash[_WORKERS_KEY] = running.workers
    yield running
    for worker in running.workers:
        worker.stop()
    client.close()
    from regctl.worker.dispatch.publishing import app_for

    app_for(settings).close()
