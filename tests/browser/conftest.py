"""Browser tests: Debian's chromium driven by Playwright for Python, against a real `regctl serve`.

Playwright's own browser download cannot work offline, so the tests point it at the system chromium
(REGCTL_CHROMIUM, else the first of chromium / chromium-browser on PATH). Screenshots of every page
at 1280 and 390 px wide go to REGCTL_SCREENSHOTS (default build/screenshots), reported at the end
of the test run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import SCREENSHOTS, service_missing

WIDTHS = (1280, 390)


def until(page: Any, condition: str, seconds: float) -> None:
    """Poll a JavaScript condition until it holds (page.wait_for_function would need CSP's unsafe-eval)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(f"() => Boolean({condition})"):
        assert time.monotonic() < deadline, f"{condition} did not hold within {seconds} s"
        page.wait_for_timeout(100)


def chromium_executable() -> str | None:
    """The system chromium Playwright should drive."""
    configured = os.environ.get("REGCTL_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless chromium for the session."""
    executable = chromium_executable()
    if executable is None:
        service_missing("chromium", "not on PATH (apt-get install -y chromium) and REGCTL_CHROMIUM unset")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_missing("playwright", exc)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's own sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder that receives the screenshots (emptied once per run, tests/conftest.py)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def serve(settings: Any, root: Path) -> Any:
    """A real `regctl serve` on `settings` (the tests' ApiServer), with only the variables that are set."""
    from tests.api_server import ApiServer

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    return ApiServer.start({k: v for k, v in env.items() if v != ""}, root)


class WatchedPage:
    """A fresh browser context `width` px wide whose page records console lines and the hosts it asked;
    closed at the end of its `with` block."""

    def __init__(self, browser: Any, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.hosts: set[str] = set()
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("request", lambda request: self.hosts.add(urlsplit(request.url).netloc))

    def __enter__(self) -> WatchedPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.close()

    def refused_by_policy(self) -> list[str]:
        """Console lines where the Content Security Policy refused something."""
        return [line for line in self.console if "Content Security Policy" in line]
