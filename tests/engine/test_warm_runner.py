"""LibTorch runners started before their artifact is known (worker/judge/warm_runner.py): each still runs
one artifact, spares follow the runs still to come, and no runner outlives its judge, cancelled or not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.inprocess import convert_model, validate_artifact
from regctl.worker.judge import libtorch
from regctl.worker.judge.libtorch import CACHE_ENV, SWITCH_ENV, Runner, build_runner, run_libtorch_stage
from regctl.worker.judge.warm_runner import WarmRunners
from tests.conftest import service_missing
from tests.engine.conftest import EXAMPLES, example_spec
from tests.hostile import processes_with


@pytest.fixture(scope="module")
def runner(libtorch_runner_cache: Path) -> Iterator[Runner]:
    """The run's runner, with the stage enabled for this module's conversions."""
    if libtorch.find_compiler() is None:
        service_missing("a C++ compiler (g++ or c++)", "not on PATH")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(libtorch_runner_cache))
        mp.delenv(SWITCH_ENV, raising=False)
        yield build_runner(libtorch_runner_cache)


def _runners_alive(runner: Runner) -> list[int]:
    """This process's children running the runner binary, alive (other test workers' judges run it too)."""
    return [pid for pid in processes_with(str(runner.path)) if _parent(pid) == os.getpid()]


def _parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None  # ended meanwhile
    return int(status.split("\nPPid:\t", 1)[1].split("\n", 1)[0])


def _linear(tmp_path: Path) -> tuple[Path, list[BatteryCase], list[torch.Tensor]]:
    torch.manual_seed(0)
    module = nn.Linear(3, 2).eval()
    path = tmp_path / "model.pt"
    torch.jit.script(module).save(str(path))
    inputs = [torch.randn(b, 3) for b in (1, 2, 4)]
    with torch.no_grad():
        return (
            path,
            [BatteryCase(f"b{i}", "static", {}, (x,)) for i, x in enumerate(inputs)],
            [module(x) for x in inputs],
        )


def test_a_runner_started_ahead_waits_then_runs_the_artifact_it_is_sent(
    tmp_path: Path, runner: Runner
) -> None:
    path, battery, reference = _linear(tmp_path)
    process = libtorch.start_process(runner, "cpu")
    assert process.poll() is None, "it waits for its artifact's path"
    section = run_libtorch_stage(
        path, battery, reference, 1e-4, 1e-5, lambda s: None, runner=runner, process=process
    )
    assert section["ran"] and section["ok"] and section["cases"] == 3, section
    assert process.returncode == 0
    # the same artifact run cold, as the AOTI stage still does, agrees
    cold = run_libtorch_stage(path, battery, reference, 1e-4, 1e-5, lambda s: None, runner=runner)
    assert cold["ok"] and cold["max_abs_error"] == section["max_abs_error"]


def test_a_runner_sent_no_path_exits_with_the_data_code(runner: Runner) -> None:
    process = libtorch.start_process(runner, "cpu")
    _, stderr = process.communicate(b"", timeout=120)
    assert process.returncode == libtorch.EXIT_DATA_FAILED
    assert b"no model path on the first line" in stderr


def test_spares_follow_the_runs_still_to_come_and_close_ends_every_process(runner: Runner) -> None:
    with WarmRunners(runner, "cpu", 2) as warm:
        first = warm.take()
        second = warm.take()
        assert first is not None and second is not None and first.pid != second.pid
        assert first.poll() is None and second.poll() is None, "both wait for an artifact"
        assert warm.take() is None, "no spare beyond the runs announced"
        assert sorted(_runners_alive(runner)) == sorted([first.pid, second.pid])
    # taken but never sent an artifact (a job cancelled in between): ended all the same
    assert first.returncode is not None and second.returncode is not None
    assert _runners_alive(runner) == []


def test_a_conversion_runs_each_candidate_in_libtorch_and_leaves_no_runner(
    tmp_path: Path, runner: Runner
) -> None:
    result = convert_model(EXAMPLES / "conditional", example_spec("conditional"), tmp_path / "done", seed=5)
    candidates = result.report["candidates"]
    assert result.ok and result.method == "script", result.error
    assert candidates["script"]["runtime"] == candidates["trace"]["runtime"] == "libtorch"
    assert _runners_alive(runner) == []


def test_a_conversion_cancelled_between_its_two_runs_leaves_no_runner(tmp_path: Path, runner: Runner) -> None:
    class Cancelled(Exception):
        pass

    def cancel_at_trace(message: str) -> None:
        if message.startswith("trace: battery"):  # the spare for trace is started and waiting
            raise Cancelled(message)

    with pytest.raises(Cancelled):
        convert_model(
            EXAMPLES / "conditional", example_spec("conditional"), tmp_path, progress=cancel_at_trace
        )
    assert _runners_alive(runner) == []


def test_a_validation_leaves_no_runner_whether_its_python_pass_fails_or_passes(
    tmp_path: Path, runner: Runner
) -> None:
    converted = convert_model(EXAMPLES / "linear", example_spec("linear"), tmp_path / "linear", seed=2)
    assert converted.torchscript_path is not None
    # another model's artifact fails the Python pass: the runner started for it never runs
    refused = validate_artifact(
        EXAMPLES / "conditional", example_spec("conditional"), converted.torchscript_path
    )
    assert not refused.ok and not refused.report["libtorch"]["ran"]
    assert _runners_alive(runner) == []
    proved = validate_artifact(EXAMPLES / "linear", example_spec("linear"), converted.torchscript_path)
    assert proved.ok and proved.report["libtorch"]["ran"] and proved.report["libtorch"]["ok"]
    assert _runners_alive(runner) == []
