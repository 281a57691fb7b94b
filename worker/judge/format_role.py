"""The `executorch` and `onnx` stages: build a deployment format from the proved exported program and
prove it, input by input, in the runtime that deploys it.

Each runs in its own sandboxed role process (worker/supervisor/format_stage.py starts it after the
judge, as it starts the AOTInductor stage, worker/judge/aoti.py) and never imports model code. It
loads the program the judge proved (proved_program.py: the same sha256, the archive checker again,
tensors and plain data only), builds the file (executorch_format.py, onnx_format.py), loads that
file in its runtime and runs the whole battery against the eager outputs under the spec's
tolerances, then times it on the input eager and TorchScript were timed on. The report section is
`contract.empty_format_section`'s; a failure here never fails the job.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from regctl.registry.digests import sha256_file
from regctl.registry.spec import ModelSpec
from regctl.worker.contract import (
    FORMAT_FILES,
    FORMAT_NAMES,
    OUTPUTS,
    empty_format_section,
    format_result_file,
    handed_file,
)
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import describe_exception, one_line
from regctl.worker.engine.exported import quiet_torch
from regctl.worker.judge.aoti import compile_and_judge
from regctl.worker.judge.flat_runtime import FlatRuntime, output_spec
from regctl.worker.judge.format_battery import prove_on_battery
from regctl.worker.judge.inputs import judge_inputs
from regctl.worker.judge.libtorch import Runner
from regctl.worker.judge.proved_program import NotProved, load_proved_program
from regctl.worker.judge.report import json_safe

FORMATS = ("executorch", "onnx")  # built here; `aoti` in aoti.py, whose role this module runs too
MAX_WARNINGS = 20
_INTERNAL = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _builder(fmt: str) -> Any:
    # lazy: each pulls in its runtime (ExecuTorch's lowering stack takes seconds to import), and the
    # zygote, which every role forks from, imports this module
    if fmt == "executorch":
        from regctl.worker.judge import executorch_format

        return executorch_format
    from regctl.worker.judge import onnx_format

    return onnx_format


def build_and_judge(
    fmt: str,
    program: Path,
    expected_sha256: str,
    spec: ModelSpec,
    battery: list[BatteryCase],
    reference: list[Any],
    out_dir: Path,
    device: torch.device,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Build `fmt` from the proved program into out_dir and judge it there; the report section."""
    section = empty_format_section(fmt, True)
    name = FORMAT_NAMES[fmt]
    try:
        exported = load_proved_program(program, expected_sha256)
    except NotProved as exc:
        section["error"] = str(exc)
        return section
    builder = _builder(fmt)
    dest = out_dir / FORMAT_FILES[fmt]
    progress(f"{fmt}: building the {name}")
    started = time.perf_counter()
    try:
        with quiet_torch(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            notes = builder.build(exported, dest, spec)
        section["notes"] = notes
        # the exporters' and the lowering's own deprecation notices are about their internals, never the model
        said = {one_line(str(w.message)) for w in caught if not issubclass(w.category, _INTERNAL)}
        section["warnings"] = sorted(said)[:MAX_WARNINGS]
    except Exception as exc:
        dest.unlink(missing_ok=True)
        section["error"] = f"the {name} could not be built: {describe_exception(exc)}"
        section["detail"] = str(exc)[:4000]
        return section
    finally:
        section["build_s"] = round(time.perf_counter() - started, 4)
    out_spec = output_spec(exported)
    del exported
    section.update(sha256=sha256_file(dest), file=dest.name, size_bytes=dest.stat().st_size)
    return judge_format(fmt, section, dest, out_spec, spec, battery, reference, device, progress)


def judge_format(
    fmt: str,
    section: dict[str, Any],
    path: Path,
    out_spec: Any,
    spec: ModelSpec,
    battery: list[BatteryCase],
    reference: list[Any],
    device: torch.device,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Load the built file in its runtime and run the whole battery; fills and returns `section`."""
    name = FORMAT_NAMES[fmt]
    builder = _builder(fmt)
    try:
        if fmt == "onnx":  # one session runs the battery and tells the model's own tensor names
            session = builder.open_session(path)
            run, section["io"] = builder.runner(session), builder.signature(session)
        else:
            run = builder.load(path)
        runnable = FlatRuntime(run, out_spec, device)
    except Exception as exc:
        section["error"] = f"the {name} does not load: {describe_exception(exc)}"
        return section
    what = f"the {name}"
    if prove_on_battery(section, runnable, what, spec, battery, reference, device, progress, stage=fmt):
        section["ok"] = True
    return section


def write_section(fmt: str, out_dir: Path, section: dict[str, Any]) -> None:
    """The role's one result file, strict JSON."""
    (out_dir / format_result_file(fmt)).write_text(json.dumps(json_safe(section), allow_nan=False))


def run_format_role(
    fmt: str, spec: ModelSpec, paths: dict[str, str], args: dict[str, Any], progress: Callable[[str], None]
) -> None:
    """The sandboxed `aoti`, `executorch` or `onnx` role: the judge's inputs, the proved program, the
    build and the verdict, in `<format>.json` beside the built file."""
    out = Path(paths["out"])
    name = str(args.get("program") or "")
    if not name or os.path.basename(name) != name or name.startswith("."):
        write_section(fmt, out, empty_format_section(fmt, True, "no proved exported program to build from"))
        return
    side, battery, reference, device = judge_inputs(
        Path(paths["model"]),
        spec,
        Path(paths["reference"]),
        int(args["seed"]),
        progress,
        handed_file(paths, OUTPUTS),  # the eager outputs, in memory
    )
    if side.error is not None:
        write_section(fmt, out, empty_format_section(fmt, True, side.error))
        return
    program, sha256 = Path(paths["candidates"]) / name, str(args.get("sha256"))
    if fmt == "aoti":  # proved in Python, then in the C++ runner
        runner: Runner | str = (
            Runner(Path(paths["runner"])) if "runner" in paths else str(args.get("runner_skip"))
        )
        section = compile_and_judge(program, sha256, spec, battery, reference, out, device, runner, progress)
    else:
        section = build_and_judge(fmt, program, sha256, spec, battery, reference, out, device, progress)
    write_section(fmt, out, section)
