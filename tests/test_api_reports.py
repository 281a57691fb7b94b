"""Issue 22's reports, statuses and aliases through the HTTP API and the remote CLI: the two named
reports, the `cancelled` status, a no-op alias set, and a job's stage timeline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.jobs import claim_job, record_progress
from regctl.registry.outcomes import record_failure, start_stage
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.versions import register_version
from tests.api_server import ApiServer
from tests.conftest import write_model_dir
from tests.test_api import remote_cli
from tests.test_report_kinds import converted_and_validated


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ApiServer, str, int]]:
    """A server over m:1 (converted, then validated) and c:1 (its convert job cancelled while it ran).

    Everything is recorded before the server starts, so its job runner finds nothing queued.
    """
    settings = Settings.from_env({}, home=tmp_path / "home")
    directory = write_model_dir(tmp_path / "doubler")
    converted_and_validated(settings, directory)
    job = register_version(settings, RegisterRequest("c"), directory, jobs=("convert",)).jobs[0]
    assert claim_job(settings, job.id, "host:1").should_run
    start_stage(settings, job.id, "host:1")
    record_progress(settings, job.id, "host:1", "converting")
    record_failure(settings, job.id, "host:1", "cancelled by the user", state="cancelled")
    admin = LocalClient(settings).create_token("ops", "admin").secret
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    try:
        yield server, admin, job.id
    finally:
        server.stop()


def test_the_api_names_both_reports_shows_cancelled_and_records_no_alias_no_op(
    served: tuple[ApiServer, str, int], tmp_path: Path
) -> None:
    server, admin, cancelled_job = served
    with httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ) as api:
        kinds = [a["kind"] for a in api.get("/versions/m:1").json()["artifacts"]]
        assert kinds == ["source", "torchscript", "conversion-report", "validation-report"]
        report = api.get("/versions/m:1/artifacts/validation-report")
        assert report.status_code == 200 and report.json() == {"validated": True}
        assert api.get("/versions/m:1/artifacts/conversion-report").json() == {"method": "script"}
        assert api.get("/versions/m:1/artifacts/report").status_code == 422

        assert api.get("/versions/c:1").json()["status"] == "cancelled"
        listed = api.get("/models/c/versions", params={"status": "cancelled"}).json()
        assert [v["version"] for v in listed] == [1]
        stages = [s["stage"] for s in api.get(f"/jobs/{cancelled_job}").json()["stages"]]
        assert stages == ["attempt 1 started", "converting", "cancelled"]

        # staging: a ready version may take any unprotected alias (prod would also ask for a signature)
        first = api.put("/models/m/aliases/staging", json={"version": 1}).json()
        again = api.put("/models/m/aliases/staging", json={"version": 1}).json()
        assert (first["previous"], first["version"]) == (None, 1)
        assert again["previous"] == again["version"] == 1
        assert len(api.get("/models/m/alias-history").json()) == 1

    said = remote_cli(server, admin, "alias", "set", "m@staging", "1", cwd=tmp_path)
    assert said.returncode == 0 and said.stdout.strip() == "m@staging is already at 1", said.stderr
    shown = remote_cli(server, admin, "versions", "show", "m:1", "--json", cwd=tmp_path)
    assert [a["kind"] for a in json.loads(shown.stdout)["artifacts"]][-2:] == [
        "conversion-report",
        "validation-report",
    ]
    out = tmp_path / "validation.json"
    fetched = remote_cli(
        server, admin, "fetch", "m:1", "--kind", "validation-report", "-o", str(out), cwd=tmp_path
    )
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(out.read_text()) == {"validated": True}


def test_metrics_count_versions_by_status_cancelled_included(served: tuple[ApiServer, str, int]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server, _, _ = served
    body = httpx.get(f"{server.url}/metrics", timeout=30).text
    (family,) = [f for f in text_string_to_metric_families(body) if f.name == "regctl_versions"]
    counts = {s.labels["status"]: s.value for s in family.samples}
    assert counts["ready"] == 1 and counts["cancelled"] == 1 and counts["failed"] == 0
