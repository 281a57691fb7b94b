"""`validate_artifact`: re-prove an existing TorchScript artifact against the eager model.

Used after the fact, e.g. once the workers run a newer torch: the model is loaded again from its
directory, the battery is rebuilt (it is deterministic), and the saved artifact runs on every
case (no early stop, so the report lists every failing input). The artifact is only read.

Once it matches eager, the LibTorch stage (libtorch.py) runs it on the battery with no Python;
when that stage runs and the artifact fails there, the validation fails.

Report keys: ok, error, artifact (file name), model, battery_size, failures (count),
failed_inputs (the first 20 labels), shapes, libtorch, latency, torch_warnings, model_warnings,
versions, timings {load_s, battery_s, libtorch_s, latency_s, total_s}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.spec import ModelSpec
from worker.engine.battery import build_battery
from worker.engine.capture import WarningLog, describe_exception
from worker.engine.evaluate import EagerFailure, check_candidate, eager_reference, per_shape
from worker.engine.latency import measure
from worker.engine.libtorch import empty_section, run_libtorch_stage
from worker.engine.libtorch import failure as libtorch_failure
from worker.engine.loader import ENGINE_LOCK, LoadedModel, ModelLoadError, loaded_model
from worker.engine.report import add_warnings, json_safe, latency_entry, versions

MAX_LABELS = 20


@dataclass(frozen=True)
class ValidationResult:
    """Whether the artifact still matches eager on the whole battery, and the report that says so."""

    ok: bool
    report: dict[str, Any]
    error: str | None  # one line for the user when not ok


def validate_artifact(
    model_dir: Path, spec: ModelSpec, artifact_path: Path, *, progress: Callable[[str], None] = lambda s: None
) -> ValidationResult:
    """Run the battery on the saved artifact at `artifact_path` against the eager model in `model_dir`."""
    with ENGINE_LOCK:
        start = time.perf_counter()
        report: dict[str, Any] = {
            "ok": False,
            "error": None,
            "artifact": Path(artifact_path).name,
            "model": {"entrypoint": spec.entrypoint, "kind": None, "device": spec.device},
            "battery_size": 0,
            "failures": 0,
            "failed_inputs": [],
            "shapes": [],
            "libtorch": empty_section(),
            "latency": None,
            "versions": versions(),
            "timings": {"load_s": 0.0, "battery_s": 0.0, "libtorch_s": 0.0, "latency_s": 0.0, "total_s": 0.0},
        }
        log = WarningLog(Path(model_dir))
        with log.capture():
            try:
                progress("loading model")
                with loaded_model(Path(model_dir), spec) as model:
                    report["timings"]["load_s"] = time.perf_counter() - start
                    error = _validate(model, spec, Path(artifact_path), report, progress)
            except (ModelLoadError, EagerFailure) as exc:
                error = str(exc)
        add_warnings(report, log.records)
        report.update(ok=error is None, error=error)
        report["timings"]["total_s"] = time.perf_counter() - start
        report["timings"] = {k: round(v, 4) for k, v in report["timings"].items()}
        return ValidationResult(error is None, json_safe(report), error)


def _validate(
    model: LoadedModel,
    spec: ModelSpec,
    artifact_path: Path,
    report: dict[str, Any],
    progress: Callable[[str], None],
) -> str | None:
    report["model"]["kind"] = model.kind
    try:
        artifact = torch.jit.load(str(artifact_path), map_location=model.device)
    except Exception as exc:
        return f"cannot load the artifact {artifact_path.name}: {describe_exception(exc)}"
    started = time.perf_counter()
    progress("building battery")
    battery = build_battery(spec, model.model_dir)
    report["battery_size"] = len(battery)
    reference = eager_reference(model.eager, battery, model.device, model.frames, progress)
    v = spec.validation
    check = check_candidate(
        artifact,
        battery,
        reference,
        model.device,
        rtol=v.rtol,
        atol=v.atol,
        name="artifact",
        progress=progress,
        stop_at_first=False,
    )
    report["timings"]["battery_s"] = time.perf_counter() - started
    report.update(
        shapes=per_shape(check.results),
        failures=len(check.failures),
        failed_inputs=check.failures[:MAX_LABELS],
    )
    if not check.ok:
        more = f" (and {len(check.failures) - 1} more inputs)" if len(check.failures) > 1 else ""
        return f"the artifact {check.error}{more}"
    started = time.perf_counter()
    report["libtorch"] = run_libtorch_stage(
        artifact_path, battery, reference, v.rtol, v.atol, progress, device=model.device
    )
    report["timings"]["libtorch_s"] = time.perf_counter() - started
    if error := libtorch_failure(report["libtorch"]):
        return error
    progress("measuring latency")
    started = time.perf_counter()
    eager, art = measure(model.eager, battery[0], model.device), measure(artifact, battery[0], model.device)
    report["latency"] = latency_entry(
        battery[0].label, eager.median_ms, art.median_ms, {"eager": eager.runs, "artifact": art.runs}
    )
    report["timings"]["latency_s"] = time.perf_counter() - started
    return None
