"""The API's docs page in real headless chromium: Swagger UI renders from this server's files alone,
under the pages' Content-Security-Policy, without one violation or one request to another host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.browser.conftest import WIDTHS, until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("docs")
    settings = Settings.from_env({}, home=root / "home")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, root)
    yield server
    server.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_swagger_ui_renders_offline_under_the_pages_policy(
    browser: Any, server: ApiServer, screenshots: Path, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    console: list[str] = []
    hosts: set[str] = set()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    try:
        response = page.goto(f"{server.url}/api/v1/docs")
        assert response is not None and response.status == 200
        until(page, "document.querySelector('.swagger-ui .info .title')", 30)
        assert "regctl" in page.inner_text(".swagger-ui .info .title")
        until(page, "document.querySelectorAll('.swagger-ui .opblock').length > 10", 30)
        assert "/api/v1/health" in page.inner_text(".swagger-ui")
        page.screenshot(path=str(screenshots / f"api-docs-{width}.png"), full_page=False)
    finally:
        context.close()
    assert hosts == {urlsplit(server.url).netloc}, hosts
    refused = [line for line in console if "Content Security Policy" in line]
    assert refused == [], refused
