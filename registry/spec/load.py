"""Reading a model directory's `regctl.toml`: decode, check with the file's models, build the ModelSpec.

Every error is one line that names the file, the key, the bad value and what was expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from regctl.registry.dtypes import canonical_dtype
from regctl.registry.errors.files import (
    ModelDirMissing,
    SpecFileMissing,
    SpecNestsTooDeeply,
    SpecNotToml,
    SpecNotUtf8,
    SpecTooBig,
)
from regctl.registry.errors.lookup import NotAChoice
from regctl.registry.formats import parse_formats
from regctl.registry.spec.checked import (
    DEVICES,
    MAX_SPEC_BYTES,
    METHODS,
    MINIMAL_SPEC,
    SPEC_FILENAME,
    DimSpec,
    InputSpec,
    ModelSpec,
    ValidationSpec,
)
from regctl.registry.spec.file import TABLES, InputTable, SpecFile
from regctl.registry.spec.messages import spec_error


def load_spec(directory: Path) -> ModelSpec:
    """Read and check `DIR/regctl.toml`; raise InvalidSpec naming the file, key, value and expectation."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ModelDirMissing(directory=directory, what=what)
    path = directory / SPEC_FILENAME
    if not path.is_file():
        raise SpecFileMissing(directory=directory, minimal=MINIMAL_SPEC)
    with open(path, "rb") as f:  # read no more than the cap: a hostile spec may be gigabytes
        raw = f.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecTooBig(path=path, limit=MAX_SPEC_BYTES)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecNotToml(path=path, reason=exc) from None
    except RecursionError:
        raise SpecNestsTooDeeply(source=path) from None
    except UnicodeDecodeError as exc:
        raise SpecNotUtf8(path=path, reason=exc.reason, position=exc.start) from None
    return parse_spec(data, str(path), directory)


def parse_spec(data: dict[str, Any], source: str, directory: Path | None = None) -> ModelSpec:
    """Check a decoded `regctl.toml` and build its ModelSpec; `source` names the file in error messages.

    With `directory`, the files the spec names must exist inside it; without, only their form is checked.
    """
    try:
        written = SpecFile.model_validate(data, context={"directory": directory})
    except ValidationError as exc:
        raise spec_error(exc, source, data, TABLES) from None
    except RecursionError:
        raise SpecNestsTooDeeply(source=source) from None
    v = written.validation
    return ModelSpec(
        entrypoint=written.entrypoint,
        weights=written.weights,
        method=written.method,
        device=written.device,
        optimize=written.optimize,
        inputs=tuple(_input(table) for table in written.inputs),
        dims={
            name: DimSpec(name, d.min, d.max, d.opt if d.opt is not None else (d.min + d.max) // 2, d.batch)
            for name, d in written.dims.items()
        },
        validation=ValidationSpec(
            float(v.rtol), float(v.atol), v.samples, v.inputs, v.search, tuple(v.accept_baked)
        ),
        formats=tuple(written.formats) if written.formats is not None else None,
    )


def _input(table: InputTable) -> InputSpec:
    scalar = table.shape is None
    return InputSpec(
        name=table.name,
        dtype=table.dtype if scalar else str(canonical_dtype(table.dtype)),
        shape=None if scalar else tuple(table.shape or ()),
        low=table.low,
        high=table.high,
    )


def prepare_spec(
    directory: Path,
    method: str | None = None,
    device: str | None = None,
    formats: tuple[str, ...] | None = None,
    default_formats: tuple[str, ...] = ("torchscript",),
) -> ModelSpec:
    """Load the spec from `directory` and apply command-line overrides of method, device and formats.

    The formats are settled here for good: `formats` (from --format), else the file's, else the
    registry's default (REGCTL_FORMATS).
    """
    spec = load_spec(directory)
    wanted = parse_formats(",".join(formats)) if formats else None
    spec = dataclasses.replace(spec, formats=wanted or spec.formats or default_formats)
    if method is not None:
        if method not in METHODS:
            raise NotAChoice(what="--method", value=method, choices=METHODS)
        spec = dataclasses.replace(spec, method=method)  # type: ignore[arg-type]
    if device is not None:
        if device not in DEVICES:
            raise NotAChoice(what="--device", value=device, choices=DEVICES)
        spec = dataclasses.replace(spec, device=device)  # type: ignore[arg-type]
    return spec
