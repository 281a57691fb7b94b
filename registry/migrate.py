"""Alembic commands run programmatically, so `regctl db upgrade` needs no alembic.ini on disk.

Alembic is imported inside each function: registry/db.py imports this module in every process that
opens the database (server, workers, CLI commands), and Alembic costs ~136 ms there (measured with
-X importtime) while only a schema upgrade or downgrade uses it.
"""

from __future__ import annotations

from pathlib import Path

from regctl.registry.engines import get_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An Alembic Config pointing at regctl's migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (creating the schema on an empty database)."""
    _migrate(url, "upgrade", revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (`base` drops every table)."""
    _migrate(url, "downgrade", revision)


def _migrate(url: str, step: str, revision: str) -> None:
    from alembic import command

    config = alembic_config(url)
    with get_engine(url).begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, step)(config, revision)
