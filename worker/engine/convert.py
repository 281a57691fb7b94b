"""`convert_model`: the model side and the judge run one after the other in this process.

For the engine's own unit tests and for tools that trust the model (a notebook checking its own
model): there is no isolation here. Jobs never use it: the supervisor (worker/supervisor.py) runs
the model side and the judge in separate sandboxed processes, so a model can never judge itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from regctl.registry.spec import METHODS, ModelSpec
from regctl.worker.engine.judge import ConversionResult, judge_conversion
from regctl.worker.engine.model_side import run_model_side

__all__ = ["ConversionResult", "convert_model"]
SIDE_DIR = "model-side"
FULL_DIR = "full"


def convert_model(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    method: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ConversionResult:
    """Convert the model in `model_dir` to TorchScript and prove it on the battery, in-process.

    A lean round first (model_side.py), then the full round only if the judge asks for it. The
    artifacts stay where the model side saved them (under out_dir/model-side/, or
    out_dir/full/model-side/ after a full round); `torchscript_path` and `exported_path` name them.
    """
    requested = method or spec.method
    if requested not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
    out_dir = Path(out_dir)
    result = _round(Path(model_dir), spec, out_dir, requested, progress, None)
    if result.retry is None:
        return result
    return _round(Path(model_dir), spec, out_dir / FULL_DIR, requested, progress, result.retry)


def _round(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    requested: str,
    progress: Callable[[str], None],
    first: dict[str, Any] | None,
) -> ConversionResult:
    side_dir = out_dir / SIDE_DIR
    lean = first is None
    run_model_side(model_dir, spec, side_dir, kind="convert", method=requested, lean=lean, progress=progress)
    return judge_conversion(
        model_dir, spec, side_dir, out_dir, requested=requested, progress=progress, first_round=first
    )
