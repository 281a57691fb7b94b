"""The eager reference: the model itself run on every battery case, on the model side only."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.calls import Progress, call, detached, tick
from regctl.worker.engine.capture import ModelFrames, describe_exception
from regctl.worker.model.recorder import CoverageRecord


class EagerFailure(Exception):
    """Raised when the eager model itself raises on a battery input: the model, not a candidate, is broken."""

    def __init__(self, message: str, label: str) -> None:
        super().__init__(message)
        self.label = label


def eager_reference(
    eager: Callable[..., Any],
    battery: list[BatteryCase],
    device: torch.device,
    frames: ModelFrames,
    progress: Progress,
    record: CoverageRecord | None = None,
) -> list[Any]:
    """The eager output of every case; raises EagerFailure naming the case if the model raises.

    With `record` (active: `record.recording()`), what runs is attributed to each case's index.
    """
    outputs, started = [], time.monotonic()
    for i, case in enumerate(battery):
        tick(progress, "eager reference", i, len(battery), started)
        if record is not None:
            record.input(i)
        try:
            out = call(eager, case, device)
        except Exception as exc:
            message = f"forward raised {describe_exception(exc, frames)} on input {case.label!r}"
            raise EagerFailure(message, case.label) from exc
        outputs.append(detached(out))
    tick(progress, "eager reference", len(battery), len(battery), started)
    return outputs
