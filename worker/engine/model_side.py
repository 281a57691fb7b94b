"""The model side of a job: the only engine code that imports and runs the model's own code.

Runs in the sandboxed model process (a fresh fork, never reused). It loads the model, builds the
battery, runs eager on every case, compiles the candidates and exports the program, and writes
what it found to `out_dir`: the eager outputs (`reference.pt`), the candidate artifacts
(`script.pt`, `trace.pt`, `model.pt2`) and `model_side.json`. It judges nothing: whatever this
process claims is checked by the judge, which never imports the model.

A `lean` run (a job's first round) writes each artifact once, in its final form: the preferred
candidate (the first that compiles) is frozen and optimized for inference here, kept only if it is
not slower, and the judge proves and stores that very file. Every other candidate is saved as
compiled, so the judge still says why each one would be right or wrong. Should the optimized
candidate fail the judge's battery, the job runs a full round (`lean=False`): every candidate as
compiled, so an optimization that breaks a model costs time, never the conversion.

Model problems (import errors, bad weights, a forward that raises) end up as `error` in
`model_side.json`; only exceptions raised by the `progress` callback propagate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase, build_battery
from regctl.worker.engine.capture import WarningLog, describe_exception
from regctl.worker.engine.evaluate import EagerFailure, eager_reference
from regctl.worker.engine.exchange import (
    REFERENCE_FILE,
    CandidateSide,
    EagerLatency,
    ExportSide,
    ModelSide,
    UnsupportedOutput,
    WarningEntry,
    save_reference,
    write_model_side,
)
from regctl.worker.engine.export import export_program
from regctl.worker.engine.latency import measure
from regctl.worker.engine.loader import ENGINE_LOCK, LoadedModel, ModelLoadError, loaded_model
from regctl.worker.engine.report import timed, warning_entries
from regctl.worker.engine.script import script_model
from regctl.worker.engine.trace import trace_model

PREFERENCE = ("script", "trace")
ERROR_CHARS = 2000  # one line for a person; model_side.json refuses anything much longer
DETAIL_CHARS = 100_000
EXPORTED_FILE = "model.pt2"
SLOWER_TOLERANCE = 1.05  # the optimized form is dropped if its median is more than 5% slower


def clip(text: str | None, limit: int = ERROR_CHARS) -> str | None:
    """`text` cut to `limit` characters, marked when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def candidate_order(requested: str) -> tuple[str, ...]:
    """The candidates tried for a requested method, preferred first."""
    return PREFERENCE if requested == "auto" else (requested,)


def run_model_side(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    kind: str = "convert",
    method: str | None = None,
    lean: bool = False,
    progress: Callable[[str], None] = lambda s: None,
) -> ModelSide:
    """Run the model's half of a `convert` or `validate` job and write its files to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    side = ModelSide()
    log = WarningLog(Path(model_dir))
    start = time.perf_counter()
    with ENGINE_LOCK, log.capture():
        try:
            progress("loading model")
            with loaded_model(Path(model_dir), spec) as model:
                side.timings["load_s"] = time.perf_counter() - start
                run = _ModelRun(model, spec, out_dir, side, log, progress, lean=lean)
                run.run(kind, method or spec.method)
        except (ModelLoadError, EagerFailure, UnsupportedOutput) as exc:
            side.error = clip(str(exc))
    side.warnings = [
        WarningEntry(**{**asdict(r), "message": clip(r.message, DETAIL_CHARS // 10)})
        for r in log.records
        if r.category != "TracerWarning"
    ]
    side.timings = {k: round(v, 4) for k, v in side.timings.items()}
    side.timings["model_total_s"] = round(time.perf_counter() - start, 4)
    write_model_side(out_dir, side)
    return side


class _ModelRun:
    """One model-side run: eager reference, candidates, export, eager latency."""

    def __init__(
        self,
        model: LoadedModel,
        spec: ModelSpec,
        out_dir: Path,
        side: ModelSide,
        log: WarningLog,
        progress: Callable[[str], None],
        *,
        lean: bool,
    ) -> None:
        self.model, self.spec, self.out_dir, self.side = model, spec, out_dir, side
        self.log, self.progress, self.lean = log, progress, lean

    def run(self, kind: str, requested: str) -> None:
        self.side.kind = self.model.kind
        with timed(self.side.timings, "battery_s"):
            self.progress("building battery")
            battery = build_battery(self.spec, self.model.model_dir)
            self.side.battery_size = len(battery)
            reference = eager_reference(
                self.model.eager, battery, self.model.device, self.model.frames, self.progress
            )
            save_reference(reference, self.out_dir / REFERENCE_FILE)
        if kind == "convert":
            for name in candidate_order(requested):
                self.side.candidates[name] = self._candidate(name, battery, reference)
            self.progress("export")
            with timed(self.side.timings, "export_s"):
                self.side.export = self._export(battery)
        self.progress("measuring latency")
        with timed(self.side.timings, "latency_s"):
            eager = measure(self.model.eager, battery[0], self.model.device)
        self.side.eager_latency = EagerLatency(
            input=battery[0].label, median_ms=eager.median_ms, runs=eager.runs
        )

    def _candidate(self, name: str, battery: list[BatteryCase], reference: list[Any]) -> CandidateSide:
        self.progress(f"{name}: {'compiling' if name == 'script' else 'tracing'}")
        with timed(self.side.timings, f"{name}_s"):
            if name == "script":
                outcome: Any = script_model(self.model)
                entry = CandidateSide(
                    error=clip(outcome.error),
                    detail=clip(outcome.detail, DETAIL_CHARS),
                    hint=clip(outcome.hint),
                )
            else:
                outcome = trace_model(self.model, self.spec, battery[0], reference[0], self.log)
                entry = CandidateSide(
                    error=clip(outcome.error),
                    hint=clip(outcome.hint),
                    warnings=warning_entries(outcome.warnings),
                    strict=outcome.strict,
                    note=outcome.note,
                )
            entry.compile_s = round(outcome.seconds, 4)
            if outcome.artifact is None:
                return entry
            artifact = outcome.artifact
            del outcome
        preferred = not any(c.file for c in self.side.candidates.values())
        if self.lean and self.spec.optimize and preferred:
            with timed(self.side.timings, "optimize_s"):
                artifact = self._optimized(artifact, entry, battery[0])
        try:
            torch.jit.save(artifact, str(self.out_dir / f"{name}.pt"))
        except Exception as exc:
            entry.error = f"saving the {name} artifact failed: {describe_exception(exc)}"
            return entry
        entry.file = f"{name}.pt"
        return entry

    def _optimized(self, artifact: Any, entry: CandidateSide, case: BatteryCase) -> Any:
        """The frozen, optimized-for-inference form when it builds and is not slower, else `artifact`.

        The judge proves whichever form is saved, so a wrong optimization fails the first round
        and the full round keeps the artifact as compiled.
        """
        self.progress("optimizing")
        try:
            optimized = torch.jit.optimize_for_inference(torch.jit.freeze(artifact.eval()))
            plain_ms = measure(artifact, case, self.model.device).median_ms
            optimized_ms = measure(optimized, case, self.model.device).median_ms
        except Exception as exc:
            entry.optimize_note = (
                f"freeze/optimize_for_inference failed ({describe_exception(exc)}); "
                "kept the unoptimized artifact"
            )
            return artifact
        entry.unoptimized_ms, entry.optimized_ms = plain_ms, optimized_ms
        if optimized_ms > plain_ms * SLOWER_TOLERANCE:
            entry.optimize_note = (
                f"the optimized artifact was slower ({optimized_ms:.3g} ms vs {plain_ms:.3g} ms "
                "median); kept the unoptimized artifact"
            )
            return artifact
        entry.optimized = True
        return optimized

    def _export(self, battery: list[BatteryCase]) -> ExportSide:
        outcome = export_program(self.model, self.spec, battery, self.out_dir / EXPORTED_FILE)
        side = ExportSide(
            error=clip(outcome.error),
            detail=clip(outcome.detail, DETAIL_CHARS),
            notes=outcome.notes,
            seconds=round(outcome.seconds, 4),
        )
        if outcome.saved is not None:
            side.file = EXPORTED_FILE
        return side
