"""What every judge starts from and shares: the reference runner's claims, the battery it rebuilds from
the job's seed, the eager outputs, and the report sections a conversion (judge.py), a validation
(validation.py) and a format stage (format_role.py) fill alike.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.contract import REFERENCE_FILE, REFERENCE_SIDE_FILE, empty_section
from regctl.worker.engine.battery import BatteryCase, build_battery
from regctl.worker.engine.devices import device_for
from regctl.worker.engine.exchange import LatencyPair, ModelSide, load_reference, read_side
from regctl.worker.judge.coverage import found_inputs
from regctl.worker.judge.libtorch import Runner, run_libtorch_stage
from regctl.worker.judge.report import add_warnings, latency_entry

RunnerChoice = Runner | str | None  # a built runner, a reason it is skipped, or None: build one here


def judge_inputs(
    model_dir: Path,
    spec: ModelSpec,
    reference_dir: Path,
    seed: int,
    progress: Callable[[str], None],
    outputs: Path | None = None,
) -> tuple[ModelSide, list[BatteryCase], list[Any], torch.device]:
    """What the judge works from: the reference runner's claims, its own battery, the eager outputs
    (from `outputs`, the sealed file the supervisor handed this role, or the reference directory)."""
    side = read_side(reference_dir / REFERENCE_SIDE_FILE)
    if side.error is not None:
        return side, [], [], torch.device("cpu")
    device = device_for(spec.device)
    progress("building battery")
    battery = build_battery(spec, model_dir, seed=seed)
    battery += found_inputs(side.search, spec, seed)
    if outputs is not None:
        reference = load_reference(outputs, len(battery), handed=True)
    else:
        reference = load_reference(reference_dir / REFERENCE_FILE, len(battery))
    return side, battery, reference, device


def side_into(report: dict[str, Any], side: ModelSide) -> None:
    """Add one model role's facts (kind, size, warnings, its timings) to a report."""
    report["model"]["kind"] = report["model"]["kind"] or side.kind
    report["battery_size"] = report["battery_size"] or side.battery_size
    add_warnings(report, side.warnings, dropped=side.warnings_dropped)
    for key, value in side.timings.items():
        if key == "model_total_s":
            report["timings"]["total_s"] += value  # the judge adds its own time to it
        else:
            report["timings"][key] = report["timings"].get(key, 0.0) + value


def latency_section(measured: LatencyPair | None, by: str) -> dict[str, Any] | None:
    """The report's latency section from a model role's interleaved measurement (None without one)."""
    return latency_entry(measured, by) if measured is not None else None


def libtorch_stage(
    runner: RunnerChoice,
    artifact_path: Path,
    battery: list[BatteryCase],
    reference: list[Any],
    spec: ModelSpec,
    device: torch.device,
    progress: Callable[[str], None],
    process: subprocess.Popen[bytes] | None = None,
) -> dict[str, Any]:
    """The LibTorch stage's report section: skipped with the reason `runner` gives, or run (in
    `process` when one was started ahead: warm_runner.py)."""
    if isinstance(runner, str):
        return empty_section(runner)
    v = spec.validation
    return run_libtorch_stage(
        artifact_path,
        battery,
        reference,
        v.rtol,
        v.atol,
        progress,
        device=device,
        runner=runner,
        process=process,
    )
