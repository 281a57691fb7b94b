"""The API's docs page in real headless chromium: Swagger UI renders from this server's files alone,
under the pages' Content-Security-Policy, without one violation or one request to another host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.browser.conftest import WIDTHS, WatchedPage, serve, until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("docs")
    settings = Settings.from_env({}, home=root / "home")
    server = serve(settings, root)
    yield server
    server.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_swagger_ui_renders_offline_under_the_pages_policy(
    browser: Any, server: ApiServer, screenshots: Path, width: int
) -> None:
    with WatchedPage(browser, width) as watched:
        page = watched.page
        response = page.goto(f"{server.url}/api/v1/docs")
        assert response is not None and response.status == 200
        until(page, "document.querySelector('.swagger-ui .info .title')", 30)
        assert "regctl" in page.inner_text(".swagger-ui .info .title")
        until(page, "document.querySelectorAll('.swagger-ui .opblock').length > 10", 30)
        assert "/api/v1/health" in page.inner_text(".swagger-ui")
        page.screenshot(path=str(screenshots / f"api-docs-{width}.png"), full_page=False)
    assert watched.hosts == {urlsplit(server.url).netloc}, watched.hosts
    assert watched.refused_by_policy() == [], watched.console
