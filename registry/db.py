"""Engines, the one transaction seam (`session_scope`) and the schema check that runs on first use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from regctl.registry.errors import (
    AlreadyExists,
    InvalidInput,
    RegistryNeedsAttention,
    ServiceUnavailable,
)
from regctl.registry.schema import HEAD_REVISION

CONNECT_TIMEOUT_S = 3
# Connections per engine: SQLAlchemy's default of 5 (+10 overflow) suits a CLI or a worker; the API
# server raises it to its thread count so no request thread waits for a connection.
_pool = {"pool_size": 5, "max_overflow": 10}
_engines: dict[str, Engine] = {}
_checked: set[str] = set()
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Pick a driver for plain URLs as users write them (`postgresql://…` uses psycopg 3)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def redact(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def get_engine(url: str) -> Engine:
    """One engine per URL per process; SQLite files get WAL, foreign keys and immediate transactions."""
    url = normalize_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def configure_pool(size: int) -> None:
    """Size the connection pool of engines created from now on (`regctl serve` matches its threads)."""
    _pool.update(pool_size=size, max_overflow=max(10, size // 2))


def dispose_engines(close: bool = True) -> None:
    """Drop pooled connections; after fork pass `close=False`, since they belong to the parent."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=close)
        _engines.clear()
        _checked.clear()
        _session_factories.clear()


SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_URL_HINT = "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def _parsed(url: str):  # type: ignore[no-untyped-def]
    """The URL parsed, or InvalidInput naming what is wrong with REGCTL_DATABASE_URL (never a traceback)."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy's ArgumentError and ValueError both mean "does not parse"
        raise InvalidInput(
            f"REGCTL_DATABASE_URL {redact(url)!r} does not parse as a URL; {_URL_HINT}"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise InvalidInput(
            f"REGCTL_DATABASE_URL names the database {parsed.get_backend_name()!r}, which regctl does not "
            f"run on; {_URL_HINT}"
        )
    return parsed


def _create_engine(url: str) -> Engine:
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _open_sqlite_file(Path(parsed.database), url)
        engine = create_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, **_pool)


def _open_sqlite_file(path: Path, url: str) -> None:
    """Create the SQLite file with its header page, or refuse one that was emptied; one process at a time.

    regctl's first connection switches a new file to WAL, which writes its header page, so a
    zero-length file means truncation (a full disk, a bad copy): treating it as a new registry would
    orphan every blob and make every version silently "gone". Creation happens under a lock, so a
    process starting beside the one creating the file never sees it empty.
    """
    import fcntl
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}-init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            emptied = path.stat().st_size == 0
        except FileNotFoundError:
            connection = sqlite3.connect(path)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
            return
        except OSError:
            return  # unreadable: the connection itself reports it
    if emptied:
        raise RegistryNeedsAttention(
            f"the registry database {redact(url)} is an empty file: its data was lost; restore it from a "
            "backup, or delete it to start a new, empty registry"
        )


def _sqlite_pragmas(engine: Engine) -> None:
    # pysqlite's own BEGIN handling defers locks, which deadlocks concurrent writers; take the
    # write lock at BEGIN instead (SQLAlchemy's documented recipe for SQLite transactions).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def ensure_schema(url: str) -> None:
    """Make sure the database is at the head revision: SQLite is upgraded in place, others must be."""
    if normalize_url(url) in _checked:
        return
    current = current_revision(url)
    if current != HEAD_REVISION:
        if make_url(url).get_backend_name() == "sqlite":
            from regctl.registry.migrate import upgrade

            upgrade(url)
        else:
            found = current or "an empty schema"
            raise RegistryNeedsAttention(
                f"database {redact(url)} is at {found}, this regctl needs {HEAD_REVISION}; "
                "run 'regctl db upgrade'"
            )
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
        raise _failure(url, exc) from exc


_session_factories: dict[str, sessionmaker[Session]] = {}


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """The single transaction seam: commit on success, roll back on error, always close.

    Integrity errors become domain errors here and nowhere else; a database that cannot be
    reached becomes ServiceUnavailable naming the URL without its password.
    """
    ensure_schema(url)
    key = normalize_url(url)
    factory = _session_factories.get(key)
    if factory is None:
        factory = _session_factories[key] = sessionmaker(get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(f"that change conflicts with existing data: {exc.orig}") from exc
    except OperationalError as exc:
        session.rollback()
        raise _failure(url, exc) from exc
    except DBAPIError as exc:
        session.rollback()
        if _damaged(exc):
            raise _failure(url, exc) from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _damaged(exc: DBAPIError) -> bool:
    """True when the database reports its own storage as corrupt, rather than being out of reach."""
    import sqlite3

    orig = exc.orig
    # SQLITE_CORRUPT and SQLITE_NOTADB arrive as the bare DatabaseError class, never a subclass.
    if type(orig) is sqlite3.DatabaseError:
        return True
    # PostgreSQL's class XX: data_corrupted (XX001) and index_corrupted (XX002).
    return getattr(orig, "sqlstate", None) in ("XX001", "XX002")


def _failure(url: str, exc: DBAPIError) -> RegistryNeedsAttention | ServiceUnavailable:
    """The one-line error for a database call that failed: damaged data, or a database out of reach."""
    reason = _reason(exc)
    if _damaged(exc):
        return RegistryNeedsAttention(
            f"the registry database {redact(url)} is damaged ({reason}); restore it from a backup "
            "('regctl doctor' checks the whole registry)"
        )
    return _unavailable(url, exc)


def _reason(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _unavailable(url: str, exc: Exception) -> ServiceUnavailable:
    reason = _reason(exc)
    return ServiceUnavailable(
        f"cannot reach the database at {redact(url)} ({reason}); "
        "check REGCTL_DATABASE_URL and that the server is running"
    )
