"""Cancelling jobs: a queued one at once (its message is skipped), a running one at its next stage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import HANG, SLOW, Service, linear_model, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def test_a_queued_job_is_cancelled_at_once_and_skipped_when_a_worker_later_receives_it(
    service: Service, tmp_path: Path
) -> None:
    directory = linear_model(tmp_path / "lin")
    convert = service.register("lin", directory).jobs[0]
    assert service.queue_length("cpu") == 1

    cancelled = service.regctl("jobs", "cancel", str(convert.id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"job {convert.id} cancelled"
    shown = service.regctl("jobs", "show", str(convert.id), "--json")
    assert json.loads(shown.stdout)["state"] == "cancelled"

    worker = service.start_worker("cpu")
    service.register("after", directory)
    assert service.wait_version("after:1").status == "ready"
    # One process, one queue in order: the cancelled job's message came first and was acknowledged.
    # The cancelled one, then the conversion of after:1 (proved by its judge: no validate job follows).
    wait_until(lambda: worker.log_text().count(" succeeded in ") >= 2, 60, "two tasks to end")
    assert service.queue_length("cpu") == 0

    job = service.job(convert.id)
    assert (job.state, job.attempts, job.worker) == ("cancelled", 0, None)
    version = service.version("lin:1")
    assert version.status == "cancelled"
    assert [a.kind for a in version.artifacts] == ["source"]
    assert [j.kind for j in version.jobs] == ["convert"]

    retried = service.regctl("jobs", "retry", str(convert.id))
    assert retried.returncode == 0, retried.stderr
    assert service.wait_version("lin:1").status == "ready"
    assert service.job(convert.id).attempts == 1


# "At once" is well below the grace period (CANCEL_GRACE_S), after which the pool child ends a stage
# that never reaches a checkpoint (another message), and far above a quiet machine's second or two.
CANCEL_GRACE_S = 120
AT_ONCE_S = 60


@pytest.mark.parametrize(
    ("forward", "how"),
    [
        # Forward calls of 0.3 s and a long grace: it stops at once.
        pytest.param(SLOW, "cancelled by the user during ", id="between-progress-reports"),
        # A forward call that never returns and a long grace: no progress report comes, yet the
        # supervisor kills the sandboxed model process at once instead of waiting for the grace period.
        pytest.param(HANG, "its sandboxed processes were stopped", id="inside-a-hung-forward"),
    ],
)
def test_a_running_job_is_cancelled_at_once_even_inside_a_hung_forward_and_the_worker_keeps_serving(
    service: Service, tmp_path: Path, forward: str, how: str
) -> None:
    worker = service.start_worker("cpu", REGCTL_CANCEL_GRACE=str(CANCEL_GRACE_S))
    convert = service.register("slow", linear_model(tmp_path / "slow", forward=forward)).jobs[0]
    # Once the model process loads the model, the slow forward calls (builder, latency, reference)
    # leave seconds for the cancel to land before the job could finish.
    service.wait_running(convert.id, stage="loading model" if forward == SLOW else "")

    asked = time.monotonic()
    cancelled = service.regctl("jobs", "cancel", str(convert.id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "will stop at its next stage" in cancelled.stdout

    job = service.wait_job(convert.id, timeout=CANCEL_GRACE_S + 60)
    assert time.monotonic() - asked < AT_ONCE_S
    assert job.state == "cancelled"
    assert how in (job.error or "")
    assert job.attempts == 1
    version = service.version("slow:1")
    assert version.status == "cancelled"
    assert "torchscript" not in [a.kind for a in version.artifacts]
    assert [j.kind for j in version.jobs] == ["convert"]

    service.register("good", linear_model(tmp_path / "good"))
    assert service.wait_version("good:1").status == "ready"
    assert service.job(convert.id).state == "cancelled"
    assert worker.alive()
