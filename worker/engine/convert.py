"""`convert_model`: the model side and the judge run one after the other in this process.

For the engine's own unit tests and for tools that trust the model (a notebook checking its own
model): there is no isolation here. Jobs never use it: the supervisor (worker/supervisor.py) runs
the model side and the judge in separate sandboxed processes, so a model can never judge itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from registry.spec import METHODS, ModelSpec
from worker.engine.judge import ARTIFACT_NAME, EXPORTED_NAME, ConversionResult, judge_conversion
from worker.engine.model_side import run_model_side

__all__ = ["ARTIFACT_NAME", "EXPORTED_NAME", "ConversionResult", "convert_model"]
SIDE_DIR = "model-side"


def convert_model(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    method: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ConversionResult:
    """Convert the model in `model_dir` to TorchScript and prove it on the battery, in-process.

    Files written to out_dir: model.pt (when ok), model.pt2 (when the export validated), the model
    side's files under model-side/.
    """
    requested = method or spec.method
    if requested not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
    side_dir = Path(out_dir) / SIDE_DIR
    run_model_side(Path(model_dir), spec, side_dir, kind="convert", method=requested, progress=progress)
    return judge_conversion(
        Path(model_dir), spec, side_dir, Path(out_dir), requested=requested, progress=progress
    )
