"""What the battery exercised in the model's own files, recorded while eager runs it (reference runner).

Two records, both bounded and turned into plain JSON (`CoverageRecord.as_json`) before anything
leaves the role:

- decision points: every place where the model's own code turns a tensor into a Python value
  (`__bool__`, `__int__`, `__float__`, `__index__`, `.item()`, `.tolist()`), with the values it took
  on each battery input. The methods are patched on `torch.Tensor` only while the recorder is
  active, and only the immediate caller's frame is looked at, so torch's own conversions are never
  counted. Shape-dependent decisions (`if x.size(1) > 16`) convert no tensor and are not recorded.
- shape decisions: an `if` or `while` in the model's functions whose test reads a size (`.shape`,
  `.size()`, `.dim()`, `.ndim`, `.numel()`, `len()`) converts no tensor in eager; which way it went
  on each input is read from coverage.py's arcs out of that line (kind "shape", values True/False).
- line and branch coverage from coverage.py, one dynamic context per battery input, the model's
  files only. Its data stays in memory (no data file), so no SQLite file exists to leave the sandbox;
  if coverage.py cannot start, the record says why and keeps the decision points.

The search (worker/model/search.py) runs its probes under contexts of their own ("p3"); only the
probes it keeps are exported, numbered after the battery, so the JSON's input indexes are those of
the battery the judge rebuilds.

The JSON is the model side's word: the judge validates and bounds it (worker/judge/coverage.py).
"""

from __future__ import annotations

import ast
import linecache
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from regctl.worker.engine.capture import ModelFrames
from regctl.worker.model import tensor_methods

MAX_POINTS = 200  # distinct decision points kept; the rest are counted in `points_dropped`
MAX_VALUES = 4  # distinct values kept per point and input
MAX_SOURCE_CHARS = 200
MAX_FILES = 50
CONVERSIONS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")
Value = bool | int | float | None


class CoverageRecord:
    """The decision points and coverage of one eager run over the battery."""

    def __init__(self, frames: ModelFrames, entrypoint: str | None = None) -> None:
        self.frames = frames
        # what ran while the model was built, before recording: never counted as lines the battery missed
        self.built_by = frozenset({"__init__", *([entrypoint.rsplit(":", 1)[-1]] if entrypoint else [])})
        self.case = "0"
        self.kept: list[str] = []  # probe contexts the search keeps, in the order they join the battery
        self.points: dict[tuple[str, int], dict[str, Any]] = {}
        self.points_dropped = 0
        self.lines: dict[str, Any] | None = None
        self.shape_points: list[dict[str, Any]] = []
        self.lines_error: str | None = None
        self._cov: Any = None

    @contextmanager
    def recording(self) -> Iterator[CoverageRecord]:
        """Patch the conversions and start coverage for the duration of the block."""
        with self.converting():
            self._start_coverage()
            try:
                yield self
            finally:
                self._stop_coverage()

    @contextmanager
    def converting(self) -> Iterator[CoverageRecord]:
        """Record the model's conversions (no coverage) for the duration of the block: what a trace bakes."""
        with tensor_methods.replaced(CONVERSIONS, self._patched):
            yield self

    def points_seen(self) -> list[str]:
        """Every decision point recorded, as "file:line"."""
        return [f"{f}:{line}" for f, line in sorted(self.points)]

    def input(self, index: int) -> None:
        """Attribute what runs from now on to battery input `index`."""
        self.switch(str(index))

    def switch(self, context: str) -> None:
        """Attribute what runs from now on to `context`: a battery index, or a probe's "p<n>"."""
        self.case = context
        if self._cov is not None:
            self._cov.switch_context(context)

    def one_way(self, contexts: set[str]) -> set[tuple[str, int]]:
        """The decision points that took exactly one value over `contexts`."""
        return {key for key in self.points if len(self._values(key, contexts)) == 1}

    def new_sides(
        self, context: str, points: set[tuple[str, int]], contexts: set[str]
    ) -> list[tuple[str, int]]:
        """Those of `points` that took, on `context`, a value none of `contexts` took."""
        return sorted(key for key in points if self._values(key, {context}) - self._values(key, contexts))

    def _values(self, key: tuple[str, int], contexts: set[str]) -> set[str]:
        # repr: True and 1 are different sides, though they compare equal
        return {repr(v) for c, vals in self.points[key]["inputs"].items() if c in contexts for v in vals}

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
            self._cov = _started_coverage(self.frames.root)
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
                self.lines, self.shape_points = _lines(cov, self.frames, self.kept, self.built_by)
        except Exception as exc:
            self.lines_error = f"coverage.py failed: {type(exc).__name__}: {exc}"[:500]

    def index_of(self, battery_size: int) -> dict[str, int]:
        """Each exported context's input index: the battery's own, then the kept probes after it."""
        index = {str(i): i for i in range(battery_size)}
        index.update({context: battery_size + k for k, context in enumerate(self.kept)})
        return index

    def as_json(self, battery_size: int) -> dict[str, Any]:
        """The record as plain JSON: decision points, then per-file lines and arcs (or why none)."""
        index = self.index_of(battery_size)
        decisions = []
        for p in self.points.values():
            inputs = sorted((index[c], vals) for c, vals in p["inputs"].items() if c in index)
            decisions.append(
                {
                    **{k: v for k, v in p.items() if k != "inputs"},
                    "inputs": [{"input": i, "values": vals} for i, vals in inputs],
                }
            )
        files = None
        if self.lines is not None:
            files = {
                rel: {
                    **f,
                    "lines_by_input": {
                        str(index[c]): lines for c, lines in f["lines_by_input"].items() if c in index
                    },
                }
                for rel, f in self.lines.items()
            }
            decisions += _shape_decisions(
                self.shape_points, index, {(d["file"], d["line"]) for d in decisions}
            )
        return {
            "decisions": decisions[:MAX_POINTS],
            "decisions_dropped": self.points_dropped,
            "shape_decisions": None if self.lines is not None else "not recorded: coverage.py did not run",
            "files": files,
            "files_error": self.lines_error,
        }


def warm_up_coverage() -> None:
    """Import coverage.py and start it once on no file: for a process that forks reference runners.

    A process's first start costs 35-55 ms more than the next (the import alone 26 ms, measured); the
    zygote pays it once instead of every job's reference runner.
    """
    cov = _started_coverage(os.path.join(os.sep, "nonexistent-regctl-warm-up", ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cov.stop()


def _started_coverage(root: str) -> Any:
    """A coverage.py run measuring branches in files under `root` only, started, its data in memory."""
    # imported here (about 26 ms): the zygote pays it once (warm_up_coverage), and the candidate
    # builder run in-process never does
    import coverage

    # `include` alone decides what is measured, so coverage.py's stdlib exclusion never applies:
    # cover_pylib spares it finding the stdlib's paths (a third of its start-up)
    cov = coverage.Coverage(
        data_file=None,
        branch=True,
        include=[root + "*"],
        cover_pylib=True,
        config_file=False,
        auto_data=False,
    )
    cov.set_option("run:disable_warnings", ["no-data-collected", "module-not-measured"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cov.start()
    return cov


def _scalar(value: Any) -> Value:
    if isinstance(value, bool | int):
        return value if isinstance(value, bool) or abs(value) < 2**53 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None  # a list from .tolist(): the conversion is recorded, not its contents


def _lines(
    cov: Any, frames: ModelFrames, kept: list[str], built_by: frozenset[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = cov.get_data()
    # the battery's contexts and the probes the search kept; the other probes' runs are not evidence
    wanted = [r"^(\d+|" + "|".join(re.escape(k) for k in kept or ["-"]) + ")$"]
    data.set_query_contexts(wanted)
    files: dict[str, Any] = {}
    shapes: list[dict[str, Any]] = []
    for path in sorted(data.measured_files())[:MAX_FILES]:
        rel = frames.relative(os.path.realpath(path))
        if rel is None:
            continue
        _, statements, _, _, _ = cov.analysis2(path)
        statements = _in_functions(path, statements, built_by)
        by_input: dict[str, list[int]] = {}
        for line, contexts in data.contexts_by_lineno(path).items():
            for context in contexts:
                if context.isdigit() or context in kept:
                    by_input.setdefault(context, []).append(line)
        shapes += _shape_sides(data, path, rel, set(by_input), wanted)
        files[rel] = {
            "executable": sorted(statements),
            "lines_by_input": {k: sorted(v) for k, v in by_input.items()},
            "arcs": sorted([a, b] for a, b in (data.arcs(path) or [])),
            "possible_arcs": _possible_arcs(cov, path),
        }
    return files, shapes


_SIZE_ATTRIBUTES = {"shape", "ndim"}
_SIZE_METHODS = {"size", "dim", "numel", "ndimension"}


def _shape_tests(path: str) -> list[tuple[int, int, str]]:
    """(line, first line of the true side, source) of each `if`/`while` whose test reads a size."""
    try:
        source = Path(path).read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.While) and _reads_size(node.test) and node.body:
            text = linecache.getline(path, node.lineno).strip()[:MAX_SOURCE_CHARS]
            found.append((node.lineno, node.body[0].lineno, text))
    return found


def _reads_size(test: ast.expr) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in _SIZE_ATTRIBUTES:
            return True
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _SIZE_METHODS:
                return True
            if isinstance(func, ast.Name) and func.id == "len":
                return True
    return False


def _shape_sides(
    data: Any, path: str, rel: str, contexts: set[str], wanted: list[str]
) -> list[dict[str, Any]]:
    # which way each size test went per context: the arcs out of its line (True: into its body)
    tests = _shape_tests(path)
    if not tests:
        return []
    points = {
        line: {"file": rel, "line": line, "source": text, "kind": "shape", "inputs": {}}
        for line, _, text in tests
    }
    body = {line: first for line, first, _ in tests}
    try:
        for context in sorted(contexts):
            data.set_query_contexts([f"^{re.escape(context)}$"])
            for start, end in data.arcs(path) or ():
                if start in points:
                    taken = points[start]["inputs"].setdefault(context, [])
                    value = end == body[start]
                    if value not in taken:
                        taken.append(value)
    finally:
        data.set_query_contexts(wanted)
    return [p for p in points.values() if p["inputs"]]


def _shape_decisions(
    points: list[dict[str, Any]], index: dict[str, int], data_points: set[tuple[str, int]]
) -> list[dict[str, Any]]:
    # a line that also converts a tensor is a data decision already
    decisions = []
    for p in points:
        if (p["file"], p["line"]) in data_points:
            continue
        inputs = sorted((index[c], vals) for c, vals in p["inputs"].items() if c in index)
        if inputs:
            decisions.append(
                {
                    **{k: v for k, v in p.items() if k != "inputs"},
                    "inputs": [{"input": i, "values": v} for i, v in inputs],
                }
            )
    return decisions


def _in_functions(path: str, statements: list[int], built_by: frozenset[str]) -> list[int]:
    # module and class bodies ran at import, and the model's construction (`__init__`, the spec's
    # entrypoint) at load, before recording began: only the lines of the other functions count, each
    # line belonging to the innermost function around it (a forward defined inside build() counts)
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return statements
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    owner: dict[int, bool] = {}  # line -> counts
    for node in sorted(functions, key=lambda n: (n.end_lineno or n.lineno) - n.lineno, reverse=True):
        counts = node.name not in built_by
        for stmt in node.body:
            for line in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
                owner[line] = counts
    return [line for line in statements if owner.get(line, False)]


def _possible_arcs(cov: Any, path: str) -> list[list[int]] | None:
    # coverage.py has no public API for a file's possible arcs; None where its private one moved.
    try:
        possible = cov._analyze(path).arc_possibilities
        return sorted([a, b] for a, b in (possible() if callable(possible) else possible))
    except Exception:
        return None
