"""Validation: an existing artifact run on the whole battery of a seed against the reference
runner's eager outputs, LibTorch stage included; every failing input is counted, not only the first.
Runs in the sandboxed judge process, like judge.py, whose inputs and report helpers it shares.

The latency section is the reference runner's: it loaded the stored artifact (already proven) and
timed it beside eager, interleaved in its process. Advisory, and the model side's word.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.contract import empty_section
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import describe_exception
from regctl.worker.engine.devices import ModelLoadError
from regctl.worker.engine.exchange import ExchangeError, ModelSide
from regctl.worker.judge.evaluate import check_candidate, per_shape
from regctl.worker.judge.inputs import (
    RunnerChoice,
    judge_inputs,
    latency_section,
    libtorch_stage,
    side_into,
)
from regctl.worker.judge.judge import MAX_LABELS, write_result
from regctl.worker.judge.libtorch import Runner
from regctl.worker.judge.libtorch import failure as libtorch_failure
from regctl.worker.judge.report import json_safe, versions
from regctl.worker.judge.warm_runner import WarmRunners


@dataclass(frozen=True)
class ValidationResult:
    """Whether the artifact still matches eager on the whole battery, and the report that says so."""

    ok: bool
    report: dict[str, Any]
    error: str | None


def judge_validation(
    model_dir: Path,
    spec: ModelSpec,
    reference_dir: Path,
    artifact_path: Path,
    out_dir: Path,
    *,
    seed: int,
    runner: RunnerChoice = None,
    progress: Callable[[str], None] = lambda s: None,
    outputs: Path | None = None,
) -> ValidationResult:
    """Run the saved artifact on the whole battery of `seed` against the reference runner's outputs
    (`outputs`, the file the supervisor handed this role, or the reference directory's)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "ok": False,
        "error": None,
        "artifact": Path(artifact_path).name,
        "model": {"entrypoint": spec.entrypoint, "kind": None, "device": spec.device},
        "battery_size": 0,
        "battery_seed": seed,
        "failures": 0,
        "failed_inputs": [],
        "shapes": [],
        "libtorch": empty_section(),
        "latency": None,
        "latency_note": None,
        "versions": versions(),
        "timings": {"load_s": 0.0, "battery_s": 0.0, "libtorch_s": 0.0, "latency_s": 0.0, "total_s": 0.0},
    }
    try:
        side, battery, reference, device = judge_inputs(
            model_dir, spec, reference_dir, seed, progress, outputs
        )
        side_into(report, side)
        error = side.error or _validate(
            spec, device, battery, reference, side, Path(artifact_path), report, runner, progress
        )
    except (ExchangeError, ModelLoadError) as exc:
        error = str(exc)
    report.update(ok=error is None, error=error)
    report["timings"]["total_s"] += time.perf_counter() - start
    report["timings"] = {k: round(v, 4) for k, v in report["timings"].items()}
    safe = json_safe(report)
    write_result(out_dir, error is None, error, safe)
    return ValidationResult(error is None, safe, error)


def _validate(
    spec: ModelSpec,
    device: torch.device,
    battery: list[BatteryCase],
    reference: list[Any],
    side: ModelSide,
    artifact_path: Path,
    report: dict[str, Any],
    runner: RunnerChoice,
    progress: Callable[[str], None],
) -> str | None:
    # LibTorch's start overlaps the Python pass (warm_runner.py); killed if the pass fails
    warming = WarmRunners(runner, str(device), 1) if isinstance(runner, Runner) else nullcontext(None)
    with warming as warm:
        try:
            artifact = torch.jit.load(str(artifact_path), map_location=device)
        except Exception as exc:
            return f"cannot load the artifact {artifact_path.name}: {describe_exception(exc)}"
        started = time.perf_counter()
        v = spec.validation
        check = check_candidate(
            artifact,
            battery,
            reference,
            device,
            rtol=v.rtol,
            atol=v.atol,
            name="artifact",
            progress=progress,
            stop_at_first=False,
        )
        report["timings"]["battery_s"] += time.perf_counter() - started
        report.update(
            shapes=per_shape(check.results),
            failures=len(check.failures),
            failed_inputs=check.failures[:MAX_LABELS],
        )
        if not check.ok:
            more = f" (and {len(check.failures) - 1} more inputs)" if len(check.failures) > 1 else ""
            return f"the artifact {check.error}{more}"
        started = time.perf_counter()
        process = warm.take() if warm is not None else None
        report["libtorch"] = libtorch_stage(
            runner, artifact_path, battery, reference, spec, device, progress, process
        )
        report["timings"]["libtorch_s"] = time.perf_counter() - started
        if error := libtorch_failure(report["libtorch"]):
            return error
        # The reference runner timed this stored artifact beside eager (model_side.py): one process.
        report["latency"] = latency_section(side.latency, "the reference runner")
        report["latency_note"] = side.latency_error  # the model side's own words: shown, never trusted
        return None
