"""Engines: one per database URL per process, with the driver, pool and SQLite settings regctl needs,
and the one-line errors a database call becomes when the database is damaged or out of reach."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from regctl.registry.errors import RegistryNeedsAttention, ServiceUnavailable
from regctl.registry.errors.services import (
    DatabaseDamaged,
    DatabaseEmpty,
    DatabaseUnreachable,
    DatabaseUrlUnparsed,
    UnsupportedDatabase,
)

CONNECT_TIMEOUT_S = 3
# Connections per engine: SQLAlchemy's default of 5 (+10 overflow) suits a CLI or a worker; the API
# server raises it to its thread count so no request thread waits for a connection.
_pool = {"pool_size": 5, "max_overflow": 10}
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
# The execution option that says whether a transaction's commit waits for the disk (default True).
# False: SQLite commits it with synchronous=NORMAL (in WAL mode the database stays consistent, the
# newest such commits may be lost in a power cut) and PostgreSQL with synchronous_commit off (the
# same promise). Each SQLite commit that waits rewrites two pages of the WAL on its fsync; skipping
# it halves what a job's progress lines write.
DURABLE = "regctl_durable"


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


def drop_engines(close: bool = True) -> None:
    """Dispose of every engine; after fork pass `close=False`, since the connections belong to the parent."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=close)
        _engines.clear()


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def _parsed(url: str):  # type: ignore[no-untyped-def]
    """The URL parsed, or InvalidInput naming what is wrong with REGCTL_DATABASE_URL (never a traceback)."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy's ArgumentError and ValueError both mean "does not parse"
        raise DatabaseUrlUnparsed(url=redact(url)) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise UnsupportedDatabase(backend=parsed.get_backend_name())
    return parsed


def _create_engine(url: str) -> Engine:
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _open_sqlite_file(Path(parsed.database), url)
        engine = create_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, **_pool)
    _postgresql_commits(engine)
    return engine


def _open_sqlite_file(path: Path, url: str) -> None:
    """Create the SQLite file with its header page, or refuse one that was emptied; one process at a time.

    regctl's first connection switches a new file to WAL, which writes its header page, so a
    zero-length file means truncation (a full disk, a bad copy): treating it as a new registry would
    orphan every blob and make every version silently "gone". Creation happens under a lock, so a
    process starting beside the one creating the file never sees it empty.
    """
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
        raise DatabaseEmpty(url=redact(url))


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
        # Set before BEGIN, as SQLite refuses it inside a transaction, whenever the pooled connection
        # last ran with the other choice, so none carries one session's choice into the next.
        synchronous = "FULL" if conn.get_execution_options().get(DURABLE, True) else "NORMAL"
        if conn.info.get("synchronous") != synchronous:
            conn.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            conn.info["synchronous"] = synchronous
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgresql_commits(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        if not conn.get_execution_options().get(DURABLE, True):
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")  # this transaction only


def damaged(exc: DBAPIError) -> bool:
    """True when the database reports its own storage as corrupt, rather than being out of reach."""
    orig = exc.orig
    # SQLITE_CORRUPT and SQLITE_NOTADB arrive as the bare DatabaseError class, never a subclass.
    if type(orig) is sqlite3.DatabaseError:
        return True
    # PostgreSQL's class XX: data_corrupted (XX001) and index_corrupted (XX002).
    return getattr(orig, "sqlstate", None) in ("XX001", "XX002")


def database_failure(url: str, exc: DBAPIError) -> RegistryNeedsAttention | ServiceUnavailable:
    """The one-line error for a database call that failed: damaged data, or a database out of reach."""
    reason = _reason(exc)
    if damaged(exc):
        return DatabaseDamaged(url=redact(url), reason=reason)
    return _unavailable(url, exc)


def _reason(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _unavailable(url: str, exc: Exception) -> ServiceUnavailable:
    reason = _reason(exc)
    return DatabaseUnreachable(url=redact(url), reason=reason)
