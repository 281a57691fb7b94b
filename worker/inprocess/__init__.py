"""The model side and the judge chained in one process, for unit tests and benchmarks only.

In a job they never share a process: the supervisor (worker/supervisor/) runs each as its own
sandboxed role. Importing this package imports torch and model-loading code.
"""

from __future__ import annotations

from regctl.worker.engine.devices import ModelLoadError
from regctl.worker.inprocess.convert import ConversionResult, convert_model
from regctl.worker.inprocess.validate import ValidationResult, validate_artifact

__all__ = ["ConversionResult", "ModelLoadError", "ValidationResult", "convert_model", "validate_artifact"]
