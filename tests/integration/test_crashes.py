"""Jobs survive crashes: a killed pool child, a killed worker, a model that aborts, a model that hangs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ABORT,
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
    worker = service.start_worker("cpu")
    convert = service.register("slow", linear_model(tmp_path / "slow", forward=SLOW)).jobs[0]

    running = service.wait_running(convert.id, progress="eager reference")
    victim = pid_of(running)
    assert parent_pid(victim) == worker.pid, "the job must run in a child of the worker we started"
    os.kill(victim, signal.SIGKILL)

    version = service.wait_version("slow:1")
    convert = service.job(convert.id)
    assert version.status == "ready", [(j.kind, j.state, j.error) for j in version.jobs]
    assert convert.state == "succeeded"
    assert convert.attempts == 2
    assert pid_of(convert) != victim
    assert _kinds(version.artifacts).count("torchscript") == 1
    assert [j.kind for j in version.jobs] == ["convert", "validate"]
    assert worker.alive()


def test_a_worker_killed_whole_mid_job_has_its_job_completed_by_a_new_worker_after_the_reconciler_runs(
    service: Service, tmp_path: Path
) -> None:
    from worker.reconciler import reconcile

    first = service.start_worker("cpu")
    convert = service.register("slow", linear_model(tmp_path / "slow", forward=SLOW)).jobs[0]
    service.wait_running(convert.id, progress="eager reference")
    children = first.child_pids()
    first.kill()
    assert not first.alive()
    assert children
    wait_until(
        lambda: not any(process_exists(pid) for pid in children), 10, "the killed pool children to be gone"
    )

    second = service.start_worker("cpu")
    # The job stays `running` until its heartbeat is older than REGCTL_HEARTBEAT_TIMEOUT (3 s).
    wait_until(
        lambda: convert.id in reconcile(service.settings).requeued,
        service.settings.heartbeat_timeout + 15,
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
    assert [(j.kind, j.attempts) for j in version.jobs] == [("convert", 2), ("validate", 1)]


def test_a_model_that_aborts_its_worker_fails_after_the_attempt_cap_and_the_worker_serves_the_next_job(
    service: Service, tmp_path: Path
) -> None:
    worker = service.start_worker("cpu")
    convert = service.register("poison", linear_model(tmp_path / "poison", forward=ABORT)).jobs[0]
    cap = service.settings.max_attempts

    version = service.wait_version("poison:1", timeout=120)
    convert = service.job(convert.id)
    assert convert.state == "failed"
    assert convert.attempts == cap
    assert "signal 6 (SIGABRT)" in (convert.error or "")
    assert f"after {cap} attempts" in (convert.error or "")
    assert version.status == "failed"
    assert [j.kind for j in version.jobs] == ["convert"]

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert worker.alive()


def test_a_model_that_hangs_is_stopped_at_the_soft_time_limit_and_the_worker_keeps_serving(
    service: Service, tmp_path: Path
) -> None:
    worker = service.start_worker("cpu", REGCTL_JOB_SOFT_TIME_LIMIT="3", REGCTL_JOB_TIME_LIMIT="20")
    convert = service.register("hangs", linear_model(tmp_path / "hangs", forward=HANG)).jobs[0]

    version = service.wait_version("hangs:1", timeout=60)
    convert = service.job(convert.id)
    assert convert.state == "failed"
    assert "stopped at the soft time limit of 3s" in (convert.error or "")
    assert convert.attempts == 1
    assert version.status == "failed"
    assert convert.started_at and convert.finished_at
    assert 2.5 <= (convert.finished_at - convert.started_at).total_seconds() < 20

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert worker.alive()


def test_a_model_that_ignores_the_soft_limit_is_killed_at_the_hard_time_limit_and_the_worker_keeps_serving(
    service: Service, tmp_path: Path
) -> None:
    worker = service.start_worker("cpu", REGCTL_JOB_SOFT_TIME_LIMIT="3", REGCTL_JOB_TIME_LIMIT="6")
    convert = service.register("stubborn", linear_model(tmp_path / "stubborn", forward=STUBBORN)).jobs[0]
    running = service.wait_running(convert.id)

    version = service.wait_version("stubborn:1", timeout=60)
    convert = service.job(convert.id)
    assert convert.state == "failed"
    assert "stopped at the hard time limit of 6s" in (convert.error or "")
    assert convert.attempts == 1
    assert version.status == "failed"
    assert convert.started_at and convert.finished_at
    assert 5.5 <= (convert.finished_at - convert.started_at).total_seconds() < 20
    wait_until(lambda: not process_exists(pid_of(running)), 10, "the hung pool child to be killed")

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert service.job(convert.id).state == "failed"  # a second delivery did not run it again
    assert worker.alive()
