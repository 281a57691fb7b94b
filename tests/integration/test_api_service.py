"""A served registry for real: `regctl serve` on PostgreSQL and Redis, a worker, and clients that hold
only a URL and a token."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.remote import Client
from regctl.service.provenance import init_key
from tests.api_server import REGCTL, ApiServer
from tests.integration.conftest import Service, linear_model, parent_pid, pid_of

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def api(service: Service) -> Iterator[ApiServer]:
    server = ApiServer.start(service.env(), service.workdir)
    yield server
    server.stop()


def client_env(url: str, token: str, home: Path) -> dict[str, str]:
    """What a deployment job holds: a URL and a token; no database, store or broker settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "REGCTL_URL": url,
        "REGCTL_TOKEN": token,
    }


def test_register_ready_fetch_through_the_remote_cli_holding_only_a_url_and_token(
    service: Service, api: ApiServer, tmp_path: Path
) -> None:
    worker = service.start_worker("cpu")
    direct = LocalClient(service.settings)
    writer = direct.create_token("trainer", "writer").secret
    env = client_env(api.url, writer, tmp_path)
    assert not any(
        key in env for key in ("REGCTL_DATABASE_URL", "REGCTL_ARTIFACT_STORE", "REGCTL_BROKER_URL")
    )

    model = linear_model(tmp_path / "lin")
    done = subprocess.run(
        [REGCTL, "register", "lin", str(model), "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + api.log_text()
    assert "lin:1 is ready" in done.stderr

    fetched = subprocess.run(
        [REGCTL, "fetch", "lin", "-o", str(tmp_path / "lin.pt"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fetched.returncode == 0, fetched.stderr
    stored = direct.version("lin:1")
    torchscript = next(a for a in stored.artifacts if a.kind == "torchscript")
    assert hashlib.sha256((tmp_path / "lin.pt").read_bytes()).hexdigest() == torchscript.sha256
    jobs = list(stored.jobs)
    assert [(j.kind, j.state) for j in jobs] == [("convert", "succeeded")]  # proved once, by its judge
    assert stored.summary is not None and stored.summary["validated"] is True
    assert stored.summary["validation"]["sha256"] == torchscript.sha256
    assert {parent_pid(pid_of(j)) for j in jobs} == {worker.pid}, "the worker ran them, not the server"

    # A writer may not move prod; the CLI says so with exit code 5 and changes nothing.
    refused = subprocess.run(
        [REGCTL, "alias", "set", "lin@prod", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 5, refused.stderr
    assert "needs role admin" in refused.stderr
    assert direct.model("lin").aliases == {}


def test_the_python_client_waits_and_a_deployment_polls_prod_for_free(
    service: Service, api: ApiServer, tmp_path: Path
) -> None:
    direct = LocalClient(service.settings)
    init_key(service.settings, direct.caller)  # prod moves only to a signed version
    service.start_worker("cpu")
    with Client(api.url, direct.create_token("notebook", "admin").secret) as client:
        version = client.register("lin", linear_model(tmp_path / "lin"))
        final = client.wait(version.jobs[0], timeout=180)
        assert (final.kind, final.state) == ("convert", "succeeded")
        client.alias("lin@prod", 1)
    deploy = direct.create_token("deploy", "reader", model_pattern="lin").secret
    with httpx.Client(base_url=f"{api.url}/api/v1", headers={"Authorization": f"Bearer {deploy}"}) as http:
        first = http.get("/versions/lin@prod/artifacts/torchscript")
        assert first.status_code == 200
        again = http.get(
            "/versions/lin@prod/artifacts/torchscript", headers={"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
    assert [e.action for e in direct.audit(model="lin")] == ["alias.set", "version.register"]
