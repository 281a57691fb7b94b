"""Registration, lookups and aliases against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from regctl.registry.aliases import alias_history, remove_alias, set_alias
from regctl.registry.db import session_scope
from regctl.registry.entities import VersionInfo
from regctl.registry.errors import InvalidInput, InvalidSpec, NotFound
from regctl.registry.models import list_models, show_model
from regctl.registry.refs import Ref, parse_ref
from regctl.registry.requests import RegisterRequest
from regctl.registry.schema import Artifact, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, register_version, resolve
from tests.conftest import write_model_dir
from tests.factories import promotable


def _mark_ready(settings: Settings, name: str, version: int) -> None:
    with session_scope(settings.database_url) as session:
        row = session.scalars(
            select(ModelVersion).join(Model).where(Model.name == name, ModelVersion.version == version)
        ).one()
        row.status = "ready"


def _counts(settings: Settings) -> tuple[int, int, int]:
    with session_scope(settings.database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Model)) or 0,
            session.scalar(select(func.count()).select_from(ModelVersion)) or 0,
            session.scalar(select(func.count()).select_from(Artifact)) or 0,
        )


def test_first_registration_creates_the_model_and_version_one(settings: Settings, model_dir: Path) -> None:
    info = register_version(settings, RegisterRequest("doubler", description="doubles"), model_dir)
    assert (info.model, info.version, info.status) == ("doubler", 1, "registered")
    assert len(info.source_sha256) == 64
    assert info.spec["inputs"][0]["name"] == "x"
    source = [a for a in info.artifacts if a.kind == "source"]
    assert len(source) == 1 and open_store(settings.artifact_store).exists(source[0].sha256)
    assert show_model(settings, "doubler").description == "doubles"


def test_versions_count_up_from_one_per_model(settings: Settings, model_dir: Path) -> None:
    numbers = [register_version(settings, RegisterRequest("a"), model_dir).version for _ in range(3)]
    numbers += [register_version(settings, RegisterRequest("b"), model_dir).version]
    assert numbers == [1, 2, 3, 1]
    detail = show_model(settings, "a")
    assert detail.version_count == 3 and [v.version for v in detail.versions] == [3, 2, 1]


def test_same_directory_registered_twice_stores_one_source_blob(settings: Settings, model_dir: Path) -> None:
    one = register_version(settings, RegisterRequest("m"), model_dir)
    two = register_version(settings, RegisterRequest("m"), model_dir)
    assert one.source_sha256 == two.source_sha256
    assert _stored_blobs(settings) == {one.source_sha256}


def _stored_blobs(settings: Settings) -> set[str]:
    root = Path(settings.artifact_store) / "sha256"
    return {f"{p.parent.name}{p.name}" for p in root.glob("*/*") if p.is_file()}


def _kinds(info: VersionInfo) -> dict[str, str]:
    return {a.kind: a.sha256 for a in info.artifacts}


WEIGHTS_SPEC = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'


def test_only_the_changed_part_is_stored_again(settings: Settings, tmp_path: Path) -> None:
    directory = write_model_dir(tmp_path / "m", spec=WEIGHTS_SPEC, files={"w.safetensors": b"w" * 4096})
    first = _kinds(register_version(settings, RegisterRequest("m"), directory))
    assert set(first) == {"source", "weights"}
    assert _stored_blobs(settings) == {first["source"], first["weights"]}

    # the same directory again
    assert _kinds(register_version(settings, RegisterRequest("m"), directory)) == first
    assert _stored_blobs(settings) == {first["source"], first["weights"]}

    (directory / "model.py").write_text((directory / "model.py").read_text() + "# one more line\n")
    code_changed = _kinds(register_version(settings, RegisterRequest("m"), directory))
    assert code_changed["weights"] == first["weights"] and code_changed["source"] != first["source"]
    assert _stored_blobs(settings) == {first["source"], first["weights"], code_changed["source"]}

    (directory / "w.safetensors").write_bytes(b"v" * 4096)
    weights_changed = _kinds(register_version(settings, RegisterRequest("m"), directory))
    assert weights_changed["source"] == code_changed["source"]
    assert weights_changed["weights"] not in {first["weights"]}
    assert len(_stored_blobs(settings)) == 4


def write_sparse_safetensors(path: Path, floats: int) -> None:
    """A valid safetensors file of one float32 tensor of zeros, written sparsely (no time, no disk)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}})
    header += " " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode())
        f.truncate(8 + len(header) + 4 * floats)


def test_a_model_over_the_old_bundle_cap_registers_with_the_defaults(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    assert sqlite_settings.max_bundle_bytes == 512 * 1024 * 1024  # the defaults, untouched
    directory = write_model_dir(tmp_path / "big", spec=WEIGHTS_SPEC)
    write_sparse_safetensors(directory / "w.safetensors", 160 * 1024 * 1024)  # 640 MiB
    info = register_version(sqlite_settings, RegisterRequest("big"), directory)
    weights = next(a for a in info.artifacts if a.kind == "weights")
    source = next(a for a in info.artifacts if a.kind == "source")
    assert weights.size == (directory / "w.safetensors").stat().st_size > 640 * 1024 * 1024
    assert source.size < 1024 * 1024 and info.weights_sha256 == weights.sha256


def test_weights_over_their_own_cap_are_refused_before_anything_is_written(
    settings: Settings, tmp_path: Path
) -> None:
    directory = write_model_dir(tmp_path / "m", spec=WEIGHTS_SPEC, files={"w.safetensors": b"w" * 4096})
    capped = dataclasses.replace(settings, max_weights_bytes=1024)
    with pytest.raises(InvalidSpec, match="REGCTL_MAX_WEIGHTS_BYTES"):
        register_version(capped, RegisterRequest("m"), directory)
    assert _counts(settings) == (0, 0, 0) and _stored_blobs(settings) == set()


def test_large_weights_skip_the_dedup_pass_only_when_no_stored_weights_have_their_size(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regctl.registry import versions
    from regctl.registry.store.local import LocalStore

    monkeypatch.setattr(versions, "SIZE_CHECK_BYTES", 1000)  # these weights count as large
    asked: list[bool] = []
    real_put = LocalStore.put_file

    def put_file(self, path, *, maybe_stored=True):  # type: ignore[no-untyped-def]
        if path.name == "w.safetensors":
            asked.append(maybe_stored)
        return real_put(self, path, maybe_stored=maybe_stored)

    monkeypatch.setattr(LocalStore, "put_file", put_file)
    directory = write_model_dir(tmp_path / "m", spec=WEIGHTS_SPEC, files={"w.safetensors": b"w" * 4096})
    first = _kinds(register_version(settings, RegisterRequest("m"), directory))
    other = write_model_dir(tmp_path / "o", spec=WEIGHTS_SPEC, files={"w.safetensors": b"w" * 4096})
    second = _kinds(register_version(settings, RegisterRequest("other"), other))
    (directory / "w.safetensors").write_bytes(b"v" * 4097)
    third = _kinds(register_version(settings, RegisterRequest("m"), directory))
    # new size: straight to the copy; the same size stored (by any model): hashed first, not copied
    assert asked == [False, True, False]
    assert second["weights"] == first["weights"] != third["weights"]
    assert _stored_blobs(settings) == {first["source"], second["source"], first["weights"], third["weights"]}


def test_weights_sha256_is_recorded(settings: Settings, tmp_path: Path) -> None:
    spec = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'
    directory = write_model_dir(tmp_path / "w", spec=spec, files={"w.safetensors": b"not really weights"})
    info = register_version(settings, RegisterRequest("w"), directory)
    import hashlib

    assert info.weights_sha256 == hashlib.sha256(b"not really weights").hexdigest()


def test_name_resolves_to_the_newest_ready_version(settings: Settings, model_dir: Path) -> None:
    for _ in range(3):
        register_version(settings, RegisterRequest("m"), model_dir)
    with pytest.raises(NotFound, match="no ready version"):
        resolve(settings, Ref("m"))
    _mark_ready(settings, "m", 1)
    _mark_ready(settings, "m", 2)
    assert resolve(settings, Ref("m")).version == 2
    assert resolve(settings, Ref("m", version=3)).status == "registered"


def test_missing_model_version_and_alias_are_not_found(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    with pytest.raises(NotFound, match="model 'nope' not found"):
        resolve(settings, parse_ref("nope:1"))
    with pytest.raises(NotFound, match="m:7 not found; m has versions 1 to 1"):
        resolve(settings, parse_ref("m:7"))
    with pytest.raises(NotFound, match="alias m@prod not found"):
        resolve(settings, parse_ref("m@prod"))


def test_alias_set_move_remove_is_recorded_in_history(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    register_version(settings, RegisterRequest("m"), model_dir)
    promotable(settings, "m")
    assert set_alias(settings, "m", "prod", 1).previous is None
    assert resolve(settings, parse_ref("m@prod")).version == 1
    assert set_alias(settings, "m", "prod", 2).previous == 1
    assert resolve(settings, parse_ref("m@prod")).version == 2
    assert get_version(settings, parse_ref("m:2")).aliases == ("prod",)
    assert show_model(settings, "m").aliases == {"prod": 2}
    remove_alias(settings, "m", "prod")
    with pytest.raises(NotFound):
        resolve(settings, parse_ref("m@prod"))
    history = [(e.previous, e.version) for e in alias_history(settings, "m")]
    assert history == [(None, 1), (1, 2), (2, None)]
    assert all(e.updated_by for e in alias_history(settings, "m"))


def test_alias_on_a_missing_version_writes_nothing(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    with pytest.raises(NotFound):
        set_alias(settings, "m", "prod", 5)
    assert show_model(settings, "m").aliases == {}
    assert alias_history(settings, "m") == []


def test_list_models_reports_counts_and_latest(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("b"), model_dir)
    register_version(settings, RegisterRequest("a"), model_dir)
    register_version(settings, RegisterRequest("a"), model_dir)
    _mark_ready(settings, "a", 1)
    listed = {m.name: (m.versions, m.latest_version, m.latest_ready) for m in list_models(settings)}
    assert listed == {"a": (2, 2, 1), "b": (1, 1, None)}


@pytest.mark.parametrize("name", ["has space", "a/b", "", "-lead", "x" * 129, "m\n", "m\r\n", "ｍ"])
def test_bad_model_names_are_refused_before_anything_is_written(
    settings: Settings, model_dir: Path, name: str
) -> None:
    with pytest.raises(InvalidInput, match="is not valid"):
        register_version(settings, RegisterRequest(name), model_dir)
    assert _counts(settings) == (0, 0, 0)


def test_bad_spec_leaves_no_row_and_no_blob(settings: Settings, tmp_path: Path) -> None:
    directory = write_model_dir(
        tmp_path / "bad", spec='[[inputs]]\nname = "x"\ndtype = "flaot32"\nshape = [1]\n'
    )
    with pytest.raises(InvalidSpec, match="flaot32"):
        register_version(settings, RegisterRequest("m"), directory)
    assert _counts(settings) == (0, 0, 0)
    store_root = Path(settings.artifact_store) / "sha256"
    assert not store_root.exists() or not any(p.is_file() for p in store_root.rglob("*"))


def test_database_refuses_an_unknown_status(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    from regctl.registry.errors import RegctlError

    with pytest.raises(RegctlError), session_scope(settings.database_url) as session:
        session.execute(ModelVersion.__table__.update().values(status="bogus"))
    assert resolve(settings, parse_ref("m:1")).status == "registered"


def test_the_one_statement_version_read_matches_the_row_by_row_read(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import claim_job, finish_job
    from regctl.registry.lookup import find_version
    from regctl.registry.records import version_info
    from regctl.registry.schema import Alias, Job
    from regctl.registry.version_query import load_version

    # its rows must not leak in
    register_version(settings, RegisterRequest("other"), model_dir, jobs=("convert",))
    info = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert", "validate"))
    register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",))
    set_alias(settings, "m", "later", 2, force=True)  # none is ready: this test is about reading
    first, second = info.jobs
    claim_job(settings, first.id, "host:1")
    finish_job(settings, first.id, "failed", worker="host:1", error="boom", result={"nested": {"k": [1, 2]}})
    set_alias(settings, "m", "staging", 1, force=True)
    set_alias(settings, "m", "prod", 1, force=True)
    for ref in (Ref("m", version=1), Ref("m", alias="prod")):
        with session_scope(settings.database_url) as session:
            one = load_version(session, ref)
            model, row = find_version(session, ref)
            artifacts = session.scalars(
                select(Artifact).where(Artifact.version_id == row.id).order_by(Artifact.id)
            )
            aliases = session.scalars(select(Alias.name).where(Alias.version_id == row.id))
            jobs = session.scalars(select(Job).where(Job.version_id == row.id).order_by(Job.id))
            plain = version_info(row, model.name, list(artifacts), list(aliases), list(jobs))
        assert one == plain
        assert one.aliases == ("prod", "staging")
        assert [j.id for j in one.jobs] == [first.id, second.id]
        assert one.jobs[0].result == {"nested": {"k": [1, 2]}}
        assert one.jobs[0].created_at.tzinfo is not None
    with session_scope(settings.database_url) as session:
        assert load_version(session, Ref("m")) is None  # nothing ready yet


@pytest.mark.parametrize("proved", [True, False])
def test_a_conversion_proved_on_the_stored_bytes_makes_the_version_ready_without_a_validate_job(
    settings: Settings, model_dir: Path, proved: bool
) -> None:
    from regctl.registry.jobs import claim_job
    from regctl.registry.outcomes import NewArtifact, record_success, start_stage

    convert = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    assert claim_job(settings, convert.id, "host:1").should_run
    start_stage(settings, convert.id, "host:1")
    blob = open_store(settings.artifact_store).put_bytes(b"torchscript bytes")
    summary = {"validated": True} if proved else {}
    follow_ups = record_success(
        settings,
        convert.id,
        "host:1",
        [NewArtifact("torchscript", blob, "2.13.0", "script")],
        summary,
        {"proved": proved},
        method="script",
        proved=proved,
    )
    version = get_version(settings, parse_ref("m:1"))
    if proved:
        assert follow_ups == [] and version.status == "ready"
        assert [j.kind for j in version.jobs] == ["convert"]
    else:  # not the bytes the judge ran: a validate job, chained to the conversion, proves them
        assert [(j.kind, j.parent_id) for j in follow_ups] == [("validate", convert.id)]
        assert version.status == "validating"


def test_an_alias_with_a_trailing_newline_is_refused(settings: Settings, model_dir: Path) -> None:
    register_version(settings, RegisterRequest("m"), model_dir)
    with pytest.raises(InvalidInput, match="is not valid"):
        set_alias(settings, "m", "prod\n", 1)
    assert alias_history(settings, "m") == []


def test_an_unreachable_database_fails_registration_before_anything_is_stored(
    tmp_path: Path, model_dir: Path
) -> None:
    from regctl.registry.errors import ServiceUnavailable

    settings = Settings.from_env(
        {},
        home=tmp_path / "home",
        database_url="postgresql://regctl@127.0.0.1:1/nothing",  # nothing listens on port 1
        artifact_store=str(tmp_path / "home" / "artifacts"),
    )
    with pytest.raises(ServiceUnavailable):
        register_version(settings, RegisterRequest("m"), model_dir)
    assert _stored_blobs(settings) == set()
