"""The broker is not the source of truth: jobs it lost are re-sent, and a crowd of jobs runs once each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Service, linear_model, parent_pid, pid_of, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def test_jobs_queued_when_redis_loses_its_data_all_complete_once_after_the_reconciler_runs(
    service: Service, tmp_path: Path
) -> None:
    directory = linear_model(tmp_path / "tiny")
    converts = {service.register(f"m{i:02d}", directory).jobs[0].id for i in range(20)}
    assert service.queue_length("cpu") == 20

    service.redis.flushdb()  # what a Redis restart without persistence does
    assert service.queue_length("cpu") == 0
    service.start_worker("cpu", concurrency=2)

    # Passes of `regctl reconcile` (REGCTL_QUEUED_TIMEOUT=1 s) until every lost job was re-sent;
    # later passes may re-send jobs that are merely waiting, which must be harmless.
    resent: set[int] = set()

    def everything_resent() -> bool:
        ran = service.regctl("reconcile", "--json")
        assert ran.returncode == 0, ran.stderr
        resent.update(json.loads(ran.stdout)["republished"])
        return converts <= resent

    wait_until(everything_resent, 180, "the reconciler to re-send the 20 lost jobs", interval=0.2)

    for i in range(20):
        version = service.wait_version(f"m{i:02d}:1")
        assert version.status == "ready", [(j.kind, j.state, j.error) for j in version.jobs]
        # the convert job's judge proved the stored bytes, so no validate job follows it
        assert [(j.kind, j.state, j.attempts) for j in version.jobs] == [("convert", "succeeded", 1)]
        assert [a.kind for a in version.artifacts].count("torchscript") == 1


def test_the_beat_schedule_runs_the_reconciler_so_jobs_redis_lost_complete_by_themselves(
    service: Service, tmp_path: Path
) -> None:
    directory = linear_model(tmp_path / "tiny")
    converts = [service.register(f"m{i}", directory).jobs[0] for i in range(3)]
    service.redis.flushdb()
    worker = service.start_worker("cpu")
    beat = service.start_beat(REGCTL_RECONCILE_INTERVAL="1")

    for i in range(3):
        assert service.wait_version(f"m{i}:1").status == "ready"
    assert [service.job(c.id).attempts for c in converts] == [1, 1, 1]
    assert beat.alive()
    assert "regctl.reconcile" in worker.log_text()


def test_fifty_jobs_submitted_at_once_to_two_workers_all_complete_on_their_first_attempt(
    service: Service, tmp_path: Path
) -> None:
    from regctl.registry.access import local_caller
    from regctl.registry.requests import SubmitRequest
    from regctl.service.jobs import submit

    first = service.start_worker("cpu", wait=False)
    second = service.start_worker("cpu", wait=False)
    service.wait_ready(first)
    service.wait_ready(second)
    service.register("lin", linear_model(tmp_path / "lin"))
    assert service.wait_version("lin:1").status == "ready"

    jobs = [submit(service.settings, local_caller(), SubmitRequest("lin:1", "validate")) for _ in range(50)]

    done = [service.wait_job(job.id) for job in jobs]
    assert [(j.state, j.attempts) for j in done] == [("succeeded", 1)] * 50, [j.error for j in done]
    parents = {parent_pid(pid_of(j)) for j in done}
    assert parents == {first.pid, second.pid}, "both workers take jobs"
    version = service.version("lin:1")
    assert version.status == "ready"
    assert [a.kind for a in version.artifacts].count("torchscript") == 1
