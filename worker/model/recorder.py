"""What the battery exercised in the model's own files, recorded while eager runs it (reference runner).

Two records, both bounded and turned into plain JSON (`CoverageRecord.as_json`) before anything
leaves the role:

- decision points: every place where the model's own code turns a tensor into a Python value
  (`__bool__`, `__int__`, `__float__`, `__index__`, `.item()`, `.tolist()`), with the values it took
  on each battery input. The methods are patched on `torch.Tensor` only while the recorder is
  active, and only the immediate caller's frame is looked at, so torch's own conversions are never
  counted. Shape-dependent decisions (`if x.size(1) > 16`) convert no tensor and are not recorded.
- line and branch coverage from coverage.py, one dynamic context per battery input, the model's
  files only. Its data stays in memory (no data file), so no SQLite file exists to leave the sandbox;
  if coverage.py cannot start, the record says why and keeps the decision points.

The JSON is the model side's word: the judge validates and bounds it (worker/judge/coverage.py).
"""

from __future__ import annotations

import ast
import linecache
import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from regctl.worker.engine.capture import ModelFrames

MAX_POINTS = 200  # distinct decision points kept; the rest are counted in `points_dropped`
MAX_VALUES = 4  # distinct values kept per point and input
MAX_SOURCE_CHARS = 200
MAX_FILES = 50
CONVERSIONS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")
Value = bool | int | float | None


class CoverageRecord:
    """The decision points and coverage of one eager run over the battery."""

    def __init__(self, frames: ModelFrames) -> None:
        self.frames = frames
        self.case = 0
        self.points: dict[tuple[str, int], dict[str, Any]] = {}
        self.points_dropped = 0
        self.lines: dict[str, Any] | None = None
        self.lines_error: str | None = None
        self._cov: Any = None

    @contextmanager
    def recording(self) -> Iterator[CoverageRecord]:
        """Patch the conversions and start coverage for the duration of the block."""
        # most of these are inherited from torch._C.TensorBase: afterwards they are inherited again
        own = {name: torch.Tensor.__dict__.get(name) for name in CONVERSIONS}
        for name in CONVERSIONS:
            setattr(torch.Tensor, name, self._patched(name, getattr(torch.Tensor, name)))
        self._start_coverage()
        try:
            yield self
        finally:
            for name, original in own.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)
            self._stop_coverage()

    def input(self, index: int) -> None:
        """Attribute what runs from now on to battery input `index`."""
        self.case = index
        if self._cov is not None:
            self._cov.switch_context(str(index))

    def _patched(self, name: str, original: Any) -> Any:
        record = self

        def converted(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            value = original(tensor, *args, **kwargs)
            caller = sys._getframe(1)
            rel = record.frames.relative(caller.f_code.co_filename)
            if rel is not None:
                record._note(name, rel, caller.f_lineno, caller.f_code.co_filename, value)
            return value

        converted.__name__ = name
        converted.__doc__ = original.__doc__
        return converted

    def _note(self, kind: str, rel: str, line: int, filename: str, value: Any) -> None:
        key = (rel, line)
        point = self.points.get(key)
        if point is None:
            if len(self.points) >= MAX_POINTS:
                self.points_dropped += 1
                return
            source = linecache.getline(filename, line).strip()[:MAX_SOURCE_CHARS]
            point = self.points[key] = {
                "file": rel,
                "line": line,
                "source": source,
                "kind": kind,
                "inputs": {},
            }
        seen = point["inputs"].setdefault(self.case, [])
        plain = _scalar(value)
        if plain not in seen and len(seen) < MAX_VALUES:
            seen.append(plain)

    def _start_coverage(self) -> None:
        try:
            # imported here (about 50 ms measured): only the reference runner records coverage, the
            # candidate builder that shares this module never pays it
            import coverage

            root = self.frames.root
            self._cov = coverage.Coverage(
                data_file=None, branch=True, include=[root + "*"], config_file=False, auto_data=False
            )
            self._cov.set_option("run:disable_warnings", ["no-data-collected", "module-not-measured"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._cov.start()
        except Exception as exc:
            self._cov = None
            self.lines_error = f"coverage.py could not start: {type(exc).__name__}: {exc}"[:500]

    def _stop_coverage(self) -> None:
        if self._cov is None:
            return
        cov, self._cov = self._cov, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cov.stop()
                self.lines = _lines(cov, self.frames)
        except Exception as exc:
            self.lines_error = f"coverage.py failed: {type(exc).__name__}: {exc}"[:500]

    def as_json(self) -> dict[str, Any]:
        """The record as plain JSON: decision points, then per-file lines and arcs (or why none)."""
        return {
            "decisions": [
                {
                    **{k: v for k, v in p.items() if k != "inputs"},
                    "inputs": [{"input": i, "values": vals} for i, vals in sorted(p["inputs"].items())],
                }
                for p in self.points.values()
            ],
            "decisions_dropped": self.points_dropped,
            "shape_decisions": "not recorded: a decision on a size converts no tensor",
            "files": self.lines,
            "files_error": self.lines_error,
        }


def _scalar(value: Any) -> Value:
    if isinstance(value, bool | int):
        return value if isinstance(value, bool) or abs(value) < 2**53 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None  # a list from .tolist(): the conversion is recorded, not its contents


def _lines(cov: Any, frames: ModelFrames) -> dict[str, Any]:
    data = cov.get_data()
    files: dict[str, Any] = {}
    for path in sorted(data.measured_files())[:MAX_FILES]:
        rel = frames.relative(os.path.realpath(path))
        if rel is None:
            continue
        _, statements, _, _, _ = cov.analysis2(path)
        statements = _in_functions(path, statements)
        by_input: dict[str, list[int]] = {}
        for line, contexts in data.contexts_by_lineno(path).items():
            for context in contexts:
                if context.isdigit():
                    by_input.setdefault(context, []).append(line)
        files[rel] = {
            "executable": sorted(statements),
            "lines_by_input": {k: sorted(v) for k, v in sorted(by_input.items(), key=lambda kv: int(kv[0]))},
            "arcs": sorted([a, b] for a, b in (data.arcs(path) or [])),
            "possible_arcs": _possible_arcs(cov, path),
        }
    return files


def _in_functions(path: str, statements: list[int]) -> list[int]:
    # module and class bodies ran at import, before recording began: only function bodies count
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return statements
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for stmt in node.body:
                inside.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return [line for line in statements if line in inside]


def _possible_arcs(cov: Any, path: str) -> list[list[int]] | None:
    # coverage.py has no public API for a file's possible arcs; None where its private one moved.
    try:
        possible = cov._analyze(path).arc_possibilities
        return sorted([a, b] for a, b in (possible() if callable(possible) else possible))
    except Exception:
        return None
