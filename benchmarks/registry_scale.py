"""Lookups on a big registry (1,000 models, 100,000 versions, 1,000,000 jobs) against a 10-version one.

Both registries are filled with bulk inserts (not through the CLI), then the same calls are timed on
each: resolve NAME (newest ready), NAME:VERSION, NAME@ALIAS, and `models show`. Prints one JSON
document; target (issue 2): every ratio at most 1.5, which only holds with the right indexes.

    python benchmarks/registry_scale.py [--database-url postgresql://…] [--jobs 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from regctl.registry.engines import get_engine, normalize_url
from regctl.registry.migrate import upgrade
from regctl.registry.models import show_model
from regctl.registry.refs import Ref
from regctl.registry.schema import Alias, Job, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.versions import resolve

TARGET = 1.5
CHUNK = 20_000
SPEC = {"entrypoint": "model.py:build", "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 10]}]}


def fill(url: str, models: int, versions_per_model: int, jobs: int) -> None:
    """Bulk-insert models, versions (every third one ready), a `prod` alias per model and jobs."""
    engine = get_engine(url)
    now = datetime.now(UTC)
    sha = "0" * 64
    with engine.begin() as conn:
        conn.execute(
            insert(Model),
            [
                {
                    "id": m + 1,
                    "name": f"model-{m:04d}",
                    "description": "",
                    "last_version": versions_per_model,
                    "created_at": now,
                }
                for m in range(models)
            ],
        )
        rows = [
            {
                "id": m * versions_per_model + v,
                "model_id": m + 1,
                "version": v,
                "status": "ready" if v % 3 == 0 or v == 1 else "failed",
                "spec": SPEC,
                "source_sha256": sha,
                "created_by": "bench",
                "created_at": now,
                "updated_at": now,
            }
            for m in range(models)
            for v in range(1, versions_per_model + 1)
        ]
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(ModelVersion), rows[start : start + CHUNK])
        conn.execute(
            insert(Alias),
            [
                {
                    "model_id": m + 1,
                    "name": "prod",
                    "version_id": m * versions_per_model + 1,
                    "updated_by": "bench",
                    "updated_at": now,
                }
                for m in range(models)
            ],
        )
        total_versions = models * versions_per_model
        for start in range(0, jobs, CHUNK):
            conn.execute(
                insert(Job),
                [
                    {
                        "version_id": (i % total_versions) + 1,
                        "kind": "convert" if i % 2 else "validate",
                        "state": "succeeded",
                        "queue": "cpu",
                        "attempts": 1,
                        "max_attempts": 3,
                        "progress": "done",
                        "cancel_requested": False,
                        "created_at": now,
                    }
                    for i in range(start, min(jobs, start + CHUNK))
                ],
            )


def median_call(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `fn` after a few warm-up calls."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(settings: Settings, models: int, versions_per_model: int, repeat: int) -> dict[str, float]:
    """Median seconds per lookup, each call on a random model so caches cannot hide a scan."""
    rng = random.Random(0)
    name = lambda: f"model-{rng.randrange(models):04d}"  # noqa: E731
    calls = {
        "resolve_newest": lambda: resolve(settings, Ref(name())),
        "resolve_version": lambda: resolve(settings, Ref(name(), version=rng.randint(1, versions_per_model))),
        "resolve_alias": lambda: resolve(settings, Ref(name(), alias="prod")),
        "models_show": lambda: show_model(settings, name()),
    }
    return {key: median_call(fn, repeat) for key, fn in calls.items()}


def build(url: str, models: int, versions_per_model: int, jobs: int) -> Settings:
    """Create the schema at `url`, fill it, and return settings pointing at it."""
    upgrade(url)
    started = time.perf_counter()
    fill(url, models, versions_per_model, jobs)
    print(
        f"filled {models * versions_per_model} versions and {jobs} jobs in "
        f"{time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    if normalize_url(url).startswith("postgresql"):
        with get_engine(url).begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return Settings.from_env({}, home=Path(tempfile.gettempdir()), database_url=url)


def main() -> None:
    """Build both registries, measure, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="PostgreSQL admin URL; default: SQLite files in a temp dir")
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_url, large_url, cleanup = _urls(args.database_url, Path(tmp))
        try:
            small = measure(build(small_url, 1, 10, 100), 1, 10, args.repeat)
            per_model = args.versions // args.models
            large = measure(
                build(large_url, args.models, per_model, args.jobs), args.models, per_model, args.repeat
            )
        finally:
            cleanup()
    ratios = {key: large[key] / small[key] for key in small}
    print(
        json.dumps(
            {
                "benchmark": "registry_scale",
                "backend": "postgresql" if args.database_url else "sqlite",
                "large": {"models": args.models, "versions": args.versions, "jobs": args.jobs},
                "small": {"models": 1, "versions": 10, "jobs": 100},
                "small_median_ms": {k: round(v * 1000, 3) for k, v in small.items()},
                "large_median_ms": {k: round(v * 1000, 3) for k, v in large.items()},
                "ratio": {k: round(v, 3) for k, v in ratios.items()},
                "target": TARGET,
                "meets_target": all(r <= TARGET for r in ratios.values()),
            },
            indent=2,
        )
    )


def _urls(admin_url: str | None, tmp: Path) -> tuple[str, str, Callable[[], None]]:
    if not admin_url:
        return f"sqlite:///{tmp / 'small.db'}", f"sqlite:///{tmp / 'large.db'}", lambda: None
    import os

    os.environ["REGCTL_TEST_POSTGRES_URL"] = admin_url
    from tests.conftest import create_postgres_database, drop_postgres_database

    small, large = create_postgres_database(), create_postgres_database()
    return small, large, lambda: (drop_postgres_database(small), drop_postgres_database(large))


if __name__ == "__main__":
    main()
