"""Torch-level helpers shared by the model side (worker/model/) and the judge (worker/judge/).

The battery, capturing warnings and errors, the exchange files' formats, seeds and devices,
calling a function on a case, latency, report entries: no model code is imported here, and
nothing here imports worker/model/. `convert_model` and `validate_artifact` chain the model side
and the judge in one process, for unit tests only (in a job they never share a process).
Importing them imports torch; the names below load lazily so `regctl.worker.engine.<module>` can
be imported on its own.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConversionResult": "regctl.worker.judge.judge",
    "ValidationResult": "regctl.worker.judge.validation",
    "ModelLoadError": "regctl.worker.engine.devices",
    "convert_model": "regctl.worker.engine.convert",
    "validate_artifact": "regctl.worker.engine.validate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'regctl.worker.engine' has no attribute {name!r}")
