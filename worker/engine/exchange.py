"""What crosses from the model's roles to the judge: eager outputs as tensors, everything else as JSON.

The candidate builder and the reference runner are untrusted, so nothing they write is unpickled as
arbitrary objects: the eager outputs are a `torch.save` file read back with `weights_only=True`
(tensors, numbers, strings, None, tuples, lists and dicts only; named tuples travel as plain tuples,
which is how TorchScript returns them), memory-mapped so large outputs are not copied; each role's
`ModelSide` JSON (builder.json, reference.json) is validated field by field with pydantic, with a
size cap. Candidate artifacts are plain files the judge loads with torch.jit.load and, after
program_check.py passed them, torch.export.load.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from regctl.worker.contract import HANDED_DIR
from regctl.worker.engine.probes import MAX_PROBES

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_MS = 3_600_000.0  # an hour per call: a latency figure beyond it is not a measurement
_SCALARS = (bool, int, float, complex, str, type(None))


class ExchangeError(Exception):
    """Raised when what the model process left behind is missing, malformed or not plain data."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


POINT = r"^[^\x00-\x1f]{1,500}:[0-9]{1,7}$"  # "model.py:14"
Point = Annotated[str, Field(pattern=POINT, max_length=510)]


class WarningEntry(_Strict):
    """One warning raised while the model ran (capture.WarningRecord as JSON)."""

    category: str = Field(max_length=200)
    message: str = Field(max_length=2000)
    file: str | None = Field(default=None, max_length=4096)
    line: int | None = None
    from_torch: bool = False
    count: int = Field(default=1, ge=1, le=2**31 - 1)  # how often it was raised


class LatencyFigures(_Strict):
    """One form's per-call latency (engine/latency.py): median and quartiles in ms, calls timed."""

    median_ms: float = Field(gt=0, le=MAX_MS, allow_inf_nan=False)
    q1_ms: float = Field(gt=0, le=MAX_MS, allow_inf_nan=False)
    q3_ms: float = Field(gt=0, le=MAX_MS, allow_inf_nan=False)
    runs: int = Field(ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyFigures:
        if not self.q1_ms <= self.median_ms <= self.q3_ms:
            raise ValueError("the quartiles must bracket the median (q1 <= median <= q3)")
        return self


class LatencyPair(_Strict):
    """Eager and an artifact timed interleaved in one model-side process, on the input `input`."""

    input: str = Field(max_length=10_000)
    eager: LatencyFigures
    artifact: LatencyFigures


class CandidateSide(_Strict):
    """How compiling one candidate went in the model process; `file` is its saved artifact."""

    file: str | None = None
    error: str | None = Field(default=None, max_length=20_000)
    detail: str | None = Field(default=None, max_length=200_000)
    hint: str | None = Field(default=None, max_length=20_000)
    compile_s: float = 0.0
    warnings: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    strict: bool | None = None
    note: str | None = Field(default=None, max_length=20_000)
    optimized: bool = False  # `file` holds the frozen, optimized-for-inference form
    optimize_note: str | None = Field(default=None, max_length=20_000)
    unoptimized_ms: float | None = Field(default=None, ge=0, le=MAX_MS, allow_inf_nan=False)
    optimized_ms: float | None = Field(default=None, ge=0, le=MAX_MS, allow_inf_nan=False)
    latency: LatencyPair | None = None  # eager and this file's form, measured interleaved
    baked: list[Point] = Field(
        default_factory=list, max_length=200
    )  # tensors turned into values while tracing
    held_back: bool = False  # neither compiled nor saved: a large model's candidate after the preferred one


class ExportSide(_Strict):
    """How torch.export went; `file` is the saved, not yet judged, program."""

    file: str | None = None
    error: str | None = Field(default=None, max_length=20_000)
    detail: str | None = Field(default=None, max_length=200_000)
    notes: list[str] = Field(default_factory=list, max_length=100)
    seconds: float = 0.0


class FoundInput(_Strict):
    """A probe the search kept: its index (the judge rebuilds it) and the points it flipped."""

    probe: int = Field(ge=0, lt=MAX_PROBES)
    flips: list[Point] = Field(min_length=1, max_length=200)


class SearchSide(_Strict):
    """What the reference runner's search tried (worker/model/search.py); `found` joins the battery."""

    targets: list[Point] = Field(default_factory=list, max_length=200)
    found: list[FoundInput] = Field(default_factory=list, max_length=MAX_PROBES)
    tried: int = Field(default=0, ge=0, le=MAX_PROBES)
    raised: int = Field(default=0, ge=0, le=MAX_PROBES)
    seconds: float = Field(default=0.0, ge=0)
    budget_forwards: int = Field(default=0, ge=0, le=MAX_PROBES)
    budget_seconds: float = Field(default=0.0, ge=0)
    stopped: str = Field(default="", max_length=200)


class ModelSide(_Strict):
    """What one model role reports besides tensors and artifacts (each fills in its own fields)."""

    error: str | None = Field(default=None, max_length=20_000)
    kind: str | None = Field(default=None, max_length=1000)
    example: str | None = Field(default=None, max_length=10_000)  # the builder's trace example
    battery_size: int = 0
    weights_bytes: int = Field(default=0, ge=0, le=2**62)  # the model's parameters and buffers
    outputs: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)
    candidates: dict[str, CandidateSide] = Field(default_factory=dict)
    export: ExportSide | None = None
    latency: LatencyPair | None = None  # a validate job's reference runner: eager beside the stored artifact
    latency_error: str | None = Field(default=None, max_length=20_000)  # why `latency` is missing
    search: SearchSide | None = None  # the reference runner's search for untaken sides
    warnings: list[WarningEntry] = Field(default_factory=list, max_length=1000)
    warnings_dropped: int = Field(default=0, ge=0, le=2**31 - 1)  # raised but not kept (capture.py)
    timings: dict[str, float] = Field(default_factory=dict)


def write_side(path: Path, side: ModelSide) -> None:
    """Write one role's ModelSide JSON."""
    path.write_text(side.model_dump_json())


def write_json(path: Path, value: Any) -> None:
    """Write plain data as strict JSON (a role's other JSON files: coverage.json)."""
    path.write_text(json.dumps(value, allow_nan=False))


def read_json(path: Path, limit: int) -> Any:
    """Read a JSON file of at most `limit` bytes; ExchangeError when missing, too large or not JSON."""
    data = _read_capped(path, limit)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise ExchangeError(f"{path.name} is not JSON: {str(exc)[:200]}") from None


def read_side(path: Path) -> ModelSide:
    """Read and validate one role's ModelSide JSON; ExchangeError says what is wrong with it."""
    data = _read_capped(path, MAX_JSON_BYTES)
    try:
        return ModelSide.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ExchangeError(
            f"the model process wrote an invalid {path.name} ({where}: {first['msg']})"
        ) from None


def save_reference(outputs: list[Any], path: Path) -> None:
    """Save the eager outputs as plain data (tensors on the CPU; named tuples as tuples)."""
    plain = [_plain(o, f"output of case {i}") for i, o in enumerate(outputs)]
    fd = handed_fd(path)
    if fd is None or _proc_shows(path):
        torch.save(plain, path)
        return
    with os.fdopen(os.dup(fd), "wb") as f:  # a sandbox without a /proc: through the descriptor itself
        f.seek(0)
        f.truncate()
        torch.save(plain, f)


def _proc_shows(path: Path) -> bool:
    return os.path.exists(path)


def handed_fd(path: Path) -> int | None:
    """N, when `path` is a file the supervisor handed this role as /proc/self/fd/N (launch.py)."""
    return int(path.name) if path.parent == HANDED_DIR and path.name.isdigit() else None


def load_reference(path: Path, expected_cases: int, *, handed: bool = False) -> list[Any]:
    """Load eager outputs written by `save_reference`; refuses anything but plain data.

    `handed`: `path` is the sealed in-memory file the supervisor handed this role, /proc/self/fd/N,
    a link by nature (and one the model could not have chosen), read through its descriptor where
    the sandbox has no /proc; anything else must not be a link.
    """
    fd = handed_fd(path) if handed else None
    present = _is_regular(path) if fd is None else _handed_and_written(fd)
    if not present:
        raise ExchangeError(f"the model process left no eager outputs ({path.name})")
    try:
        if fd is not None and not _proc_shows(path):  # a sandbox without a /proc: read, not mapped
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(0)
                loaded = torch.load(f, weights_only=True, map_location="cpu")
        else:
            loaded = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception as exc:
        raise ExchangeError(
            f"the eager outputs are not plain tensors and data: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(loaded, list) or len(loaded) != expected_cases:
        raise ExchangeError(
            f"the eager outputs hold {len(loaded) if isinstance(loaded, list) else 'no list of'} cases, "
            f"the battery has {expected_cases}"
        )
    return loaded


def candidate_path(directory: Path, name: str | None) -> Path | None:
    """The regular file `name` directly inside `directory`, or None (no name, a link, a path)."""
    if not name or os.path.basename(name) != name or name.startswith("."):
        return None
    path = directory / name
    return path if _is_regular(path) else None


class UnsupportedOutput(Exception):
    """Raised when the eager model returns something that is not plain data."""


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True) if value.device.type != "cpu" else value.detach().clone()
    if isinstance(value, tuple | list):
        items = [_plain(v, where) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        for key in value:
            if type(key) not in _SCALARS:
                raise UnsupportedOutput(
                    f"the {where} has a dict key of type {type(key).__name__}; "
                    "keys must be strings or numbers"
                )
        return {k: _plain(v, where) for k, v in value.items()}
    if type(value) in _SCALARS:  # exactly: a subclass (numpy scalar, enum) would be pickled as itself
        return value
    raise UnsupportedOutput(
        f"the {where} contains a {type(value).__name__}; forward must return tensors, numbers, strings, "
        "None, or tuples, lists and dicts of those"
    )


def _read_capped(path: Path, limit: int) -> bytes:
    if not _is_regular(path):
        raise ExchangeError(f"the model process wrote no {path.name}")
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ExchangeError(f"{path.name} is larger than {limit} bytes")
    return data


def _handed_and_written(fd: int) -> bool:
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size > 0


def _is_regular(path: Path) -> bool:
    try:
        return os.path.isfile(path) and not os.path.islink(path)
    except OSError:
        return False


def dumps(value: Any) -> str:
    """Strict JSON for files the supervisor reads."""
    return json.dumps(value, allow_nan=False, sort_keys=True, default=str)
