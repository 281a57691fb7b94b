"""What a hostile client could learn or change through small gaps, against a real `regctl serve`:
another model's job ids, the session forms from another site, the audit trail's client address.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.factories import linear_model, promotable


@pytest.fixture
def direct(sqlite_settings: Settings) -> LocalClient:
    return LocalClient(sqlite_settings)


@pytest.fixture
def server(serve) -> ApiServer:  # type: ignore[no-untyped-def]
    return serve()


def _client(server: ApiServer, secret: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, follow_redirects=False)


def test_a_job_of_a_model_the_token_may_not_see_answers_like_a_missing_one(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    direct.register("cond", linear_model(tmp_path / "cond"), convert=False)
    job = direct.submit("cond:1", "convert")
    reader = direct.create_token("vision", "reader", model_pattern="vision-*").secret
    with _client(server, reader) as api:
        hidden = api.get(f"/api/v1/jobs/{job.id}")
        missing = api.get(f"/api/v1/jobs/{job.id + 1000}")
        cancel = api.post(f"/api/v1/jobs/{job.id}/cancel")
    assert hidden.status_code == missing.status_code == 404
    assert "cond" not in hidden.text and "cond" not in cancel.text
    assert hidden.json() == _renumbered(missing.json(), job.id + 1000, job.id)
    assert cancel.status_code in (403, 404)  # a reader may not cancel; either way, no model named


def _renumbered(body: dict, old: int, new: int) -> dict:
    return json.loads(json.dumps(body).replace(str(old), str(new)))


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
def test_the_session_forms_refuse_a_post_from_another_site(
    server: ApiServer, direct: LocalClient, headers: dict[str, str]
) -> None:
    reader = direct.create_token("viewer", "reader").secret
    with _client(server) as browser:
        signed_in = browser.post("/login", data={"token": reader, "next": "/"}, headers=headers)
        assert signed_in.status_code == 403 and "set-cookie" not in signed_in.headers
        assert "sent from another site" in signed_in.text
        ours = browser.post("/login", data={"token": reader, "next": "/"}, headers={"Origin": server.url})
        assert ours.status_code == 303 and "regctl_token=" in ours.headers["set-cookie"]
        kept = browser.post("/logout", headers=headers)
        assert kept.status_code == 403 and "set-cookie" not in kept.headers
        assert browser.get("/").status_code == 200  # still signed in
        # what Chromium sends from our own sign-in page (its Referrer-Policy makes Origin "null")
        chromium = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        assert browser.post("/logout", headers=chromium).status_code == 303


def test_no_client_writes_its_own_address_into_the_audit_trail_by_default(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    writer = direct.create_token("ci", "writer").secret
    direct.register("net", linear_model(tmp_path / "net"), convert=False)
    promotable(direct.settings, "net")
    with _client(server, writer) as api:
        moved = api.put(
            "/api/v1/models/net/aliases/staging", json={"version": 1}, headers={"X-Forwarded-For": "6.6.6.6"}
        )
    assert moved.status_code == 200, moved.text
    assert [(e.action, e.address) for e in direct.audit(model="net") if e.actor == "ci"] == [
        ("alias.set", "127.0.0.1")
    ]
