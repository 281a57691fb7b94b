"""Each example converts with the outcome its regctl.toml promises, and its artifact stands alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from regctl.worker.engine.battery import build_battery, example_cases
from regctl.worker.engine.calls import call
from regctl.worker.inprocess import ConversionResult
from regctl.worker.model.loader import loaded_model
from tests.engine.conftest import EXAMPLE_NAMES, EXAMPLES, example_spec

Converted = Callable[[str], ConversionResult]


def test_linear_is_scripted_because_script_and_trace_both_match_eager(converted: Converted) -> None:
    result = converted("linear")
    assert result.ok and result.error is None
    assert result.method == "script"
    assert result.report["candidates"]["script"]["ok"] and result.report["candidates"]["trace"]["ok"]
    assert result.report["why"] == (
        "script matches eager on all 14 inputs and trace on the 3 deciding inputs; script preferred "
        "because it keeps control flow and shape logic"
    )
    script, trace = result.report["candidates"]["script"], result.report["candidates"]["trace"]
    assert (script["judged_on"], script["inputs_run"], len(script["cases"])) == ("battery", 14, 14)
    # trace's verdict could not change the choice: it ran each shape's first draw only
    assert (trace["judged_on"], trace["inputs_run"]) == ("deciding inputs", 3)
    assert [c["label"] for c in trace["cases"]] == [
        "batch=4 draw 0 mixed",
        "batch=1 draw 0 positive",
        "batch=8 draw 0 negative",
    ]
    assert trace["judged_note"].endswith("not judged further because script was kept")
    # the builder's own file, proved where it lies and never copied
    assert result.torchscript_path.name == "script.pt" and result.torchscript_path.parent.name == "builder"
    assert result.torchscript_path.is_file()
    assert result.report["battery_size"] == 3 * 4 + 2  # batch at 1, 4 and 8; 4 draws each; small, zeros
    assert {s["label"] for s in result.report["shapes"]} == {"batch=4", "batch=1", "batch=8"}


def test_dynamic_loop_rejects_trace_because_the_loop_count_is_a_python_scalar(converted: Converted) -> None:
    result = converted("dynamic-loop")
    assert result.ok and result.method == "script"
    trace = result.report["candidates"]["trace"]
    assert not trace["ok"]
    assert "trace cannot take the Python scalar input 'length' (int)" in trace["error"]
    assert "trace was rejected" in result.report["why"]
    assert result.report["model"]["kind"] == "function"


def test_conditional_rejects_trace_on_an_input_that_takes_the_other_branch(converted: Converted) -> None:
    result = converted("conditional")
    assert result.ok and result.method == "script"
    trace = result.report["candidates"]["trace"]
    assert not trace["ok"]
    # the input that exposed the trace took the other branch than the builder's public example
    battery = {
        c.label: c for c in build_battery(example_spec("conditional"), seed=result.report["battery_seed"])
    }
    example = example_cases(example_spec("conditional"))[0]
    exposed = battery[trace["failed_input"]]
    assert bool(exposed.args[0].sum() > 0) != bool(example.args[0].sum() > 0)
    assert f"on input {trace['failed_input']!r}" in trace["error"]
    assert "values differ" in trace["error"]
    assert [(w["file"], w["line"]) for w in trace["warnings"]] == [("model.py", 11)]
    assert "model.py:11" in trace["hint"]
    # Per input, for the version page's chart: the first failing input is the one that exposed it
    # (script was kept, so trace ran only the deciding inputs, all of them, in LibTorch)
    assert trace["judged_on"] == "deciding inputs" and trace["runtime"] == "libtorch"
    first = next(i for i, c in enumerate(trace["cases"]) if not c["ok"])
    assert trace["cases"][first]["label"] == trace["failed_input"]
    assert trace["cases"][first]["tolerance_used"] > 1
    assert all(c["ok"] and c["tolerance_used"] <= 1 for c in trace["cases"][:first])
    script = result.report["candidates"]["script"]
    assert len(script["cases"]) == result.report["battery_size"]
    assert all(c["ok"] and 0 <= c["tolerance_used"] <= 1 for c in script["cases"])


def test_conditional_battery_takes_both_branches() -> None:
    battery = build_battery(example_spec("conditional"))
    signs = {bool(case.args[0].sum() > 0) for case in battery}
    assert signs == {True, False}


def test_varlen_sequence_rejects_trace_at_a_length_it_was_not_traced_at(converted: Converted) -> None:
    result = converted("varlen-sequence")
    assert result.ok and result.method == "script"
    trace = result.report["candidates"]["trace"]
    assert not trace["ok"]
    assert "seq=16" not in trace["failed_input"]  # the traced length itself passes
    assert trace["failed_input"].startswith("batch=1 seq=1 ")
    assert "seq=16" in trace["hint"]  # says which input the trace was recorded on
    assert {s["shape"]["seq"] for s in result.report["shapes"]} == {1, 16, 64}


def test_script_fails_example_is_traced_and_the_report_explains_why_script_failed(
    converted: Converted,
) -> None:
    result = converted("script-fails")
    assert result.ok and result.method == "trace"
    script = result.report["candidates"]["script"]
    assert not script["ok"]
    assert "variable number of arguments" in script["error"] and "model.py:7" in script["error"]
    assert "*args or **kwargs" in script["hint"]
    assert "def scaled(x, **options):" in script["detail"]  # TorchScript's own source excerpt
    assert result.report["why"].startswith("script failed:")


_STANDALONE = r"""
import importlib.util, json, sys
import torch
case_file, artifact, example_dir = sys.argv[1:4]
assert example_dir not in sys.path, sys.path
assert importlib.util.find_spec("model") is None, "the model code must not be importable here"
data = torch.load(case_file, weights_only=True)
module = torch.jit.load(artifact)
for args, expected in zip(data["args"], data["expected"]):
    out = module(*args)
    assert out.dtype == expected.dtype and out.shape == expected.shape, (out.shape, expected.shape)
    assert torch.allclose(out, expected, rtol=data["rtol"], atol=data["atol"]), (out - expected).abs().max()
ours = [m for m in sys.modules if m.startswith(("_regctl_model", "model", "worker", "registry"))]
print(json.dumps({"cases": len(data["args"]), "model_modules": ours}))
"""


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_saved_artifact_gives_the_eager_outputs_in_a_process_without_the_model_code(
    name: str, converted: Converted, tmp_path: Path
) -> None:
    result = converted(name)
    spec = example_spec(name)
    battery = build_battery(spec)
    with loaded_model(EXAMPLES / name, spec) as model:
        expected = [call(model.eager, case, torch.device("cpu")) for case in battery]
    case_file = tmp_path / "cases.pt"
    torch.save(
        {
            "args": [list(c.args) for c in battery],
            "expected": expected,
            "rtol": spec.validation.rtol,
            "atol": spec.validation.atol,
        },
        case_file,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _STANDALONE,
            str(case_file),
            str(result.torchscript_path),
            str(EXAMPLES / name),
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary == {"cases": len(battery), "model_modules": []}
