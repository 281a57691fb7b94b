"""`validate_artifact`: re-prove an existing TorchScript artifact against the eager model, in-process.

Used after the fact, e.g. once the workers run a newer torch. The reference runner recomputes the
eager outputs on a battery drawn from `seed` (fresh by default; a recorded one reproduces an earlier
run) and the judge runs the saved artifact on every case (no
early stop, so the report lists every failing input), then the LibTorch stage. Like
`convert_model`, this runs both halves in one process; jobs run them sandboxed and apart.

Report keys: ok, error, artifact (file name), model, battery_size, failures (count),
failed_inputs (the first 20 labels), shapes, libtorch, latency, latency_note (why it is None when
it is), torch_warnings, model_warnings,
versions, timings {load_s, battery_s, libtorch_s, latency_s, total_s}.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from regctl.registry.seeds import draw_seed
from regctl.registry.spec import ModelSpec
from regctl.worker.judge.validation import ValidationResult, judge_validation
from regctl.worker.model.model_side import run_reference

__all__ = ["ValidationResult", "validate_artifact"]


def validate_artifact(
    model_dir: Path,
    spec: ModelSpec,
    artifact_path: Path,
    *,
    seed: int | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ValidationResult:
    """Run the battery on the saved artifact at `artifact_path` against the eager model in `model_dir`."""
    seed = draw_seed() if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="regctl-validate-") as tmp:
        reference_dir, out_dir = Path(tmp) / "reference", Path(tmp) / "judge"
        run_reference(
            Path(model_dir), spec, reference_dir, seed=seed, artifact=Path(artifact_path), progress=progress
        )
        return judge_validation(
            Path(model_dir), spec, reference_dir, Path(artifact_path), out_dir, seed=seed, progress=progress
        )
