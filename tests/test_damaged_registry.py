"""A damaged registry is reported as damage (exit 6), one line each, and `regctl doctor` finds all of it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.db import dispose_engines
from regctl.registry.jobs import claim_job
from regctl.registry.ops.doctor import check_registry
from regctl.registry.outcomes import NewArtifact, record_success, start_stage
from regctl.registry.refs import parse_ref
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, register_version
from tests.conftest import direct_cli, write_model_dir

DAY = 86400.0


regctl = direct_cli


def blob_path(settings: Settings, sha256: str) -> Path:
    return Path(settings.artifact_store) / "sha256" / sha256[:2] / sha256[2:]


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def ready_version(settings: Settings, directory: Path, name: str, torchscript: bytes) -> str:
    """A version made ready by a proved conversion whose artifact is `torchscript` (no torch needed)."""
    convert = register_version(settings, RegisterRequest(name), directory, jobs=("convert",)).jobs[0]
    assert claim_job(settings, convert.id, "host:1").should_run
    start_stage(settings, convert.id, "host:1")
    blob = open_store(settings.artifact_store).put_bytes(torchscript)
    record_success(
        settings,
        convert.id,
        "host:1",
        [NewArtifact("torchscript", blob, "2.13.0", "script")],
        {"validated": True},
        {"proved": True},
        method="script",
        proved=True,
    )
    return blob.sha256


def damage(path: Path) -> None:
    """Flip the last byte: same size, different content."""
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


def test_a_sound_registry_has_no_problems(settings: Settings, model_dir: Path) -> None:
    ready_version(settings, model_dir, "m", b"torchscript bytes")
    result = regctl(settings, "doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["blobs_checked"] == 2 and report["hashed"] is True  # the source and the artifact
    human = regctl(settings, "doctor")
    assert human.exit_code == 0 and "checked 2 blobs" in human.stderr and "no problems" in human.stderr


def test_a_missing_blob_is_damage_for_fetch_and_for_doctor(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    sha = ready_version(settings, model_dir, "m", b"torchscript bytes")
    blob_path(settings, sha).unlink()

    fetched = regctl(settings, "fetch", "m:1", "-o", str(tmp_path / "model.pt"))
    assert fetched.exit_code == 6, fetched.output  # damage, not "not found" (3)
    assert f"sha256:{sha} is missing from the store" in fetched.stderr
    assert fetched.stderr.count("\n") == 1 and not (tmp_path / "model.pt").exists()
    assert list(tmp_path.glob(".model.pt.*")) == []  # no temp left beside the target

    result = regctl(settings, "doctor")
    assert result.exit_code == 6
    assert result.stdout.splitlines() == [
        f"missing_blob: blob sha256:{sha} of m:1 torchscript is missing from the store "
        f"{Path(settings.artifact_store)}; restore it from a backup"
    ]
    # A model that never existed is still plain "not found".
    assert regctl(settings, "fetch", "nothing:1", "-o", str(tmp_path / "x.pt")).exit_code == 3


def test_a_damaged_blob_is_found_by_its_sha256_and_a_truncated_one_by_its_size(
    settings: Settings, model_dir: Path
) -> None:
    damaged = ready_version(settings, model_dir, "a", b"first artifact")
    truncated = ready_version(settings, model_dir, "b", b"second artifact")
    damage(blob_path(settings, damaged))
    path = blob_path(settings, truncated)
    path.chmod(0o644)
    path.write_bytes(b"second")

    full = json.loads(regctl(settings, "doctor", "--json").stdout)
    assert {(p["kind"], p["subject"]) for p in full["problems"]} == {
        ("corrupted_blob", damaged),
        ("corrupted_blob", truncated),
    }
    assert any("holds 6 bytes, not 15" in p["message"] for p in full["problems"])
    quick = regctl(settings, "doctor", "--quick", "--json")
    assert quick.exit_code == 6
    assert [p["subject"] for p in json.loads(quick.stdout)["problems"]] == [truncated]  # size only


def test_a_blob_shared_by_versions_names_them_all(settings: Settings, model_dir: Path) -> None:
    for name in ("a", "b"):
        sha = ready_version(settings, model_dir, name, b"the same bytes")
    damage(blob_path(settings, sha))
    (problem,) = check_registry(settings).problems
    assert "of a:1 torchscript, b:1 torchscript is damaged" in problem.message


def test_orphans_and_leftover_temps_are_reported_after_the_grace_period(
    settings: Settings, model_dir: Path
) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    store = open_store(settings.artifact_store)
    old_orphan = store.put_bytes(b"left by a registration whose database write failed")
    fresh = store.put_bytes(b"a registration uploading right now")
    age(blob_path(settings, old_orphan.sha256), 2 * DAY)
    temp = Path(settings.artifact_store) / "tmp" / "put-abc.part"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half an upload")
    age(temp, 2 * DAY)

    checkup = check_registry(settings)
    assert sorted((p.kind, p.subject) for p in checkup.problems) == [
        ("leftover_temp", str(temp)),
        ("orphan_blob", old_orphan.sha256),
    ]
    assert checkup.recent_unreferenced == 1  # `fresh`, within the grace period
    assert fresh.sha256 not in {p.subject for p in checkup.problems}
    assert check_registry(settings, grace_s=0).recent_unreferenced == 0


def test_an_outdated_schema_is_reported_without_being_upgraded(settings: Settings, model_dir: Path) -> None:
    from regctl.registry.db import current_revision
    from regctl.registry.migrate import downgrade, upgrade

    register_version(settings, RegisterRequest("m"), model_dir)
    downgrade(settings.database_url, "0002_service")
    dispose_engines()
    try:
        result = regctl(settings, "doctor", "--json")
        assert result.exit_code == 6
        (problem,) = json.loads(result.stdout)["problems"]
        assert problem["kind"] == "schema" and "run 'regctl db upgrade'" in problem["message"]
        assert current_revision(settings.database_url) == "0002_service"  # doctor changes nothing
    finally:
        upgrade(settings.database_url)  # the PostgreSQL database is shared by the tests that follow


@pytest.fixture
def sqlite_registry(sqlite_settings: Settings, model_dir: Path) -> Settings:
    ready_version(sqlite_settings, model_dir, "m", b"torchscript bytes")
    dispose_engines()  # let go of the file before the tests below damage it
    for suffix in ("-wal", "-shm"):
        Path(f"{sqlite_settings.home / 'registry.db'}{suffix}").unlink(missing_ok=True)
    return sqlite_settings


def test_a_zero_length_database_is_lost_data_not_a_new_registry(sqlite_registry: Settings) -> None:
    database = sqlite_registry.home / "registry.db"
    database.write_bytes(b"")
    for command in (["models", "list"], ["register", "m", str(write_model_dir(database.parent / "d"))]):
        result = regctl(sqlite_registry, *command)
        assert result.exit_code == 6, result.output
        assert "is an empty file: its data was lost; restore it from a backup" in result.stderr
    assert database.stat().st_size == 0  # not turned into an empty registry
    doctor = regctl(sqlite_registry, "doctor", "--json")
    assert doctor.exit_code == 6 and json.loads(doctor.stdout)["problems"][0]["kind"] == "database"


@pytest.mark.parametrize("how", ["pages", "header"])
def test_a_corrupted_database_file_is_damage_not_an_unreachable_database(
    sqlite_registry: Settings, how: str
) -> None:
    database = sqlite_registry.home / "registry.db"
    data = bytearray(database.read_bytes())
    if how == "pages":  # every page after the first: the tables' contents, not the header
        data[4096:] = b"\x5a" * (len(data) - 4096)
    else:
        data[:100] = b"\x00" * 100
    database.write_bytes(bytes(data))
    result = regctl(sqlite_registry, "versions", "show", "m:1")
    assert result.exit_code == 6, result.output  # not 4 ("cannot reach") and not 1 ("internal error")
    assert "is damaged (" in result.stderr and "restore it from a backup" in result.stderr
    assert result.stderr.count("\n") == 1
    doctor = regctl(sqlite_registry, "doctor", "--json")
    assert doctor.exit_code == 6
    assert [p["kind"] for p in json.loads(doctor.stdout)["problems"]] == ["database"]


def test_a_validate_job_meeting_a_damaged_blob_fails_itself_not_the_versions(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import create_job, get_job
    from regctl.worker.supervisor.pipeline import run_job

    for name in ("a", "b"):
        sha = ready_version(settings, model_dir, name, b"shared torchscript bytes")
    damage(blob_path(settings, sha))
    job = create_job(settings, parse_ref("a:1"), "validate")
    run_job(settings, job.id)

    failed = get_job(settings, job.id)
    assert failed.state == "failed"
    assert failed.error and f"sha256:{sha}" in failed.error and "does not match its checksum" in failed.error
    assert "internal error" not in failed.error
    statuses = {ref: get_version(settings, parse_ref(ref)).status for ref in ("a:1", "b:1")}
    assert statuses == {"a:1": "ready", "b:1": "ready"}  # the store's copy is damaged, not the versions


def test_a_convert_job_whose_weights_blob_is_damaged_fails_on_its_checksum_and_stores_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import save_file

    from regctl.registry.jobs import get_job
    from regctl.worker.supervisor.pipeline import run_job
    from tests.factories import linear_model

    directory = linear_model(tmp_path / "m")
    spec = directory / "regctl.toml"
    spec.write_text('weights = "w.safetensors"\n' + spec.read_text())
    torch.manual_seed(0)
    save_file(
        {"linear.weight": torch.randn(2, 10), "linear.bias": torch.randn(2)}, str(directory / "w.safetensors")
    )
    convert = register_version(settings, RegisterRequest("m"), directory, jobs=("convert",)).jobs[0]
    weights = next(a for a in get_version(settings, parse_ref("m:1")).artifacts if a.kind == "weights")
    # The model still loads and converts from these bytes: only their checksum can tell.
    damage(blob_path(settings, weights.sha256))
    run_job(settings, convert.id)

    failed = get_job(settings, convert.id)
    assert failed.state == "failed"
    assert (
        failed.error
        and f"sha256:{weights.sha256}" in failed.error
        and "does not match its checksum" in failed.error
    )
    version = get_version(settings, parse_ref("m:1"))
    assert version.status == "failed"
    assert sorted(a.kind for a in version.artifacts) == ["source", "weights"]  # no artifact, no report
