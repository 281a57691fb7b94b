"""`convert_model`: the builder, the reference runner and the judge run one after the other in this process.

For the engine's own unit tests and for tools that trust the model (a notebook checking its own
model): there is no isolation here. Jobs never use it: the supervisor (worker/supervisor/supervisor.py) runs
the three roles in separate sandboxed processes, so a model can never judge itself nor see the
battery it is judged on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regctl.registry.seeds import draw_seed
from regctl.registry.spec import METHODS, ModelSpec
from regctl.worker.judge.judge import ConversionResult, judge_conversion
from regctl.worker.model.model_side import build_candidates, run_reference

__all__ = ["ConversionResult", "convert_model"]
BUILDER_DIR = "builder"
REFERENCE_DIR = "reference"
FULL_DIR = "full"


def convert_model(
    model_dir: Path,
    spec: ModelSpec,
    out_dir: Path,
    *,
    method: str | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ConversionResult:
    """Convert the model in `model_dir` to TorchScript and prove it on the battery, in-process.

    A lean round first (model_side.py), then the full round only if the judge asks for it. The
    artifacts stay where the builder saved them (under out_dir/builder/, or out_dir/full/builder/
    after a full round); `torchscript_path` and `exported_path` name them. The battery is drawn
    from `seed` (a fresh random one by default; the report records it).
    """
    requested = method or spec.method
    if requested not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {requested!r}")
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    seed = draw_seed() if seed is None else seed
    reference_dir = out_dir / REFERENCE_DIR
    run_reference(model_dir, spec, reference_dir, seed=seed, progress=progress)
    rounds = _Rounds(model_dir, spec, reference_dir, seed, requested, progress)
    result = rounds.judge(out_dir, None)
    if result.retry is None:
        return result
    return rounds.judge(out_dir / FULL_DIR, result.retry)


@dataclass(frozen=True)
class _Rounds:
    """What every round of one conversion shares: the model, the reference outputs and the seed."""

    model_dir: Path
    spec: ModelSpec
    reference_dir: Path
    seed: int
    requested: str
    progress: Callable[[str], None]

    def judge(self, out_dir: Path, first: dict[str, Any] | None) -> ConversionResult:
        """Build the candidates into out_dir/builder (lean unless `first`) and judge them."""
        builder_dir = out_dir / BUILDER_DIR
        build_candidates(
            self.model_dir,
            self.spec,
            builder_dir,
            method=self.requested,
            lean=first is None,
            progress=self.progress,
        )
        return judge_conversion(
            self.model_dir,
            self.spec,
            builder_dir,
            self.reference_dir,
            out_dir,
            seed=self.seed,
            requested=self.requested,
            progress=self.progress,
            first_round=first,
        )
