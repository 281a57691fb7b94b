"""The docker-compose file validates offline and names every service the distributed set-up needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parent.parent


def _config(*profiles: str) -> str:
    if shutil.which("docker-compose") is None:
        service_missing("docker-compose (Debian package docker-compose)", "not installed")
    args = ["docker-compose", *[a for p in profiles for a in ("--profile", p)], "config"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_validates_with_every_profile() -> None:
    rendered = _config("gpu", "monitoring")
    for service in (
        "redis",
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "worker-cpu",
        "worker-gpu",
        "beat",
        "flower",
    ):
        assert f"  {service}:" in rendered


def test_gpu_worker_and_flower_are_behind_profiles() -> None:
    rendered = _config("gpu", "monitoring")
    assert "- gpu" in rendered and "- monitoring" in rendered


def test_workers_share_the_artifact_volume_and_the_database() -> None:
    rendered = _config("gpu")
    assert rendered.count("REGCTL_DATABASE_URL: postgresql://regctl:regctl@postgres:5432/regctl") >= 4
    assert rendered.count("REGCTL_ARTIFACT_STORE: s3://regctl/artifacts") >= 3
    assert rendered.count("AWS_ENDPOINT_URL_S3: http://minio:9000") >= 3
    assert "driver: nvidia" in rendered and "- gpu" in rendered


def test_workers_get_what_the_sandbox_needs_and_nothing_broader() -> None:
    rendered = _config("gpu")
    workers = [_service_block(rendered, name) for name in ("worker-cpu", "worker-gpu")]
    for block in workers:
        assert "cap_add:\n    - SYS_ADMIN" in block
        assert "apparmor=unconfined" in block
        assert "REGCTL_SANDBOX: strict" in block
        assert "privileged" not in block and "seccomp=unconfined" not in block
    for name in ("beat", "migrate", "redis", "postgres"):
        assert "SYS_ADMIN" not in _service_block(rendered, name)


def _service_block(rendered: str, name: str) -> str:
    """The lines of one service in `docker-compose config` output (up to the next service)."""
    lines = rendered.splitlines()
    start = lines.index(f"  {name}:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("   ")), len(lines))
    return "\n".join(lines[start:end])
