"""What the queue adds to a job: `register` to `ready` through Redis and a warm worker, against the same
convert + validate run directly in this process, in one run.

Both sides start at the same registry call (`register_version`, which stores the bundle and queues the
convert job) and end when the version is `ready`. Direct: `worker.pipeline.run_job` for the convert job
and then its validate job, in this process. Queued: the convert job is published to Redis; a warm
`regctl worker --concurrency 1` (started once, warmed with one job) converts, publishes the validate job
and validates; this process polls the database every 5 ms. The two sides alternate, several times;
per-job overhead = (median queued - median direct) / 2 jobs. Target (issue 4): under 100 ms per job.
Needs Redis and PostgreSQL (a database is created for the run and dropped afterwards).

    python benchmarks/queue_overhead.py [--runs 15] [--redis-url redis://127.0.0.1:6379/12]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regctl.registry.settings import Settings

TARGET_MS = 100.0
POLL_S = 0.005
REDIS_URL = os.environ.get("REGCTL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
POSTGRES_ADMIN_URL = os.environ.get("REGCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REGCTL = str(Path(sys.executable).with_name("regctl"))


def tiny_model(root: Path) -> Path:
    """A Linear(10, 2) model directory that converts and validates in a fraction of a second when warm."""
    from tests.factories import linear_model

    return linear_model(root)


@contextmanager
def distributed_settings(redis_url: str, tmp: Path) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL database and a flushed Redis database, both cleaned up afterwards."""
    import redis
    from sqlalchemy import create_engine, text

    from regctl.registry.db import dispose_engines
    from regctl.registry.engines import normalize_url
    from regctl.registry.migrate import upgrade

    admin = create_engine(normalize_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"regctl_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        upgrade(url)
        home = tmp / "home"
        yield Settings.from_env(
            {}, home=home, database_url=url, artifact_store=str(home / "artifacts"), broker_url=redis_url
        )
    finally:
        dispose_engines()
        client.flushdb()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def running_worker(settings: Settings, concurrency: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`regctl worker` on the cpu queue, answering pings, stopped (SIGTERM, then SIGKILL) afterwards."""
    from regctl.worker.dispatch.publishing import app_for

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGCTL_")}
    name = f"bench-{uuid.uuid4().hex[:6]}@regctl"
    argv = [REGCTL, "worker", "--queues", "cpu", "--concurrency", str(concurrency), "--hostname", name]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            env={**env, **settings.to_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not app_for(settings).control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(settings: Settings, ref: str, timeout: float = 60) -> None:
    """Poll the version's status every 5 ms until it is ready."""
    from regctl.registry.refs import parse_ref
    from regctl.registry.versions import resolve

    parsed = parse_ref(ref)
    deadline = time.monotonic() + timeout
    while True:
        status = resolve(settings, parsed).status
        if status == "ready":
            return
        if status == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{ref} ended {status}")
        time.sleep(POLL_S)


def direct(settings: Settings, name: str, directory: Path) -> float:
    """register -> convert -> validate, all in this process; seconds."""
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.versions import register_version
    from regctl.worker.supervisor.pipeline import run_job

    start = time.perf_counter()
    info = register_version(settings, RegisterRequest(name), directory, jobs=("convert",))
    _, follow_ups = run_job(settings, info.jobs[0].id)
    for job in follow_ups:
        run_job(settings, job.id)
    took = time.perf_counter() - start
    wait_ready(settings, info.ref, timeout=0)
    return took


def queued(settings: Settings, name: str, directory: Path) -> float:
    """register + publish, then a warm worker converts and validates; seconds until `ready` is seen."""
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.versions import register_version
    from regctl.worker.dispatch.publishing import publish

    start = time.perf_counter()
    info = register_version(settings, RegisterRequest(name), directory, jobs=("convert",))
    publish(settings, list(info.jobs))
    wait_ready(settings, info.ref)
    return time.perf_counter() - start


def main() -> None:
    """Measure both sides, alternating, and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        directory = tiny_model(tmp / "tiny")
        with (
            distributed_settings(args.redis_url, tmp) as settings,
            running_worker(settings, 1, tmp / "worker.log"),
        ):
            direct(settings, "warm-direct", directory)  # torch, the engine, connections
            queued(settings, "warm-queued", directory)
            direct_s, queued_s = [], []
            for i in range(args.runs):
                direct_s.append(direct(settings, f"direct-{i}", directory))
                queued_s.append(queued(settings, f"queued-{i}", directory))
    direct_median, queued_median = statistics.median(direct_s), statistics.median(queued_s)
    per_job_ms = (queued_median - direct_median) / 2 * 1e3
    print(
        json.dumps(
            {
                "benchmark": "queue_overhead",
                "model": "Linear(10, 2), battery batch 1..4, 1 sample",
                "jobs_per_run": 2,
                "runs": args.runs,
                "direct_median_s": round(direct_median, 4),
                "queued_median_s": round(queued_median, 4),
                "direct_s": [round(s, 4) for s in direct_s],
                "queued_s": [round(s, 4) for s in queued_s],
                "overhead_per_job_ms": round(per_job_ms, 1),
                "target_ms": TARGET_MS,
                "meets_target": per_job_ms < TARGET_MS,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
