"""The docker-compose file validates offline and names every service the distributed set-up needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
        "api",
        "flower",
    ):
        assert f"  {service}:" in rendered


def test_compose_file_has_no_duplicate_keys() -> None:
    # Compose v1 (PyYAML) keeps the last of two equal keys silently; `docker compose` v2 refuses the file.
    yaml = pytest.importorskip("yaml")
    duplicates: list[str] = []

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
            keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
            duplicates.extend(
                f"{key} (line {node.start_mark.line + 1})"
                for key in sorted(set(keys))
                if key != "<<" and keys.count(key) > 1
            )
            return super().construct_mapping(node, deep=deep)

    yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=Strict)
    assert not duplicates, f"duplicate keys in docker-compose.yml: {duplicates}"


def test_api_serves_on_loopback_after_migrate_with_the_workers_settings() -> None:
    rendered = _config()
    api = _service_block(rendered, "api")
    command = ("serve", "--host", "0.0.0.0", "--port", "'8000'", "--forwarded-allow-ips", "'*'")
    assert "command:\n" + "".join(f"    - {arg}\n" for arg in command) in api + "\n"
    assert "ports:\n    - 127.0.0.1:8000:8000" in api
    assert "migrate:\n        condition: service_completed_successfully" in api
    assert "image: regctl:latest" in api
    for setting in (
        "REGCTL_DATABASE_URL: postgresql://regctl:regctl@postgres:5432/regctl",
        "REGCTL_BROKER_URL: redis://redis:6379/0",
        "REGCTL_ARTIFACT_STORE: s3://regctl/artifacts",
        "AWS_ENDPOINT_URL_S3: http://minio:9000",
    ):
        assert setting in api
    assert "/api/v1/health" in api and "- python" in api
    # The server queues jobs for the workers and runs no model code: no sandbox privileges.
    assert "SYS_ADMIN" not in api and "user: root" not in api


def test_gpu_worker_and_flower_are_behind_profiles() -> None:
    rendered = _config("gpu", "monitoring")
    assert "- gpu" in rendered and "- monitoring" in rendered


def test_workers_share_the_artifact_volume_and_the_database() -> None:
    rendered = _config("gpu")
    assert rendered.count("REGCTL_DATABASE_URL: postgresql://regctl:regctl@postgres:5432/regctl") >= 4
    assert rendered.count("REGCTL_ARTIFACT_STORE: s3://regctl/artifacts") >= 3
    assert rendered.count("AWS_ENDPOINT_URL_S3: http://minio:9000") >= 3
    for name in ("worker-cpu", "worker-gpu"):
        assert "REGCTL_DATABASE_URL: postgresql://" in _service_block(rendered, name)
    assert "driver: nvidia" in rendered and "- gpu" in rendered


def test_workers_get_what_the_sandbox_needs_and_nothing_broader() -> None:
    rendered = _config("gpu")
    workers = [_service_block(rendered, name) for name in ("worker-cpu", "worker-gpu")]
    for block in workers:
        assert "cap_add:\n    - SYS_ADMIN" in block
        assert "apparmor=unconfined" in block
        assert "REGCTL_SANDBOX: strict" in block
        assert "privileged" not in block and "seccomp=unconfined" not in block
    for name in ("beat", "migrate", "redis", "postgres", "api"):
        assert "SYS_ADMIN" not in _service_block(rendered, name)


def _service_block(rendered: str, name: str) -> str:
    """The lines of one service in `docker-compose config` output (up to the next service)."""
    lines = rendered.splitlines()
    start = lines.index(f"  {name}:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("   ")), len(lines))
    return "\n".join(lines[start:end])
