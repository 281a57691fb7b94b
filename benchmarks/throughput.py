"""Jobs per second through a 2-process worker against a direct 2-process loop, in one run.

The jobs are validate jobs on converted Linear(10, 2) versions (the cheapest real job, so the queue's
share of each job is as large as it gets). Direct: a `multiprocessing` pool of 2 spawned processes calls
`worker.pipeline.run_job` on the job ids. Queued: job rows are published to Redis at once and
`regctl worker --concurrency 2` runs them; this process polls the database every 20 ms until all are
finished. Both sides are warmed first (torch, the engine, connections), set the same torch thread count
per process, get versions of their own (a validate job adds a report to its version, so both sides see
versions of the same size) and alternate in rounds. Target (issue 4): queued throughput at least 0.8x
the direct one. Needs Redis and PostgreSQL (a database is created for the run and dropped afterwards).

    python benchmarks/throughput.py [--jobs 200] [--processes 2] [--rounds 2] [--versions 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.queue_overhead import REDIS_URL, distributed_settings, running_worker, tiny_model, wait_ready
from registry.settings import Settings

TARGET = 0.8
POLL_S = 0.02
WARMUP_JOBS = 4


def _init_direct(settings: Settings, processes: int) -> None:
    # What a worker's pool child does at start (worker.runtime.init_child): threads, a warm engine.
    import torch

    from registry.db import dispose_engines

    dispose_engines(close=False)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    import worker.engine  # noqa: F401


def _run_direct(job_id: int) -> str:
    from registry.jobs import get_job
    from worker.pipeline import run_job

    settings = _SETTINGS
    run_job(settings, job_id)
    return get_job(settings, job_id).state


_SETTINGS: Settings


def _set_settings(settings: Settings, processes: int) -> None:
    global _SETTINGS
    _SETTINGS = settings
    _init_direct(settings, processes)


def validate_jobs(settings: Settings, refs: list[str], count: int) -> list[int]:
    """`count` queued validate jobs spread over `refs` (rows only; nothing is published)."""
    from registry.jobs import create_job
    from registry.refs import parse_version_ref

    parsed = [parse_version_ref(ref) for ref in refs]
    return [create_job(settings, parsed[i % len(parsed)], "validate").id for i in range(count)]


def converted_versions(settings: Settings, directory: Path, prefix: str, count: int) -> list[str]:
    """`count` ready versions, converted and validated in this process."""
    from registry.versions import register_version
    from worker.pipeline import run_job

    refs = []
    for i in range(count):
        info = register_version(settings, f"{prefix}-{i}", directory, jobs=("convert",))
        for job in run_job(settings, info.jobs[0].id)[1]:
            run_job(settings, job.id)
        wait_ready(settings, info.ref, timeout=0)
        refs.append(info.ref)
    return refs


def finished_count(settings: Settings, ids: list[int]) -> int:
    """How many of the jobs are finished (one query)."""
    from sqlalchemy import func, select

    from registry.db import session_scope
    from registry.schema import Job

    with session_scope(settings.database_url) as session:
        query = select(func.count()).where(
            Job.id.in_(ids), Job.state.in_(("succeeded", "failed", "cancelled"))
        )
        return int(session.scalar(query) or 0)


def failed_jobs(settings: Settings, ids: list[int]) -> list[int]:
    """The jobs among `ids` that did not succeed or ran more than once."""
    from registry.jobs import get_job

    jobs = [get_job(settings, i) for i in ids]
    return [j.id for j in jobs if j.state != "succeeded" or j.attempts != 1]


def run_direct(settings: Settings, ids: list[int], pool: multiprocessing.pool.Pool) -> float:
    """Seconds for the pool to run every job."""
    start = time.perf_counter()
    pool.map(_run_direct, ids, chunksize=1)
    return time.perf_counter() - start


def run_queued(settings: Settings, ids: list[int]) -> float:
    """Seconds from publishing every job at once until the worker finished them all."""
    from registry.jobs import get_job
    from worker.dispatch import publish

    jobs = [get_job(settings, i) for i in ids]
    start = time.perf_counter()
    publish(settings, jobs)
    while finished_count(settings, ids) < len(ids):
        time.sleep(POLL_S)
    return time.perf_counter() - start


def main() -> None:
    """Measure both sides and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds per side.")
    parser.add_argument("--versions", type=int, default=10, help="Versions per side the jobs spread over.")
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        directory = tiny_model(tmp / "tiny")
        per_round = max(1, args.jobs // args.rounds)
        context = multiprocessing.get_context("spawn")
        with (
            distributed_settings(args.redis_url, tmp) as settings,
            context.Pool(args.processes, _set_settings, (settings, args.processes)) as pool,
            running_worker(settings, args.processes, tmp / "worker.log"),
        ):
            direct_refs = converted_versions(settings, directory, "direct", args.versions)
            queued_refs = converted_versions(settings, directory, "queued", args.versions)
            pool.map(_run_direct, validate_jobs(settings, direct_refs, WARMUP_JOBS), chunksize=1)
            run_queued(settings, validate_jobs(settings, queued_refs, WARMUP_JOBS))
            direct_s = queued_s = 0.0
            all_ids: list[int] = []
            for _ in range(args.rounds):
                ids = validate_jobs(settings, direct_refs, per_round)
                direct_s += run_direct(settings, ids, pool)
                all_ids += ids
                ids = validate_jobs(settings, queued_refs, per_round)
                queued_s += run_queued(settings, ids)
                all_ids += ids
            bad = failed_jobs(settings, all_ids)
    jobs = per_round * args.rounds
    ratio = direct_s / queued_s
    print(
        json.dumps(
            {
                "benchmark": "throughput",
                "jobs": jobs,
                "rounds": args.rounds,
                "job": f"validate, Linear(10, 2), batch 1..4, 1 sample, over {args.versions} versions",
                "processes": args.processes,
                "cpu_count": os.cpu_count(),
                "direct_s": round(direct_s, 3),
                "queued_s": round(queued_s, 3),
                "direct_jobs_per_s": round(jobs / direct_s, 2),
                "queued_jobs_per_s": round(jobs / queued_s, 2),
                "ratio": round(ratio, 3),
                "jobs_not_succeeded_once": bad,
                "target": TARGET,
                "meets_target": ratio >= TARGET and not bad,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
