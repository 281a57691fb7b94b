"""The model spec (`regctl.toml`): what a model directory says about its model, checked.

checked.py   the checked spec (ModelSpec, InputSpec, DimSpec, ValidationSpec) and its vocabulary
file.py      the file as written, as pydantic models: the checks, and the JSON Schema for editors
messages.py  a pydantic error as one line naming the file, the key, the value and what was expected
paths.py     the files a spec names stay inside the model directory and exist
load.py      load_spec, parse_spec, prepare_spec
"""

from __future__ import annotations

from regctl.registry.formats import FORMATS, check_formats, parse_formats
from regctl.registry.spec.checked import (
    DEVICES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_SAMPLES,
    METHODS,
    MINIMAL_SPEC,
    RECORDED_INPUT_SUFFIXES,
    SPEC_FILENAME,
    WEIGHT_SUFFIXES,
    DimSpec,
    InputSpec,
    ModelSpec,
    ValidationSpec,
)
from regctl.registry.spec.file import json_schema
from regctl.registry.spec.load import load_spec, parse_spec, prepare_spec
from regctl.registry.spec.paths import entrypoint_files

__all__ = [
    "DEVICES",
    "FORMATS",
    "MAX_DIM",
    "MAX_ELEMENTS",
    "MAX_SAMPLES",
    "METHODS",
    "MINIMAL_SPEC",
    "RECORDED_INPUT_SUFFIXES",
    "SPEC_FILENAME",
    "WEIGHT_SUFFIXES",
    "DimSpec",
    "InputSpec",
    "ModelSpec",
    "ValidationSpec",
    "check_formats",
    "entrypoint_files",
    "json_schema",
    "load_spec",
    "parse_formats",
    "parse_spec",
    "prepare_spec",
]
