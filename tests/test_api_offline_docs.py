"""The API's docs work offline and send the pages' security headers; no response names a server path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from regctl.local import LocalClient
from regctl.registry.bundle import build_bundle
from regctl.registry.db import session_scope
from regctl.registry.schema import Job
from regctl.registry.settings import Settings
from regctl.registry.spec import prepare_spec
from regctl.registry.store import open_store
from regctl.server.app import create_app
from tests.conftest import write_model_dir


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path / "home")


@pytest.fixture
def app(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_jobs=False)) as client:
        yield client


def assert_page_headers(headers: object) -> None:
    policy = headers["content-security-policy"]  # type: ignore[index]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    assert headers["x-frame-options"] == "DENY"  # type: ignore[index]
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]
    assert headers["cache-control"] == "no-store"  # type: ignore[index]


def test_the_docs_page_loads_swagger_ui_from_this_server_with_the_pages_headers(app: TestClient) -> None:
    page = app.get("/api/v1/docs")
    assert page.status_code == 200
    assert_page_headers(page.headers)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts, page.text
    assert all(body.strip() == "" for _, body in scripts), "an inline script would need 'unsafe-inline'"
    assert "<style" not in page.text and "style=" not in page.text
    locations = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert len(locations) == 3, locations  # the stylesheet, the bundle and our start-up script
    for location in locations:
        assert location.startswith("/") and not location.startswith("//"), location
        asset = app.get(location)
        assert asset.status_code == 200 and len(asset.content) > 100, location
    assert "SwaggerUIBundle" in app.get("/static/docs.js").text
    assert "javascript" in app.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"]
    openapi = re.search(r'data-openapi-url="([^"]+)"', page.text)
    assert openapi is not None and app.get(openapi.group(1)).json()["info"]["title"] == "regctl"


def test_no_api_response_or_page_names_the_servers_paths(
    app: TestClient, settings: Settings, tmp_path: Path
) -> None:
    direct = LocalClient(settings)
    directory = write_model_dir(tmp_path / "model", files={"README.md": "# m\n"})
    direct.register("m", directory, convert=False)
    direct.alias("m@staging", 1, force=True)  # never converted: this test is about what responses name
    # A job that met a damaged blob records the store's own message, which names its folder.
    job = direct.register("j", write_model_dir(tmp_path / "j"), convert=True).jobs[0]
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(state="failed", error=f"blob missing from the store {settings.artifact_store}/sha256/ab")
        )
    admin = direct.create_token("admin", "admin").secret
    reader = direct.create_token("reader", "reader").secret
    spec = prepare_spec(directory, None, None, None, settings.formats)
    upload = build_bundle(directory, spec, tmp_path / "upload.tar", 1 << 20, include_weights=True)
    secrets = [str(settings.home), str(Path(settings.artifact_store)), str(tmp_path)]

    def clean(response: object, path: str) -> None:
        text = response.text  # type: ignore[attr-defined]
        for secret in secrets:
            assert secret not in text, f"{path} names {secret}: {text[:500]}"

    registered = app.post(
        "/api/v1/models/m/versions",
        params={"convert": "false", "new_version": "true"},
        content=upload.path.read_bytes(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/x-tar"},
    )
    assert registered.status_code == 201, registered.text
    clean(registered, "register")
    assert {a["uri"] for a in registered.json()["artifacts"]} == {"/api/v1/versions/m:2/artifacts/source"}

    reads = [
        "/models", "/models?q=m", "/models/m", "/models/m/versions", "/versions", "/versions?tag=a=b",
        "/versions/m:1", "/versions/m@staging", "/models/m/alias-history", "/jobs", f"/jobs/{job.id}",
        "/whoami", "/openapi.json", "/docs",
    ]  # fmt: skip
    for secret in (reader, admin):
        for path in reads:
            response = app.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {secret}"})
            assert response.status_code == 200, (path, response.text)
            clean(response, path)
    for path in ("/audit", "/tokens"):
        response = app.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 200
        clean(response, path)
    with app.stream(
        "GET", f"/api/v1/jobs/{job.id}/events", headers={"Authorization": f"Bearer {reader}"}
    ) as events:
        streamed = events.read().decode()
    assert "event: end" in streamed and "REGCTL_ARTIFACT_STORE" in streamed
    assert all(secret not in streamed for secret in secrets), streamed
    version = app.get("/api/v1/versions/m:1", headers={"Authorization": f"Bearer {reader}"}).json()
    assert [a["uri"] for a in version["artifacts"]] == ["/api/v1/versions/m:1/artifacts/source"]
    download = app.get(version["artifacts"][0]["uri"], headers={"Authorization": f"Bearer {reader}"})
    assert download.status_code == 200 and download.headers["x-regctl-ref"] == "m:1"

    app.post("/login", data={"token": reader, "next": "/"}, follow_redirects=False)
    for path in ("/", "/?q=m", "/models/m", "/versions/m:1", "/jobs", f"/jobs/{job.id}", "/versions/j:1"):
        page = app.get(path)
        assert page.status_code == 200, path
        clean(page, path)

    # A damaged store: the error names the blob and the setting, never the folder it lives in.
    open_store(settings.artifact_store).delete_blob(version["artifacts"][0]["sha256"])
    missing = app.get("/api/v1/versions/m:1/artifacts/source", headers={"Authorization": f"Bearer {reader}"})
    assert missing.status_code >= 400
    assert "REGCTL_ARTIFACT_STORE" in missing.json()["error"]["message"]
    clean(missing, "a missing blob")
    page = app.get("/files/m:1/source")
    assert page.status_code >= 400
    clean(page, "a missing blob's page")
