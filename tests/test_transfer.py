"""`regctl export` / `regctl import`: round trips between SQLite and PostgreSQL, and hostile archives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.aliases import set_alias
from regctl.registry.db import dispose_engines
from regctl.registry.jobs import claim_job
from regctl.registry.lifecycle import archive_version
from regctl.registry.lineage import Lineage
from regctl.registry.outcomes import NewArtifact, record_success, start_stage
from regctl.registry.refs import parse_ref
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, register_version
from tests.conftest import _truncate, direct_cli, write_model_dir

regctl = direct_cli


def sqlite_registry(root: Path) -> Settings:
    home = root / "home"
    return Settings.from_env({}, home=home, database_url=f"sqlite:///{home / 'registry.db'}")


@pytest.fixture
def postgres_registry(postgres_url: str, tmp_path: Path) -> Settings:
    _truncate(postgres_url)
    home = tmp_path / "pg-home"
    yield Settings.from_env({}, home=home, database_url=postgres_url, artifact_store=str(home / "artifacts"))
    dispose_engines()


def populate(settings: Settings, directory: Path) -> None:
    """m:1 ready (a proved TorchScript artifact), m:2 archived, m:3 registered; m@prod -> 1; tags."""
    convert = register_version(
        settings,
        RegisterRequest(
            "m",
            lineage=Lineage(description="first", tags={"team": "nlp"}, run_url="https://example.com/run/1"),
        ),
        directory,
        jobs=("convert",),
    ).jobs[0]
    assert claim_job(settings, convert.id, "host:1").should_run
    start_stage(settings, convert.id, "host:1")
    blob = open_store(settings.artifact_store).put_bytes(b"torchscript bytes of m:1")
    summary = {"validated": True, "report": {"battery_size": 12}}
    artifacts = [NewArtifact("torchscript", blob, "2.13.0", "script")]
    record_success(
        settings, convert.id, "host:1", artifacts, summary, {"proved": True}, method="script", proved=True
    )
    register_version(settings, RegisterRequest("m"), directory)
    archive_version(settings, parse_ref("m:2"))
    register_version(settings, RegisterRequest("m"), directory)
    set_alias(settings, "m", "prod", 1, force=True)  # m:1 is proved but not signed here


def shape(settings: Settings, ref: str) -> tuple:
    v = get_version(settings, parse_ref(ref))
    return (
        v.status,
        v.method,
        v.description,
        v.tags,
        v.run_url,
        v.archived_at is not None,
        v.source_sha256,
        sorted((a.kind, a.sha256, a.size) for a in v.artifacts),
        (v.summary or {}).get("validated"),
        v.aliases,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("direction", ["sqlite to postgresql", "postgresql to sqlite"])
def test_a_model_round_trips_between_sqlite_and_postgresql(
    postgres_registry: Settings, tmp_path: Path, model_dir: Path, direction: str
) -> None:
    sqlite = sqlite_registry(tmp_path / "sqlite")
    source, target = (
        (sqlite, postgres_registry) if direction.startswith("sqlite") else (postgres_registry, sqlite)
    )
    populate(source, model_dir)
    archive = tmp_path / "out" / "m.regctl.tar"
    exported = regctl(source, "export", "m", "-o", str(archive), "--create-dirs", "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["versions"] == ["m:1", "m:2", "m:3"]

    imported = regctl(target, "import", str(archive), "--json")
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert report["versions"] == {"m:1": "m:1", "m:2": "m:2", "m:3": "m:3"}
    assert report["aliases"] == {"m@prod": "set to 1"}
    for ref in ("m:1", "m:2", "m:3"):
        assert shape(target, ref) == shape(source, ref)
    fetched = tmp_path / "fetched.pt"
    assert regctl(target, "fetch", "m@prod", "-o", str(fetched)).exit_code == 0
    assert fetched.read_bytes() == b"torchscript bytes of m:1"
    assert regctl(target, "doctor").exit_code == 0


def test_numbers_taken_here_are_mapped_and_said(tmp_path: Path, model_dir: Path) -> None:
    source, target = sqlite_registry(tmp_path / "a"), sqlite_registry(tmp_path / "b")
    populate(source, model_dir)
    register_version(
        target, RegisterRequest("m"), write_model_dir(tmp_path / "other", files={"x.py": "X = 2\n"})
    )
    set_alias(target, "m", "prod", 1, force=True)
    archive = tmp_path / "m.tar"
    assert regctl(source, "export", "m:1", "-o", str(archive)).exit_code == 0

    done = regctl(target, "import", str(archive))
    assert done.exit_code == 0, done.output
    assert "imported m:1 as m:2 (1 is taken here)" in done.stdout
    assert "m@prod: kept: already set here" in done.stdout
    assert shape(target, "m:2")[:8] == shape(source, "m:1")[:8]
    assert get_version(target, parse_ref("m@prod")).version == 1  # the target's own alias is not moved
    again = regctl(target, "import", str(archive), "--json")  # a second import adds a version, no blob
    assert (
        json.loads(again.stdout)["versions"] == {"m:1": "m:3"}
        and json.loads(again.stdout)["blobs_added"] == 0
    )


def _archive_with(tmp_path: Path, source: Settings, edit) -> Path:  # type: ignore[no-untyped-def]
    """An export of `source`, rewritten member by member through `edit(name, data) -> [(name, data)]`."""
    original = tmp_path / "original.tar"
    assert regctl(source, "export", "m", "-o", str(original)).exit_code == 0
    altered = tmp_path / "altered.tar"
    with tarfile.open(original) as src, tarfile.open(altered, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            for name, content in edit(member.name, data):
                if isinstance(content, tarfile.TarInfo):
                    dst.addfile(content)
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(content)
                dst.addfile(info, io.BytesIO(content))
    return altered


def _manifest_edit(change):  # type: ignore[no-untyped-def]
    def edit(name: str, data: bytes) -> list:
        if name != "manifest.json":
            return [(name, data)]
        manifest = json.loads(data)
        change(manifest)
        return [(name, json.dumps(manifest).encode())]

    return edit


def _flip_blob(name: str, data: bytes) -> list:
    return [(name, data[:-1] + bytes([data[-1] ^ 1]) if name.startswith("blobs/") else data)]


def _extra_member(name: str, data: bytes) -> list:
    extra = [("../../escape.txt", b"x")] if name == "manifest.json" else []
    return [(name, data), *extra]


def _symlink(name: str, data: bytes) -> list:
    if name != "manifest.json":
        return [(name, data)]
    link = tarfile.TarInfo("blobs/" + "0" * 64)
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [(name, data), (link.name, link)]


def _bad_name(manifest: dict) -> None:
    manifest["models"][0]["name"] = "bad\nname"


def _bad_spec(manifest: dict) -> None:
    manifest["models"][0]["versions"][0]["spec"]["inputs"][0]["shape"] = [1, 2**40]


def _bad_url(manifest: dict) -> None:
    manifest["models"][0]["versions"][0]["run_url"] = "javascript:alert(1)"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_flip_blob, "does not match its sha256"),
        (_extra_member, "which is not a blob its manifest lists"),
        (_symlink, "which is not a blob its manifest lists"),
        (_manifest_edit(_bad_name), "is not valid"),
        (_manifest_edit(_bad_spec), "spec"),
        (_manifest_edit(_bad_url), "is not an http(s) URL"),
        (lambda name, data: [] if name.startswith("blobs/") else [(name, data)], "lacks blob"),
    ],
    ids=["damaged-blob", "path-escape", "symlink", "bad-name", "bad-spec", "bad-url", "truncated"],
)
def test_a_hostile_or_damaged_archive_is_refused_and_leaves_nothing(
    tmp_path: Path, model_dir: Path, edit, says: str
) -> None:  # type: ignore[no-untyped-def]
    source, target = sqlite_registry(tmp_path / "a"), sqlite_registry(tmp_path / "b")
    populate(source, model_dir)
    archive = _archive_with(tmp_path, source, edit)
    done = regctl(target, "import", str(archive))
    assert done.exit_code == 2, done.output
    assert says in done.stderr and done.stderr.count("\n") == 1
    assert regctl(target, "models", "list", "--json").stdout.strip() == "[]"
    blobs = Path(target.artifact_store) / "sha256"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_export_of_a_damaged_blob_fails_and_writes_no_archive(tmp_path: Path, model_dir: Path) -> None:
    source = sqlite_registry(tmp_path / "a")
    populate(source, model_dir)
    sha = get_version(source, parse_ref("m:1")).artifacts[-1].sha256
    blob = Path(source.artifact_store) / "sha256" / sha[:2] / sha[2:]
    blob.chmod(0o644)
    blob.write_bytes(b"torchscript bytes of m:X")
    done = regctl(source, "export", "m", "-o", str(tmp_path / "m.tar"))
    assert done.exit_code == 6 and "does not match its checksum" in done.stderr
    assert list(tmp_path.glob("*.tar*")) == [] and list(tmp_path.glob(".m.tar*")) == []
