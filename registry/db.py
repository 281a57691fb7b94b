"""The one transaction seam (`session_scope`) and the schema check that runs on a database's first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from regctl.registry.engines import (
    DURABLE,
    damaged,
    database_failure,
    drop_engines,
    get_engine,
    normalize_url,
    redact,
)
from regctl.registry.errors.services import Conflict, SchemaOutdated
from regctl.registry.migrate import upgrade
from regctl.registry.schema import HEAD_REVISION

_checked: set[str] = set()


def dispose_engines(close: bool = True) -> None:
    """Drop pooled connections and what was learnt about each database; after fork pass `close=False`."""
    drop_engines(close)
    _checked.clear()
    _session_factories.clear()


def ensure_schema(url: str) -> None:
    """Make sure the database is at the head revision: SQLite is upgraded in place, others must be."""
    if normalize_url(url) in _checked:
        return
    current = current_revision(url)
    if current != HEAD_REVISION:
        if make_url(url).get_backend_name() == "sqlite":
            upgrade(url)
        else:
            found = current or "an empty schema"
            raise SchemaOutdated(url=redact(url), found=found, head=HEAD_REVISION)
    _checked.add(normalize_url(url))


def current_revision(url: str) -> str | None:
    """The Alembic revision stamped in the database, or None for an empty one."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, "alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as exc:
        raise database_failure(url, exc) from exc


_session_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


@contextmanager
def session_scope(url: str, *, durable: bool = True) -> Iterator[Session]:
    """The single transaction seam: commit on success, roll back on error, always close.

    Integrity errors become domain errors here and nowhere else; a database that cannot be
    reached becomes ServiceUnavailable naming the URL without its password. `durable=False` commits
    without waiting for the disk (registry/engines.py: DURABLE): for writes whose loss in a power
    cut harms nothing, a running job's heartbeat and progress line.
    """
    ensure_schema(url)
    key = (normalize_url(url), durable)
    factory = _session_factories.get(key)
    if factory is None:
        engine = get_engine(url).execution_options(**{DURABLE: durable})
        factory = _session_factories[key] = sessionmaker(engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(detail=exc.orig) from exc
    except OperationalError as exc:
        session.rollback()
        raise database_failure(url, exc) from exc
    except DBAPIError as exc:
        session.rollback()
        if damaged(exc):
            raise database_failure(url, exc) from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
