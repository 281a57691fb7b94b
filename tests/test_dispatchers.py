"""One dispatcher, chosen once from Settings: the choice, the in-process dispatcher and the server's runner.

Real components throughout: a SQLite registry, real job rows, real child processes running real jobs.
The broker's dispatcher on real Redis is in tests/integration/test_broker_dispatcher.py.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from regctl.registry.entities import JobInfo
from regctl.registry.errors import InvalidInput
from regctl.registry.jobs import get_job
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.versions import register_version
from regctl.worker.dispatch import dispatcher_for, require_broker, serving
from regctl.worker.dispatch.broker import BrokerDispatcher
from regctl.worker.dispatch.inprocess import InProcessDispatcher
from regctl.worker.dispatch.server_runner import ServerRunner
from tests.conftest import direct_cli, wait_until
from tests.factories import linear_model

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ("registry", "worker", "service", "server", "cli", "regctl", "migrations")
DISPATCHERS = ROOT / "worker" / "dispatch"


def _queued_convert(settings: Settings, root: Path) -> JobInfo:
    """A committed, queued convert job that nobody has been told about."""
    [job] = register_version(
        settings, RegisterRequest("linear"), linear_model(root / "linear"), jobs=("convert",)
    ).jobs
    assert job.state == "queued"
    return job


# -- the choice --------------------------------------------------------------------------------------------


def test_settings_without_a_broker_choose_the_in_process_dispatcher(sqlite_settings: Settings) -> None:
    dispatcher = dispatcher_for(sqlite_settings)
    assert isinstance(dispatcher, InProcessDispatcher)
    assert dispatcher.runs_jobs_when_followed and not dispatcher.uses_broker
    assert dispatcher_for(sqlite_settings) is dispatcher  # chosen once for these settings


def test_settings_with_a_broker_choose_the_broker_dispatcher(sqlite_settings: Settings) -> None:
    settings = dataclasses.replace(sqlite_settings, broker_url="redis://127.0.0.1:6379/15")
    dispatcher = dispatcher_for(settings)
    assert isinstance(dispatcher, BrokerDispatcher)
    assert dispatcher.uses_broker and not dispatcher.runs_jobs_when_followed
    assert require_broker(settings) is dispatcher


@pytest.mark.parametrize("command", ["worker", "beat", "reconcile"])
def test_the_worker_commands_refuse_settings_without_a_broker(
    sqlite_settings: Settings, command: str
) -> None:
    with pytest.raises(InvalidInput, match="no broker is configured; set REGCTL_BROKER_URL"):
        require_broker(sqlite_settings)
    refused = direct_cli(sqlite_settings, command)
    assert refused.exit_code == 2
    assert "no broker is configured; set REGCTL_BROKER_URL" in refused.stderr


def test_an_api_server_that_runs_jobs_installs_its_runner_for_its_settings_only(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    other = Settings.from_env({}, home=tmp_path / "other")
    with serving(sqlite_settings, run_jobs=True) as runner:
        assert isinstance(runner, ServerRunner)
        assert dispatcher_for(sqlite_settings) is runner and not runner.runs_jobs_when_followed
        assert isinstance(dispatcher_for(other), InProcessDispatcher)
    assert isinstance(dispatcher_for(sqlite_settings), InProcessDispatcher)


def test_an_api_server_that_runs_no_jobs_keeps_the_settings_own_choice(sqlite_settings: Settings) -> None:
    with serving(sqlite_settings, run_jobs=False) as dispatcher:
        assert isinstance(dispatcher, InProcessDispatcher)
        assert dispatcher_for(sqlite_settings) is dispatcher


def test_no_module_outside_the_dispatchers_asks_whether_a_broker_is_configured() -> None:
    readers = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if DISPATCHERS in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr == "embedded":
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == [], "decide how jobs run in regctl.worker.dispatch, not here"


# -- the in-process dispatcher -----------------------------------------------------------------------------


def test_in_process_publish_leaves_the_job_queued_and_following_it_runs_it_here(
    sqlite_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGCTL_LIBTORCH", "off")  # not what is tested here, and a first build takes long
    job = _queued_convert(sqlite_settings, tmp_path)
    dispatcher = dispatcher_for(sqlite_settings)
    dispatcher.publish([job])
    assert get_job(sqlite_settings, job.id).state == "queued"  # nothing runs it until it is followed
    seen = list(dispatcher.follow(job))
    assert seen[0].id == job.id and "running" in {update.state for update in seen}
    assert seen[-1].state == "succeeded", seen[-1].error
    assert get_job(sqlite_settings, job.id).worker  # claimed and run by the child of this process


def test_in_process_follow_puts_the_job_back_in_the_queue_when_the_follower_stops(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    job = _queued_convert(sqlite_settings, tmp_path)
    following = dispatcher_for(sqlite_settings).follow(job)
    for update in following:
        if update.state == "running":
            break
    following.close()  # what a Ctrl-C or a wait timeout does to the follower
    after = get_job(sqlite_settings, job.id)
    assert after.state == "queued" and "stopped following it" in (after.error or "")


# -- the API server's runner -------------------------------------------------------------------------------


def test_the_server_runner_wakes_on_publish_rather_than_at_its_next_idle_check(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    runner = ServerRunner(sqlite_settings, idle_check_s=3600.0)
    runner.start()
    try:
        wait_until(lambda: runner.idle, 30, "the runner to find nothing queued and wait")
        job = _queued_convert(sqlite_settings, tmp_path)
        runner.publish([job])
        taken = wait_until(
            lambda: (found := get_job(sqlite_settings, job.id)).state != "queued" and found,
            60,
            f"the runner to take job {job.id}",
        )
    finally:
        runner.stop()
    assert taken.state in ("running", "succeeded") and taken.worker
