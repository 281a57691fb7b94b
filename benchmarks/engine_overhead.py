"""What regctl's engine costs over a bare conversion script doing the same work, and its sandbox per job.

For each example model and a 6-layer nn.TransformerEncoder (d_model 256, 4 heads, batch_first,
dynamic batch and seq; built from code with a fixed seed in a temporary model dir), time:

  regctl  `worker.inprocess.convert_model` on the default path (load, battery, script + trace,
          save/reload, comparison on the battery, the candidate not kept on its deciding inputs,
          freeze + optimize_for_inference and its comparison, latency; no export).
  bare    the same work written plainly: import the model file, compute eager outputs on the
          same battery (same inputs, same count), torch.jit.script and torch.jit.trace (trace
          skipped where the spec has scalar inputs, as regctl does), each saved to bytes,
          loaded back and compared with torch.allclose input by input (stopping at the first
          mismatch, as regctl does; the second candidate, once the first passed, on each shape's
          first draw only), freeze + optimize_for_inference of the first passing candidate with
          save/reload/comparison. Like regctl's default formats, neither side exports (torch.export
          with the same dynamic shapes, save/load and comparison where a spec asks for it).

What regctl does on top, and is counted as its overhead: the private import namespace, the
warning capture, per-element error metrics, the report, coverage recording, and the latency
measurements that decide whether the optimized artifact is kept (the bare script keeps it
unconditionally). A third side, taking turns with the two, runs convert_model with coverage
recording and the latency measurement as no-ops (benchmarks/unmeasured.py): `ratio_unmeasured`
is its best against bare's, the engine's own cost; `measurements_share` is what the two
measurements add, as a share of bare's time (regctl - unmeasured, over bare).

The LibTorch stage (the artifact re-run on the battery by a C++ runner with no Python) has no
counterpart in a bare script, so the timed comparison runs with REGCTL_LIBTORCH=0; one more
conversion per model with the stage on reports what it adds (`libtorch_s`, `libtorch_ok`).

Each model is timed `--repeats` times, bare and regctl taking turns at going first and each run
starting from a collected heap, after one warm-up conversion
that pays torch's one-off import costs (torch.export pulls in dynamo). `ratio` compares the best
of the repeats on each side (the least disturbed by other processes on a shared machine, and
the figure the 1.2x target applies to); `ratio_median` compares the medians.
Every repeat imports the model afresh on both sides, so TorchScript's per-class compilation
cache helps neither.

End to end per job, sandbox on versus off (`end_to_end`, for linear and the transformer by
default): what a worker does for a convert job and then a validate job, through the supervisor,
timed from laying out the first job directory to the judge's verdict on the second:
`worker.supervisor.run_conversion` in a fresh job directory, then `run_validation` in another one
with the judge's model.pt copied in as the stored artifact, with REGCTL_SANDBOX=auto (model
process and judge in namespaces, a private root, an unprivileged uid when run as root, rlimits)
against REGCTL_SANDBOX=off (the same processes forked from the same warm zygote, unconfined).
One throwaway job per setting warms the zygote (torch's import) first; the two settings take
turns at going first, `--repeats` times per model. The LibTorch stage is on, as in a worker, and
costs both sides the same. `sandbox_ratio` (on / off) compares the best of the repeats, the figure
the targets apply to (at most 1.15 for linear, 1.05 for the transformer); `sandbox_ratio_median`
compares the medians. Prints one JSON document.

Coverage recording on versus off (`coverage`, issue 24; for the transformer by default,
--coverage-models): benchmarks/coverage_support.py's `eager_breakdown` (the reference runner's
eager battery pass plain, with the conversion patch only, and recorded, with where the time goes)
and `conversion` (convert_model with the recorder's context managers as they are against no-ops,
taking turns, same seed, best of `--repeats`, LibTorch stage off on both sides). `ratio` is on / off,
`cpu_ratio` the same in this process's CPU time; the target is a ratio of at most 1.10 for the
transformer. `search.tried` is how many forwards the search ran (0 where no decision went one way).

    .venv/bin/python benchmarks/engine_overhead.py [--repeats 3] [--models linear,transformer]
        [--sandbox-models linear,transformer] [--coverage-models transformer]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import coverage_support  # noqa: E402
from benchmarks.unmeasured import measurements_off  # noqa: E402
from regctl.registry.figures import ratio_text  # noqa: E402
from regctl.registry.settings import Settings  # noqa: E402
from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec, load_spec  # noqa: E402
from regctl.worker.engine.battery import build_battery  # noqa: E402
from regctl.worker.inprocess import convert_model  # noqa: E402
from regctl.worker.judge.libtorch import SWITCH_ENV  # noqa: E402
from regctl.worker.model.export import dynamic_shapes, export_example  # noqa: E402
from regctl.worker.sandbox.client import shared_zygote  # noqa: E402
from regctl.worker.sandbox.uids import job_uids  # noqa: E402
from regctl.worker.supervisor.supervisor import JudgedJob, WorkDir, run_conversion, run_validation  # noqa: E402

EXAMPLES = ("linear", "dynamic-loop", "conditional", "varlen-sequence", "script-fails")
TARGET_RATIO = 1.2
SANDBOX_TARGETS = {"linear": 1.15, "transformer": 1.05}  # end to end per job, sandbox on / off
SANDBOX_MODES = ("auto", "off")  # on, off
COVERAGE_TARGETS = {"transformer": 1.10}  # a conversion with coverage recording on / off
CPU = torch.device("cpu")

TRANSFORMER_SOURCE = """
import torch
from torch import nn


def build() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
"""

TRANSFORMER_SPEC = ModelSpec(
    inputs=(InputSpec("x", "float32", ("batch", "seq", 256)),),
    dims={"batch": DimSpec("batch", 1, 4, 2, batch=True), "seq": DimSpec("seq", 1, 128, 32)},
    # the eager fast path (fused attention kernels) and TorchScript's graph round differently
    validation=ValidationSpec(rtol=1e-4, atol=1e-4, samples=2),
)


def bare_convert(model_dir: Path, spec: ModelSpec) -> dict[str, Any]:
    """The honest plain-torch equivalent of convert_model (see the module docstring)."""
    module = _import_fresh(model_dir / spec.entrypoint.split(":")[0])
    model = getattr(module, spec.entrypoint.split(":")[1])()
    if isinstance(model, torch.nn.Module):
        model.eval()
    battery = build_battery(spec, model_dir)
    with torch.no_grad():
        expected = [model(*case.clone_args(CPU)) for case in battery]
    bare = _Bare(battery, expected, spec.validation.rtol, spec.validation.atol)
    passed = []
    for method in ("script", "trace"):
        if method == "trace" and any(i.is_scalar for i in spec.inputs):
            continue
        try:
            with torch.no_grad():
                artifact = (
                    torch.jit.script(model)
                    if method == "script"
                    else torch.jit.trace(model, battery[0].clone_args(CPU), check_trace=False)
                )
        except Exception:
            continue
        loaded = _reload(artifact)
        # Once one passed the other cannot change the choice: like regctl, check it on each shape's
        # first draw (the core of regctl's deciding inputs), not on the whole battery.
        if bare.matches(loaded, first_draws=bool(passed)):
            passed.append(loaded)
    optimized_ok = bare.matches(_reload(torch.jit.optimize_for_inference(torch.jit.freeze(passed[0].eval()))))
    return {
        "candidates_passed": len(passed),
        "optimized_ok": optimized_ok,
        # like regctl's default path (formats = ["torchscript"]): exported only when a format needs it
        "exported": bare.export(model, spec) if spec.wants_program() else None,
    }


class _Bare:
    """The comparisons and the export of the bare script."""

    def __init__(self, battery: list[Any], expected: list[torch.Tensor], rtol: float, atol: float) -> None:
        self.battery, self.expected, self.rtol, self.atol = battery, expected, rtol, atol

    def matches(self, fn: Any, *, first_draws: bool = False) -> bool:
        seen: set[Any] = set()
        with torch.no_grad():
            for case, want in zip(self.battery, self.expected, strict=True):
                if first_draws:
                    if case.group in seen:
                        continue
                    seen.add(case.group)
                try:
                    got = fn(*case.clone_args(CPU))
                except Exception:
                    return False
                same_shape = got.shape == want.shape
                if not (same_shape and torch.allclose(got, want, self.rtol, self.atol, equal_nan=True)):
                    return False
        return True

    def export(self, model: Any, spec: ModelSpec) -> bool:
        target = model if isinstance(model, torch.nn.Module) else _Wrap(model)
        example = export_example(spec, self.battery).clone_args(CPU)
        try:
            with _quiet_torch():  # as regctl does: torch.export logs and prints partial graphs on failure
                shapes = dynamic_shapes(spec, target is not model)
                program = torch.export.export(target, example, dynamic_shapes=shapes)
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            return self.matches(torch.export.load(io.BytesIO(buffer.getvalue())).module())
        except Exception:
            return False


def _reload(artifact: Any) -> Any:
    buffer = io.BytesIO()
    torch.jit.save(artifact, buffer)
    return torch.jit.load(io.BytesIO(buffer.getvalue()))


@contextmanager
def _quiet_torch() -> Iterator[None]:
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


class _Wrap(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def _import_fresh(path: Path) -> Any:
    name = f"_bare_model_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # TorchScript resolves classes through sys.modules
    spec.loader.exec_module(module)
    return module


@contextmanager
def _libtorch_stage(value: str) -> Iterator[None]:
    previous = os.environ.get(SWITCH_ENV)
    os.environ[SWITCH_ENV] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[SWITCH_ENV]
        else:
            os.environ[SWITCH_ENV] = previous


def measure(name: str, model_dir: Path, spec: ModelSpec, repeats: int, out_root: Path) -> dict[str, Any]:
    bare_times: list[float] = []
    regctl_times: list[float] = []
    unmeasured_times: list[float] = []
    results = []

    def run_bare() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bare_convert(model_dir, spec)

    def run_regctl() -> None:
        with _libtorch_stage("0"):
            results.append(convert_model(model_dir, spec, out_root / f"{name}-{len(results)}"))

    def run_unmeasured() -> None:
        with _libtorch_stage("0"), measurements_off():
            convert_model(model_dir, spec, out_root / f"{name}-unmeasured-{len(unmeasured_times)}")

    for i in range(repeats):
        # alternate who goes first, and start each from a collected heap, so that neither side
        # pays for the garbage the other left behind
        turns = [(run_bare, bare_times), (run_regctl, regctl_times), (run_unmeasured, unmeasured_times)]
        for side, times in turns if i % 2 == 0 else turns[::-1]:
            gc.collect()
            start = time.perf_counter()
            side()
            times.append(time.perf_counter() - start)
    result = results[-1]
    report = result.report
    with _libtorch_stage("1"):
        with_libtorch = convert_model(model_dir, spec, out_root / f"{name}-libtorch").report
    bare, regctl, unmeasured = min(bare_times), min(regctl_times), min(unmeasured_times)
    return {
        "ok": result.ok,
        "method": result.method,
        "battery_size": report["battery_size"],
        "regctl_s": round(regctl, 4),
        "bare_s": round(bare, 4),
        "ratio": round(regctl / bare, 3),
        "ratio_median": round(statistics.median(regctl_times) / statistics.median(bare_times), 3),
        "unmeasured_s": round(unmeasured, 4),
        "ratio_unmeasured": round(unmeasured / bare, 3),
        "measurements_share": round((regctl - unmeasured) / bare, 3),
        "regctl_runs_s": [round(t, 3) for t in regctl_times],
        "bare_runs_s": [round(t, 3) for t in bare_times],
        "artifact_vs_eager_latency": ratio_text(report["latency"]),  # two significant figures, its spread
        "eager_ms": report["latency"] and round(report["latency"]["eager_ms"], 4),
        "artifact_ms": report["latency"] and round(report["latency"]["artifact_ms"], 4),
        "optimized_kept": report["optimize"]["applied"],
        "optimize_note": report["optimize"]["note"],
        "exported": result.exported_path is not None,
        "regctl_timings": report["timings"],
        "libtorch_s": with_libtorch["timings"].get("libtorch_s"),
        "libtorch_ok": with_libtorch.get("libtorch", {}).get("ok"),
    }


def end_to_end_job(settings: Settings, model_dir: Path, spec: ModelSpec) -> tuple[float, dict[str, Any]]:
    """A convert job and a validate job of its TorchScript through the supervisor; seconds and outcome."""
    with (
        tempfile.TemporaryDirectory(prefix="regctl-job-") as convert_tmp,
        tempfile.TemporaryDirectory(prefix="regctl-job-") as validate_tmp,
    ):
        convert_root, validate_root = Path(convert_tmp), Path(validate_tmp)
        for job_root in (convert_root, validate_root):  # the extracted source bundle, as in a worker
            shutil.copytree(model_dir, job_root / "model")
        gc.collect()
        start = time.perf_counter()
        with job_uids(settings.sandbox_uid, settings.sandbox != "off") as lease:  # as a worker does
            uids = lease.by_role if lease is not None else {}
            work = WorkDir.create(convert_root, convert_root / "model", None, uids)
            converted = run_conversion(settings, spec, work, spec.method, _ignore, _no_cancel)
        validated = None
        if converted.ok and converted.torchscript_path is not None:
            artifact = validate_root / "artifact" / "model.pt"
            artifact.parent.mkdir()
            shutil.copyfile(converted.torchscript_path, artifact)
            with job_uids(settings.sandbox_uid, settings.sandbox != "off") as lease:
                uids = lease.by_role if lease is not None else {}
                work = WorkDir.create(validate_root, validate_root / "model", artifact, uids)
                validated = run_validation(settings, spec, work, _ignore, _no_cancel)
        took = time.perf_counter() - start
    return took, _outcome(converted, validated)


def _ignore(_: str) -> None:
    pass


def _no_cancel() -> None:
    pass


def _outcome(converted: JudgedJob, validated: JudgedJob | None) -> dict[str, Any]:
    judge = (converted.report.get("sandbox") or {}).get("judge") or {}
    final = validated or converted
    return {
        "ok": converted.ok and validated is not None and validated.ok,
        "error": converted.error if validated is None else validated.error,
        "method": converted.method,
        "sandbox_mode": judge.get("mode"),
        "namespaces": judge.get("namespaces"),
        "missing": judge.get("missing"),
        "libtorch_ok": (final.report.get("libtorch") or {}).get("ok"),
    }


def measure_sandbox(
    name: str, model_dir: Path, spec: ModelSpec, repeats: int, settings: dict[str, Settings]
) -> dict[str, Any]:
    """End to end per job with the sandbox on and off, taking turns at going first."""
    times: dict[str, list[float]] = {mode: [] for mode in SANDBOX_MODES}
    outcomes: dict[str, dict[str, Any]] = {}
    with _libtorch_stage("1"):
        for i in range(repeats):
            for mode in SANDBOX_MODES if i % 2 == 0 else SANDBOX_MODES[::-1]:
                took, outcomes[mode] = end_to_end_job(settings[mode], model_dir, spec)
                times[mode].append(took)
    on, off = times["auto"], times["off"]
    ratio = min(on) / min(off)
    target = SANDBOX_TARGETS.get(name)
    ok = all(o["ok"] for o in outcomes.values())
    return {
        "on_s": round(min(on), 4),
        "off_s": round(min(off), 4),
        "sandbox_ratio": round(ratio, 3),
        "sandbox_ratio_median": round(statistics.median(on) / statistics.median(off), 3),
        "on_runs_s": [round(t, 3) for t in on],
        "off_runs_s": [round(t, 3) for t in off],
        "target": target,
        "meets_target": None if target is None else ok and ratio <= target,
        "on": outcomes["auto"],
        "off": outcomes["off"],
    }


def measure_coverage(
    name: str, model_dir: Path, spec: ModelSpec, repeats: int, out_root: Path
) -> dict[str, Any]:
    """Coverage recording on versus off: the eager battery pass and a whole conversion (module docstring)."""
    eager = coverage_support.eager_breakdown(model_dir, spec, repeats)
    with _libtorch_stage("0"):
        whole = coverage_support.conversion(model_dir, spec, repeats, out_root / f"{name}-coverage")
    target = COVERAGE_TARGETS.get(name)
    return {
        "ratio": whole["ratio"],
        "cpu_ratio": whole["cpu_ratio"],
        "target": target,
        "meets_target": None if target is None else all(whole["ok"].values()) and whole["ratio"] <= target,
        "search_tried": whole["search"]["tried"],
        **coverage_support.added_share(eager, whole),
        "conversion": whole,
        "eager": eager,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join((*EXAMPLES, "transformer")))
    parser.add_argument(
        "--sandbox-models",
        default=",".join(SANDBOX_TARGETS),
        help="Models among --models also timed end to end per job, sandbox on versus off.",
    )
    parser.add_argument(
        "--coverage-models",
        default="transformer",
        help="Models timed with coverage recording on versus off (any of the known ones; '' for none).",
    )
    args = parser.parse_args()
    wanted = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        transformer_dir = root / "transformer"
        transformer_dir.mkdir()
        (transformer_dir / "model.py").write_text(textwrap.dedent(TRANSFORMER_SOURCE))
        models = {n: (ROOT / "examples" / n, load_spec(ROOT / "examples" / n)) for n in EXAMPLES}
        models["transformer"] = (transformer_dir, TRANSFORMER_SPEC)
        sandboxed = [n for n in args.sandbox_models.split(",") if n in wanted and n in models]
        # Sandbox on versus off first, while this process, the jobs' supervisor, has run no torch
        # code: a worker's supervisor never does, and this process's own thread pools would
        # otherwise compete with the sandboxed processes for the cores.
        end_to_end = {}
        if sandboxed:
            settings = {
                mode: Settings.from_env({"REGCTL_HOME": str(root / "home"), "REGCTL_SANDBOX": mode})
                for mode in SANDBOX_MODES
            }
            try:
                with _libtorch_stage("1"):  # the zygote's torch import, one job per setting
                    for mode in SANDBOX_MODES:
                        end_to_end_job(settings[mode], *models["linear"])
                end_to_end = {n: measure_sandbox(n, *models[n], args.repeats, settings) for n in sandboxed}
            finally:
                shared_zygote().close()
        with _libtorch_stage("1"):  # torch's one-off import costs for both sides, and the C++ runner build
            convert_model(*models["linear"], root / "warm-up")
        results = {n: measure(n, d, s, args.repeats, root) for n, (d, s) in models.items() if n in wanted}
        covered = [n for n in args.coverage_models.split(",") if n in models]
        coverage = {n: measure_coverage(n, *models[n], args.repeats, root) for n in covered}
    targeted = [r for r in end_to_end.values() if r["target"] is not None]
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "target_ratio": TARGET_RATIO,
                "within_target": all(r["ratio"] <= TARGET_RATIO for r in results.values()),
                "within_target_unmeasured": all(
                    r["ratio_unmeasured"] <= TARGET_RATIO for r in results.values()
                ),
                "models": results,
                "end_to_end": {
                    "measured": "run_conversion + run_validation of its model.pt, REGCTL_SANDBOX=auto vs off",
                    "libtorch_stage": "on, both sides",
                    "sandbox_targets": {n: SANDBOX_TARGETS[n] for n in end_to_end if n in SANDBOX_TARGETS},
                    "within_target": all(r["meets_target"] for r in targeted) if targeted else None,
                    "models": end_to_end,
                },
                "coverage": {
                    "measured": "convert_model, CoverageRecord.recording/converting as they are vs no-ops",
                    "libtorch_stage": "off, both sides",
                    "targets": {n: COVERAGE_TARGETS[n] for n in coverage if n in COVERAGE_TARGETS},
                    "models": coverage,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
