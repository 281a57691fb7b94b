"""A built format on the battery: the part every format stage (aoti, executorch, onnx) shares.

The format's loaded runnable runs every input against the eager outputs under the spec's
tolerances (evaluate.check_candidate, as every candidate does); its report section gets the time,
the worst errors, the per-input cases (the page draws its chart from them) and the input that
exposed a mismatch, then, when all passed, the median latency on the input eager and TorchScript
were timed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.latency import measure
from regctl.worker.judge.evaluate import check_candidate
from regctl.worker.judge.report import case_entries


def prove_on_battery(
    section: dict[str, Any],
    runnable: Callable[..., Any],
    what: str,
    spec: ModelSpec,
    battery: list[BatteryCase],
    reference: list[Any],
    device: torch.device,
    progress: Callable[[str], None],
    *,
    stage: str,
) -> bool:
    """Run the battery on `runnable` (`what` names it in the error) and time it; True when it matched."""
    v = spec.validation
    started = time.perf_counter()
    check = check_candidate(
        runnable, battery, reference, device, rtol=v.rtol, atol=v.atol, name=stage, progress=progress
    )
    section.update(
        battery_s=round(time.perf_counter() - started, 4),
        max_abs_error=check.max_abs_error,
        max_rel_error=check.max_rel_error,
        cases=case_entries(check),
        failed_input=check.failed_input,
    )
    if not check.ok:
        section["error"] = f"{what} {check.error}"
        return False
    progress(f"{stage}: measuring latency")
    section["latency_ms"] = measure(runnable, battery[0], device).median_ms
    return True
