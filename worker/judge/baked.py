"""A trace is proven only where it was tested on both sides of what it baked.

A trace replays one run: every tensor the model's code turned into a Python value while tracing
(a TracerWarning at that line, or a conversion the builder recorded, `CandidateSide.baked`) is a
decision frozen into the graph. Matching eager on the battery proves the trace only for the sides
the battery took. So, after the trace matched on every input (search-found ones included):

- a baked point whose recorded decision took one value on every input, after the search, rejects
  the trace with one line naming the point, unless `accept_baked` under [validation] lists it;
- a baked point the spec accepts is marked `accepted` in the report's coverage section;
- size decisions (kind "shape") are not rejected: the battery runs every dim at its min and its
  max, so a size test one way over those is one way over the spec's whole range as far as a
  monotone test goes; they are reported like every other decision;
- a baked point with no recorded decision (the conversion happened in library code the bundle
  calls) cannot be judged here and is left to the battery.

The coverage section is the model side's word; when it could not be read, a trace that baked
anything is not proven.
"""

from __future__ import annotations

from typing import Any

from regctl.worker.engine.exchange import CandidateSide


def baked_points(claimed: CandidateSide) -> list[str]:
    """Every "file:line" the trace baked: its TracerWarnings' lines and its recorded conversions."""
    points = set(claimed.baked)
    for warning in claimed.warnings:
        file, line = warning.get("file"), warning.get("line")
        if isinstance(file, str) and isinstance(line, int) and not isinstance(line, bool):
            points.add(f"{file}:{line}")
    return sorted(points)


def baked_verdict(coverage: dict[str, Any], baked: list[str], accepted: tuple[str, ...]) -> str | None:
    """Why the trace is not proven (one line), or None; marks `baked`/`accepted` on the decisions."""
    if not baked:
        return None
    if not coverage.get("recorded"):
        first = baked[0]
        return (
            f"trace baked {first}, and the battery's coverage could not be read "
            f"({coverage.get('warning')}), so nothing shows the battery took it both ways; "
            f'script the model, or accept it with accept_baked = ["{first}"] under [validation]'
        )
    decisions = {f"{d['file']}:{d['line']}": d for d in coverage.get("decisions", [])}
    unproven = []
    for point in baked:
        decision = decisions.get(point)
        if decision is None:
            continue
        decision["baked"] = True
        if point in accepted:
            decision["accepted"] = True
        elif decision["one_way"] and decision["kind"] != "shape":
            unproven.append(decision)
    if not unproven:
        return None
    first = unproven[0]
    point = f"{first['file']}:{first['line']}"
    more = f" (and {len(unproven) - 1} more such points)" if len(unproven) > 1 else ""
    return (
        f"trace baked {point} `{first['source']}`, which took the same {side_word(first)} on "
        f"{tested_on(coverage)}{more}; script the model, add recorded inputs that take the other "
        f'{side_word(first)}, or accept it with accept_baked = ["{point}"] under [validation]'
    )


def coverage_gaps(coverage: dict[str, Any]) -> list[str]:
    """One line per decision taken one way only and not accepted: what script was never run on."""
    gaps = []
    for d in coverage.get("decisions", []):
        if d["one_way"] and not d.get("accepted"):
            gaps.append(
                f"{d['file']}:{d['line']} `{d['source']}` took the same {side_word(d)} on "
                f"{tested_on(coverage)}: the other {side_word(d)} was never run against eager"
            )
    return gaps


def side_word(decision: dict[str, Any]) -> str:
    """ "branch" for a truth value, "value" for a number."""
    return "branch" if decision["kind"] in ("__bool__", "shape") else "value"


def tested_on(coverage: dict[str, Any]) -> str:
    """ "all 36 inputs and 48 searched ones": what a one-way decision was tried on."""
    search = coverage.get("search") or {}
    found = len(search.get("found", []))
    inputs = len(coverage.get("inputs", [])) - found
    tried = search.get("tried", 0)
    return f"all {inputs} inputs" + (f" and {tried} searched ones" if tried else "")
