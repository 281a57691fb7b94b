"""The sandboxed roles: the candidate builder and the reference runner (both run model code), the judge
and the format stages, aoti, executorch and onnx (none of which imports model code).

`paths` names the job's directories as this process sees them (under /job in a private root).
Everything they produce is a file in `out`; progress goes to the pipe as `P <text>` lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from regctl.registry.spec import ModelSpec
from regctl.worker.contract import OUTPUTS, handed_file
from regctl.worker.sandbox.protocol import PROGRESS

ROLES = ("builder", "reference", "judge", "aoti", "executorch", "onnx", "probe")


class PipeProgress:
    """The engine's progress callback: one line per call on the supervisor's pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, text: str) -> None:
        line = PROGRESS + " ".join(text.split())[:500] + "\n"
        os.write(self.fd, line.encode())


def run_role(role: str, args: dict[str, Any], paths: dict[str, str], progress_fd: int, threads: int) -> None:
    """Run `role` (one of ROLES; "probe" does nothing); its results land in paths['out']."""
    if role == "probe":
        return
    # Lazy, here and below: the probe role runs in a fork of the supervisor (supervisor/probe.py),
    # which never imports torch; these would load it there (torch ~1.8 s, the model side or the
    # judge 2.3–2.7 s, measured). In a fork of the zygote they are imported already.
    import torch

    torch.set_num_threads(max(1, threads))
    progress = PipeProgress(progress_fd)
    spec = ModelSpec.from_dict(args["spec"])
    out = Path(paths["out"])
    if role == "builder":
        from regctl.worker.model.model_side import build_candidates

        build_candidates(
            Path(paths["model"]),
            spec,
            out,
            method=args.get("method"),
            lean=bool(args.get("lean")),
            progress=progress,
        )
    elif role == "reference":
        from regctl.worker.model.model_side import run_reference

        stored = Path(paths["artifact"]) if "artifact" in paths else None  # a validate job's, for latency
        run_reference(
            Path(paths["model"]),
            spec,
            out,
            seed=int(args["seed"]),
            artifact=stored,
            outputs=handed_file(paths, OUTPUTS),
            progress=progress,
        )
    elif role == "judge":
        _judge(spec, args, paths, out, progress)
    elif role in ("aoti", "executorch", "onnx"):
        from regctl.worker.judge.format_role import run_format_role

        run_format_role(role, spec, paths, args, progress)
    else:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")


def _judge(
    spec: ModelSpec, args: dict[str, Any], paths: dict[str, str], out: Path, progress: PipeProgress
) -> None:
    from regctl.worker.judge.judge import judge_conversion
    from regctl.worker.judge.libtorch import Runner
    from regctl.worker.judge.validation import judge_validation

    runner: Runner | str = (
        Runner(Path(paths["runner"])) if "runner" in paths else args.get("runner_skip") or "not attempted"
    )
    seed = int(args["seed"])
    if args["kind"] == "convert":
        judge_conversion(
            Path(paths["model"]),
            spec,
            Path(paths["candidates"]),
            Path(paths["reference"]),
            out,
            seed=seed,
            requested=args["method"],
            runner=runner,
            progress=progress,
            first_round=args.get("first_round"),
            outputs=handed_file(paths, OUTPUTS),
        )
    else:
        judge_validation(
            Path(paths["model"]),
            spec,
            Path(paths["reference"]),
            Path(paths["artifact"]),
            out,
            seed=seed,
            runner=runner,
            progress=progress,
            outputs=handed_file(paths, OUTPUTS),
        )
