"""Capture warnings and exceptions and attribute them to lines of the model's own code.

Everything the engine runs happens inside `WarningLog.capture()`: warnings (torch's TorchScript
deprecation notices, `TracerWarning`s, the model's own warnings) are recorded instead of printed
or turned into errors, each with the innermost frame of the model's code that led to it, so a
report can say "model.py:12" even when the warning was raised deep inside torch.

The log is bounded where the warnings are raised (the model may raise millions, megabytes each):
each distinct warning (file, line, category, message clipped to MAX_WARNING_CHARS) is kept once
with a count, at most MAX_WARNINGS of them per group, and the rest are only counted (`dropped`).
The judge bounds them again (report.add_warnings): this side runs model code.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch

from regctl.worker.engine.bounds import MAX_WARNING_CHARS, MAX_WARNINGS, bounded_warnings, clip

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_NAMED_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


@dataclass(frozen=True)
class WarningRecord:
    """One warning as it was raised, with the model-code location that led to it (if any)."""

    category: str
    message: str
    file: str | None  # relative to the model directory
    line: int | None
    from_torch: bool  # raised by torch itself (its filename lies inside the torch package)


class ModelFrames:
    """Answers "is this source file part of the model?" and turns paths into model-relative ones.

    The loader imports the model's files by their resolved paths, so their code objects carry
    filenames under the resolved model directory: a prefix test suffices (no per-frame realpath,
    which would cost milliseconds on torch.export's deep tracebacks).
    """

    def __init__(self, model_dir: Path) -> None:
        self.root = os.path.realpath(model_dir) + os.sep

    def relative(self, filename: str) -> str | None:
        """The path of `filename` relative to the model directory, or None if it lies outside."""
        return filename[len(self.root) :] if filename.startswith(self.root) else None

    @staticmethod
    def in_torch(filename: str) -> bool:
        """True for a source file of the torch package itself."""
        return filename.startswith(_TORCH_DIR)

    def innermost_frame(self, frame: FrameType | None) -> tuple[str, int] | None:
        """Walk outwards from `frame` to the first frame that runs model code."""
        while frame is not None:
            rel = self.relative(frame.f_code.co_filename)
            if rel is not None:
                return rel, frame.f_lineno
            frame = frame.f_back
        return None

    def innermost_traceback(self, tb: TracebackType | None) -> tuple[str, int] | None:
        """The deepest frame of a traceback that runs model code."""
        found = None
        for frame, lineno in traceback.walk_tb(tb):  # no source lines read, unlike extract_tb
            rel = self.relative(frame.f_code.co_filename)
            if rel is not None:
                found = (rel, lineno)
        return found


# a WarningLog's state: records kept, each one's count, how many per group, how many dropped
LogMark = tuple[int, dict[WarningRecord, int], dict[tuple[bool, bool], int], int]


class WarningLog:
    """Records the warnings raised while `capture()` is active: each distinct one once, bounded.

    `records` holds the distinct warnings in first-seen order, at most `limit` in each group
    (TracerWarnings, torch's own, the others: so a flood of one kind never hides another);
    `count(record)` says how often one was raised, `dropped` how many raised ones were not kept.
    """

    def __init__(self, model_dir: Path, limit: int = MAX_WARNINGS) -> None:
        self.frames = ModelFrames(model_dir)
        self.limit = limit
        self.records: list[WarningRecord] = []
        self.dropped = 0
        self._counts: dict[WarningRecord, int] = {}
        self._groups: dict[tuple[bool, bool], int] = {}

    @contextmanager
    def capture(self) -> Iterator[WarningLog]:
        """Record (never print, never raise) every warning raised inside the block."""
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = self._hook
            yield self

    def mark(self) -> LogMark:
        """What the log holds now, for `forget_since`."""
        return len(self.records), dict(self._counts), dict(self._groups), self.dropped

    def forget_since(self, mark: LogMark) -> None:
        """Forget every warning raised after `mark`: work that is done again would record it twice."""
        size, counts, groups, dropped = mark
        del self.records[size:]
        self._counts, self._groups, self.dropped = dict(counts), dict(groups), dropped

    def since(self, start: int) -> list[WarningRecord]:
        """The records first raised after `start = len(log.records)`."""
        return self.records[start:]

    def count(self, record: WarningRecord) -> int:
        """How many times `record` was raised (0 for one this log never kept)."""
        return self._counts.get(record, 0)

    def entries(self, records: Iterable[WarningRecord] | None = None) -> list[dict[str, Any]]:
        """`records` (all kept by default) as JSON-safe dicts with their counts."""
        chosen = self.records if records is None else records
        return [{**warning_dict(r), "count": self.count(r) or 1} for r in chosen]

    def _add(self, record: WarningRecord) -> None:
        if record in self._counts:
            self._counts[record] += 1
            return
        group = (record.category == "TracerWarning", record.from_torch)
        if self._groups.get(group, 0) >= self.limit:
            self.dropped += 1
            return
        self._groups[group] = self._groups.get(group, 0) + 1
        self._counts[record] = 1
        self.records.append(record)

    def _hook(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        where = self.frames.innermost_frame(sys._getframe(1))
        rel = self.frames.relative(filename)
        if where is None and rel is not None:
            where = (rel, lineno)
        self._add(
            WarningRecord(
                category=category.__name__,
                message=clip(str(message).strip(), MAX_WARNING_CHARS),
                file=where[0] if where else None,
                line=where[1] if where else None,
                from_torch=self.frames.in_torch(filename),
            )
        )


def summarize(records: Iterable[Any]) -> list[dict[str, Any]]:
    """JSON-safe, de-duplicated warnings in first-seen order, each with how often it was raised.

    Bounded (bounds.bounded_warnings): at most MAX_WARNINGS, messages clipped. A record may carry a
    `count` of its own (one crossed from the model process already counted); else it counts once.
    """
    return bounded_warnings(warning_dict(r) for r in records)[0]


def warning_dict(record: Any) -> dict[str, Any]:
    """A warning as the report keeps it; `record` is a WarningRecord or has its fields (WarningEntry)."""
    return {
        "category": record.category,
        "message": record.message,
        "file": record.file,
        "line": record.line,
        "count": getattr(record, "count", 1),
    }


def one_line(text: str) -> str:
    """A message made fit for a single line: TorchScript interpreter errors keep their last line
    (the actual error), anything else its first non-empty line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1]
    return lines[0].rstrip(":")


def describe_exception(exc: BaseException, frames: ModelFrames | None = None) -> str:
    """'ValueError: boom (model.py:12)': type, first useful line, and the model line that raised."""
    text = one_line(str(exc))
    if _NAMED_ERROR.match(text):  # a TorchScript interpreter error already names its type
        head = text
    else:
        head = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    where = frames.innermost_traceback(exc.__traceback__) if frames else None
    return f"{head} ({where[0]}:{where[1]})" if where else head


def warning_entries(records: list[WarningRecord]) -> list[dict[str, Any]]:
    """TracerWarnings for a candidate entry: message, model file and line, count."""
    return [{k: w[k] for k in ("message", "file", "line", "count")} for w in summarize(records)]
