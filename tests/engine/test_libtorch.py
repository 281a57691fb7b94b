"""The LibTorch stage: artifacts run in a C++ process with no Python, and what only runs in Python fails.

The runner is compiled once per test session into a temporary cache shared by every test here.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from regctl.registry.spec import load_spec
from regctl.worker.engine.battery import BatteryCase, build_battery
from regctl.worker.inprocess import ConversionResult, convert_model, validate_artifact
from regctl.worker.judge import libtorch, runtime_check
from regctl.worker.judge.libtorch import CACHE_ENV, SWITCH_ENV, Runner, build_runner, run_libtorch_stage
from tests.conftest import service_missing
from tests.engine.conftest import EXAMPLES, write_model

Converted = Callable[[str], ConversionResult]

PYTHON_OP_MODEL = """
    import torch
    from torch import Tensor, nn

    try:  # the engine may import this file more than once in a process
        torch.ops.regctl_test.twice
    except (AttributeError, RuntimeError):

        @torch.library.custom_op("regctl_test::twice", mutates_args=())
        def twice(x: Tensor) -> Tensor:
            return x * 2


    class UsesPythonOp(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.ops.regctl_test.twice(x) + 1


    def build() -> nn.Module:
        return UsesPythonOp()
"""

PYTHON_OP_SPEC = """
    entrypoint = "model.py:build"
    method = "script"

    [[inputs]]
    name = "x"
    dtype = "float32"
    shape = ["batch", 3]

    [dims]
    batch = { min = 1, max = 4, opt = 2, batch = true }

    [validation]
    samples = 2
"""


@pytest.fixture(scope="module", autouse=True)
def shared_cache(libtorch_runner_cache: Path) -> Iterator[Path]:
    """Every conversion in this module uses the run's runner cache, with the stage enabled."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(libtorch_runner_cache))
        mp.delenv(SWITCH_ENV, raising=False)
        yield libtorch_runner_cache


@pytest.fixture(scope="module")
def runner(shared_cache: Path) -> Runner:
    """The runner, compiled once (about 15-30 s) unless this session's cache already holds it."""
    if libtorch.find_compiler() is None:
        service_missing("a C++ compiler (g++ or c++)", "not on PATH")
    return build_runner(shared_cache)


def _case(label: str, *args: object) -> BatteryCase:
    return BatteryCase(label, "static", {}, tuple(args))


@pytest.mark.parametrize("name", ["linear", "conditional", "dynamic-loop", "varlen-sequence"])
def test_example_runs_in_libtorch_exactly_as_in_python(
    name: str, runner: Runner, converted: Converted
) -> None:
    result = converted(name)
    section = result.report["libtorch"]
    assert result.ok, result.error
    assert section["ran"] and section["ok"] and section["skipped"] is None, section
    assert section["cases"] == result.report["battery_size"] and section["failures"] == 0
    assert section["max_abs_error"] is not None


def test_a_custom_op_registered_from_python_passes_python_but_is_caught_by_libtorch(
    tmp_path: Path, runner: Runner
) -> None:
    model_dir = write_model(tmp_path / "python-op", PYTHON_OP_MODEL)
    write_model(model_dir, PYTHON_OP_SPEC, "regctl.toml")
    spec = load_spec(model_dir)

    result = convert_model(model_dir, spec, tmp_path / "out")

    # each candidate is proven in LibTorch, where it would deploy: neither loads there
    script = result.report["candidates"]["script"]
    assert not script["ok"] and script["runtime"] == "libtorch"
    assert script["error"] == (
        "does not run in LibTorch: torch::jit::load failed: Unknown builtin op: regctl_test::twice."
    )
    assert not result.ok and result.torchscript_path is None
    assert result.error == f"script failed: {script['error']}"

    # the same artifact, re-validated later, is refused for the same reason
    validation = validate_artifact(model_dir, spec, tmp_path / "out" / "builder" / "script.pt")
    assert not validation.ok
    assert validation.error == (
        "the artifact runs in Python but not in LibTorch: "
        "torch::jit::load failed: Unknown builtin op: regctl_test::twice."
    )
    assert validation.report["libtorch"]["ran"]


def test_each_failing_case_is_reported_and_the_first_one_named(tmp_path: Path, runner: Runner) -> None:
    class RaisesOnPositive(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            if bool(x.sum() > 0):
                raise ValueError("no positive inputs")
            return x * 2

    path = tmp_path / "model.pt"
    torch.jit.script(RaisesOnPositive()).save(str(path))
    negative = -torch.ones(2, 3)
    battery = [_case("negative", negative), _case("wrong reference", negative), _case("positive", -negative)]
    reference = [negative * 2, negative * 3, -negative * 2]

    section = run_libtorch_stage(path, battery, reference, 1e-4, 1e-5, lambda s: None)

    assert section["ran"] and not section["ok"] and section["failures"] == 2
    assert section["failed_input"] == "wrong reference"
    assert section["error"].startswith("differs from eager on input 'wrong reference': output values differ")
    assert libtorch.failure(section) == f"the artifact runs in Python but not in LibTorch: {section['error']}"

    only_positive = run_libtorch_stage(path, battery[2:], reference[2:], 1e-4, 1e-5, lambda s: None)
    assert "no positive inputs" in only_positive["error"] and "on input 'positive'" in only_positive["error"]


def test_what_an_artifact_prints_never_mixes_with_its_results_and_no_file_is_written(
    tmp_path: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Chatty(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            print("PK\x03\x04 not a result", x.shape)  # bytes that look like a zip, on stdout
            return x + 1

    path = tmp_path / "model.pt"
    torch.jit.script(Chatty()).save(str(path))
    battery = [_case("a", torch.ones(2, 3)), _case("b", torch.zeros(1, 3))]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where a temporary cases file would go

    reference = [torch.ones(2, 3) * 2, torch.ones(1, 3)]
    section = run_libtorch_stage(path, battery, reference, 1e-4, 1e-5, lambda s: None)

    assert section["ok"], section["error"]
    assert section["cases"] == 2 and section["max_abs_error"] == 0.0
    assert list(scratch.iterdir()) == []  # the cases went in on stdin, the results out on stdout


class Pair(NamedTuple):
    total: Tensor
    count: int


class Structured(nn.Module):
    def forward(
        self, x: Tensor, n: int, scale: float, flag: bool
    ) -> tuple[Tensor, dict[str, Tensor], list[Tensor], Pair, float, bool, str, Tensor | None]:
        parts = {"scaled": x * scale, "mask": x > 0}
        return x.sum(), parts, [x, x.to(torch.int64)], Pair(x * n, n), scale * 2, flag, "ok", None


def test_tuples_dicts_lists_named_tuples_and_scalars_round_trip(tmp_path: Path, runner: Runner) -> None:
    path = tmp_path / "model.pt"
    torch.jit.script(Structured()).save(str(path))
    model = Structured()
    battery = [_case("a", torch.randn(2, 3), 3, 0.5, True), _case("b", torch.randn(0, 4), 1, -2.0, False)]
    reference = [model(*case.args) for case in battery]

    section = run_libtorch_stage(path, battery, reference, 1e-4, 1e-5, lambda s: None)

    assert section["ok"], section["error"]
    assert section["cases"] == 2 and section["max_abs_error"] == 0.0


def test_the_kept_candidate_is_proven_once_in_libtorch_and_python_runs_one_input(
    runner: Runner, converted: Converted
) -> None:
    result = converted("linear")
    script = result.report["candidates"]["script"]
    assert result.method == "script" and script["runtime"] == "libtorch" and script["runtime_note"] is None
    assert script["judged_on"] == "battery" and len(script["cases"]) == result.report["battery_size"]
    # the LibTorch section is that very run, not a second pass over the battery
    assert result.report["libtorch"]["cases"] == result.report["battery_size"]


def test_python_runs_the_smallest_input_once_after_libtorch_ran_them_all(
    tmp_path: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(EXAMPLES / "linear")
    battery = build_battery(spec, EXAMPLES / "linear", seed=3)
    module = torch.jit.script(nn.Linear(10, 2).eval())
    path = tmp_path / "linear.pt"
    torch.jit.save(module, str(path))
    with torch.no_grad():
        expected = [module(*case.clone_args(torch.device("cpu"))) for case in battery]
    in_python: list[list[BatteryCase]] = []
    check = runtime_check.check_candidate

    def spy(fn: object, cases: list[BatteryCase], *args: object, **kwargs: object) -> object:
        in_python.append(cases)
        return check(fn, cases, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_check, "check_candidate", spy)
    result = runtime_check.check_in_runtime(
        path, "script", battery, expected, spec, torch.device("cpu"), runner, lambda s: None
    )
    assert result.runtime == "libtorch" and result.check.ok and len(result.check.results) == len(battery)
    (ran,) = in_python
    sizes = [sum(a.numel() for a in case.args) for case in battery]
    assert len(ran) == 1 and sum(a.numel() for a in ran[0].args) == min(sizes) < sizes[0]


@pytest.mark.parametrize("features", [10, 1200])  # 3 KB, hashed before the run; 5.8 MB, beside it
def test_the_digest_is_that_of_the_file_run_small_or_large(tmp_path: Path, features: int) -> None:
    spec = load_spec(EXAMPLES / "linear")
    battery = build_battery(spec, EXAMPLES / "linear", seed=3)[:2]
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(10, features), nn.Linear(features, features), nn.Linear(features, 2))
    module = torch.jit.script(layers.eval())
    path = tmp_path / "model.pt"
    torch.jit.save(module, str(path))
    assert (path.stat().st_size < runtime_check.HASH_INLINE_BYTES) == (features == 10)
    with torch.no_grad():
        expected = [module(*case.clone_args(torch.device("cpu"))) for case in battery]
    result = runtime_check.check_in_runtime(
        path, "script", battery, expected, spec, torch.device("cpu"), "disabled", lambda s: None
    )
    assert result.check.ok and result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(runtime_check.ArtifactLoadError):  # a file that cannot be read is no proof
        runtime_check.check_in_runtime(
            tmp_path / "gone.pt", "script", battery, expected, spec, torch.device("cpu"), "x", lambda s: None
        )


def test_without_a_runner_the_candidates_run_in_python_and_the_report_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SWITCH_ENV, "0")
    spec = load_spec(EXAMPLES / "linear")
    result = convert_model(EXAMPLES / "linear", spec, tmp_path / "out")
    assert result.ok and result.method == "script"
    script = result.report["candidates"]["script"]
    assert script["runtime"] == "python"
    assert script["runtime_note"] == "LibTorch runner unavailable: disabled (REGCTL_LIBTORCH=0)"
    assert len(script["cases"]) == result.report["battery_size"]
    assert result.report["libtorch"]["skipped"] == "disabled (REGCTL_LIBTORCH=0)"


def test_the_stage_is_skipped_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    battery, reference = [_case("a", torch.ones(1))], [torch.ones(1)]

    def stage() -> dict:
        return run_libtorch_stage(
            tmp_path / "model.pt", battery, reference, 1e-4, 1e-5, lambda s: None, cache_dir=tmp_path / "c"
        )

    monkeypatch.setenv(SWITCH_ENV, "0")
    disabled = stage()
    assert not disabled["ran"] and disabled["skipped"] == "disabled (REGCTL_LIBTORCH=0)"
    assert libtorch.failure(disabled) is None

    monkeypatch.delenv(SWITCH_ENV)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    no_compiler = stage()
    assert not no_compiler["ran"] and no_compiler["skipped"].startswith("no C++ compiler found")
    assert libtorch.failure(no_compiler) is None


def test_a_failed_build_is_skipped_with_the_compilers_first_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if libtorch.find_compiler() is None:
        service_missing("a C++ compiler (g++ or c++)", "not on PATH")
    broken = tmp_path / "broken.cpp"
    broken.write_text("int main() { return no_such_symbol; }\n")
    monkeypatch.setattr(libtorch, "SOURCE", broken)

    section = run_libtorch_stage(
        tmp_path / "model.pt", [], [], 1e-4, 1e-5, lambda s: None, cache_dir=tmp_path / "cache"
    )

    assert not section["ran"] and libtorch.failure(section) is None
    assert section["skipped"].startswith("building the LibTorch runner with ")
    assert "no_such_symbol" in section["skipped"] and "error" in section["skipped"]
    assert not any(p.name == "runner" for p in (tmp_path / "cache").rglob("*"))  # nothing half-built


def test_the_runner_runs_without_python(runner: Runner) -> None:
    linked = subprocess.run(["ldd", str(runner.path)], capture_output=True, text=True, check=True).stdout
    assert "libtorch_cpu" in linked and "libpython" not in linked and "libtorch_python" not in linked
