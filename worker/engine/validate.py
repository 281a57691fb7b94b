"""`validate_artifact`: re-prove an existing TorchScript artifact against the eager model, in-process.

Used after the fact, e.g. once the workers run a newer torch. The model side recomputes the eager
outputs (the battery is deterministic) and the judge runs the saved artifact on every case (no
early stop, so the report lists every failing input), then the LibTorch stage. Like
`convert_model`, this runs both halves in one process; jobs run them sandboxed and apart.

Report keys: ok, error, artifact (file name), model, battery_size, failures (count),
failed_inputs (the first 20 labels), shapes, libtorch, latency, torch_warnings, model_warnings,
versions, timings {load_s, battery_s, libtorch_s, latency_s, total_s}.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.judge import ValidationResult, judge_validation
from regctl.worker.engine.model_side import run_model_side

__all__ = ["ValidationResult", "validate_artifact"]


def validate_artifact(
    model_dir: Path, spec: ModelSpec, artifact_path: Path, *, progress: Callable[[str], None] = lambda s: None
) -> ValidationResult:
    """Run the battery on the saved artifact at `artifact_path` against the eager model in `model_dir`."""
    with tempfile.TemporaryDirectory(prefix="regctl-validate-") as tmp:
        side_dir, out_dir = Path(tmp) / "model-side", Path(tmp) / "judge"
        run_model_side(Path(model_dir), spec, side_dir, kind="validate", progress=progress)
        return judge_validation(
            Path(model_dir), spec, side_dir, Path(artifact_path), out_dir, progress=progress
        )
