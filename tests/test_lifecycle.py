"""Lineage and a version's life: tags, git commit, run URL, archive, delete and garbage collection."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.aliases import alias_history, set_alias
from regctl.registry.audit import list_audit
from regctl.registry.lineage import Lineage
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, list_versions, register_version
from tests.conftest import direct_cli, write_model_dir

DAY = 86400.0


regctl = direct_cli


def git(directory: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(directory),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(directory), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_tags_description_and_run_url_are_kept_and_list_filters_on_tags(
    settings: Settings, model_dir: Path
) -> None:
    result = regctl(
        settings,
        "register", "m", str(model_dir), "--no-convert",
        "--description", "first try", "--tag", "team=vision", "--tag", "data=v2",
        "--run-url", "https://wandb.ai/acme/run/7",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    register_version(settings, "m", model_dir, lineage=Lineage(tags={"team": "vision", "data": "v3"}))
    register_version(settings, "m", model_dir, lineage=Lineage(tags={"team": "speech"}))

    shown = json.loads(regctl(settings, "versions", "show", "m:1", "--json").stdout)
    assert shown["description"] == "first try" and shown["run_url"] == "https://wandb.ai/acme/run/7"
    assert shown["tags"] == {"data": "v2", "team": "vision"}
    listed = regctl(settings, "versions", "list", "m", "--tag", "team=vision", "--json")
    assert [v["version"] for v in json.loads(listed.stdout)] == [2, 1]
    both = list_versions(settings, "m", tags={"team": "vision", "data": "v3"})
    assert [v.version for v in both] == [2]

    assert regctl(settings, "versions", "tag", "m:2", "stage=candidate", "--remove", "data").exit_code == 0
    assert get_version(settings, parse_ref("m:2")).tags == {"stage": "candidate", "team": "vision"}
    assert any(e.action == "version.tag" and e.target == "m:2" for e in list_audit(settings, model="m"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tag", "novalue"], "is not KEY=VALUE"),
        (["--tag", "bad key=x"], "tag key 'bad key' is not valid"),
        (["--tag", "k=line\nbreak"], "printable text"),
        (["--run-url", "javascript:alert(1)"], "is not an http(s) URL"),
        (["--run-url", "https://example.com/\nx"], "is not an http(s) URL"),
    ],
)
def test_bad_lineage_is_refused_before_anything_is_stored(
    settings: Settings, model_dir: Path, args: list[str], says: str
) -> None:
    result = regctl(settings, "register", "m", str(model_dir), "--no-convert", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and result.stderr.count("\n") == 1
    store = Path(settings.artifact_store) / "sha256"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_the_git_commit_is_recorded_and_dirty_means_the_bundled_files_differ(
    settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    directory = write_model_dir(repo / "model")
    (repo / "README").write_text("not part of the bundle")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    head = git(repo, "rev-parse", "HEAD")

    clean = register_version(settings, "m", directory)
    assert (clean.git_commit, clean.git_dirty) == (head, False)
    (repo / "README").write_text("changed, but not bundled")
    assert register_version(settings, "m", directory).git_dirty is False
    (directory / "model.py").write_text((directory / "model.py").read_text() + "\n# tweak\n")
    dirty = register_version(settings, "m", directory)
    assert (dirty.git_commit, dirty.git_dirty) == (head, True)
    outside = register_version(settings, "m", write_model_dir(tmp_path / "plain"))
    assert (outside.git_commit, outside.git_dirty) == (None, None)


def test_a_hostile_repository_cannot_run_commands_through_its_git_config(
    settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    directory = write_model_dir(repo)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    canary = tmp_path / "pwned"
    hook = f"sh -c 'touch {canary}'"
    git(repo, "config", "core.fsmonitor", hook)
    git(repo, "config", "filter.evil.clean", hook)
    (repo / ".gitattributes").write_text("*.py filter=evil\n")
    (directory / "model.py").write_text((directory / "model.py").read_text() + "\n")
    info = register_version(settings, "m", directory)
    assert info.git_dirty is True and info.git_commit
    assert not canary.exists()


def test_an_archived_version_leaves_name_resolution_and_lists_but_stays_fetchable(
    settings: Settings, model_dir: Path
) -> None:
    for _ in range(2):
        register_version(settings, "m", model_dir)
    for ref in ("m:1", "m:2"):
        _mark_ready(settings, ref)
    assert get_version(settings, parse_ref("m")).version == 2
    assert regctl(settings, "versions", "archive", "m:2").exit_code == 0
    assert get_version(settings, parse_ref("m")).version == 1
    assert [v.version for v in list_versions(settings, "m")] == [1]
    assert [v.version for v in list_versions(settings, "m", archived=True)] == [2, 1]
    assert get_version(settings, parse_ref("m:2")).archived_at is not None
    models = json.loads(regctl(settings, "models", "list", "--json").stdout)
    assert models[0]["latest_ready"] == 1
    assert regctl(settings, "versions", "archive", "m").exit_code == 2  # an exact version only
    assert regctl(settings, "versions", "unarchive", "m:2").exit_code == 0
    assert get_version(settings, parse_ref("m")).version == 2


def _mark_ready(settings: Settings, ref: str) -> None:
    from regctl.registry.db import session_scope
    from regctl.registry.lookup import find_version

    with session_scope(settings.database_url) as session:
        find_version(session, parse_ref(ref))[1].status = "ready"


def test_delete_refuses_while_an_alias_points_at_it_and_force_records_the_move(
    settings: Settings, model_dir: Path
) -> None:
    for _ in range(3):
        register_version(settings, "m", model_dir)
    set_alias(settings, "m", "prod", 2)
    refused = regctl(settings, "versions", "delete", "m:2")
    assert refused.exit_code == 2 and "m@prod points at m:2" in refused.stderr
    assert get_version(settings, parse_ref("m:2")).version == 2

    forced = regctl(settings, "versions", "delete", "m:2", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["aliases"] == ["prod"]
    gone = regctl(settings, "versions", "show", "m:2")
    assert gone.exit_code == 3
    assert [(e.name, e.version, e.previous) for e in alias_history(settings, "m")][-1] == ("prod", None, 2)
    assert any(e.action == "version.delete" and e.target == "m:2" for e in list_audit(settings, model="m"))
    assert register_version(settings, "m", model_dir).version == 4  # numbers are never reused


def test_gc_deletes_only_old_unreferenced_blobs_and_records_it(settings: Settings, model_dir: Path) -> None:
    kept = register_version(settings, "kept", model_dir)
    doomed = register_version(
        settings, "doomed", write_model_dir(model_dir.parent / "other", files={"x.py": "X = 1\n"})
    )
    store = open_store(settings.artifact_store)
    fresh = store.put_bytes(b"a registration uploading right now")
    assert regctl(settings, "versions", "delete", "doomed:1").exit_code == 0
    old = time.time() - DAY
    os.utime(store.uri_for(doomed.source_sha256), (old, old))

    dry = json.loads(regctl(settings, "gc", "--dry-run", "--json").stdout)
    assert dry["deleted"] == [doomed.source_sha256] and dry["dry_run"] is True
    assert store.exists(doomed.source_sha256)

    done = regctl(settings, "gc", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["deleted"] == [doomed.source_sha256]
    assert not store.exists(doomed.source_sha256)
    assert store.exists(kept.source_sha256) and store.exists(fresh.sha256)
    assert any(e.action == "gc" and e.detail["deleted"] == 1 for e in list_audit(settings))
    assert regctl(settings, "doctor").exit_code == 0


@pytest.mark.parametrize("when", ["before gc looks again", "after gc looked again"])
def test_a_registration_racing_gc_for_the_same_blob_never_loses_it(
    settings: Settings, model_dir: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    from regctl.registry import gc
    from regctl.registry.lifecycle import delete_version

    first = register_version(settings, "m", model_dir)
    delete_version(settings, parse_ref("m:1"))
    store = open_store(settings.artifact_store)
    old = time.time() - DAY
    os.utime(store.uri_for(first.source_sha256), (old, old))
    real = gc.referenced_blobs
    calls = []

    def racing(settings_: Settings) -> dict:
        calls.append(1)
        if len(calls) == 2 and when == "before gc looks again":
            # gc has listed the blob as garbage and set it aside; the same bytes register and commit.
            register_version(settings, "m", model_dir)
        found = real(settings_)
        if len(calls) == 2 and when == "after gc looked again":
            register_version(settings, "m", model_dir)  # finds the blob gone, stores it again
        return found

    monkeypatch.setattr(gc, "referenced_blobs", racing)
    result = gc.collect_garbage(settings)
    assert len(calls) == 2
    assert store.exists(first.source_sha256)
    store.verify(first.source_sha256)
    assert get_version(settings, parse_ref("m:2")).source_sha256 == first.source_sha256
    assert result.kept_referenced == (1 if when == "before gc looks again" else 0)
    assert regctl(settings, "doctor").exit_code == 0
