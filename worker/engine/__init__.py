"""The conversion and validation engine: model directory + spec in, proven TorchScript artifact out.

Pure: it knows nothing of the database, Celery or the artifact store. Its parts never share a
process in a job: `model_side` (imports and runs the model's code, as the candidate builder and as
the reference runner) and `judge` (proves the candidates against the eager outputs, never importing
model code). `convert_model` and `validate_artifact` chain them in one process for unit tests.
Importing the engine imports torch; the names below load lazily so `regctl.worker.engine.<module>`
can be imported on its own.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConversionResult": "regctl.worker.engine.judge",
    "ValidationResult": "regctl.worker.engine.judge",
    "ModelLoadError": "regctl.worker.engine.loader",
    "convert_model": "regctl.worker.engine.convert",
    "validate_artifact": "regctl.worker.engine.validate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'regctl.worker.engine' has no attribute {name!r}")
