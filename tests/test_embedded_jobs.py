"""Jobs on the embedded default: registration converts and validates in a child process of the CLI.

Real torch, real conversions, real SQLite; the CLI is driven through click's CliRunner.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from regctl.cli.app import cli
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.figures import significant_text
from regctl.registry.settings import Settings
from tests.conftest import write_model_dir
from tests.factories import MODEL_PY, SLOW, SPEC_TOML, linear_model


@pytest.fixture
def embedded(sqlite_settings: Settings):  # type: ignore[no-untyped-def]
    """Invoke regctl on a fresh embedded registry; returns (invoke, settings)."""
    runner = CliRunner()

    def invoke(*args: str, **env: str):  # type: ignore[no-untyped-def]
        base = {
            "REGCTL_HOME": str(sqlite_settings.home),
            "REGCTL_DATABASE_URL": "",
            "REGCTL_BROKER_URL": "",
            "REGCTL_ARTIFACT_STORE": "",
        }
        return runner.invoke(cli, list(args), env={**base, **env}, catch_exceptions=False)

    return invoke


def test_register_wait_converts_validates_and_fetch_runs_without_the_model_code(
    embedded,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    directory = linear_model(tmp_path / "linear")
    result = embedded("register", "linear", str(directory), "--wait")
    assert result.exit_code == 0, result.output
    assert "linear:1 is ready" in result.stderr
    version = json.loads(embedded("versions", "show", "linear:1", "--json").stdout)
    assert version["status"] == "ready" and version["method"] in ("script", "trace")
    kinds = sorted(a["kind"] for a in version["artifacts"])
    assert kinds.count("torchscript") == 1 and kinds.count("conversion-report") == 1
    assert "validation-report" not in kinds, "a proved conversion needs no validate job"
    # Proved once: the judge ran the battery and LibTorch on exactly the bytes that were stored, so
    # no validate job repeats that work.
    assert [(j["kind"], j["state"], j["attempts"]) for j in version["jobs"]] == [("convert", "succeeded", 1)]
    torchscript = next(a for a in version["artifacts"] if a["kind"] == "torchscript")
    validation = version["summary"]["validation"]
    assert version["summary"]["validated"] is True and validation["sha256"] == torchscript["sha256"]
    assert validation["battery_size"] > 0 and validation["libtorch"] in (True, False)
    assert version["summary"]["report"]["versions"]["torch"].startswith("2.")

    out = tmp_path / "deploy" / "linear.pt"
    assert embedded("fetch", "linear", "-o", str(out), "--create-dirs").exit_code == 0
    # A fresh interpreter in another directory, with no access to model.py, runs the artifact.
    check = (
        "import sys, torch\n"
        "assert 'model' not in sys.modules\n"
        "m = torch.jit.load(sys.argv[1])\n"
        "torch.manual_seed(0)\n"
        "eager = torch.nn.Linear(10, 2)\n"
        "x = torch.randn(3, 10)\n"
        "assert torch.allclose(m(x), eager(x), atol=1e-5), 'artifact disagrees with eager'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(out)], cwd=out.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_model_that_raises_in_forward_fails_its_job_with_the_message(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "raises", forward='raise ValueError("weights are upside down")')
    result = embedded("register", "raises", str(directory), "--wait")
    assert result.exit_code == 1
    assert "weights are upside down" in result.stderr
    version = json.loads(embedded("versions", "show", "raises:1", "--json").stdout)
    assert version["status"] == "failed"
    assert "weights are upside down" in version["jobs"][0]["error"]
    assert [a["kind"] for a in version["artifacts"]].count("torchscript") == 0


def test_wrong_weights_fail_with_the_key_list(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    directory = write_model_dir(
        tmp_path / "weights",
        spec='weights = "w.safetensors"\n' + SPEC_TOML.format(device="cpu"),
        files={"model.py": MODEL_PY.format(forward="pass")},
    )
    save_file(
        {"linear.weight": torch.zeros(2, 10), "linear.bias_typo": torch.zeros(2)},
        str(directory / "w.safetensors"),
    )
    result = embedded("register", "weights", str(directory), "--wait")
    assert result.exit_code == 1
    assert "linear.bias_typo" in result.stderr  # the unexpected key
    assert "linear.bias" in result.stderr.replace("linear.bias_typo", "")  # and the missing one


def test_a_model_that_hangs_is_stopped_at_the_job_time_limit(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "hangs", forward="time.sleep(600)")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)  # like /tmp: the sandbox's uid reaches its folders even without a private root
    started = time.monotonic()
    result = embedded(
        "register", "hangs", str(directory), "--wait", REGCTL_JOB_TIME_LIMIT="6", REGCTL_WORK_DIR=str(scratch)
    )
    assert result.exit_code == 1
    # The model sleeps 600 s: anything well below that was the limit, however slow the machine.
    assert time.monotonic() - started < 300
    assert "time limit of 6s" in result.stderr
    assert list(scratch.iterdir()) == []  # the killed job's unpacked bundle and candidates are gone
    version = json.loads(embedded("versions", "show", "hangs:1", "--json").stdout)
    assert version["status"] == "failed" and version["jobs"][0]["state"] == "failed"


def test_the_cli_returns_when_a_failed_model_leaves_processes_holding_its_descriptors(tmp_path: Path) -> None:
    # Without the sandbox nothing can stop such helpers, but they must not hold the CLI's pipes:
    # a caller reading its output to the end (a shell pipeline, CI) would wait as long as they live.
    from tests.api_server import REGCTL

    marker = "313.25"
    build = textwrap.dedent(
        f"""
        import subprocess

        def build():
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
            raise ValueError("gave up after starting a helper")
        """
    )
    directory = linear_model(tmp_path / "lingering")
    (directory / "model.py").write_text(build)
    env = {"PATH": os.environ["PATH"], "REGCTL_HOME": str(tmp_path / "home"), "REGCTL_SANDBOX": "off"}
    try:
        started = time.monotonic()
        done = subprocess.run(
            [REGCTL, "register", "lingering", str(directory), "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert done.returncode == 1, done.stderr
        assert "gave up after starting a helper" in done.stderr
        # The helper sleeps 313 s: a command held by its pipes would return no sooner.
        assert time.monotonic() - started < 240
        helpers = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
        assert helpers.stdout.strip(), "the helper should still run: this test is about the pipes"
    finally:
        subprocess.run(["pkill", "-f", f"sleep {marker}"], check=False)


def test_embedded_mode_survives_a_model_that_aborts_the_interpreter(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "aborts", forward="os.abort()")
    result = embedded("register", "aborts", str(directory), "--wait")
    assert result.exit_code == 1
    assert "signal 6 (SIGABRT)" in result.stderr
    job = json.loads(embedded("jobs", "list", "--json").stdout)[0]
    assert job["state"] == "failed" and "SIGABRT" in job["error"]
    # The CLI process is still alive and the registry still works.
    good = linear_model(tmp_path / "linear")
    assert embedded("register", "linear", str(good), "--wait").exit_code == 0


def test_submit_validate_records_a_new_report_without_changing_the_artifact(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    assert embedded("register", "linear", str(directory), "--wait").exit_code == 0
    before = json.loads(embedded("versions", "show", "linear:1", "--json").stdout)
    result = embedded("submit", "linear:1", "--job", "validate", "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "succeeded"
    # `jobs show` lists the job's stage timeline, each stage with when it began
    shown = embedded("jobs", "show", str(json.loads(result.stdout)["id"])).stdout
    assert "validating" in shown and "done" in shown and re.search(r"\d\d:\d\d:\d\d  \d+\.\ds", shown), shown
    after = json.loads(embedded("versions", "show", "linear:1", "--json").stdout)
    scripted = lambda v: [a["sha256"] for a in v["artifacts"] if a["kind"] == "torchscript"]  # noqa: E731
    assert scripted(after) == scripted(before)
    reports = lambda v: [a["kind"] for a in v["artifacts"] if a["kind"].endswith("-report")]  # noqa: E731
    assert reports(after) == [*reports(before), "validation-report"], "the validate job's report is named so"
    assert after["status"] == "ready"
    # each job drew its own secret battery seed, and both are recorded for a re-run
    converted_seed = before["summary"]["report"]["battery_seed"]
    validated_seed = after["summary"]["validation"]["battery_seed"]
    assert isinstance(converted_seed, int) and isinstance(validated_seed, int)
    assert converted_seed != validated_seed
    assert before["summary"]["battery_seed"] == converted_seed
    # the sandboxed reference runner saw the stored artifact and timed it beside eager
    validated = after["summary"]["validation"]
    ratio = significant_text(validated["latency_ratio"])
    assert validated["latency"].startswith(f"{ratio}× eager's time ("), validated
    assert validated["report"]["latency"]["measured_by"].startswith("the reference runner")


def test_submit_validate_without_an_artifact_is_refused(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    embedded("register", "linear", str(directory), "--no-convert")
    result = embedded("submit", "linear:1", "--job", "validate")
    assert result.exit_code == 2
    assert "no TorchScript artifact" in result.stderr


def test_jobs_retry_runs_a_failed_job_again(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "raises", forward='raise ValueError("boom")')
    embedded("register", "raises", str(directory), "--wait")
    job = json.loads(embedded("jobs", "list", "--json").stdout)[0]
    result = embedded("jobs", "retry", str(job["id"]))
    assert result.exit_code == 1
    again = json.loads(embedded("jobs", "show", str(job["id"]), "--json").stdout)
    assert again["state"] == "failed" and again["attempts"] == 1 and "boom" in again["error"]


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_every_report_records_the_sandbox_its_processes_ran_in(embedded, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    assert embedded("register", "linear", str(directory), "--wait", REGCTL_SANDBOX=mode).exit_code == 0
    version = json.loads(embedded("versions", "show", "linear:1", "--json").stdout)
    sandbox = version["summary"]["report"]["sandbox"]
    assert set(sandbox) == {"builder", "reference", "judge"}
    for role in sandbox:
        assert sandbox[role]["mode"] == mode
        assert sandbox[role]["environment"].startswith("allowlist")
        if mode == "off":
            assert sandbox[role]["namespaces"] == [] and sandbox[role]["network"] == "host network"
        elif os.getuid() == 0:  # as root every protection is available here
            assert {"mount", "network", "pid"} <= set(sandbox[role]["namespaces"])
            assert sandbox[role]["missing"] == []
            assert sandbox[role]["uid"].startswith(("64", "65"))


def test_a_model_whose_optimized_form_is_wrong_gets_a_full_round_and_its_plain_artifact(
    embedded, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The model's own code breaks optimize_for_inference in the model process (where the lean
    # round optimizes): the judge refuses that artifact, and the full round keeps the plain one.
    sabotage = "torch.jit.optimize_for_inference = lambda m, *a, **k: torch.jit.script(torch.nn.Identity())\n"
    directory = linear_model(tmp_path / "sabotaged")
    model_py = directory / "model.py"
    model_py.write_text(model_py.read_text().replace("\n\nclass Model", f"\n{sabotage}\n\nclass Model", 1))
    result = embedded("register", "sabotaged", str(directory), "--wait")
    assert result.exit_code == 0, result.output
    version = json.loads(embedded("versions", "show", "sabotaged:1", "--json").stdout)
    report = version["summary"]["report"]
    assert version["status"] == "ready" and report["method"] == "script"
    assert report["optimize"]["applied"] is False
    assert report["optimize"]["note"].startswith("the optimized artifact differs from eager on input")
    assert report["first_round"]["candidates"]["script"]["optimized"] is True
    out = tmp_path / "sabotaged.pt"
    assert embedded("fetch", "sabotaged", "-o", str(out)).exit_code == 0
    check = "import sys, torch; print(tuple(torch.jit.load(sys.argv[1])(torch.ones(3, 10)).shape))"
    shape = subprocess.run(
        [sys.executable, "-c", check, str(out)], capture_output=True, text=True, timeout=120
    )
    assert shape.stdout.strip() == "(3, 2)", shape.stderr


def _pids(pattern: str) -> list[int]:
    """The processes whose command line matches `pattern` (pgrep -f), zombies left out."""
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if _alive(int(pid))]


def _state(local: Any, job_id: int) -> str | None:
    """The job's state; None while it does not exist yet."""
    from regctl.registry.errors.lookup import UnknownJob

    try:
        return local.job(job_id).state
    except UnknownJob:
        return None


def _hang_of(leader: int) -> str:
    """What a hung command is doing: its signal dispositions and each thread's kernel wait."""
    status = Path(f"/proc/{leader}/status").read_text(errors="replace") if _alive(leader) else ""
    signals = [line for line in status.splitlines() if line.startswith(("Sig", "Shd"))]
    stacks = []
    for task in sorted(Path(f"/proc/{leader}/task").glob("*")) if _alive(leader) else []:
        with contextlib.suppress(OSError):
            stacks.append(f"{task.name}: {(task / 'wchan').read_text()} {(task / 'stat').read_text()[:120]}")
    return "\n".join([*signals, *stacks])


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


# A terminal runs its foreground command with SIGINT at its default; a suite started in the background
# (`make test &` in a script) runs with it ignored, which exec keeps: regctl would never see Ctrl-C.
TERMINAL_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@contextlib.contextmanager
def _hanging_registration(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int], Any]]:
    """`regctl register --wait` of a model that hangs, once its job process runs the model.

    Yields the command, its job process(es) and a client on its registry; kills what is left after.
    """
    from regctl.local import LocalClient
    from tests.api_server import REGCTL
    from tests.conftest import wait_until

    directory = linear_model(tmp_path / "hangs", forward="time.sleep(600)")
    home = tmp_path / "home"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REGCTL_HOME": str(home),
        "REGCTL_LIBTORCH_CACHE": os.environ["REGCTL_LIBTORCH_CACHE"],
    }
    caller = subprocess.Popen(
        [sys.executable, "-c", TERMINAL_SIGINT, REGCTL, "register", "hangs", str(directory), "--wait"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children: list[int] = []
    try:
        # A clean interpreter running the module, never a multiprocessing child of the caller's script.
        children = wait_until(
            lambda: _pids(f"-m regctl.worker.supervisor.embedded {caller.pid}$"),
            120,
            "the job's process to start",
        )
        local = LocalClient(Settings.from_env({}, home=home))
        # the job's process starts before registration has written the job (warmed up)
        wait_until(lambda: _state(local, 1) == "running", 240, "the job to run the model")
        yield caller, children, local
    finally:
        for pid in [caller.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        caller.communicate(timeout=10)


def test_a_job_process_dies_with_the_command_that_started_it(tmp_path: Path) -> None:
    from tests.conftest import wait_until

    with _hanging_registration(tmp_path) as (caller, children, _):
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
        wait_until(lambda: not any(_alive(pid) for pid in children), 60, "the job's process to die with it")


def test_ctrl_c_stops_the_job_process_and_puts_the_job_back_in_the_queue(tmp_path: Path) -> None:
    with _hanging_registration(tmp_path) as (caller, children, local):
        os.killpg(caller.pid, signal.SIGINT)  # what a terminal sends its foreground process group
        try:
            _, stderr = caller.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"regctl did not stop on Ctrl-C: {_hang_of(caller.pid)}")
        assert caller.returncode != 0, stderr
        assert not any(_alive(pid) for pid in children)
        job = local.job(1)
        assert job.state == "queued" and "stopped following it" in (job.error or ""), job
        assert [v.version for v in local.model("hangs").versions] == [1]


def test_a_job_runs_in_the_child_warmed_up_before_its_registration(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    import socket

    from regctl.local import LocalClient
    from regctl.worker.dispatch import dispatcher_for, warmed

    local = LocalClient(sqlite_settings)
    dispatcher = dispatcher_for(sqlite_settings)
    with warmed(sqlite_settings):
        warm = dispatcher._warm  # type: ignore[attr-defined]
        assert warm is not None and warm.poll() is None
        info = local.register("lin", linear_model(tmp_path / "linear"))
        *_, last = local.follow(info.jobs[0])
    assert last.state == "succeeded", last.error
    # the convert job ran in the child started before the version existed; the validate job in its own
    assert local.job(info.jobs[0].id).worker == f"{socket.gethostname()}:{warm.pid}"
    assert dispatcher._warm is None  # type: ignore[attr-defined]


def test_a_follower_whose_child_lost_the_claim_follows_the_job_to_its_end(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    # The API server's runner and a direct follower of the same registry both run queued jobs, and
    # whichever claims first runs it. The follower that lost used to stop there: `wait` returned the
    # job still running elsewhere (a browser test's validate job came back `running`).
    from regctl.local import LocalClient
    from regctl.worker.supervisor.embedded import EmbeddedJob
    from tests.conftest import wait_until

    local = LocalClient(sqlite_settings)
    local.register("slow", linear_model(tmp_path / "slow", forward=SLOW), convert=False)
    queued = local.submit("slow:1", "convert")
    other = EmbeddedJob(sqlite_settings, queued.id)  # the other runner: it claims the job first
    try:
        wait_until(lambda: local.job(queued.id).state == "running", 120, "the other runner's claim")
        last = local.wait(queued, timeout=600)  # as the follower saw it: queued, so it starts a child
        ran = local.job(queued.id)
        assert ran.state == "succeeded" and ran.worker == other.worker, ran
        assert last.state == "succeeded", last
    finally:
        other.finish()


def test_a_warm_child_no_job_took_goes_with_its_zygote(sqlite_settings: Settings) -> None:
    from regctl.worker.dispatch import dispatcher_for, warmed
    from tests.conftest import wait_until

    dispatcher = dispatcher_for(sqlite_settings)
    with warmed(sqlite_settings):  # e.g. registration refused the directory
        warm = dispatcher._warm  # type: ignore[attr-defined]
        zygotes = wait_until(lambda: _children(warm.pid), 120, "the warm child's zygote to start")
    assert warm.returncode == 0  # it saw its stdin close and left
    wait_until(lambda: not any(_alive(pid) for pid in zygotes), 60, "the zygote to exit with its parent")


def _children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if _alive(child)]
