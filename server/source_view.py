"""The version page's annotated source: the model's files as the battery ran them.

`source_view` is pure: the report's `coverage` section (worker/judge/coverage.py documents it) and
the files' bytes from the stored bundle in, rows out. Each line says whether it ran on every battery
input, on some or on none, and a line with a decision point says which values it took and on which
inputs. `annotated_source` is the page's glue: it reads the files through the service layer and
turns every failure into a one-line note, never an error page.

The section and the source are both the model side's word: names are checked as clean relative
paths before anything is read, only files the section names are read, everything is bounded (files,
bytes, lines, links), and the text is only ever shown (the template autoescapes it), never run.
"""

from __future__ import annotations

import ast
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regctl.registry.access import Caller
from regctl.registry.entities import VersionInfo
from regctl.registry.errors import RegctlError
from regctl.registry.settings import Settings
from regctl.server.report_view import report_of
from regctl.service.artifacts import read_bundle_files

log = logging.getLogger(__name__)

MAX_FILES = 20  # files shown; a model with more is summarised, not listed
MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 1024 * 1024  # across the files shown: the page stays a page
MAX_LINES = 5000  # per file
MAX_LINKS = 10  # input links per value taken
MAX_VALUES = 10  # values listed per decision (`.item()` may take one per input)
MAX_INPUTS = 1000  # input labels listed
MAX_NAME = 500
BRANCH_KINDS = ("__bool__", "shape")  # truth values: a branch taken or not, rather than a number
RUN_MARKS = {"all": "ran on every input", "some": "ran on some inputs", "never": "never ran"}


@dataclass(frozen=True)
class Side:
    """One value a decision took, and the inputs that took it (the first MAX_LINKS, then a count)."""

    value: str
    inputs: tuple[int, ...]
    more: int


@dataclass(frozen=True)
class Decision:
    """A decision point on a line: the values it took and what the search and the trace did with it."""

    kind: str
    source: str
    reached: int
    state: str  # "both", "one", "flipped" (both, one side first taken by a searched input) or "none"
    baked: bool
    accepted: bool
    sides: tuple[Side, ...]
    more_values: int

    @property
    def label(self) -> str:
        """The state in words, for the line's marker."""
        if self.state == "none":
            return "reached by no input"
        if self.state == "one":
            return "one way only" if self.kind in BRANCH_KINDS else "one value only"
        both = "taken both ways" if self.kind in BRANCH_KINDS else "took more than one value"
        return f"{both}, a side first by an input the search found" if self.state == "flipped" else both


@dataclass(frozen=True)
class Row:
    """One source line: its number, its text, how often it ran (None: not marked) and its decisions."""

    number: int
    text: str
    run: str | None
    decisions: tuple[Decision, ...] = ()

    @property
    def run_label(self) -> str:
        """The run mark in words (a title and a visible marker: the colour is never the only cue)."""
        return RUN_MARKS.get(self.run or "", "")


@dataclass(frozen=True)
class SourceFile:
    """A file of the bundle with its rows; `note` says what is missing from it."""

    name: str
    lines_run: int | None
    lines: int | None
    rows: tuple[Row, ...]
    note: str | None = None


@dataclass
class SourceView:
    """What the page's "Source coverage" section shows; `note` alone when there is nothing to show."""

    note: str | None = None
    summary: str = ""
    files: list[SourceFile] = field(default_factory=list)
    inputs: list[tuple[int, str]] = field(default_factory=list)
    inputs_more: int = 0
    remarks: list[str] = field(default_factory=list)  # the section's own warnings, shown under it

    def label(self, index: int) -> str:
        """The label of input `index` (empty when it is not listed)."""
        return self.inputs[index][1] if 0 <= index < len(self.inputs) else ""


def clean_name(name: Any) -> bool:
    """True for a plain relative path inside a bundle (`model.py`, `pkg/layers.py`), nothing else."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return False
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return False
    parts = name.split("/")
    return posixpath.normpath(name) == name and ".." not in parts and "." not in parts


def wanted_files(coverage: Mapping[str, Any]) -> list[str]:
    """The clean file names the section names (its files, then its decisions' files), at most MAX_FILES."""
    names: list[str] = []
    entries = [*_dicts(coverage.get("files")), *_dicts(coverage.get("decisions"))]
    for entry in entries:
        name = entry.get("file")
        if clean_name(name) and name not in names:
            names.append(name)
    return names[:MAX_FILES]


def summary_line(coverage: Mapping[str, Any]) -> str:
    """'41/43 lines; 5 of 6 decisions taken both ways' (the CLI's `versions show` line, less its list)."""
    parts = []
    lines_run, lines = coverage.get("lines_run"), coverage.get("lines")
    if _is_int(lines_run) and _is_int(lines):
        parts.append(f"{lines_run}/{lines} lines")
    decisions = _dicts(coverage.get("decisions"))
    both = sum(1 for d in decisions if d.get("one_way") is False)
    parts.append(f"{both} of {len(decisions)} decision{'s' if len(decisions) != 1 else ''} taken both ways")
    return "; ".join(parts)


def source_view(coverage: Mapping[str, Any], sources: Mapping[str, bytes | None]) -> SourceView:
    """The annotated source of the files in `sources` (name -> bytes, None: over MAX_FILE_BYTES).

    Files the section names that are not clean names or not in `sources` show nothing.
    """
    if coverage.get("recorded") is not True:
        reason = coverage.get("warning")
        known = isinstance(reason, str) and reason and reason != "not recorded"
        return SourceView(note=f"Coverage was not recorded{f': {reason}' if known else ''}.")
    view = SourceView(summary=summary_line(coverage), remarks=_remarks(coverage))
    entries = {e.get("file"): e for e in _dicts(coverage.get("files"))}
    decisions = _decisions_by_line(coverage)
    budget = MAX_TOTAL_BYTES
    for name in wanted_files(coverage):
        if name not in sources:
            continue  # not a file of the stored bundle: nothing to show for it
        data = sources[name]
        entry = entries.get(name, {})
        if data is None or len(data) > budget:
            why = (
                f"over {MAX_FILE_BYTES // 1024} KB"
                if data is None
                else "the page shows at most 1 MB of source"
            )
            view.files.append(_file(name, entry, (), f"not shown: {why}"))
            continue
        budget -= len(data)
        view.files.append(_annotated(name, data.decode("utf-8", "replace"), entry, decisions.get(name, {})))
    labels = [label if isinstance(label, str) else "" for label in _list(coverage.get("inputs"))]
    view.inputs = list(enumerate(labels[:MAX_INPUTS]))
    view.inputs_more = max(0, len(labels) - MAX_INPUTS)
    return view


def annotated_source(settings: Settings, caller: Caller, version: VersionInfo) -> SourceView:
    """The version page's source section: the report's coverage over the files of the stored bundle.

    Any failure (no coverage, no permission, a missing or damaged bundle) is a one-line note.
    """
    coverage = report_of(version).get("coverage")
    if not isinstance(coverage, dict) or coverage.get("recorded") is not True:
        return source_view(coverage if isinstance(coverage, dict) else {}, {})
    if not caller.can("fetch", version.model):
        return SourceView(
            note="The annotated source is shown to those who may fetch this version's artifacts."
        )
    try:
        sources = read_bundle_files(settings, caller, version, wanted_files(coverage), MAX_FILE_BYTES)
    except RegctlError as exc:
        return SourceView(note=f"The source bundle could not be read: {exc}")
    except Exception as exc:  # the section is advisory: the rest of the page must still show
        log.exception("reading the source bundle of %s", version.ref)
        return SourceView(note=f"The source bundle could not be read ({type(exc).__name__}).")
    return source_view(coverage, sources)


def _annotated(
    name: str, text: str, entry: Mapping[str, Any], decisions: Mapping[int, list[Decision]]
) -> SourceFile:
    # Python's own line ends only: splitlines() would also split at form feeds and U+2028, which a
    # hostile file could use to shift the numbers away from the lines coverage.py counted
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    never, some = _line_set(entry.get("never_run")), _line_set(entry.get("some_run"))
    total = entry.get("lines")
    if isinstance(entry.get("all_run"), list):  # the report lists them (reports since issue 24's search)
        statements: set[int] | None = _line_set(entry.get("all_run")) | never | some
    else:
        statements = _statement_lines(text)
    # in an older report coverage.py's executable lines are not listed: the parse's own list stands in
    # only where it agrees with the report's count; otherwise lines it did not list stay unmarked.
    exact = statements is not None and never | some <= statements and len(statements) == total
    rows = []
    for number, line in enumerate(lines[:MAX_LINES], start=1):
        if number in never:
            run: str | None = "never"
        elif number in some:
            run = "some"
        elif exact and number in (statements or set()):
            run = "all"
        else:
            run = None
        rows.append(Row(number, line, run, tuple(decisions.get(number, ()))))
    notes = []
    if len(lines) > MAX_LINES:
        notes.append(f"the first {MAX_LINES} of its {len(lines)} lines shown")
    if not exact and entry:
        notes.append("lines with no mark ran on every input or are not executable")
    return _file(name, entry, tuple(rows), "; ".join(notes) or None)


def _file(name: str, entry: Mapping[str, Any], rows: tuple[Row, ...], note: str | None) -> SourceFile:
    lines_run, lines = entry.get("lines_run"), entry.get("lines")
    return SourceFile(
        name, lines_run if _is_int(lines_run) else None, lines if _is_int(lines) else None, rows, note
    )


def _statement_lines(text: str) -> set[int] | None:
    """The first lines of the statements inside function bodies, less docstrings: what coverage.py
    counts as executable there (the recorder keeps only function bodies). None when it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
        for statement in body:
            found.update(n.lineno for n in ast.walk(statement) if isinstance(n, ast.stmt | ast.ExceptHandler))
    return found


def _decisions_by_line(coverage: Mapping[str, Any]) -> dict[str, dict[int, list[Decision]]]:
    found: dict[str, dict[int, list[Decision]]] = {}
    for d in _dicts(coverage.get("decisions")):
        name, line = d.get("file"), d.get("line")
        if clean_name(name) and _is_int(line):
            found.setdefault(name, {}).setdefault(line, []).append(_decision(d))
    return found


def _decision(d: Mapping[str, Any]) -> Decision:
    sides = []
    for taken in _dicts(d.get("taken")):
        inputs = [i for i in _list(taken.get("inputs")) if _is_int(i) and i >= 0]
        sides.append(
            Side(_value(taken.get("value")), tuple(inputs[:MAX_LINKS]), max(0, len(inputs) - MAX_LINKS))
        )
    if not sides:
        state = "none"
    elif len(sides) == 1 or d.get("one_way") is True:
        state = "one"
    else:
        state = "flipped" if d.get("flipped_by_search") is True else "both"
    kind, source, reached = d.get("kind"), d.get("source"), d.get("reached")
    return Decision(
        kind=kind if isinstance(kind, str) else "",
        source=source if isinstance(source, str) else "",
        reached=reached if _is_int(reached) else 0,
        state=state,
        baked=d.get("baked") is True,
        accepted=d.get("accepted") is True,
        sides=tuple(sides[:MAX_VALUES]),
        more_values=max(0, len(sides) - MAX_VALUES),
    )


def _value(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return repr(value)
    return "a value not recorded"  # `.tolist()` records the conversion, not the list


def _remarks(coverage: Mapping[str, Any]) -> list[str]:
    found = []
    dropped = coverage.get("decisions_dropped")
    if _is_int(dropped) and dropped > 0:
        found.append(
            f"{dropped} more decision point{'s were' if dropped != 1 else ' was'} reached and not kept."
        )
    for key in ("shape_decisions", "files_error"):
        if isinstance(coverage.get(key), str):
            found.append(coverage[key][:MAX_NAME])
    search = coverage.get("search")
    if isinstance(search, dict) and _is_int(search.get("tried")) and search["tried"] > 0:
        kept = len(_dicts(search.get("found")))
        stopped = str(search.get("stopped") or "")[:MAX_NAME]
        found.append(
            f"The search for untaken sides tried {search['tried']} inputs and found {kept} that joined "
            f"the battery ({stopped})."
        )
    accepted = [str(p)[:MAX_NAME] for p in _list(coverage.get("accept_baked"))[:MAX_FILES]]
    if accepted:
        found.append(
            f"The owner accepts these decisions baked one way (accept_baked): {', '.join(accepted)}."
        )
    return found


def _line_set(value: Any) -> set[int]:
    return {n for n in _list(value) if _is_int(n)}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
