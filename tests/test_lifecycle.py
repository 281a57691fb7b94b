"""Lineage and a version's life: tags, git commit, run URL, archive, delete and garbage collection."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.aliases import alias_history, set_alias
from regctl.registry.audit import list_audit
from regctl.registry.jobs import claim_job, get_job
from regctl.registry.lineage import Lineage
from regctl.registry.outcomes import record_failure
from regctl.registry.refs import parse_ref
from regctl.registry.requests import RegisterRequest, VersionQuery
from regctl.registry.schema import utcnow
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.registry.versions import get_version, list_versions, register_version
from regctl.worker.supervisor.progress import JobReporter
from tests.conftest import at_once, direct_cli, wait_until, write_model_dir
from tests.factories import promotable

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
    register_version(
        settings, RegisterRequest("m", lineage=Lineage(tags={"team": "vision", "data": "v3"})), model_dir
    )
    register_version(settings, RegisterRequest("m", lineage=Lineage(tags={"team": "speech"})), model_dir)

    shown = json.loads(regctl(settings, "versions", "show", "m:1", "--json").stdout)
    assert shown["description"] == "first try" and shown["run_url"] == "https://wandb.ai/acme/run/7"
    assert shown["tags"] == {"data": "v2", "team": "vision"}
    listed = regctl(settings, "versions", "list", "m", "--tag", "team=vision", "--json")
    assert [v["version"] for v in json.loads(listed.stdout)] == [2, 1]
    both = list_versions(settings, VersionQuery("m", tags={"team": "vision", "data": "v3"}))
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

    clean = register_version(settings, RegisterRequest("m"), directory)
    assert (clean.git_commit, clean.git_dirty) == (head, False)
    (repo / "README").write_text("changed, but not bundled")
    assert register_version(settings, RegisterRequest("m"), directory).git_dirty is False
    (directory / "model.py").write_text((directory / "model.py").read_text() + "\n# tweak\n")
    dirty = register_version(settings, RegisterRequest("m"), directory)
    assert (dirty.git_commit, dirty.git_dirty) == (head, True)
    outside = register_version(settings, RegisterRequest("m"), write_model_dir(tmp_path / "plain"))
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
    info = register_version(settings, RegisterRequest("m"), directory)
    assert info.git_dirty is True and info.git_commit
    assert not canary.exists()


def test_an_archived_version_leaves_name_resolution_and_lists_but_stays_fetchable(
    settings: Settings, model_dir: Path
) -> None:
    for _ in range(2):
        register_version(settings, RegisterRequest("m"), model_dir)
    for ref in ("m:1", "m:2"):
        _mark_ready(settings, ref)
    assert get_version(settings, parse_ref("m")).version == 2
    assert regctl(settings, "versions", "archive", "m:2").exit_code == 0
    assert get_version(settings, parse_ref("m")).version == 1
    assert [v.version for v in list_versions(settings, VersionQuery("m"))] == [1]
    assert [v.version for v in list_versions(settings, VersionQuery("m", archived=True))] == [2, 1]
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
        register_version(settings, RegisterRequest("m"), model_dir)
        promotable(settings, "m")
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
    # numbers are never reused
    assert register_version(settings, RegisterRequest("m"), model_dir).version == 4


def test_gc_deletes_only_old_unreferenced_blobs_and_records_it(settings: Settings, model_dir: Path) -> None:
    kept = register_version(settings, RegisterRequest("kept"), model_dir)
    doomed = register_version(
        settings,
        RegisterRequest("doomed"),
        write_model_dir(model_dir.parent / "other", files={"x.py": "X = 1\n"}),
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
    from regctl.registry.lifecycle import delete_version
    from regctl.registry.ops import gc

    first = register_version(settings, RegisterRequest("m"), model_dir)
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
            register_version(settings, RegisterRequest("m"), model_dir)
        found = real(settings_)
        if len(calls) == 2 and when == "after gc looked again":
            # finds the blob gone, stores it again
            register_version(settings, RegisterRequest("m"), model_dir)
        return found

    monkeypatch.setattr(gc, "referenced_blobs", racing)
    result = gc.collect_garbage(settings)
    assert len(calls) == 2
    assert store.exists(first.source_sha256)
    store.verify(first.source_sha256)
    assert get_version(settings, parse_ref("m:2")).source_sha256 == first.source_sha256
    assert result.kept_referenced == (1 if when == "before gc looks again" else 0)
    assert regctl(settings, "doctor").exit_code == 0


# -- cancelled versions, alias no-ops and the job's stage timeline ------------------------------------


def test_a_version_whose_queued_job_is_cancelled_shows_cancelled_and_converts_again_on_retry(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import claim_job, retry_job
    from regctl.registry.outcomes import start_stage

    job = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    cancelled = regctl(settings, "jobs", "cancel", str(job.id))
    assert cancelled.exit_code == 0, cancelled.output
    assert get_version(settings, parse_ref("m:1")).status == "cancelled"
    listed = json.loads(regctl(settings, "versions", "list", "m", "--status", "cancelled", "--json").stdout)
    assert [v["version"] for v in listed] == [1]
    assert "cancelled" in regctl(settings, "versions", "show", "m:1").stdout

    # (the registry's retry: the CLI's would also run the job here, in direct embedded mode)
    retry_job(settings, job.id)
    assert get_version(settings, parse_ref("m:1")).status == "registered"  # waiting for its job
    assert claim_job(settings, job.id, "host:1").should_run
    start_stage(settings, job.id, "host:1")
    assert get_version(settings, parse_ref("m:1")).status == "converting"


def test_a_running_job_cancelled_leaves_its_version_cancelled_unless_it_was_ever_proved(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import claim_job, create_job
    from regctl.registry.outcomes import record_failure, start_stage

    job = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    assert claim_job(settings, job.id, "host:1").should_run
    start_stage(settings, job.id, "host:1")
    record_failure(settings, job.id, "host:1", "cancelled by the user", state="cancelled")
    assert get_version(settings, parse_ref("m:1")).status == "cancelled"
    create_job(settings, parse_ref("m:1"), "convert")  # what `regctl submit` queues
    assert get_version(settings, parse_ref("m:1")).status == "registered"

    # A ready version whose re-validation is cancelled stays ready: its proof stands.
    register_version(settings, RegisterRequest("r"), model_dir)
    _mark_ready(settings, "r:1")
    from regctl.registry.db import session_scope
    from regctl.registry.lookup import find_version
    from regctl.registry.schema import Artifact

    with session_scope(settings.database_url) as session:
        version = find_version(session, parse_ref("r:1"))[1]
        version.summary = {"validated": True}
        session.add(Artifact(version_id=version.id, kind="torchscript", sha256="b" * 64, size=1, uri="x"))
    validate = create_job(settings, parse_ref("r:1"), "validate")
    assert claim_job(settings, validate.id, "host:1").should_run
    start_stage(settings, validate.id, "host:1")
    assert get_version(settings, parse_ref("r:1")).status == "validating"
    record_failure(settings, validate.id, "host:1", "cancelled by the user", state="cancelled")
    assert get_version(settings, parse_ref("r:1")).status == "ready"


def test_setting_an_alias_to_where_it_points_records_nothing_and_says_so(
    settings: Settings, model_dir: Path
) -> None:
    def alias_audits() -> int:  # PostgreSQL's audit table is shared by the session's tests
        return len([e for e in list_audit(settings, model="m") if e.action == "alias.set"])

    for _ in range(2):
        register_version(settings, RegisterRequest("m"), model_dir)
        promotable(settings, "m")
    audits = alias_audits()
    assert regctl(settings, "alias", "set", "m@prod", "2").stdout.strip() == "m@prod -> 2"
    again = regctl(settings, "alias", "set", "m@prod", "2")
    assert again.exit_code == 0 and again.stdout.strip() == "m@prod is already at 2"
    shown = json.loads(regctl(settings, "alias", "set", "m@prod", "2", "--json").stdout)
    assert shown["version"] == shown["previous"] == 2
    assert [(e.previous, e.version) for e in alias_history(settings, "m")] == [(None, 2)]
    assert alias_audits() == audits + 1
    assert regctl(settings, "alias", "set", "m@prod", "1").stdout.strip() == "m@prod -> 1 (was 2)"
    assert [(e.previous, e.version) for e in alias_history(settings, "m")] == [(None, 2), (2, 1)]


def test_concurrent_alias_sets_never_record_a_no_op_move(settings: Settings, model_dir: Path) -> None:
    for _ in range(3):
        register_version(settings, RegisterRequest("m"), model_dir)
        promotable(settings, "m")

    def setter(i: int) -> None:
        for round_ in range(4):
            set_alias(settings, "m", "prod", 1 + (i + round_) % 3)

    outcomes = at_once([functools.partial(setter, i) for i in range(24)])
    assert [o for o in outcomes if o is not None] == []  # no thread raised
    history = [(e.previous, e.version) for e in alias_history(settings, "m")]
    assert history, "some calls moved the alias"
    assert all(before != after for before, after in history), "no-op moves were recorded"
    # Each move starts where the one before it ended: the history is one unbroken chain.
    assert history[0][0] is None
    assert all(history[i][1] == history[i + 1][0] for i in range(len(history) - 1))
    from regctl.registry.versions import get_version as version_of

    assert version_of(settings, parse_ref("m@prod")).version == history[-1][1]


def _claimed_convert_job(settings: Settings, model_dir: Path):  # type: ignore[no-untyped-def]
    """A new version's convert job, claimed by host:1 (running, as a worker's reporter finds it)."""
    job = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    assert claim_job(settings, job.id, "host:1").should_run
    return job


def test_progress_is_written_at_most_once_per_min_interval_and_keeps_each_stage_start(
    settings: Settings, model_dir: Path
) -> None:
    job = _claimed_convert_job(settings, model_dir)
    # An interval no test outlasts: after the first line, nothing is written while the job runs.
    with JobReporter(settings, job.id, "host:1", min_interval=3600) as reporter:
        reporter("eager reference 1/28")
        assert get_job(settings, job.id).progress == "eager reference 1/28"
        reporter("eager reference 2/28, ~3 s left")  # a count, not a colon: the same stage
        reporter("trace: tracing")
        reporter("trace: battery 3/9")
        reporter("script: battery 1/9")
        assert get_job(settings, job.id).progress == "eager reference 1/28"
        handed_at = utcnow()
        began = reporter.unwritten_stages()
    assert [line for line, _ in began] == ["trace: tracing", "script: battery 1/9"]
    # The outcome is recorded with them, in one commit: the timeline ends where the job did.
    record_failure(settings, job.id, "host:1", "the model failed", began=began)
    stages = get_job(settings, job.id).stages
    names = ["attempt 1 started", "eager reference", "trace", "script", "failed"]
    assert [s["stage"] for s in stages] == names
    times = [datetime.fromisoformat(s["at"]) for s in stages]
    # each stage keeps the time it began, not the time it was written
    assert times == sorted(times) and times[3] <= handed_at < times[4]


def test_a_line_that_waits_is_written_by_the_reporter_without_another_line(
    settings: Settings, model_dir: Path
) -> None:
    job = _claimed_convert_job(settings, model_dir)
    with JobReporter(settings, job.id, "host:1", min_interval=0.2) as reporter:
        reporter("converting")
        reporter("trace: tracing")  # within the interval: it waits, and no later line comes
        written = lambda: get_job(settings, job.id).progress == "trace: tracing"  # noqa: E731
        wait_until(written, 30, "the waiting line to be written", interval=0.05)
    assert [s["stage"] for s in get_job(settings, job.id).stages][-2:] == ["converting", "trace"]


def test_a_job_keeps_a_bounded_timeline_of_its_stages(settings: Settings, model_dir: Path) -> None:
    from regctl.registry.jobs import MAX_STAGES, claim_job, finish_job, get_job, record_progress, stage_of

    assert stage_of("trace: battery 12/40, ~3 s left") == "trace"
    assert stage_of("eager reference 9/9") == "eager reference"
    job = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    assert claim_job(settings, job.id, "host:1").should_run
    for line in ("converting", "trace: battery 1/9", "trace: battery 2/9", "script: battery 1/9"):
        record_progress(settings, job.id, "host:1", line)
    record_progress(settings, job.id, "host:1")  # a heartbeat adds nothing
    finish_job(settings, job.id, "succeeded", worker="host:1")
    done = get_job(settings, job.id)
    assert [s["stage"] for s in done.stages] == ["attempt 1 started", "converting", "trace", "script", "done"]
    times = [s["at"] for s in done.stages]
    assert times == sorted(times)
    shown = json.loads(regctl(settings, "jobs", "show", str(job.id), "--json").stdout)
    assert [s["stage"] for s in shown["stages"]] == [s["stage"] for s in done.stages]

    flooded = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    assert claim_job(settings, flooded.id, "host:1").should_run
    for i in range(3 * MAX_STAGES):
        record_progress(settings, flooded.id, "host:1", f"stage {i}")
    stages = [s["stage"] for s in get_job(settings, flooded.id).stages]
    assert len(stages) <= MAX_STAGES and stages[0] == "attempt 1 started" and stages[-1] == "stage 119"


def test_a_session_told_not_to_wait_for_the_disk_commits_so_and_the_next_waits(settings: Settings) -> None:
    from sqlalchemy import text

    from regctl.registry.db import session_scope

    sqlite = settings.database_url.startswith("sqlite")
    # SQLite: PRAGMA synchronous is 2 (FULL) or 1 (NORMAL); PostgreSQL: synchronous_commit on or off
    ask = "PRAGMA synchronous" if sqlite else "SHOW synchronous_commit"
    waits, skips = ("2", "1") if sqlite else ("on", "off")

    def setting(durable: bool) -> str:
        with session_scope(settings.database_url, durable=durable) as session:
            return str(session.execute(text(ask)).scalar())

    # in turns, on the same pooled connections: no session's choice leaks into the next
    assert [setting(d) for d in (True, False, True, False, True)] == [waits, skips, waits, skips, waits]
