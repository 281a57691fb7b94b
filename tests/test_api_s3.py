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
