"""The model side of a job: the only engine code that imports and runs the model's own code.

It runs as two sandboxed roles that never meet (each a fresh fork, with its own uid and directory):

- the candidate builder (`build_candidates`) loads the model and compiles the candidates (script,
  trace, the `.pt2`) on the spec's public examples only (battery.example_cases). It never sees the
  battery: the supervisor seals (hashes) what it saved before the battery's seed exists.
- the reference runner (`run_reference`) loads the model and runs eager on the battery drawn from
  the job's secret seed, writing the eager outputs (`reference.pt`) and its timings. It never sees
  the candidates; in a validate job it sees the stored, already proven artifact, to time it.

Latency (engine/latency.py) is measured where both forms are: the builder times eager beside each
candidate it saves, the reference runner eager beside a validate job's artifact. Advisory figures,
the model side's word; the judge only copies them (validated) into the report.

Each writes a `ModelSide` JSON (builder.json, reference.json). Neither judges anything: whatever
they claim is checked by the judge, which never imports the model.

A `lean` build (a job's first round) writes each artifact once, in its final form: the preferred
candidate (the first that compiles) is frozen and optimized for inference here, kept unless it is
slower beyond the noise on the example (one interleaved measurement with eager), and the judge
proves and stores that very file. Every other candidate is saved as compiled, so the judge still
says why each one would be right or wrong, unless the model's weights are over
`contract.UNKEPT_MAX_BYTES`: then it is `held_back`, neither compiled nor saved. Should the preferred
candidate fail the judge's battery while it was optimized or another was held back, the job runs a
full round (`lean=False`): every candidate compiled and saved, so an optimization that breaks a
model, or a candidate held back, costs time, never the conversion.

Model problems (import errors, bad weights, a forward that raises) end up as `error` in the JSON;
only exceptions raised by the `progress` callback propagate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.contract import (
    BUILDER_FILE,
    COVERAGE_FILE,
    EXPORTED_FILE,
    REFERENCE_FILE,
    REFERENCE_SIDE_FILE,
    UNKEPT_MAX_BYTES,
    candidate_order,
)
from regctl.worker.engine.battery import BatteryCase, build_battery, example_cases
from regctl.worker.engine.calls import timed
from regctl.worker.engine.capture import WarningLog, describe_exception, warning_entries
from regctl.worker.engine.devices import ModelLoadError
from regctl.worker.engine.exchange import (
    CandidateSide,
    ExportSide,
    FoundInput,
    LatencyFigures,
    LatencyPair,
    ModelSide,
    SearchSide,
    UnsupportedOutput,
    WarningEntry,
    save_reference,
    write_json,
    write_side,
)
from regctl.worker.engine.latency import Latency, interleaved, slower_beyond_noise
from regctl.worker.model.eager import EagerFailure, eager_reference
from regctl.worker.model.export import export_program
from regctl.worker.model.loader import ENGINE_LOCK, LoadedModel, loaded_model
from regctl.worker.model.recorder import CoverageRecord
from regctl.worker.model.script import script_model
from regctl.worker.model.search import search_untaken
from regctl.worker.model.trace import trace_model

ERROR_CHARS = 2000  # one line for a person; model_side.json refuses anything much longer
DETAIL_CHARS = 100_000
WARNING_CHARS = 2000  # the exchange's cap on one warning's message


def clip(text: str | None, limit: int = ERROR_CHARS) -> str | None:
    """`text` cut to `limit` characters, marked when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def build_candidates(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    method: str | None = None,
    lean: bool = False,
    progress: Callable[[str], None] = lambda s: None,
) -> ModelSide:
    """The candidate builder: compile every candidate on the public examples; write builder.json."""
    return _side(
        model_dir,
        spec,
        out_dir,
        BUILDER_FILE,
        progress,
        lambda run: run.build(method or spec.method),
        lean=lean,
    )


def run_reference(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    seed: int,
    artifact: Path | None = None,
    outputs: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ModelSide:
    """The reference runner: eager on the battery of `seed`; write reference.json.

    The eager outputs go to `outputs`, the file the supervisor handed this role (in memory, so
    they never touch the disk), or else to out_dir/reference.pt. A validate job passes its stored
    `artifact` (already proven, so this role seeing it weakens nothing): eager and it are then
    timed interleaved here, the one process that can run both.
    """
    return _side(
        model_dir,
        spec,
        out_dir,
        REFERENCE_SIDE_FILE,
        progress,
        lambda run: run.reference(seed, artifact, outputs or Path(out_dir) / REFERENCE_FILE),
    )


def _side(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    file_name: str,
    progress: Callable[[str], None],
    work: Callable[[_ModelRun], None],
    *,
    lean: bool = False,
) -> ModelSide:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    side = ModelSide()
    log = WarningLog(Path(model_dir))
    start = time.perf_counter()
    with ENGINE_LOCK, log.capture():
        try:
            progress("loading model")
            mark = log.mark()
            with loaded_model(Path(model_dir), spec, before_rebuild=lambda: log.forget_since(mark)) as model:
                side.timings["load_s"] = time.perf_counter() - start
                side.kind = model.kind
                work(_ModelRun(model, spec, out_dir, side, log, progress, lean=lean))
        except (ModelLoadError, EagerFailure, UnsupportedOutput) as exc:
            side.error = clip(str(exc))
    side.warnings = [
        WarningEntry(**{**asdict(r), "message": clip(r.message, WARNING_CHARS), "count": log.count(r)})
        for r in log.records
        if r.category != "TracerWarning"
    ]
    side.warnings_dropped = log.dropped
    side.timings = {k: round(v, 4) for k, v in side.timings.items()}
    side.timings["model_total_s"] = round(time.perf_counter() - start, 4)
    write_side(out_dir / file_name, side)
    return side


class _ModelRun:
    """One role's run over the loaded model: the candidates, or the eager reference."""

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

    def reference(self, seed: int, artifact: Path | None, outputs: Path) -> None:
        """Eager on every battery case and on what the search finds, saved as plain tensors to
        `outputs`; with a stored `artifact` (a validate job), its latency beside eager's."""
        with timed(self.side.timings, "battery_s"):
            self.progress("building battery")
            battery = build_battery(self.spec, self.model.model_dir, seed=seed)
            self.side.battery_size = len(battery)
            record = CoverageRecord(self.model.frames, self.spec.entrypoint)
            with record.recording():
                started = time.perf_counter()
                reference = eager_reference(
                    self.model.eager, battery, self.model.device, self.model.frames, self.progress, record
                )
                with timed(self.side.timings, "search_s"):
                    found = search_untaken(
                        self.model.eager,
                        self.spec,
                        seed,
                        len(battery),
                        self.model.device,
                        record,
                        time.perf_counter() - started,
                        self.progress,
                    )
            self.side.search = SearchSide(
                targets=found.targets,
                found=[FoundInput(probe=i, flips=flips) for i, flips in found.found],
                tried=found.tried,
                raised=found.raised,
                seconds=found.seconds,
                budget_forwards=found.budget_forwards,
                budget_seconds=found.budget_seconds,
                stopped=found.stopped,
            )
            save_reference(reference + found.outputs, outputs)
            write_json(self.out_dir / COVERAGE_FILE, record.as_json(len(battery)))
        del reference
        if artifact is not None:
            self.side.latency = self._stored_latency(artifact)

    def build(self, requested: str) -> None:
        """Every candidate of `requested`, then the exported program if a format needs it; public examples."""
        examples = example_cases(self.spec)
        self.side.example = examples[0].label
        with timed(self.side.timings, "example_s"):
            first = eager_reference(
                self.model.eager, examples[:1], self.model.device, self.model.frames, self.progress
            )[0]
        for name in candidate_order(requested):
            self.side.candidates[name] = self._candidate(name, examples[0], first)
        if not self.spec.wants_program():
            return  # no format asked for needs the exported program: it costs nothing
        self.progress("export")
        with timed(self.side.timings, "export_s"):
            self.side.export = self._export(examples)

    def _candidate(self, name: str, example: BatteryCase, example_output: Any) -> CandidateSide:
        preferred = not any(c.file for c in self.side.candidates.values())
        if self.lean and not preferred and self._weights_bytes() > UNKEPT_MAX_BYTES:
            # built, saved and judged only if the preferred one fails (contract.py)
            return CandidateSide(held_back=True)
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
                outcome = trace_model(self.model, self.spec, example, example_output, self.log)
                entry = CandidateSide(
                    error=clip(outcome.error),
                    hint=clip(outcome.hint),
                    warnings=warning_entries(outcome.warnings),
                    strict=outcome.strict,
                    note=outcome.note,
                    baked=outcome.baked,
                )
            entry.compile_s = round(outcome.seconds, 4)
            if outcome.artifact is None:
                return entry
            artifact = outcome.artifact
            del outcome
        if self.lean and self.spec.optimize and preferred:
            with timed(self.side.timings, "optimize_s"):
                artifact = self._optimized(artifact, entry, example)
        # A lean round's other candidates are kept only when the preferred one fails unoptimized:
        # not worth timing them for every job (a large model's forms cost several calls each).
        if entry.latency is None and (preferred or not self.lean):
            entry.latency = self._latency(artifact, example)
        try:
            torch.jit.save(artifact, str(self.out_dir / f"{name}.pt"))
        except Exception as exc:
            entry.error = f"saving the {name} artifact failed: {describe_exception(exc)}"
            return entry
        entry.file = f"{name}.pt"
        return entry

    def _weights_bytes(self) -> int:
        """The bytes of the model's parameters and buffers, each storage counted once."""
        if not self.side.weights_bytes:
            module = self.model.eager if isinstance(self.model.eager, torch.nn.Module) else None
            tensors = [*module.parameters(), *module.buffers()] if module is not None else []
            storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
            self.side.weights_bytes = sum(storages.values())
        return self.side.weights_bytes

    def _optimized(self, artifact: Any, entry: CandidateSide, case: BatteryCase) -> Any:
        """The frozen, optimized-for-inference form when it builds and is not slower, else `artifact`.

        The judge proves whichever form is saved, so a wrong optimization fails the first round
        and the full round keeps the artifact as compiled.
        """
        self.progress("optimizing")
        try:
            optimized = torch.jit.optimize_for_inference(torch.jit.freeze(artifact.eval()))
            self.progress("measuring latency")
            # One interleaved measurement decides "never slower" and gives the report its figures.
            with timed(self.side.timings, "latency_s"):
                forms = {"eager": self.model.eager, "plain": artifact, "optimized": optimized}
                timed_forms = interleaved(forms, case, self.model.device, warm=self._eager_warm())
        except Exception as exc:
            entry.optimize_note = (
                f"freeze/optimize_for_inference failed ({describe_exception(exc)}); "
                "kept the unoptimized artifact"
            )
            return artifact
        eager, plain, fast = timed_forms["eager"], timed_forms["plain"], timed_forms["optimized"]
        entry.unoptimized_ms, entry.optimized_ms = plain.median_ms, fast.median_ms
        if slower_beyond_noise(fast, plain):
            entry.optimize_note = (
                f"the optimized artifact was slower beyond the noise ({_range(fast)} vs {_range(plain)} "
                "median and interquartile range); kept the unoptimized artifact"
            )
            entry.latency = _pair(case.label, eager, plain)
            return artifact
        entry.optimized = True
        entry.latency = _pair(case.label, eager, fast)
        return optimized

    def _latency(self, artifact: Any, case: BatteryCase) -> LatencyPair | None:
        """Eager and `artifact` timed interleaved on `case`; None when either raises there."""
        try:
            return self._measure(artifact, case)
        except Exception:  # the judge says why a candidate fails; a latency figure is advisory
            return None

    def _stored_latency(self, path: Path) -> LatencyPair | None:
        """A validate job's stored artifact timed beside eager, on the spec's first public example;
        None, with `latency_error` saying why, when it cannot be."""
        try:
            stored = torch.jit.load(str(path), map_location=self.model.device)
            return self._measure(stored, example_cases(self.spec)[0])
        except Exception as exc:  # the judge proves the artifact; a latency figure is advisory
            self.side.latency_error = clip(f"latency not measured: {describe_exception(exc)}")
            return None

    def _eager_warm(self) -> dict[str, float]:
        """Eager's call on the example (`build`), when this role made one: its first call for latency."""
        seconds = self.side.timings.get("example_s")
        return {"eager": seconds} if seconds else {}

    def _measure(self, artifact: Any, case: BatteryCase) -> LatencyPair:
        """Eager and `artifact` timed interleaved on `case`; raises what either raises there."""
        self.progress("measuring latency")
        with timed(self.side.timings, "latency_s"):
            forms = {"eager": self.model.eager, "artifact": artifact}
            both = interleaved(forms, case, self.model.device, warm=self._eager_warm())
        return _pair(case.label, both["eager"], both["artifact"])

    def _export(self, examples: list[BatteryCase]) -> ExportSide:
        outcome = export_program(self.model, self.spec, examples, self.out_dir / EXPORTED_FILE)
        side = ExportSide(
            error=clip(outcome.error),
            detail=clip(outcome.detail, DETAIL_CHARS),
            notes=outcome.notes,
            seconds=round(outcome.seconds, 4),
        )
        if outcome.saved is not None:
            side.file = EXPORTED_FILE
        return side


def _pair(label: str, eager: Latency, artifact: Latency) -> LatencyPair:
    return LatencyPair(input=label, eager=_figures(eager), artifact=_figures(artifact))


def _figures(latency: Latency) -> LatencyFigures:
    return LatencyFigures(
        median_ms=latency.median_ms, q1_ms=latency.q1_ms, q3_ms=latency.q3_ms, runs=latency.runs
    )


def _range(latency: Latency) -> str:
    """'0.23 ms (0.22–0.25)'."""
    return f"{latency.median_ms:.3g} ms ({latency.q1_ms:.3g}–{latency.q3_ms:.3g})"
