"""The conversion and validation engine: model directory + spec in, proven TorchScript artifact out.

Pure: it knows nothing of the database, Celery or the artifact store. The glue calls
`convert_model` and `validate_artifact` and stores what they return. Importing this package
imports torch, so import it lazily (DESIGN.md: `regctl models list` never pays for torch).
"""

from worker.engine.convert import ConversionResult, convert_model
from worker.engine.loader import ModelLoadError
from worker.engine.validate import ValidationResult, validate_artifact

__all__ = ["ConversionResult", "ModelLoadError", "ValidationResult", "convert_model", "validate_artifact"]
