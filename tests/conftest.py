"""Shared fixtures: real SQLite and PostgreSQL registries, model directories built from code."""

from __future__ import annotations

import gc
import os
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, text

from regctl.registry.db import dispose_engines
from regctl.registry.engines import normalize_url
from regctl.registry.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# The browser tests' screenshots of every page (tests/browser/), named in the run's last lines.
SCREENSHOTS = Path(os.environ.get("REGCTL_SCREENSHOTS", ROOT / "build" / "screenshots"))
POSTGRES_ADMIN_URL = os.environ.get("REGCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


T = TypeVar("T")


def xdist_worker() -> str | None:
    """This process's pytest-xdist worker name ("gw0", "gw1", ...); None in a run of one process."""
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def xdist_index() -> int:
    """This process's pytest-xdist worker number (gw1 is 1); 0 when the suite runs in one process."""
    name = xdist_worker()
    return int(name.removeprefix("gw")) if name else 0


def pytest_sessionstart(session: pytest.Session) -> None:
    """Empty the screenshot folder once per run: here, not in each pytest-xdist worker's session."""
    if xdist_worker() is None and SCREENSHOTS.exists():
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the screenshots are, so a person can look at the pages the tests saw."""
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.exists() else []
    if shots:
        terminalreporter.write_line(f"browser screenshots: {len(shots)} in {SCREENSHOTS}")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy, or fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def at_once(calls: Sequence[Callable[[], T]], timeout: float = 120.0) -> list[T | Exception]:
    """Run `calls` in threads released together by a barrier; each one's result or exception, in order.

    An exception is returned, not raised: an assertion failing in a thread would otherwise be lost.
    """
    barrier, outcomes = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"some of {len(calls)} calls still run after {timeout:g}s"
    return outcomes  # type: ignore[return-value]


def service_missing(what: str, why: Exception | str) -> None:
    """Skip locally when a service is not running; fail under CI=true, where it must be."""
    message = f"{what} is not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}; CI must provide it")
    pytest.skip(message)


def _admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(
        normalize_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def create_postgres_database() -> str:
    """Create an empty PostgreSQL database of this test run's own and return its URL."""
    name = f"regctl_test_{uuid.uuid4().hex[:12]}"
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
    except Exception as exc:  # the server is down or refuses us
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    """Drop a database made by `create_postgres_database` (closing our pooled connections first)."""
    release_connections()
    name = url.rsplit("/", 1)[1]
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def release_connections() -> None:
    """Close every pooled database connection of this process once a test is done with its database."""
    from regctl.worker.webhook_sender import wait_for_background

    # A test's embedded webhook sends go on in a background thread; one holding a connection while
    # the pool is disposed would leave it open, for a later test's garbage collection to warn about.
    wait_for_background(30.0)
    dispose_engines()
    # A connection some other thread still held sits in a reference cycle until the collector runs;
    # collect it here, where it is known dead, not in whichever later test happens to run the GC.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="session", autouse=True)
def libtorch_runner_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One LibTorch runner build per test run, shared by every test and worker process it starts.

    Under pytest-xdist the run's workers share it too: their temporary roots are siblings, and the
    build serialises on its own lock file (worker/judge/libtorch.py), so it compiles once, not once
    per worker.
    """
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if xdist_worker() is not None else base) / "libtorch-runner"
    cache.mkdir(exist_ok=True)
    previous = os.environ.get("REGCTL_LIBTORCH_CACHE")
    os.environ["REGCTL_LIBTORCH_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("REGCTL_LIBTORCH_CACHE", None)
    else:
        os.environ["REGCTL_LIBTORCH_CACHE"] = previous


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database upgraded to head, shared by the session; tests clean their rows."""
    url = create_postgres_database()
    from regctl.registry.migrate import upgrade

    upgrade(url)
    yield url
    drop_postgres_database(url)


def _truncate(url: str) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE models, model_versions, artifacts, jobs, aliases, alias_history, "
                "webhooks, webhook_deliveries, webhook_attempts RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Registry settings on a fresh SQLite file or a clean PostgreSQL database, with a local store."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate(url)
    yield Settings.from_env({}, home=home, database_url=url, artifact_store=str(home / "artifacts"))
    if request.param == "sqlite":
        dispose_engines()
    else:
        release_connections()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Embedded settings: SQLite and a local store under a temporary REGCTL_HOME."""
    home = tmp_path / "home"
    return Settings.from_env({}, home=home)


@pytest.fixture
def server_tmp(tmp_path: Path) -> Path:
    """The TMPDIR of the servers `serve` starts: what they leave behind shows there."""
    path = tmp_path / "server-tmp"
    path.mkdir()
    return path


@pytest.fixture
def serve(sqlite_settings: Settings, tmp_path: Path, server_tmp: Path) -> Iterator[Callable[..., object]]:
    """Start a real `regctl serve` on `sqlite_settings`: `serve(REGCTL_X="1", port=None)`; all stopped after.

    Its environment is PATH, TMPDIR (`server_tmp`), the settings and the variables given, nothing else.
    """
    from tests.api_server import ApiServer

    started: list[ApiServer] = []

    def start(port: int | None = None, **variables: str) -> ApiServer:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": str(server_tmp),
            **sqlite_settings.to_env(),
            **variables,
        }
        started.append(ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path, port=port))
        return started[-1]

    yield start
    for server in started:
        server.stop()


MODEL_PY = """
import torch


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def build():
    return Doubler()
"""

SPEC_TOML = """
entrypoint = "model.py:build"

[[inputs]]
name = "x"
dtype = "float32"
shape = [1, "n"]

[dims]
n = { min = 1, max = 8 }
"""


def write_model_dir(
    root: Path, *, spec: str = SPEC_TOML, files: dict[str, str | bytes] | None = None
) -> Path:
    """Write a model directory (regctl.toml, model.py and any extra files) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "regctl.toml").write_text(textwrap.dedent(spec))
    (root / "model.py").write_text(textwrap.dedent(MODEL_PY))
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small valid model directory (no weights)."""
    return write_model_dir(tmp_path / "doubler")


def direct_cli(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    """Run the CLI in-process, directly against `settings`' database and store (never a server)."""
    from click.testing import CliRunner

    import regctl.cli.main  # noqa: F401  (registers every command)
    from regctl.cli.app import cli

    env = {
        "REGCTL_HOME": str(settings.home),
        "REGCTL_DATABASE_URL": settings.database_url,
        "REGCTL_ARTIFACT_STORE": settings.artifact_store,
        "REGCTL_BROKER_URL": "",
        "REGCTL_URL": "",
        "REGCTL_WEBHOOK_ALLOW_PRIVATE": ",".join(settings.webhook_allow_private),
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def cli_invoker(settings: Settings, **extra_env: str):  # type: ignore[no-untyped-def]
    """A function that invokes regctl's CLI against the test registry (no broker); returns click's Result."""
    from click.testing import CliRunner

    import regctl.cli.main  # noqa: F401  (registers every command)
    from regctl.cli.app import cli

    runner = CliRunner()
    env = {
        "REGCTL_HOME": str(settings.home),
        "REGCTL_DATABASE_URL": settings.database_url,
        "REGCTL_ARTIFACT_STORE": settings.artifact_store,
        "REGCTL_BROKER_URL": "",
        **extra_env,
    }

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke
