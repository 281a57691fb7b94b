"""Alembic environment: the URL comes from the config object `registry.migrate` builds."""

from __future__ import annotations

from alembic import context

from regctl.registry.engines import get_engine, normalize_url
from regctl.registry.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL without a live connection (`alembic upgrade --sql`)."""
    context.configure(
        url=normalize_url(config.get_main_option("sqlalchemy.url") or ""),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the database, reusing a connection handed in by `registry.migrate` if any."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = normalize_url(config.get_main_option("sqlalchemy.url") or "")
    engine = get_engine(url) if url else None
    if engine is None:
        raise SystemExit("set sqlalchemy.url or REGCTL_DATABASE_URL")
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # Batch mode lets SQLite ALTER tables by copying them, as Alembic documents.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
