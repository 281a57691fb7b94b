"""Two workers and the CLI sharing one bucket of a real S3-compatible server as the artifact store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import Service, linear_model
from tests.s3_server import new_bucket, s3_server

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def s3_env() -> Iterator[dict[str, str]]:
    """A running S3 server; its AWS_* variables are in os.environ, so every process started inherits them."""
    with s3_server() as env:
        yield env


def test_workers_and_cli_share_artifacts_through_one_bucket(
    service: Service, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = new_bucket(s3_env)
    service.settings = dataclasses.replace(service.settings, artifact_store=f"s3://{bucket}/regctl")
    service.start_worker("cpu")
    service.start_worker("cpu")

    for name in ("first", "second"):
        done = service.regctl("register", name, str(linear_model(tmp_path / name)), "--wait", timeout=180)
        assert done.returncode == 0, done.stderr

    keys = {
        obj["Key"]
        for obj in boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
        .list_objects_v2(Bucket=bucket)
        .get("Contents", [])
    }
    for name in ("first", "second"):
        version = service.version(f"{name}:1")
        assert version.status == "ready"
        kinds = {a.kind for a in version.artifacts}
        assert {"source", "torchscript", "conversion-report"} <= kinds
        for artifact in version.artifacts:
            assert artifact.uri.startswith(f"s3://{bucket}/regctl/sha256/")
            assert artifact.uri.removeprefix(f"s3://{bucket}/") in keys
        assert not (service.settings.home / "artifacts").exists()

    out = tmp_path / "deploy" / "first.pt"
    fetched = service.regctl("fetch", "first", "-o", str(out), "--create-dirs", "--json")
    assert fetched.returncode == 0, fetched.stderr
    scripted = next(a for a in service.version("first:1").artifacts if a.kind == "torchscript")
    assert out.stat().st_size == scripted.size
    import hashlib

    assert hashlib.sha256(out.read_bytes()).hexdigest() == scripted.sha256
