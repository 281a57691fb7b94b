"""The two reports are named apart: `conversion-report` and `validation-report`, in the registry, the
CLI, export and import (old archives' `report` included) and in the migration that names old rows."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.db import dispose_engines
from regctl.registry.engines import get_engine
from regctl.registry.jobs import claim_job
from regctl.registry.migrate import downgrade, upgrade
from regctl.registry.ops.importer import named_reports
from regctl.registry.outcomes import NewArtifact, record_success, start_stage
from regctl.registry.refs import parse_ref
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, register_version
from tests.conftest import create_postgres_database, direct_cli, drop_postgres_database

regctl = direct_cli


def converted_and_validated(settings: Settings, directory: Path) -> None:
    """m:1 with a TorchScript artifact and a conversion report, then a validate job's report."""
    store = open_store(settings.artifact_store)
    convert = register_version(settings, RegisterRequest("m"), directory, jobs=("convert",)).jobs[0]
    assert claim_job(settings, convert.id, "host:1").should_run
    start_stage(settings, convert.id, "host:1")
    artifacts = [
        NewArtifact("torchscript", store.put_bytes(b"torchscript"), "2.13.0", "script"),
        NewArtifact("conversion-report", store.put_bytes(b'{"method": "script"}'), "2.13.0"),
    ]
    (validate,) = record_success(settings, convert.id, "host:1", artifacts, {}, {}, method="script")
    assert claim_job(settings, validate.id, "host:2").should_run
    start_stage(settings, validate.id, "host:2")
    report = NewArtifact("validation-report", store.put_bytes(b'{"validated": true}'), "2.13.0")
    record_success(settings, validate.id, "host:2", [report], {"validated": True}, {})


def test_after_a_validate_job_the_cli_lists_one_report_of_each_kind(
    settings: Settings, model_dir: Path
) -> None:
    converted_and_validated(settings, model_dir)
    shown = json.loads(regctl(settings, "versions", "show", "m:1", "--json").stdout)
    assert [a["kind"] for a in shown["artifacts"]] == [
        "source",
        "torchscript",
        "conversion-report",
        "validation-report",
    ]
    table = regctl(settings, "versions", "show", "m:1").stdout
    assert "conversion-report" in table and "validation-report" in table
    out = Path(model_dir.parent / "validation.json")
    fetched = regctl(settings, "fetch", "m:1", "--kind", "validation-report", "-o", str(out))
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(out.read_text()) == {"validated": True}


def test_old_report_kinds_are_named_by_their_order() -> None:
    assert named_reports(["source", "torchscript", "report", "report"]) == [
        "source",
        "torchscript",
        "conversion-report",
        "validation-report",
    ]
    # a failed conversion, then a conversion that was proved, then two validations
    assert named_reports(["source", "report", "torchscript", "report", "report", "report"]) == [
        "source",
        "conversion-report",
        "torchscript",
        "conversion-report",
        "validation-report",
        "validation-report",
    ]
    assert named_reports(["source", "conversion-report"]) == ["source", "conversion-report"]


def _legacy(archive: Path, legacy: Path) -> None:
    """`archive` as an older regctl wrote it: both reports of kind `report`."""
    with tarfile.open(archive) as src, tarfile.open(legacy, "w", format=tarfile.PAX_FORMAT) as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                manifest = json.loads(data)
                for model in manifest["models"]:
                    for version in model["versions"]:
                        for artifact in version["artifacts"]:
                            if artifact["kind"].endswith("-report"):
                                artifact["kind"] = "report"
                data = json.dumps(manifest).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def test_an_archive_from_before_the_split_imports_with_both_reports_named(
    sqlite_settings: Settings, tmp_path: Path, model_dir: Path
) -> None:
    source = Settings.from_env({}, home=tmp_path / "source")
    converted_and_validated(source, model_dir)
    archive, legacy = tmp_path / "m.tar", tmp_path / "old.tar"
    assert regctl(source, "export", "m", "-o", str(archive)).exit_code == 0
    with tarfile.open(archive) as tar:
        exported = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
    assert b'"validation-report"' in exported and b'"report"' not in exported
    _legacy(archive, legacy)
    dispose_engines()
    imported = regctl(sqlite_settings, "import", str(legacy), "--json")
    assert imported.exit_code == 0, imported.output
    kinds = [a.kind for a in get_version(sqlite_settings, parse_ref("m:1")).artifacts]
    assert kinds == ["source", "torchscript", "conversion-report", "validation-report"]


# -- the migration that names the rows of an older database -------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at 0006 (before the split) holding reports of every kind of history."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else create_postgres_database()
    upgrade(url, "0006_aoti")
    now = datetime(2026, 11, 30, tzinfo=UTC)
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, description, last_version, created_at) "
                "VALUES (1, 'm', '', 3, :now)"
            ),
            {"now": now},
        )
        for number in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO model_versions (id, model_id, version, status, spec, source_sha256, "
                    "created_by, created_at, updated_at) "
                    "VALUES (:id, 1, :id, 'ready', '{}', :sha, 'me', :now, :now)"
                ),
                {"id": number, "sha": "a" * 64, "now": now},
            )
        for job_id, kind in ((1, "convert"), (2, "validate")):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, version_id, kind, state, queue, attempts, max_attempts, "
                    "progress, cancel_requested, created_at) "
                    "VALUES (:id, 1, :kind, 'succeeded', 'cpu', 1, 3, 'done', false, :now)"
                ),
                {"id": job_id, "kind": kind, "now": now},
            )
        rows = [
            # version 1: the jobs that recorded them are known
            (1, "source", None),
            (1, "torchscript", 1),
            (1, "report", 1),
            (1, "report", 2),
            # version 2: imported, no jobs: the order decides
            (2, "source", None),
            (2, "torchscript", None),
            (2, "report", None),
            (2, "report", None),
            # version 3: a failed conversion's report only
            (3, "source", None),
            (3, "report", None),
        ]
        for i, (version_id, kind, job_id) in enumerate(rows, start=1):
            conn.execute(
                text(
                    "INSERT INTO artifacts (id, version_id, kind, sha256, size, uri, job_id, created_at) "
                    "VALUES (:id, :version, :kind, :sha, 1, 'file:///x', :job, :now)"
                ),
                {"id": i, "version": version_id, "kind": kind, "sha": f"{i:064x}", "job": job_id, "now": now},
            )
    yield url
    dispose_engines()
    if request.param == "postgresql":
        drop_postgres_database(url)


def _kinds(url: str) -> list[tuple[int, str, int | None]]:
    with get_engine(url).connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(text("SELECT version_id, kind, job_id FROM artifacts ORDER BY id"))
        ]


def test_the_migration_names_old_reports_by_their_job_or_their_order_and_keeps_every_row(
    old_database: str,
) -> None:
    upgrade(old_database)
    assert _kinds(old_database) == [
        (1, "source", None),
        (1, "torchscript", 1),
        (1, "conversion-report", 1),
        (1, "validation-report", 2),
        (2, "source", None),
        (2, "torchscript", None),
        (2, "conversion-report", None),
        (2, "validation-report", None),
        (3, "source", None),
        (3, "conversion-report", None),
    ]
    with get_engine(old_database).begin() as conn:
        # the copy of model_versions (to allow `cancelled`) cascaded into no child row
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 2
        conn.execute(text("UPDATE model_versions SET status = 'cancelled' WHERE id = 3"))
    downgrade(old_database, "0006_aoti")
    assert [kind for _, kind, _ in _kinds(old_database)].count("report") == 5
    with get_engine(old_database).connect() as conn:
        assert conn.execute(text("SELECT status FROM model_versions WHERE id = 3")).scalar() == "registered"
