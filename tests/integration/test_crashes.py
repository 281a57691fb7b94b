"""Jobs survive crashes: a killed pool child, a killed worker, a model that aborts, a model that hangs."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ABORT,
    DEAD_WORKER_HEARTBEAT_TIMEOUT,
    HANG,
    SLOW,
    STUBBORN,
    Service,
    linear_model,
    parent_pid,
    pid_of,
    process_exists,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def _kinds(artifacts: tuple) -> list[str]:
    return sorted(a.kind for a in artifacts)


def test_a_pool_child_killed_mid_conversion_has_its_job_delivered_again_and_recorded_once(
    service: Service, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    worker = service.start_worker("cpu", REGCTL_WORK_DIR=str(scratch))
    convert = service.register("slow", linear_model(tmp_path / "slow", forward=SLOW)).jobs[0]

    running = service.wait_running(convert.id, stage="loading model")
    victim = pid_of(running)
    assert parent_pid(victim) == worker.pid, "the job must run in a child of the worker we started"
    assert [p.name.startswith(f"regctl-job-{convert.id}-") for p in scratch.iterdir()] == [True]
    os.kill(victim, signal.SIGKILL)

    version = service.wait_version("slow:1")
    convert = service.job(convert.id)
    assert version.status == "ready", [(j.kind, j.state, j.error) for j in version.jobs]
    assert convert.state == "succeeded"
    assert convert.attempts == 2
    assert pid_of(convert) != victim
    assert _kinds(version.artifacts).count("torchscript") == 1
    assert [j.kind for j in version.jobs] == ["convert"]
    assert worker.alive()
    # The killed child's folder was swept; the second attempt removed its own.
    wait_until(lambda: list(scratch.iterdir()) == [], 60, "the job folders to be removed")


def test_a_worker_killed_whole_mid_job_has_its_job_completed_by_a_new_worker_after_the_reconciler_runs(
    service: Service, tmp_path: Path
) -> None:
    from regctl.worker.reconciler import reconcile

    first = service.start_worker("cpu")
    convert = service.register("slow", linear_model(tmp_path / "slow", forward=SLOW)).jobs[0]
    service.wait_running(convert.id, stage="loading model")
    children = first.child_pids()
    first.kill()
    assert not first.alive()
    assert children
    wait_until(
        lambda: not any(process_exists(pid) for pid in children), 60, "the killed pool children to be gone"
    )

    second = service.start_worker("cpu")
    # The job stays `running` until its heartbeat is older than the heartbeat timeout. The killed
    # worker never beats again, so this pass may use a timeout of seconds (the workers' own is a
    # minute, so that a live worker slowed by a loaded machine never loses its job).
    dead_after = dataclasses.replace(service.settings, heartbeat_timeout=DEAD_WORKER_HEARTBEAT_TIMEOUT)
    wait_until(
        lambda: convert.id in reconcile(dead_after).requeued,
        DEAD_WORKER_HEARTBEAT_TIMEOUT + 120,
        f"the reconciler to re-queue job {convert.id}",
        interval=0.5,
    )

    version = service.wait_version("slow:1")
    convert = service.job(convert.id)
    assert version.status == "ready", [(j.kind, j.state, j.error) for j in version.jobs]
    assert convert.state == "succeeded"
    assert convert.attempts == 2
    assert parent_pid(pid_of(convert)) == second.pid
    assert _kinds(version.artifacts).count("torchscript") == 1
    assert [(j.kind, j.attempts) for j in version.jobs] == [("convert", 2)]


def test_a_model_that_aborts_fails_its_job_at_once_and_the_pool_child_serves_the_next_job(
    service: Service, tmp_path: Path
) -> None:
    worker = service.start_worker("cpu")
    children = wait_until(worker.child_pids, 120, "the pool child")
    convert = service.register("poison", linear_model(tmp_path / "poison", forward=ABORT)).jobs[0]

    version = service.wait_version("poison:1")
    convert = service.job(convert.id)
    assert convert.state == "failed"
    assert convert.attempts == 1  # the sandboxed model process died, not the pool child: no retry
    assert "the model process died with signal 6 (SIGABRT)" in (convert.error or "")
    assert version.status == "failed"
    assert [j.kind for j in version.jobs] == ["convert"]

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert worker.alive()
    assert pid_of(service.job(convert.id)) in children, "the job ran in the pool child that started first"


def _soft_limit_s(honest_job_s: float) -> int:
    """A soft limit the hung model waits out, yet one an honest job on the same worker stays under.

    The model that hangs never finishes, so any limit stops it. The honest job that follows on the
    same worker runs under the same limit, so the limit is derived from a measured honest job: twice
    an embedded registration of the same model, which does the worker's job and more (a command's
    and a job process's start-up), and at least 8 s, as before. A loaded machine waits longer; a
    quiet one no longer than before.
    """
    return max(8, math.ceil(2 * honest_job_s))


def test_a_model_that_hangs_is_stopped_at_the_soft_time_limit_and_the_worker_keeps_serving(
    service: Service, tmp_path: Path, honest_job_s: float
) -> None:
    soft = _soft_limit_s(honest_job_s)
    hard = soft + 30
    worker = service.start_worker(
        "cpu", REGCTL_JOB_SOFT_TIME_LIMIT=str(soft), REGCTL_JOB_TIME_LIMIT=str(hard)
    )
    convert = service.register("hangs", linear_model(tmp_path / "hangs", forward=HANG)).jobs[0]

    _assert_stopped_at_the_soft_limit(service, "hangs:1", convert.id, soft_limit_s=soft, hard_limit_s=hard)

    service.register("good", linear_model(tmp_path / "good"))
    good = service.wait_version("good:1")
    assert good.status == "ready", [(j.kind, j.error) for j in good.jobs]
    assert worker.alive()


def test_a_model_that_swallows_the_soft_limit_is_still_stopped_there_and_leaves_nothing_running(
    service: Service, tmp_path: Path, honest_job_s: float
) -> None:
    # In-process, such a model ran until Celery's hard limit killed the whole pool child; now the
    # supervisor kills its sandboxed process at the soft limit and the pool child lives on.
    soft = _soft_limit_s(honest_job_s)
    hard = 2 * soft
    worker = service.start_worker(
        "cpu", REGCTL_JOB_SOFT_TIME_LIMIT=str(soft), REGCTL_JOB_TIME_LIMIT=str(hard)
    )
    convert = service.register("stubborn", linear_model(tmp_path / "stubborn", forward=STUBBORN)).jobs[0]
    running = service.wait_running(convert.id)

    _assert_stopped_at_the_soft_limit(service, "stubborn:1", convert.id, soft_limit_s=soft, hard_limit_s=hard)
    assert process_exists(pid_of(running)), "the pool child survives"
    wait_until(lambda: not _sandboxed_descendants(worker.pid), 60, "the sandboxed processes to be gone")

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert service.job(convert.id).state == "failed"  # a second delivery did not run it again
    assert worker.alive()


def _sandboxed_descendants(root: int) -> list[int]:
    """Processes below `root` that run as a sandbox uid (the model process and the judge)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid < 64000 or "\nState:\tZ" in status:
            continue
        pid: int | None = int(entry.name)
        while pid not in (None, 0, 1, root):
            pid = parent_pid(pid)  # type: ignore[arg-type]
        if pid == root:
            found.append(int(entry.name))
    return found


def _assert_stopped_at_the_soft_limit(
    service: Service, ref: str, job_id: int, *, soft_limit_s: int, hard_limit_s: int
) -> None:
    """The convert job failed once, at the soft limit and before the hard one, and so did its version."""
    version = service.wait_version(ref, timeout=hard_limit_s + 120)
    convert = service.job(job_id)
    assert convert.state == "failed"
    assert f"stopped at the soft time limit of {soft_limit_s}s" in (convert.error or "")
    assert convert.attempts == 1
    assert version.status == "failed"
    assert convert.started_at and convert.finished_at
    assert soft_limit_s - 0.5 <= (convert.finished_at - convert.started_at).total_seconds() < hard_limit_s
