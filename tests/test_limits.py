"""The remote client refuses an over-cap upload with the server's caps, asked once, before sending it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from regctl.limits import server_limits
from regctl.registry.errors import InvalidSpec
from regctl.registry.settings import Settings
from regctl.remote import Client
from regctl.server.app import create_app
from tests.conftest import write_model_dir

SPEC = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    env = {"REGCTL_MAX_BUNDLE_BYTES": str(64 * 1024), "REGCTL_MAX_WEIGHTS_BYTES": str(32 * 1024)}
    return Settings.from_env(env, home=tmp_path / "home")


@pytest.fixture
def asked(app_settings: Settings) -> tuple[Client, list[str]]:
    """A remote client on the app in this process, and the requests it makes ("GET /api/v1/limits")."""
    requests: list[str] = []
    http = TestClient(create_app(app_settings, run_jobs=False), base_url="http://testserver/api/v1")
    http.event_hooks["request"] = [lambda r: requests.append(f"{r.method} {r.url.path}")]
    client = Client("http://testserver")
    client._http = http
    return client, requests


def test_the_server_says_its_upload_caps(app_settings: Settings) -> None:
    answer = TestClient(create_app(app_settings, run_jobs=False)).get("/api/v1/limits")
    assert answer.status_code == 200
    assert answer.json() == {"max_bundle_bytes": 64 * 1024, "max_weights_bytes": 32 * 1024}


def test_an_upload_over_the_servers_cap_is_refused_before_it_is_sent(
    asked: tuple[Client, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGCTL_MAX_WEIGHTS_BYTES", raising=False)  # this machine's own caps: the defaults
    client, requests = asked
    big = write_model_dir(tmp_path / "m", spec=SPEC, files={"w.safetensors": os.urandom(33 * 1024)})
    for _ in range(2):
        with pytest.raises(InvalidSpec, match=r"more than the cap of .* \(REGCTL_MAX_WEIGHTS_BYTES\)"):
            client.register("net", big)
    assert requests == ["GET /api/v1/limits"]  # asked once, and nothing uploaded


def test_a_server_without_the_limits_route_leaves_the_check_to_the_upload(
    asked: tuple[Client, list[str]],
) -> None:
    client, _ = asked
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    client._http = httpx.Client(base_url="http://old/api/v1", transport=transport)
    caps = server_limits(client._json)
    assert (caps.max_bundle_bytes, caps.max_weights_bytes) == (
        Settings.max_bundle_bytes,
        Settings.max_weights_bytes,
    )
