"""Migrations: empty database -> head -> no drift from the ORM -> base, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from regctl.registry.db import current_revision
from regctl.registry.engines import get_engine
from regctl.registry.migrate import alembic_config, downgrade, upgrade
from regctl.registry.schema import HEAD_REVISION, Base
from tests.conftest import create_postgres_database, drop_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [HEAD_REVISION]


def test_upgrade_to_head_matches_the_models_and_downgrade_removes_everything(empty_database: str) -> None:
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert current_revision(empty_database) == HEAD_REVISION
    engine = get_engine(empty_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    command.check(alembic_config(empty_database))  # `alembic check`: raises if autogenerate finds drift
    assert set(inspect(engine).get_table_names()) >= {
        "models",
        "model_versions",
        "artifacts",
        "jobs",
        "aliases",
    }
    downgrade(empty_database)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(empty_database) is None


def test_a_downgrade_below_0003_refuses_to_strand_versions_with_separate_weights(
    empty_database: str, tmp_path: Path
) -> None:
    from regctl.registry.db import dispose_engines
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.settings import Settings
    from regctl.registry.versions import register_version
    from tests.conftest import write_model_dir

    upgrade(empty_database)
    spec = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'
    directory = write_model_dir(tmp_path / "m", spec=spec, files={"w.safetensors": b"w" * 64})
    settings = Settings.from_env(
        {}, home=tmp_path, database_url=empty_database, artifact_store=str(tmp_path / "store")
    )
    assert any(
        a.kind == "weights" for a in register_version(settings, RegisterRequest("m"), directory).artifacts
    )
    with pytest.raises(RuntimeError, match="would strand them"):
        downgrade(empty_database, "0002_service")
    assert current_revision(empty_database) == HEAD_REVISION
    dispose_engines()


def test_0009_keeps_look_alike_models_and_aliases_a_registry_already_holds(empty_database: str) -> None:
    from sqlalchemy import text

    from regctl.registry.db import dispose_engines

    upgrade(empty_database, "0008_card")
    engine = get_engine(empty_database)
    with engine.begin() as conn:
        for name in ("linear", "LINEAR", "other"):
            conn.execute(text("INSERT INTO models (name, description, last_version, created_at) "
                              "VALUES (:n, '', 1, CURRENT_TIMESTAMP)"), {"n": name})  # fmt: skip
        model = conn.execute(text("SELECT id FROM models WHERE name = 'linear'")).scalar_one()
        conn.execute(text("INSERT INTO model_versions (model_id, version, status, spec, source_sha256, "
                          "created_by, created_at, updated_at) VALUES (:m, 1, 'registered', '{}', :s, 'me', "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"m": model, "s": "0" * 64})  # fmt: skip
        version = conn.execute(text("SELECT id FROM model_versions")).scalar_one()
        for alias in ("PROD", "prod", "Staging"):
            conn.execute(text("INSERT INTO aliases (model_id, name, version_id, updated_by, updated_at) "
                              "VALUES (:m, :a, :v, 'me', CURRENT_TIMESTAMP)"),
                         {"m": model, "a": alias, "v": version})  # fmt: skip
    upgrade(empty_database)
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT name, name_key FROM models")).all())
        aliases = {row[0] for row in conn.execute(text("SELECT name FROM aliases"))}
    first, second = keys["linear"], keys["LINEAR"]
    assert first == "llnear" and second.startswith("llnear#") and keys["other"] == "other"
    assert "prod" in aliases and "staging" in aliases and len(aliases) == 3  # PROD stepped aside, kept
    assert any(name.startswith("prod-") for name in aliases)
    downgrade(empty_database)
    dispose_engines()
