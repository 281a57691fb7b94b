"""The report's `coverage` section, from the reference runner's coverage.json (worker/model/recorder.py).

coverage.json is the model side's word, like its eager outputs: it is validated strictly here
(types, bounds, input indexes within the battery, file names inside the bundle) and only then
summarized. A missing or malformed file gives a section with a `warning`, never a crash, and the
section never changes the verdict.

Section shape:

    recorded        True when a valid coverage.json was read
    warning         why not (missing, malformed), else None
    lines_run, lines          lines of the model's files run on some input / executable lines
    branches_run, branches    branch arcs run / possible (None where coverage.py gave none)
    files           [{file, lines_run, lines, never_run, some_run, all_run}]: executable lines run on
                    no input, on some inputs but not all, and on every input (each bounded)
    decisions       [{file, line, source, kind, reached, one_way, taken: [{value, inputs}]}]
        flipped_by_search   a value first taken by an input the search found
        baked, accepted     set by the trace's verdict (baked.py): the trace baked it; accept_baked lists it
    inputs          the label of each input index the section names (battery order, found inputs last)
    search          what the reference runner's search tried and found (`search_section`)
    accept_baked    the spec's accept_baked entries, the owner's recorded choice
    decisions_dropped, shape_decisions, files_error   as the reference runner wrote them
"""

from __future__ import annotations

import posixpath
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from regctl.registry.spec import ModelSpec
from regctl.worker.contract import COVERAGE_FILE
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.exchange import ExchangeError, ModelSide, SearchSide, read_json
from regctl.worker.engine.probes import found_case, probe, structured

MAX_COVERAGE_BYTES = 8 * 1024 * 1024
MAX_LINE = 10_000_000
MAX_NEVER_RUN = 200  # listed per file in the report
MAX_ALL_RUN = 5000  # the lines run on every input, per file, for the annotated source
MAX_FILES = 200
Line = Annotated[int, Field(strict=True, ge=-MAX_LINE, le=MAX_LINE)]
Value = StrictBool | StrictInt | StrictFloat | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Taken(_Strict):
    input: int = Field(ge=0)
    values: list[Value] = Field(max_length=4)


class _Decision(_Strict):
    file: str = Field(max_length=500)
    line: int = Field(ge=1, le=MAX_LINE)
    source: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    inputs: list[_Taken] = Field(max_length=100_000)


class _File(_Strict):
    executable: list[Line] = Field(max_length=200_000)
    lines_by_input: dict[str, list[Line]]
    arcs: list[Annotated[list[Line], Field(min_length=2, max_length=2)]] = Field(max_length=400_000)
    possible_arcs: list[Annotated[list[Line], Field(min_length=2, max_length=2)]] | None = Field(
        default=None, max_length=400_000
    )


class _Coverage(_Strict):
    decisions: list[_Decision] = Field(max_length=200)
    decisions_dropped: int = Field(ge=0, le=2**31 - 1)
    shape_decisions: str | None = Field(default=None, max_length=500)
    files: dict[str, _File] | None = None
    files_error: str | None = Field(default=None, max_length=500)


def empty_coverage(warning: str | None = "not recorded") -> dict[str, Any]:
    """The section when there is nothing valid to show, saying why."""
    return {
        "recorded": False,
        "warning": warning,
        "lines_run": None,
        "lines": None,
        "branches_run": None,
        "branches": None,
        "files": [],
        "decisions": [],
        "decisions_dropped": 0,
        "shape_decisions": None,
        "files_error": None,
        "inputs": [],
        "search": None,
        "accept_baked": [],
    }


def found_inputs(search: SearchSide | None, spec: ModelSpec, seed: int) -> list[BatteryCase]:
    """The inputs the search reports it found, rebuilt here from the seed: they join the battery.

    Raises ExchangeError when the report cannot be true of this spec's search (an index it would
    never try, one listed twice, more than its budget).
    """
    if search is None or not search.found:
        return []
    indexes = [f.probe for f in search.found]
    budget = spec.validation.search
    if len(set(indexes)) != len(indexes):
        raise ExchangeError("the reference runner's search lists a probe twice")
    if max(indexes) >= budget or search.tried > budget:
        raise ExchangeError(f"the reference runner's search reports more than its {budget} forwards")
    return [found_case(probe(spec, seed, f.probe), list(f.flips)) for f in search.found]


def search_section(search: SearchSide | None, battery_size: int, spec: ModelSpec) -> dict[str, Any] | None:
    """What the search tried and found, found inputs named by their index in the judged battery."""
    if search is None:
        return None
    plans = structured(spec)
    return {
        "ran": search.tried > 0,
        "targets": list(search.targets),
        "tried": search.tried,
        "probes": [p.what for p in plans[: search.tried]],  # the structured ones, in order
        "random": max(0, search.tried - len(plans)),
        "raised": search.raised,
        "found": [
            {"input": battery_size + k, "probe": f.probe, "flips": list(f.flips)}
            for k, f in enumerate(search.found)
        ],
        "stopped": search.stopped,
        "seconds": search.seconds,
        "budget_forwards": search.budget_forwards,
        "budget_seconds": search.budget_seconds,
    }


def coverage_section(
    reference_dir: Path,
    labels: list[str],
    model_dir: Path | None = None,
    *,
    searched_from: int | None = None,
) -> dict[str, Any]:
    """The `coverage` report section from the reference runner's coverage.json (module docstring).

    `labels` are the judged battery's inputs, in order; those from `searched_from` on are the ones
    the search found. With `model_dir`, every file named must also be a file of the bundle there.
    """
    battery_size = len(labels)
    searched_from = battery_size if searched_from is None else searched_from
    try:
        raw = read_json(Path(reference_dir) / COVERAGE_FILE, MAX_COVERAGE_BYTES)
        record = _Coverage.model_validate(raw)
        _check(record, battery_size, model_dir)
    except ExchangeError as exc:
        return empty_coverage(f"coverage not recorded: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])[:200]
        return empty_coverage(
            f"the reference runner wrote an invalid {COVERAGE_FILE} ({where}: {first['msg']})"
        )
    except ValueError as exc:
        return empty_coverage(f"the reference runner wrote an invalid {COVERAGE_FILE} ({exc})")
    except Exception as exc:  # the section is advisory: nothing in it may stop the verdict
        return empty_coverage(f"{COVERAGE_FILE} could not be read ({type(exc).__name__})")
    section = _summary(record, battery_size, searched_from)
    section["inputs"] = list(labels)
    return section


def _check(record: _Coverage, battery_size: int, model_dir: Path | None) -> None:
    # what pydantic cannot say: indexes within this battery, names of the bundle's files
    names = [d.file for d in record.decisions] + list(record.files or {})
    for name in set(names):
        _bundle_name(name)
        if model_dir is not None and not (Path(model_dir) / name).is_file():
            raise ValueError(f"{name[:100]!r} is not a file of the bundle")
    if len(record.files or {}) > MAX_FILES:
        raise ValueError(f"more than {MAX_FILES} files")
    for d in record.decisions:
        indexes = [taken.input for taken in d.inputs]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"{d.file[:100]}:{d.line} lists an input twice")
        if indexes and max(indexes) >= battery_size:
            raise ValueError(f"input {max(indexes)} of {d.file[:100]}:{d.line} is outside the battery")
    for name, f in (record.files or {}).items():
        for key in f.lines_by_input:
            if not key.isdigit() or int(key) >= battery_size:
                raise ValueError(f"input {key[:20]!r} of {name} is outside the battery")


def _bundle_name(name: str) -> None:
    normal = posixpath.normpath(name)
    if not name or name.startswith("/") or normal != name or normal.startswith("..") or "\\" in name:
        raise ValueError(f"{name[:100]!r} is not a file of the bundle")


def _summary(record: _Coverage, battery_size: int, searched_from: int) -> dict[str, Any]:
    section = empty_coverage(None)
    section.update(
        recorded=True,
        decisions=[_decision(d, searched_from) for d in record.decisions],
        decisions_dropped=record.decisions_dropped,
        shape_decisions=record.shape_decisions,
        files_error=record.files_error,
    )
    if record.files is None:
        return section
    files, run_total, lines_total, arcs_run, arcs_possible = [], 0, 0, 0, 0
    exact_arcs = True
    for name, f in sorted(record.files.items()):
        executable = set(f.executable)
        runs = Counter(line for lines in f.lines_by_input.values() for line in set(lines))
        ran = executable & set(runs)
        never = sorted(executable - ran)
        some = sorted(line for line in ran if runs[line] < battery_size)
        files.append(
            {
                "file": name,
                "lines_run": len(ran),
                "lines": len(executable),
                "never_run": never[:MAX_NEVER_RUN],
                "some_run": some[:MAX_NEVER_RUN],
                "all_run": sorted(ran - set(some))[:MAX_ALL_RUN],
            }
        )
        run_total, lines_total = run_total + len(ran), lines_total + len(executable)
        if f.possible_arcs is None:
            exact_arcs = False
            continue
        exits = Counter(a[0] for a in f.possible_arcs)
        # a branch arc leaves a line with more than one way out (coverage.py's own definition)
        possible = {tuple(a) for a in f.possible_arcs if exits[a[0]] > 1}
        arcs_possible += len(possible)
        arcs_run += len(possible & {tuple(a) for a in f.arcs})
    section.update(files=files, lines_run=run_total, lines=lines_total)
    if exact_arcs:
        section.update(branches_run=arcs_run, branches=arcs_possible)
    return section


def _decision(d: _Decision, searched_from: int) -> dict[str, Any]:
    taken: dict[str, dict[str, Any]] = {}
    for entry in d.inputs:
        for value in entry.values:
            slot = taken.setdefault(repr(value), {"value": value, "inputs": []})
            slot["inputs"].append(entry.input)
    return {
        "file": d.file,
        "line": d.line,
        "source": d.source,
        "kind": d.kind,
        "reached": len(d.inputs),
        "one_way": len(taken) == 1,
        "taken": list(taken.values()),
        "flipped_by_search": any(min(t["inputs"]) >= searched_from for t in taken.values()),
        "baked": False,
        "accepted": False,
    }


def judged_coverage(
    reference_dir: Path, model_dir: Path, spec: ModelSpec, ran: ModelSide, battery: list[BatteryCase]
) -> dict[str, Any]:
    """The report's coverage section: what the battery ran, what the search tried and found."""
    found = len(ran.search.found) if ran.search else 0
    section = coverage_section(
        reference_dir,
        [c.label for c in battery],
        model_dir,
        searched_from=len(battery) - found,
    )
    section["search"] = search_section(ran.search, len(battery) - found, spec)
    section["accept_baked"] = list(spec.validation.accept_baked)
    return section
