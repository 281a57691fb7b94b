"""Coverage recording on versus off (worker/model/recorder.py, issue 24), shared by engine_overhead.py,
end_to_end.py --coverage and coverage_overhead.py.

Off: `CoverageRecord.recording` (the reference runner's coverage.py tracer and conversion patch) and
`CoverageRecord.converting` (the conversion patch while the candidate builder traces) both replaced by
no-op context managers, as tests/engine/test_coverage.py does for the first. With recording off the
record holds no decision point, so the search (worker/model/search.py) has nothing to look for either;
with it on, `search` says how many forwards it tried (0 where every decision took both sides).

- `eager_breakdown`: the reference runner's eager pass over the battery, where the time goes: plain;
  with the conversion patch only; recorded (patch + coverage.py's tracer, then the search), split into
  start (patch + coverage start), run (the eager forwards under the tracer, and the search), stop
  (coverage stop and the per-context lines and arcs queries, recorder._lines) and as_json.
- `conversion`: `worker.inprocess.convert_model` with recording on and off, taking turns at going first,
  each from a collected heap, same seed; `ratio` is on / off of the best runs.

Standalone, for a model directory with a regctl.toml (end_to_end.py --coverage runs it per model, so
that its own process never imports torch); prints one JSON line:

    python -m benchmarks.coverage_support DIR [--repeats 2] [--eager-repeats 3] [--libtorch 0]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regctl.registry.spec import ModelSpec, load_spec
from regctl.worker.engine.battery import build_battery
from regctl.worker.inprocess import convert_model
from regctl.worker.judge.libtorch import SWITCH_ENV
from regctl.worker.model import recorder
from regctl.worker.model.eager import eager_reference
from regctl.worker.model.loader import loaded_model
from regctl.worker.model.search import search_untaken

SEED = 11
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIDES = ("off", "on")


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def recording(on: bool) -> Iterator[None]:
    """Coverage recording as the engine has it (`on`), or both recorder context managers as no-ops."""
    cls = recorder.CoverageRecord
    saved = {name: cls.__dict__[name] for name in ("recording", "converting")}
    if not on:
        for name in saved:
            setattr(cls, name, lambda self: contextlib.nullcontext(self))
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(cls, name, original)


@contextlib.contextmanager
def libtorch_stage(value: str) -> Iterator[None]:
    """REGCTL_LIBTORCH set to `value` for the block."""
    previous = os.environ.get(SWITCH_ENV)
    os.environ[SWITCH_ENV] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SWITCH_ENV, None)
        else:
            os.environ[SWITCH_ENV] = previous


def eager_breakdown(model_dir: Path, spec: ModelSpec, repeats: int, seed: int = SEED) -> dict[str, Any]:
    """The eager battery pass plain, with the conversion patch only, and recorded (module docstring)."""
    timed_lines = _TimedLines()
    best: dict[str, float] = {}
    search: Any = None
    points = 0

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    with loaded_model(Path(model_dir), spec) as model, timed_lines:
        battery = build_battery(spec, model.model_dir, seed=seed)
        args = (model.eager, battery, model.device, model.frames, _quiet)
        modes = ("plain", "converting", "recorded")
        for i in range(repeats):
            for mode in modes if i % 2 == 0 else modes[::-1]:
                gc.collect()
                record = recorder.CoverageRecord(model.frames)
                start, cpu = time.perf_counter(), time.process_time()
                if mode == "plain":
                    eager_reference(*args)
                    keep("plain_s", time.perf_counter() - start)
                    keep("plain_cpu_s", time.process_time() - cpu)
                    continue
                if mode == "converting":
                    with record.converting():
                        eager_reference(*args, record)
                    keep("converting_s", time.perf_counter() - start)
                    keep("converting_cpu_s", time.process_time() - cpu)
                    continue
                timed_lines.seconds = 0.0
                with record.recording():
                    running = time.perf_counter()
                    eager_reference(*args, record)
                    ran = time.perf_counter()
                    search = search_untaken(
                        model.eager, spec, seed, len(battery), model.device, record, ran - running, _quiet
                    )
                    stopping = time.perf_counter()
                stopped = time.perf_counter()
                points = len(record.points)
                record.as_json(len(battery))
                done = time.perf_counter()
                keep("recorded_s", done - start)
                keep("recorded_cpu_s", time.process_time() - cpu)
                keep("start_s", running - start)
                keep("run_s", ran - running)
                keep("search_s", stopping - ran)
                keep("stop_s", stopped - stopping)
                keep("lines_query_s", timed_lines.seconds)
                keep("as_json_s", done - stopped)
    plain = best["plain_s"]
    return {
        "cases": len(battery),
        **{k: round(v, 4) for k, v in best.items()},
        "ratio": round(best["recorded_s"] / plain, 3),
        "converting_ratio": round(best["converting_s"] / plain, 3),
        "cpu_ratio": round(best["recorded_cpu_s"] / best["plain_cpu_s"], 3),
        # the tracer: eager under coverage.py and the patch, less eager under the patch alone
        "tracer_s": round(best["run_s"] - best["converting_s"], 4),
        "decision_points": points,
        "search": {"targets": len(search.targets), "tried": search.tried, "stopped": search.stopped},
    }


class _TimedLines:
    """Wraps recorder._lines (the per-context lines and arcs queries at the end) to add up its time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = recorder._lines

    def __enter__(self) -> _TimedLines:
        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return self._original(*args)
            finally:
                self.seconds += time.perf_counter() - start

        recorder._lines = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        recorder._lines = self._original  # type: ignore[assignment]


def conversion(model_dir: Path, spec: ModelSpec, repeats: int, out: Path, seed: int = SEED) -> dict[str, Any]:
    """convert_model with recording on and off, taking turns at going first (module docstring)."""
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    cpus: dict[str, list[float]] = {side: [] for side in SIDES}
    reports: dict[str, dict[str, Any]] = {}
    oks: dict[str, bool] = {}
    for i in range(repeats):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            gc.collect()
            with recording(side == "on"):
                start, cpu = time.perf_counter(), time.process_time()
                result = convert_model(Path(model_dir), spec, out / f"{side}-{i}", seed=seed)
                times[side].append(time.perf_counter() - start)
                cpus[side].append(time.process_time() - cpu)
            if times[side][-1] == min(times[side]):  # the stage timings of each side's best run
                reports[side] = result.report
            oks[side] = oks.get(side, True) and result.ok
    on, off = times["on"], times["off"]
    coverage = reports["on"].get("coverage") or {}
    search = coverage.get("search") or {}
    stages = ("battery_s", "search_s", "trace_s", "script_s", "total_s")
    return {
        "ok": oks,
        "method": reports["on"].get("method"),
        "on_s": round(min(on), 4),
        "off_s": round(min(off), 4),
        "ratio": round(min(on) / min(off), 3),
        "ratio_median": round(statistics.median(on) / statistics.median(off), 3),
        # CPU time of this process (every thread): less disturbed than wall time by other work
        "cpu_ratio": round(min(cpus["on"]) / min(cpus["off"]), 3),
        "on_runs_s": [round(t, 3) for t in on],
        "off_runs_s": [round(t, 3) for t in off],
        "on_cpu_runs_s": [round(t, 3) for t in cpus["on"]],
        "off_cpu_runs_s": [round(t, 3) for t in cpus["off"]],
        "timings": {
            side: {k: reports[side]["timings"][k] for k in stages if k in reports[side]["timings"]}
            for side in SIDES
        },
        "decisions": len(coverage.get("decisions") or []),
        "search": {k: search.get(k) for k in ("ran", "tried", "targets", "stopped", "seconds")},
        "search_off": ((reports["off"].get("coverage") or {}).get("search") or {}).get("tried"),
    }


def added_share(eager: dict[str, Any], whole: dict[str, Any]) -> dict[str, float]:
    """What recording adds to the eager pass (best recorded less best plain), in seconds and as a share of
    the best conversion with recording off: steadier than `ratio` where other work disturbs whole runs."""
    added = eager["recorded_s"] - eager["plain_s"]
    return {"eager_added_s": round(added, 4), "eager_added_share": round(added / whole["off_s"], 4)}


def main() -> None:
    """Measure one model directory (module docstring); print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repeats", type=int, default=2, help="conversions per side")
    parser.add_argument("--eager-repeats", type=int, default=3, help="eager battery passes per mode")
    parser.add_argument("--libtorch", default="0", help="REGCTL_LIBTORCH for the conversions")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    spec = load_spec(args.directory)
    with tempfile.TemporaryDirectory(prefix="regctl-bench-cov-") as tmp, libtorch_stage(args.libtorch):
        # torch's one-off import costs (torch.export pulls in dynamo) and coverage.py's, on a small model
        convert_model(EXAMPLES / "linear", load_spec(EXAMPLES / "linear"), Path(tmp) / "warm-up", seed=SEED)
        eager = eager_breakdown(args.directory, spec, args.eager_repeats, args.seed)
        print(json.dumps({"eager": eager}), file=sys.stderr, flush=True)  # what a cut-short run leaves
        whole = conversion(args.directory, spec, args.repeats, Path(tmp), args.seed)
    print(json.dumps({"libtorch_stage": args.libtorch, "eager": eager, "conversion": whole}))


if __name__ == "__main__":
    main()
