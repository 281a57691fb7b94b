"""`convert_model`: turn a model directory into a TorchScript artifact proven against eager PyTorch.

1. Load the model (loader.py) and build the battery (battery.py); run eager on every case.
2. Candidates, in order: `auto` tries script then trace; `script`/`trace` try only that one.
   Each is saved with torch.jit.save, loaded back from the bytes, and run on the whole battery;
   the first case where it raises or differs from eager rejects it, with that case's label.
3. Script is preferred when both pass (it keeps control flow and shape logic); when none passes
   the conversion fails with every candidate's diagnosis.
4. `optimize` (spec): torch.jit.freeze + torch.jit.optimize_for_inference on the accepted
   artifact, saved, reloaded and run on the battery again; kept only if it matches eager and is
   not more than 5% slower (median latency on the opt-shape input) than the unoptimized one.
   A scripted or traced *function* is saved as a module with a `forward` method, so its reloaded
   artifact is frozen like any module.
5. The LibTorch stage (libtorch.py): the saved artifact runs on the battery in a C++ process with
   no Python; when that stage runs and the artifact fails there, the conversion fails (skipped,
   e.g. with no C++ compiler, it does not). The report describes the outputs (outputs.py).
6. The artifact's latency against eager; then the torch.export program (export.py), which never
   fails the conversion.

Files written to out_dir: model.pt (always when ok), model.pt2 (when the export validated).
Model problems (import errors, bad weights, a forward that raises, no working candidate) give
`ok=False` with a one-line `error`; only bugs in the engine, and exceptions raised by the
`progress` callback, propagate.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.spec import METHODS, ModelSpec
from worker.engine.battery import BatteryCase, build_battery
from worker.engine.capture import WarningLog, describe_exception
from worker.engine.evaluate import CandidateCheck, EagerFailure, check_candidate, eager_reference, per_shape
from worker.engine.export import export_model
from worker.engine.latency import Latency, measure
from worker.engine.libtorch import failure as libtorch_failure
from worker.engine.libtorch import run_libtorch_stage
from worker.engine.loader import ENGINE_LOCK, LoadedModel, ModelLoadError, loaded_model
from worker.engine.outputs import describe_outputs
from worker.engine.report import (
    add_warnings,
    candidate_entry,
    json_safe,
    latency_entry,
    new_report,
    warning_entries,
)
from worker.engine.script import script_model
from worker.engine.trace import trace_model

ARTIFACT_NAME = "model.pt"
EXPORTED_NAME = "model.pt2"
SLOWER_TOLERANCE = 1.05  # the optimized artifact is dropped if its median is more than 5% slower
PREFERENCE = ("script", "trace")


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion produced: the accepted artifact, the optional export, and the report."""

    ok: bool
    method: str | None  # "script" | "trace" chosen, None on failure
    torchscript_path: Path | None  # out_dir/model.pt: the accepted (possibly optimized) artifact
    exported_path: Path | None  # out_dir/model.pt2 when torch.export worked and validated
    report: dict[str, Any]  # JSON-safe, see report.py
    error: str | None  # one line for the user when not ok


@dataclass(frozen=True)
class Artifact:
    """A saved TorchScript artifact: the exact bytes and the module loaded back from them."""

    name: str
    data: bytes
    loaded: Any
    check: CandidateCheck


def convert_model(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    method: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ConversionResult:
    """Convert the model in `model_dir` to TorchScript and prove it on the battery (module docstring)."""
    requested = method or spec.method
    if requested not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
    with ENGINE_LOCK:
        return _Conversion(Path(model_dir), spec, Path(out_dir), requested, progress).run()


def save_and_reload(artifact: Any, device: torch.device) -> tuple[bytes, Any]:
    """torch.jit.save to bytes and torch.jit.load back: what is validated is what gets stored."""
    buffer = io.BytesIO()
    torch.jit.save(artifact, buffer)
    data = buffer.getvalue()
    return data, torch.jit.load(io.BytesIO(data), map_location=device)


class _Conversion:
    """One conversion run; holds the report while the stages fill it in."""

    def __init__(
        self, model_dir: Path, spec: ModelSpec, out_dir: Path, requested: str, progress: Callable[[str], None]
    ) -> None:
        self.model_dir, self.spec, self.out_dir, self.requested = model_dir, spec, out_dir, requested
        self.progress = progress
        self.report = new_report(spec, requested)
        self.timings = self.report["timings"]
        self.log = WarningLog(model_dir)
        self.device = torch.device("cpu")
        self._latencies: dict[int, tuple[Any, Latency]] = {}  # id -> (callable kept alive, latency)

    def run(self) -> ConversionResult:
        start = time.perf_counter()
        with self.log.capture():
            try:
                self.progress("loading model")
                with loaded_model(self.model_dir, self.spec) as model:
                    self.timings["load_s"] = time.perf_counter() - start
                    result = self._convert(model)
            except (ModelLoadError, EagerFailure) as exc:
                result = self._result(None, None, str(exc))
        self.timings["total_s"] = time.perf_counter() - start
        add_warnings(self.report, self.log.records)
        self.report["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        return ConversionResult(
            result.ok,
            result.method,
            result.torchscript_path,
            result.exported_path,
            json_safe(self.report),
            result.error,
        )

    def _convert(self, model: LoadedModel) -> ConversionResult:
        self.report["model"]["kind"] = model.kind
        self.device = model.device
        with self._timed("battery_s"):
            self.progress("building battery")
            battery = build_battery(self.spec, self.model_dir)
            self.report["battery_size"] = len(battery)
            reference = eager_reference(model.eager, battery, model.device, model.frames, self.progress)
            self.report["outputs"] = describe_outputs(battery, reference)
        order = PREFERENCE if self.requested == "auto" else (self.requested,)
        passed = [a for a in (self._candidate(name, model, battery, reference) for name in order) if a]
        if not passed:
            return self._result(None, None, self._no_candidate_error(order))
        chosen = passed[0]
        self.report["why"] = self._why(chosen, order, len(battery))
        final = self._optimize(chosen, model, battery, reference)
        self.report["shapes"] = per_shape(final.check.results)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torchscript_path = self.out_dir / ARTIFACT_NAME
        torchscript_path.write_bytes(final.data)
        if error := self._libtorch(torchscript_path, battery, reference):
            return self._result(None, None, error)
        self._latency(final, model, battery[0])
        return self._result(chosen.name, torchscript_path, None, self._export(model, battery, reference))

    def _candidate(
        self, name: str, model: LoadedModel, battery: list[BatteryCase], reference: list[Any]
    ) -> Artifact | None:
        self.progress(f"{name}: {'compiling' if name == 'script' else 'tracing'}")
        with self._timed(f"{name}_s"):
            if name == "script":
                outcome: Any = script_model(model)
                extra: dict[str, Any] = {}
            else:
                outcome = trace_model(model, self.spec, battery[0], reference[0], self.log)
                extra = {
                    "warnings": warning_entries(outcome.warnings),
                    "strict": outcome.strict,
                    "note": outcome.note,
                }
            hint, detail = outcome.hint, getattr(outcome, "detail", None)
            entry = self.report["candidates"][name] = {
                **candidate_entry(error=outcome.error, detail=detail, hint=hint, compile_s=outcome.seconds),
                **extra,
            }
            if outcome.artifact is None:
                return None
            try:
                data, loaded = save_and_reload(outcome.artifact, model.device)
            except Exception as exc:
                entry.update(
                    error=f"saving or reloading the {name} artifact failed: {describe_exception(exc)}"
                )
                return None
        started = time.perf_counter()
        with self._timed("battery_s"):
            check = self._check(loaded, name, battery, reference)
        if name == "trace" and not check.ok and hint is None:
            hint = (
                f"the trace was recorded on input {battery[0].label!r} and replays that run: "
                "shape- or data-dependent Python code is baked in"
            )
        entry.update(
            candidate_entry(
                error=None,
                detail=detail,
                hint=hint,
                check=check,
                compile_s=outcome.seconds,
                battery_s=time.perf_counter() - started,
            )
        )
        return Artifact(name, data, loaded, check) if check.ok else None

    def _optimize(
        self, chosen: Artifact, model: LoadedModel, battery: list[BatteryCase], reference: list[Any]
    ) -> Artifact:
        section = self.report["optimize"]
        if not self.spec.optimize:
            section["note"] = "optimize = false in the spec"
            return chosen
        self.progress("optimizing")
        with self._timed("optimize_s"):
            try:
                # freeze works on a copy; the accepted artifact's bytes stay as they are
                optimized = torch.jit.optimize_for_inference(torch.jit.freeze(chosen.loaded.eval()))
                data, loaded = save_and_reload(optimized, model.device)
            except Exception as exc:
                failure = describe_exception(exc)
                section["note"] = (
                    f"freeze/optimize_for_inference failed ({failure}); kept the unoptimized artifact"
                )
                return chosen
            check = self._check(loaded, "optimized", battery, reference)
            if not check.ok:
                section["note"] = f"the optimized artifact {check.error}; kept the unoptimized artifact"
                return chosen
            plain_ms = self._measure(chosen.loaded, battery[0]).median_ms
            optimized_ms = self._measure(loaded, battery[0]).median_ms
        section.update(unoptimized_ms=plain_ms, optimized_ms=optimized_ms)
        if optimized_ms > plain_ms * SLOWER_TOLERANCE:
            section["note"] = (
                f"the optimized artifact was slower ({optimized_ms:.3g} ms vs {plain_ms:.3g} ms "
                "median); kept the unoptimized artifact"
            )
            return chosen
        section.update(
            applied=True, note="frozen and optimized for inference; matches eager on the whole battery"
        )
        return Artifact(chosen.name, data, loaded, check)

    def _libtorch(self, path: Path, battery: list[BatteryCase], reference: list[Any]) -> str | None:
        v = self.spec.validation
        with self._timed("libtorch_s"):
            section = run_libtorch_stage(
                path, battery, reference, v.rtol, v.atol, self.progress, device=self.device
            )
        self.report["libtorch"] = section
        return libtorch_failure(section)

    def _latency(self, final: Artifact, model: LoadedModel, case: BatteryCase) -> None:
        self.progress("measuring latency")
        with self._timed("latency_s"):
            eager = self._measure(model.eager, case)
            artifact = self._measure(final.loaded, case)
        self.report["latency"] = latency_entry(
            case.label, eager.median_ms, artifact.median_ms, {"eager": eager.runs, "artifact": artifact.runs}
        )

    def _measure(self, fn: Any, case: BatteryCase) -> Latency:
        """Median latency of `fn` on `case`, measured once per callable (optimize and report share it)."""
        if id(fn) not in self._latencies:
            self._latencies[id(fn)] = (fn, measure(fn, case, self.device))
        return self._latencies[id(fn)][1]

    def _export(self, model: LoadedModel, battery: list[BatteryCase], reference: list[Any]) -> Path | None:
        self.progress("export")
        with self._timed("export_s"):
            outcome = export_model(model, self.spec, battery, reference, self.progress)
        check = outcome.check
        self.report["export"] = {
            "ok": outcome.ok,
            "error": outcome.error,
            "failed_input": outcome.failed_input,
            "notes": outcome.notes,
            "seconds": round(outcome.seconds, 4),
            "max_abs_error": check.max_abs_error if check else None,
            "max_rel_error": check.max_rel_error if check else None,
        }
        if outcome.data is None:
            return None
        path = self.out_dir / EXPORTED_NAME
        path.write_bytes(outcome.data)
        return path

    def _check(self, fn: Any, name: str, battery: list[BatteryCase], reference: list[Any]) -> CandidateCheck:
        v = self.spec.validation
        return check_candidate(
            fn, battery, reference, self.device, rtol=v.rtol, atol=v.atol, name=name, progress=self.progress
        )

    def _why(self, chosen: Artifact, order: tuple[str, ...], size: int) -> str:
        if len(order) == 1:
            return f"method = {chosen.name} was requested; it matches eager on all {size} inputs"
        other = next(n for n in order if n != chosen.name)
        entry = self.report["candidates"][other]
        if entry["ok"]:
            return (
                f"script and trace both match eager on all {size} inputs; script preferred because "
                "it keeps control flow and shape logic"
            )
        verb = "failed" if other == "script" else "was rejected"
        return f"{other} {verb}: {entry['error']}; {chosen.name} matches eager on all {size} inputs"

    def _no_candidate_error(self, order: tuple[str, ...]) -> str:
        reasons = "; ".join(f"{n}: {self.report['candidates'][n]['error']}" for n in order)
        return (
            f"neither method works: {reasons}"
            if len(order) > 1
            else f"{order[0]} failed: {reasons.split(': ', 1)[1]}"
        )

    def _result(
        self,
        method: str | None,
        torchscript_path: Path | None,
        error: str | None,
        exported_path: Path | None = None,
    ) -> ConversionResult:
        self.report["method"] = method
        self.report["error"] = error
        if error is not None:
            self.report["why"] = error
        return ConversionResult(error is None, method, torchscript_path, exported_path, self.report, error)

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start
