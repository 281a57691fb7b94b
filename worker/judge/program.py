"""The judge's side of the exported program: checked, loaded with tensors and plain data only,
and run against eager on the battery. The model side exported it (worker/model/export.py).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.calls import Progress
from regctl.worker.engine.capture import describe_exception
from regctl.worker.engine.exported import ExportOutcome, quiet_torch
from regctl.worker.judge.evaluate import check_candidate
from regctl.worker.judge.program_check import ProgramRefused, check_program


def judge_program(
    path: Path,
    spec: ModelSpec,
    device: torch.device,
    battery: list[BatteryCase],
    reference: list[Any],
    progress: Progress,
) -> ExportOutcome:
    """Load a saved program (judge side) and run it against eager on the battery."""
    start = time.perf_counter()
    outcome = ExportOutcome()
    try:
        # torch.export.load evals the program's shape strings and .module() execs its guards: the
        # archive passes the checker first, or torch never sees it.
        check_program(path)
    except ProgramRefused as exc:
        outcome.error = f"the exported program was refused before loading: {exc}"
        outcome.seconds = time.perf_counter() - start
        return outcome
    try:
        with quiet_torch(), plain_data_only():
            runnable = torch.export.load(str(path)).module()
    except Exception as exc:
        outcome.error = f"saving or loading the exported program failed: {describe_exception(exc)}"
        return outcome
    check = check_candidate(
        runnable,
        battery,
        reference,
        device,
        rtol=spec.validation.rtol,
        atol=spec.validation.atol,
        name="export",
        progress=progress,
    )
    outcome.check = check
    if check.ok:
        outcome.saved = path
    else:
        outcome.error = f"the exported program {check.error}"
        outcome.failed_input = check.failed_input
    outcome.seconds = time.perf_counter() - start
    return outcome


class PickledObjectRefused(Exception):
    """Raised when a saved program asks to unpickle an arbitrary object."""


@contextmanager
def plain_data_only() -> Iterator[None]:
    """While loading a saved program, unpickle tensors and plain data only.

    torch.export.load unpickles weights and constants with `weights_only=False`, and opaque
    constants with `pickle.loads`: a program written by a hostile model process could run code in
    the judge. Inside this block every torch.load is weights-only and the other two refuse.
    """
    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PickledObjectRefused(
            "the program holds a pickled object; only tensors and plain data are loaded"
        )

    saved = (torch.load, pickle.loads, torch._C._pickle_load_obj)
    torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only_load, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = saved
