"""Registration through the broker, and the cpu and gpu queues each served only by their own workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Service, linear_model, parent_pid, pid_of

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# tiny-transformer is there for the AOTInductor stage and converts slowly; tests/test_aoti.py and
# tests/engine/test_aoti.py cover it, and this test's short job limit is for the small examples.
_NOT_HERE = {"tiny-transformer"}


def _examples() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.iterdir() if (p / "regctl.toml").is_file() and p.name not in _NOT_HERE)


def test_registration_through_the_broker_makes_models_ready_and_each_queue_is_served_by_its_own_worker(
    service: Service, tmp_path: Path
) -> None:
    cpu = service.start_worker("cpu")
    gpu = service.start_worker("gpu", REGCTL_GPU_ON_CPU="1")
    tiny = linear_model(tmp_path / "tiny")
    tiny_cuda = linear_model(tmp_path / "tiny-cuda", device="cuda")

    # Through the real command line, following progress from the database.
    for name, directory in (("lin", tiny), ("lin-gpu", tiny_cuda)):
        done = service.regctl("register", name, str(directory), "--wait", timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{name}:1 is ready" in done.stderr

    # Every example, once on each queue (the gpu one through --device cuda).
    from regctl.registry.access import local_caller
    from regctl.registry.requests import RegisterRequest
    from regctl.service.models import register_directory

    refs = ["lin:1", "lin-gpu:1"]
    for example in _examples():
        for device in ("cpu", "cuda"):
            name = f"{example.name}-{device}"
            info = register_directory(
                service.settings, local_caller(), RegisterRequest(name, device=device), example
            )
            refs.append(info.ref)

    served = {"cpu": set(), "gpu": set()}
    for ref in refs:
        version = service.wait_version(ref)
        assert version.status == "ready", (ref, [(j.kind, j.state, j.error) for j in version.jobs])
        assert [(j.kind, j.state) for j in version.jobs] == [("convert", "succeeded")]
        expected = "gpu" if version.spec["device"] == "cuda" else "cpu"
        owner = gpu if expected == "gpu" else cpu
        other = cpu if owner is gpu else gpu
        for job in version.jobs:
            assert job.queue == expected, (ref, job.kind, job.queue)
            assert job.attempts == 1
            pid = pid_of(job)
            assert parent_pid(pid) == owner.pid, f"{ref} {job.kind} ran in {pid}, not a child of {owner.name}"
            assert pid not in other.child_pids()
            served[expected].add(pid)
    assert served["cpu"] and served["gpu"]
    assert served["cpu"].isdisjoint(served["gpu"])


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has CUDA")
def test_a_gpu_worker_refuses_to_start_without_cuda_unless_the_cpu_override_is_set(service: Service) -> None:
    refused = service.regctl("worker", "--queues", "gpu", "--concurrency", "1", REGCTL_GPU_ON_CPU="")

    assert refused.returncode == 2, refused.stderr
    assert "no CUDA device" in refused.stderr
    assert "REGCTL_GPU_ON_CPU=1" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
