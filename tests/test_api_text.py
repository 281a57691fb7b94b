"""Text hygiene through a real `regctl serve`: the API refuses hidden characters in tags with 400,
and the pages show a hostile job error, description and tag as text (HTML-escaped, hidden characters
as visible escapes) while the API's JSON keeps the stored data exactly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.jobs import create_job
from regctl.registry.outcomes import record_failure
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.conftest import direct_cli, write_model_dir

HOSTILE = "<b>[/x] [bold red]boom</b>\x1b]0;pwned\x07\x1b[2J \u202egnp.exe\u200b"
HIDDEN = ("\x1b", "\x07", "\u202e", "\u200b")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path / "home")


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def admin(settings: Settings, tmp_path: Path) -> str:
    """An admin token, and a version `victim:1` whose convert job failed with HOSTILE."""
    registered = direct_cli(
        settings, "register", "victim", str(write_model_dir(tmp_path / "victim")), "--no-convert",
        "--description", "<i>[/x] desc</i>", "--tag", "team=[bold]<u>t</u>",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    job = create_job(settings, parse_ref("victim:1"), "convert")
    record_failure(settings, job.id, None, HOSTILE, summary={"why": HOSTILE})
    return LocalClient(settings).create_token("boss", "admin").secret


def test_the_api_refuses_hidden_characters_in_a_tag_with_400_and_changes_nothing(
    server: ApiServer, admin: str
) -> None:
    api = httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {admin}"})
    with api:
        for change in (
            {"set": {"team": "v\u202eision"}},
            {"set": {"team": "\x1b[2J"}},
            {"remove": ["t\u2066"]},
        ):
            refused = api.patch("/versions/victim:1/tags", json=change)
            assert refused.status_code in (400, 422), refused.text
            assert "\u202e" not in refused.text and "\x1b" not in refused.text
        assert api.get("/versions/victim:1").json()["tags"] == {"team": "[bold]<u>t</u>"}
        # JSON is exact data: the stored error comes back as it was recorded, JSON-escaped.
        assert api.get("/versions/victim:1").json()["jobs"][0]["error"] == HOSTILE


def test_the_pages_show_a_hostile_error_description_and_tag_as_text(server: ApiServer, admin: str) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=True) as browser:
        signed = browser.post("/login", data={"token": admin, "next": "/"})
        assert signed.status_code == 200, signed.text[:500]
        for path in ("/versions/victim:1", "/jobs", "/jobs/1", "/", "/models/victim"):
            page = browser.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            hidden = [c for c in HIDDEN if c in page.text]
            assert not hidden, f"{hidden} reached {path}"
            assert "<b>[/x]" not in page.text and "<i>[/x]" not in page.text and "<u>t</u>" not in page.text
        version = browser.get("/versions/victim:1").text
        assert "&lt;i&gt;[/x] desc&lt;/i&gt;" in version and "[bold]&lt;u&gt;t&lt;/u&gt;" in version
        job = browser.get("/jobs/1").text
        assert "\\x1b]0;pwned\\x07\\x1b[2J \\u202egnp.exe\\u200b" in job
