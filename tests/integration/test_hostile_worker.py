"""Hostile models through a real `regctl worker` with Redis and PostgreSQL.

The worker holds the database URL (with a password), the broker URL and cloud-looking tokens in
its environment. Every hostile model of tests/hostile.py is registered at once; each must fail
with a one-line reason or finish without any effect outside its work directory, and afterwards
the victim still fetches byte-identical, its alias and the never-converted version are untouched,
and the pool children never loaded torch or model code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.hostile import (
    ATTACKS,
    CANARIES,
    CANARY_VALUES,
    EXPECTED,
    LIMITS_ENV,
    Targets,
    check_error,
    hostile_model,
    processes_with,
    report_text,
    require_full_sandbox,
    sha256_of,
)
from tests.integration.conftest import Service, linear_model, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]
PASSWORD = "canary-pg-password-5d1e"


def _with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_hostile_models_in_a_real_worker_fail_cleanly_or_leave_no_trace(
    service: Service, tmp_path: Path
) -> None:
    from regctl.worker.judge.libtorch import runner_path

    require_full_sandbox()
    # Trust authentication accepts any password: the worker's URL now carries a secret to steal.
    service.settings = dataclasses.replace(
        service.settings, database_url=_with_password(service.settings.database_url)
    )
    assert service.regctl("keys", "init").returncode == 0  # a key in the registry home: one more secret
    worker = service.start_worker("cpu", concurrency=2, **CANARIES, **LIMITS_ENV)
    started = worker.log_text()
    assert "sandbox: auto" in started and "network:      none" in started, started[-2000:]

    service.register("victim", linear_model(tmp_path / "victim"))
    assert service.wait_version("victim:1", timeout=180).status == "ready"
    assert service.regctl("alias", "set", "victim@prod", "1").returncode == 0
    service.register("idle", linear_model(tmp_path / "idle"), convert=False)
    assert service.regctl("fetch", "victim@prod", "-o", str(tmp_path / "before.pt")).returncode == 0
    runner = runner_path(Path(service.env()["REGCTL_LIBTORCH_CACHE"]))
    runner_sha = sha256_of(runner)
    blobs = [a.uri for a in service.version("victim:1").artifacts]
    targets = Targets(
        store=service.settings.artifact_store,
        home=str(service.settings.home),
        runner=str(runner),
        secret_files=[str(Path.home() / ".aws" / "credentials")],
        victim_blobs=blobs,
    )

    for name in sorted(ATTACKS):
        service.register(name, hostile_model(tmp_path / name, name, targets))
    problems: list[str] = []
    for name in sorted(ATTACKS):
        version = service.wait_version(f"{name}:1", timeout=300)
        convert = version.jobs[0]
        if version.status != EXPECTED[name].status:
            problems.append(f"{name}: {version.status}, expected {EXPECTED[name].status} ({convert.error})")
        problems += check_error(name, convert.error)
        leaked = [c for c in CANARY_VALUES if c in report_text(version.summary)]
        if leaked:
            problems.append(f"{name}: secrets leaked into the report: {leaked}")
        if convert.attempts != 1:
            problems.append(
                f"{name}: took {convert.attempts} attempts; a model's failure is not the worker's"
            )
    assert not problems, problems

    # Model text reaches neither the worker's log nor a terminal as control sequences, and reads as text.
    logged = worker.log.read_bytes()
    assert b"\x1b" not in logged and b"\x07" not in logged, "an escape sequence reached the worker's log"
    for args in (("jobs", "list"), ("versions", "show", "markup:1")):
        shown = service.regctl(*args, COLUMNS="1000")
        assert shown.returncode == 0 and "[/x] [bold red]boom" in shown.stdout, (args, shown.stderr[-2000:])
        assert "\x1b" not in shown.stdout + shown.stderr and "\u202e" not in shown.stdout
    flooded = service.version("warnings:1").summary
    assert len(json.dumps(flooded)) < 1024 * 1024 and len(flooded["report"]["model_warnings"]) <= 100

    assert service.version("blind:1").status == "failed"
    assert "torchscript" not in [a.kind for a in service.version("blind:1").artifacts]
    assert service.regctl("fetch", "victim@prod", "-o", str(tmp_path / "after.pt")).returncode == 0
    assert sha256_of(tmp_path / "after.pt") == sha256_of(tmp_path / "before.pt")
    assert service.version("victim@prod").version == 1
    assert service.version("idle:1").status == "registered"
    for blob in blobs:
        assert sha256_of(Path(blob)) == Path(blob).parent.name + Path(blob).name
    assert sha256_of(runner) == runner_sha, "the LibTorch runner was rewritten"
    for directory in (Path(targets.store), Path(targets.home)):
        assert not (directory / "evil.txt").exists() and not (directory / "sha256" / "evil.txt").exists()
    import redis

    assert not redis.Redis(host="127.0.0.1", port=6379, db=0).exists(targets.redis_key), "it reached Redis"
    wait_until(lambda: not processes_with(targets.marker), 15, "the models' processes to be gone")
    for child in worker.child_pids():
        maps = Path(f"/proc/{child}/maps").read_text()
        assert "libtorch" not in maps, f"pool child {child} loaded torch: model-side code ran in it"
    assert worker.alive()
