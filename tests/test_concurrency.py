"""Version numbers stay unique and gap-free when many processes register the same model at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import select

from regctl.registry.db import session_scope
from regctl.registry.schema import Model, ModelVersion
from regctl.registry.settings import Settings

WORKERS = 16


def _register(args: tuple[Settings, Path, object]) -> int:
    settings, directory, barrier = args
    from regctl.registry.db import dispose_engines
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.versions import register_version

    dispose_engines(close=False)
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    return register_version(settings, RegisterRequest("contended"), directory).version


@pytest.mark.postgres
def test_sixteen_processes_registering_at_once_get_versions_one_to_sixteen(
    settings: Settings, model_dir: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(WORKERS)
        with ctx.Pool(WORKERS) as pool:
            versions = pool.map(_register, [(settings, model_dir, barrier)] * WORKERS)
    assert sorted(versions) == list(range(1, WORKERS + 1))
    with session_scope(settings.database_url) as session:
        stored = session.scalars(
            select(ModelVersion.version).join(Model).where(Model.name == "contended")
        ).all()
        last = session.scalar(select(Model.last_version).where(Model.name == "contended"))
    assert sorted(stored) == list(range(1, WORKERS + 1))
    assert last == WORKERS
