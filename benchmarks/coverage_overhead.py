"""What recording coverage and decision points (worker/model/recorder.py) adds to eager on the battery
and to a whole in-process conversion, for the 6-layer transformer of engine_overhead.py and the examples.

Per model: the reference runner's eager pass over the battery with and without a CoverageRecord
(the part recording slows), and convert_model with recording on and off (off: the recorder's
context manager replaced by a no-op), same seed, taking turns, best of `--repeats`.

    .venv/bin/python -m benchmarks.coverage_overhead [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.engine_overhead import TRANSFORMER_SOURCE, TRANSFORMER_SPEC
from regctl.registry.spec import ModelSpec, load_spec
from regctl.worker.engine.battery import build_battery
from regctl.worker.inprocess import convert_model
from regctl.worker.model import recorder
from regctl.worker.model.eager import eager_reference
from regctl.worker.model.loader import loaded_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEED = 11


def _eager_pass(model_dir: Path, spec: ModelSpec, repeats: int) -> dict[str, float]:
    with loaded_model(model_dir, spec) as model:
        battery = build_battery(spec, model.model_dir, seed=SEED)
        best = {"plain_s": float("inf"), "recorded_s": float("inf")}
        for _ in range(repeats):
            for key in best:
                start = time.perf_counter()
                if key == "plain_s":
                    eager_reference(model.eager, battery, model.device, model.frames, lambda s: None)
                else:
                    record = recorder.CoverageRecord(model.frames)
                    with record.recording():
                        eager_reference(
                            model.eager, battery, model.device, model.frames, lambda s: None, record
                        )
                best[key] = min(best[key], time.perf_counter() - start)
    return {**best, "cases": len(battery)}


def _conversion(model_dir: Path, spec: ModelSpec, repeats: int, out: Path) -> dict[str, float]:
    original = recorder.CoverageRecord.recording
    best = {"off_s": float("inf"), "on_s": float("inf")}
    for i in range(repeats):
        for key in best if i % 2 == 0 else reversed(list(best)):
            recorder.CoverageRecord.recording = (  # type: ignore[method-assign]
                original if key == "on_s" else (lambda self: contextlib.nullcontext(self))
            )
            start = time.perf_counter()
            convert_model(model_dir, spec, out / f"{key}{i}", seed=SEED)
            best[key] = min(best[key], time.perf_counter() - start)
    recorder.CoverageRecord.recording = original  # type: ignore[method-assign]
    return best


def main() -> None:
    """Print the overhead per model as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="transformer,conditional,linear,tiny-transformer")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models.split(","):
            if name == "transformer":
                model_dir, spec = root / "transformer", TRANSFORMER_SPEC
                model_dir.mkdir()
                (model_dir / "model.py").write_text(textwrap.dedent(TRANSFORMER_SOURCE))
            else:
                model_dir, spec = EXAMPLES / name, load_spec(EXAMPLES / name)
            eager = _eager_pass(model_dir, spec, args.repeats)
            whole = _conversion(model_dir, spec, args.repeats, root / f"out-{name}")
            results[name] = {
                **{k: round(v, 4) for k, v in {**eager, **whole}.items()},
                "eager_overhead": round(eager["recorded_s"] / eager["plain_s"] - 1, 4),
                "conversion_overhead": round(whole["on_s"] / whole["off_s"] - 1, 4),
            }
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
