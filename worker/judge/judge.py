"""The judge: proves candidate artifacts against the eager outputs, without ever importing model code.

Runs in the sandboxed judge process, a fresh fork of a template that has imported torch but no
model. It rebuilds the battery itself from the spec and the job's secret seed (recorded inputs are
read as safetensors), reads the eager outputs and `reference.json` the reference runner left and
`builder.json` the candidate builder left beside the candidates, and then:

1. Candidates, in order (`auto`: script then trace): each file the builder saved is loaded
   with torch.jit.load and run on the whole battery; the first case where it raises or differs
   from eager rejects it. Script is preferred when both pass; when none passes the conversion
   fails with every candidate's diagnosis. In a lean round (model_side.py) the builder saved
   the preferred candidate frozen and optimized for inference (when `optimize` is on and that was
   not slower); if that one fails, `retry` asks for the full round, where every candidate comes as
   compiled and the optimization's failure is reported.
2. (`optimize` is reported from what the builder did: the judge proves the form it saved.)
3. The LibTorch stage (libtorch.py): the saved artifact runs on the battery in a C++ process,
   whose outputs are compared here.
4. The kept artifact's latency beside eager's, as the candidate builder measured them (the two
   interleaved in its process, engine/latency.py): advisory, the model side's word, never part of
   the verdict; then the exported program, judged on the battery like a candidate (it never fails
   the conversion).

The builder never saw the battery (its examples are public, the battery's values come from a seed
drawn after its files were sealed), and the reference runner never saw the candidates, so an
artifact cannot answer the battery's inputs from memory.

Files written to out_dir: `result.json` (ok, method, error, retry, report). The artifacts are proved
where the builder left them and never copied; the report's `proved` section names each file
and the sha256 the battery ran on, so the supervisor stores exactly those bytes (and checks them
against the seal it took before the battery existed). Validation (`judge_validation`, in
validation.py) runs an existing artifact on the whole battery, LibTorch stage included.

Memory: a candidate is loaded from its file (no second copy of its bytes in memory) and the
candidates that lost are dropped as soon as the choice is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regctl.registry.digests import sha256_file
from regctl.registry.spec import METHODS, ModelSpec
from regctl.worker.contract import (
    BUILDER_FILE,
    RESULT_FILE,
    candidate_order,
)
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.calls import timed
from regctl.worker.engine.capture import WarningLog
from regctl.worker.engine.devices import ModelLoadError, device_for
from regctl.worker.engine.exchange import (
    CandidateSide,
    ExchangeError,
    ModelSide,
    WarningEntry,
    candidate_path,
    dumps,
    read_side,
)
from regctl.worker.engine.outputs import describe_outputs
from regctl.worker.judge.baked import baked_points, baked_verdict, coverage_gaps
from regctl.worker.judge.coverage import empty_coverage, judged_coverage
from regctl.worker.judge.evaluate import CandidateCheck, deciding_inputs, per_shape
from regctl.worker.judge.inputs import RunnerChoice, judge_inputs, latency_section, libtorch_stage, side_into
from regctl.worker.judge.libtorch import Runner, resolve_runner
from regctl.worker.judge.libtorch import failure as libtorch_failure
from regctl.worker.judge.program import judge_program
from regctl.worker.judge.report import (
    add_warnings,
    candidate_entry,
    json_safe,
    new_report,
)
from regctl.worker.judge.runtime_check import ArtifactLoadError, check_in_runtime
from regctl.worker.judge.verdicts import (
    candidate_hint,
    held_back_entry,
    judged_scope,
    no_candidate_error,
    why_kept,
)
from regctl.worker.judge.warm_runner import WarmRunners

MAX_LABELS = 20


@dataclass(frozen=True)
class JudgedArtifact:
    """A loaded TorchScript artifact, the file it was loaded from (and its sha256), and its battery result."""

    name: str
    path: Path
    sha256: str
    loaded: Any
    check: CandidateCheck
    libtorch: dict[str, Any] | None = None  # its LibTorch run over the whole battery, when that proved it


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion produced: the accepted artifact, the optional export, and the report."""

    ok: bool
    method: str | None  # "script" | "trace" chosen, None on failure
    torchscript_path: Path | None  # the model process's file the judge accepted (possibly optimized)
    exported_path: Path | None  # the model process's model.pt2 when torch.export worked and validated
    report: dict[str, Any]  # JSON-safe, see report.py
    error: str | None  # one line for the user when not ok
    retry: dict[str, Any] | None = None  # a lean round found nothing: the full round's `first_round`


def judge_conversion(
    model_dir: Path,
    spec: ModelSpec,
    candidates_dir: Path,
    reference_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    requested: str,
    runner: RunnerChoice = None,
    progress: Callable[[str], None] = lambda s: None,
    first_round: dict[str, Any] | None = None,
    outputs: Path | None = None,
) -> ConversionResult:
    """Judge the builder's candidates on the battery of `seed` (module docstring); writes result.json.

    `first_round` is the report of a lean round whose candidates all failed (this is the full round).
    `outputs` is the eager outputs' file the supervisor handed this role, when not in `reference_dir`.
    """
    if requested not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = _Sources(Path(model_dir), Path(candidates_dir), Path(reference_dir), seed, outputs)
    conversion = _Conversion(sources, spec, out_dir, requested, runner, progress, first_round)
    result = conversion.run()
    write_result(out_dir, result.ok, result.error, result.report, method=result.method, retry=result.retry)
    return result


@dataclass(frozen=True)
class _Sources:
    """Where a conversion's judge reads from: the model's files, the two model roles' outputs, the seed."""

    model_dir: Path
    candidates_dir: Path
    reference_dir: Path
    seed: int
    outputs: Path | None  # the eager outputs handed to this role; None: the reference directory's file


class _Conversion:
    """One judged conversion; holds the report while the stages fill it in."""

    def __init__(
        self,
        sources: _Sources,
        spec: ModelSpec,
        out_dir: Path,
        requested: str,
        runner: RunnerChoice,
        progress: Callable[[str], None],
        first_round: dict[str, Any] | None = None,
    ) -> None:
        self.sources, self.spec, self.out_dir = sources, spec, out_dir
        self.side_dir = sources.candidates_dir
        self.requested, self.runner, self.progress = requested, runner, progress
        self.first_round = first_round
        self.report = new_report(spec, requested)
        self.report["battery_seed"] = sources.seed
        self.timings = self.report["timings"]
        self.device = torch.device("cpu")
        self._resolved_runner: Runner | str | None = None
        self._warm: WarmRunners | None = None  # while the candidates are judged

    def run(self) -> ConversionResult:
        start = time.perf_counter()
        log = WarningLog(self.sources.model_dir)
        with log.capture():
            try:
                built = read_side(self.side_dir / BUILDER_FILE)
                side_into(self.report, built)
                with self._warming(built):  # LibTorch starts while the judge reads its inputs
                    result = self._judged(built)
            except (ExchangeError, ModelLoadError) as exc:
                result = self._result(None, None, str(exc))
        add_warnings(self.report, [r for r in log.records if r.from_torch])
        self.timings["total_s"] += time.perf_counter() - start
        self.report["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        report = json_safe(self.report)
        return ConversionResult(
            result.ok,
            result.method,
            result.torchscript_path,
            result.exported_path,
            report,
            result.error,
            result.retry,
        )

    def _judged(self, built: ModelSide) -> ConversionResult:
        """The builder's claims `built` judged on this job's battery and eager outputs."""
        ran, battery, reference, self.device = judge_inputs(
            self.sources.model_dir,
            self.spec,
            self.sources.reference_dir,
            self.sources.seed,
            self.progress,
            self.sources.outputs,
        )
        side_into(self.report, ran)
        if ran.error is None:
            self.report["coverage"] = judged_coverage(
                self.sources.reference_dir, self.sources.model_dir, self.spec, ran, battery
            )
        side = built.model_copy(update={"battery_size": ran.battery_size})
        error = built.error or ran.error
        return self._result(None, None, error) if error else self._convert(side, battery, reference)

    def _convert(self, side: ModelSide, battery: list[BatteryCase], reference: list[Any]) -> ConversionResult:
        self.report["outputs"] = describe_outputs(battery, reference)
        order = candidate_order(self.requested)
        passed: list[JudgedArtifact] = []
        for name in order:
            judged = self._candidate(name, side, battery, reference, kept=passed[0] if passed else None)
            if judged is not None:
                passed.append(judged)
        rejected = [n for n in order if side.candidates.get(n) and side.candidates[n].optimized]
        rejected = [n for n in rejected if not self.report["candidates"][n]["ok"]]
        if rejected:  # the optimization may be what broke it: the full round decides without it
            error = f"the optimized {rejected[0]} artifact {self.report['candidates'][rejected[0]]['error']}"
            return self._result(None, None, error, retry=True)
        held = [n for n in order if side.candidates.get(n) and side.candidates[n].held_back]
        if held and not passed and self.first_round is None:  # the full round saves and judges them
            return self._result(None, None, no_candidate_error(self.report["candidates"], order), retry=True)
        if not passed:
            return self._result(None, None, no_candidate_error(self.report["candidates"], order))
        chosen = passed[0]
        del passed  # the losing candidate's module is freed before anything else is built
        if chosen.name == "script":
            self._gap_warnings()
        self.report["why"] = why_kept(self.report["candidates"], chosen.name, order, len(battery))
        self._optimize_section(side.candidates[chosen.name])
        self.report["shapes"] = per_shape(chosen.check.results)
        # The artifact is the model process's file itself: proved here, stored as it is, never copied.
        self.report["proved"] = {"torchscript": chosen.sha256, "torchscript_file": chosen.path.name}
        self._latency(chosen, side)
        method, path, proved_in_cpp = chosen.name, chosen.path, chosen.libtorch
        # Released before the LibTorch runner loads the same file: never two copies of the weights.
        del chosen
        if proved_in_cpp is not None:  # its battery already ran in LibTorch: proven once, not twice
            self.report["libtorch"] = proved_in_cpp
        elif error := self._libtorch(path, battery, reference):
            return self._result(None, None, error)
        return self._result(method, path, None, self._export(side, battery, reference))

    def _gap_warnings(self) -> None:
        """A decision the battery took one way is a gap in script's proof: said, not refused."""
        gaps = coverage_gaps(self.report.get("coverage") or {})
        entries = [WarningEntry(category="CoverageGap", message=gap) for gap in gaps]
        add_warnings(self.report, entries)

    def _optimize_section(self, claimed: CandidateSide) -> None:
        """What the model process did to optimize the accepted artifact (or why it was not)."""
        section = self.report["optimize"]
        section.update(unoptimized_ms=claimed.unoptimized_ms, optimized_ms=claimed.optimized_ms)
        if not self.spec.optimize:
            section["note"] = "optimize = false in the spec"
        elif claimed.optimized:
            section.update(
                applied=True,
                note="frozen and optimized for inference; this form matches eager on the whole battery",
            )
        elif self.first_round is not None:
            section["note"] = self._first_round_note()
        else:
            section["note"] = claimed.optimize_note

    def _first_round_note(self) -> str:
        rejected = self.first_round or {}
        optimized = [n for n, c in (rejected.get("candidates") or {}).items() if c.get("optimized")]
        if optimized:
            entry = rejected["candidates"][optimized[0]]
            return f"the optimized artifact {entry.get('error')}; kept the unoptimized artifact"
        return "kept the artifact as compiled (the first round's candidates did not match eager)"

    def _candidate(
        self,
        name: str,
        side: ModelSide,
        battery: list[BatteryCase],
        reference: list[Any],
        *,
        kept: JudgedArtifact | None = None,
    ) -> JudgedArtifact | None:
        """Judge one candidate on the battery, or only on the deciding inputs once another is `kept`."""
        claimed = side.candidates.get(name)
        if claimed is None:
            self.report["candidates"][name] = candidate_entry(error=f"the model process did not try {name}")
            return None
        extra: dict[str, Any] = {}
        if name == "trace":
            extra = {"warnings": claimed.warnings, "strict": claimed.strict, "note": claimed.note}
        entry = self.report["candidates"][name] = {
            **candidate_entry(
                error=claimed.error, detail=claimed.detail, hint=claimed.hint, compile_s=claimed.compile_s
            ),
            **extra,
            "optimized": claimed.optimized,
        }
        if claimed.error is not None:
            return None
        if claimed.held_back:  # neither compiled nor saved: a first round's candidate after the preferred one
            kept_name = kept.name if kept else None
            entry.update(held_back_entry(name, kept_name, self.first_round is not None, side.weights_bytes))
            return None
        path = candidate_path(self.side_dir, claimed.file)
        if path is None:
            wrote = f"{claimed.file!r} is not a file the model process wrote"
            entry.update(error=f"saving or reloading the {name} artifact failed: {wrote}")
            return None
        cases, expected = battery, reference
        if kept is not None:  # its verdict can no longer change the choice: the deciding inputs decide it
            only = deciding_inputs(battery, self.report.get("coverage") or {})
            cases, expected = [battery[i] for i in only], [reference[i] for i in only]
        started = time.perf_counter()
        try:
            with timed(self.timings, "battery_s"):
                process = self._warm.take() if self._warm is not None else None
                runner, device = self._runner(), self.device
                ran = check_in_runtime(
                    path, name, cases, expected, self.spec, device, runner, self.progress, process=process
                )
        except ArtifactLoadError as exc:
            entry.update(error=f"saving or reloading the {name} artifact failed: {exc}")
            return None
        check, loaded = ran.check, ran.loaded
        entry.update(runtime=ran.runtime, runtime_note=ran.note)
        hint = candidate_hint(name, claimed.hint, check.ok, side.example)
        unproven = None
        if name == "trace" and check.ok:
            coverage = self.report.setdefault("coverage", empty_coverage())
            unproven = baked_verdict(coverage, baked_points(claimed), self.spec.validation.accept_baked)
        entry.update(
            candidate_entry(
                error=unproven,
                detail=claimed.detail,
                hint=hint,
                check=check,
                compile_s=claimed.compile_s,
                battery_s=time.perf_counter() - started,
            )
        )
        entry.update(judged_scope(name, entry["ok"], len(cases), kept.name if kept else None))
        if unproven is not None:
            entry["baked"] = True
            return None
        if not check.ok:
            return None
        return JudgedArtifact(name, path, ran.sha256, loaded, check, ran.section if kept is None else None)

    @contextmanager
    def _warming(self, built: ModelSide) -> Iterator[None]:
        """LibTorch runners started ahead of the candidate files they will run (warm_runner.py)."""
        order = candidate_order(self.requested)
        files = [n for n in order if (c := built.candidates.get(n)) and c.file and not c.error]
        runner = self._runner() if files and built.error is None else None
        try:
            device = device_for(self.spec.device)  # what judge_inputs finds, or refuses, next
        except ModelLoadError:
            runner = None
        if not isinstance(runner, Runner):
            yield
            return
        with WarmRunners(runner, str(device), len(files)) as self._warm:
            try:
                yield
            finally:
                self._warm = None

    def _runner(self) -> Runner | str:
        """The LibTorch runner the candidates run in, or why there is none (resolved once per job)."""
        if self._resolved_runner is None:
            with timed(self.timings, "libtorch_s"):
                self._resolved_runner = resolve_runner(self.runner)
        return self._resolved_runner

    def _libtorch(self, path: Path, battery: list[BatteryCase], reference: list[Any]) -> str | None:
        with timed(self.timings, "libtorch_s"):
            section = libtorch_stage(
                self._runner(), path, battery, reference, self.spec, self.device, self.progress
            )
        self.report["libtorch"] = section
        return libtorch_failure(section)

    def _latency(self, final: JudgedArtifact, side: ModelSide) -> None:
        # Not measured here: the builder timed this very form beside eager in one process.
        claimed = side.candidates[final.name].latency
        self.report["latency"] = latency_section(claimed, "the candidate builder")

    def _export(self, side: ModelSide, battery: list[BatteryCase], reference: list[Any]) -> Path | None:
        claimed = side.export
        section = self.report["export"]
        if claimed is None:
            return None
        section.update(error=claimed.error, notes=list(claimed.notes), seconds=claimed.seconds)
        section.update(failed_input=None, max_abs_error=None, max_rel_error=None, ok=False)
        path = candidate_path(self.side_dir, claimed.file)
        if claimed.error is not None or path is None:
            section["error"] = claimed.error or "the model process saved no exported program"
            return None
        self.progress("export")
        with timed(self.timings, "export_s"):
            outcome = judge_program(path, self.spec, self.device, battery, reference, self.progress)
        check = outcome.check
        section.update(
            ok=outcome.ok,
            error=outcome.error,
            failed_input=outcome.failed_input,
            seconds=round(claimed.seconds + outcome.seconds, 4),
            max_abs_error=check.max_abs_error if check else None,
            max_rel_error=check.max_rel_error if check else None,
        )
        if not outcome.ok:
            return None
        self.report["proved"].update(exported=sha256_file(path), exported_file=path.name)
        return path

    def _result(
        self,
        method: str | None,
        torchscript_path: Path | None,
        error: str | None,
        exported_path: Path | None = None,
        *,
        retry: bool = False,
    ) -> ConversionResult:
        self.report["method"] = method
        self.report["error"] = error
        if error is not None:
            self.report["why"] = error
        if self.first_round is not None:
            self.report["first_round"] = self.first_round
        # What the full round is told of this one: its verdict and each candidate's.
        full_round = json_safe({"error": error, "candidates": self.report["candidates"]}) if retry else None
        return ConversionResult(
            error is None, method, torchscript_path, exported_path, self.report, error, full_round
        )


def write_result(
    out_dir: Path,
    ok: bool,
    error: str | None,
    report: dict[str, Any],
    *,
    method: str | None = None,
    retry: dict[str, Any] | None = None,
) -> None:
    """The verdict the supervisor reads: result.json in `out_dir`, strict JSON."""
    payload = {"ok": ok, "error": error, "method": method, "report": report, "retry": retry}
    (out_dir / RESULT_FILE).write_text(dumps(payload))
