"""A served registry on an S3 store (moto's server): `--presign` takes the bytes straight from the store."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from tests.api_server import REGCTL, ApiServer
from tests.s3_server import new_bucket, s3_server


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with s3_server() as env:
        yield env


def test_a_presigned_fetch_comes_from_the_store_and_is_verified(
    s3_env: dict[str, str], tmp_path: Path, model_dir: Path
) -> None:
    settings = Settings.from_env(
        {}, home=tmp_path / "home", artifact_store=f"s3://{new_bucket(s3_env)}/artifacts"
    )
    direct = LocalClient(settings)
    version = direct.register("net", model_dir, convert=False)
    token = direct.create_token("deploy", "reader").secret
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **s3_env, **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v}, tmp_path)
    try:
        with httpx.Client(
            base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            redirect = api.get("/versions/net:1/artifacts/source", params={"presign": "true"})
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith(s3_env["AWS_ENDPOINT_URL_S3"])
        assert redirect.headers["x-regctl-sha256"] == version.source_sha256

        # The client holds no store credentials: the presigned URL is its own.
        client_env = {
            "PATH": env["PATH"],
            "HOME": str(tmp_path),
            "REGCTL_URL": server.url,
            "REGCTL_TOKEN": token,
        }
        out = tmp_path / "bundle.tar"
        fetched = subprocess.run(
            [REGCTL, "fetch", "net:1", "--kind", "source", "--presign", "-o", str(out), "--json"],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert fetched.returncode == 0, fetched.stderr + server.log_text()
        assert hashlib.sha256(out.read_bytes()).hexdigest() == version.source_sha256
        assert '"ref": "net:1"' in fetched.stdout
    finally:
        server.stop()


def test_hostile_uploads_to_an_s3_backed_server_leave_no_object_and_no_multipart_upload(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    import io
    import tarfile

    import boto3

    bucket = new_bucket(s3_env)
    settings = Settings.from_env({}, home=tmp_path / "home", artifact_store=f"s3://{bucket}/artifacts")
    token = LocalClient(settings).create_token("ci", "writer").secret
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **s3_env, **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v}, tmp_path)
    many = io.BytesIO()
    with tarfile.open(fileobj=many, mode="w") as tar:
        for i in range(10_100):
            tar.addfile(tarfile.TarInfo(f"f{i}.py"), io.BytesIO(b""))
    linked = io.BytesIO()
    with tarfile.open(fileobj=linked, mode="w") as tar:
        link = tarfile.TarInfo("model.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"}
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=60) as api:
            for body, says in (
                (many.getvalue(), "more than 10000 members"),
                (linked.getvalue(), "not a regular"),
            ):
                refused = api.post("/models/net/versions", content=body)
                assert refused.status_code == 400 and says in refused.json()["error"]["message"]
    finally:
        server.stop()
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert LocalClient(settings).models() == []
