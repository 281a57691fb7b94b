"""The one-line verdicts of a conversion: why a candidate was kept, or why none could be."""

from __future__ import annotations

from typing import Any


def why_kept(candidates: dict[str, dict[str, Any]], chosen: str, order: tuple[str, ...], size: int) -> str:
    """Why `chosen` is the artifact, given every candidate's report entry and the battery's size."""
    if len(order) == 1:
        return f"method = {chosen} was requested; it matches eager on all {size} inputs"
    other = next(n for n in order if n != chosen)
    entry = candidates[other]
    if entry["ok"] and entry.get("judged_on") == "deciding inputs":
        return (
            f"script matches eager on all {size} inputs and trace on the {entry['inputs_run']} deciding "
            "inputs; script preferred because it keeps control flow and shape logic"
        )
    if entry["ok"]:
        return (
            f"script and trace both match eager on all {size} inputs; script preferred because "
            "it keeps control flow and shape logic"
        )
    verb = "failed" if other == "script" else "was rejected"
    return f"{other} {verb}: {entry['error']}; {chosen} matches eager on all {size} inputs"


def no_candidate_error(candidates: dict[str, dict[str, Any]], order: tuple[str, ...]) -> str:
    """The conversion's error when no candidate matched eager: every candidate's reason."""
    reasons = "; ".join(f"{n}: {candidates[n]['error']}" for n in order)
    if len(order) > 1:
        return f"neither method works: {reasons}"
    error = str(candidates[order[0]]["error"])
    return error if error.startswith(f"{order[0]} ") else f"{order[0]} failed: {error}"


def judged_scope(name: str, ok: bool, inputs: int, kept: str | None) -> dict[str, Any]:
    """What a candidate was judged on: the battery, or the deciding inputs once `kept` was kept."""
    scope: dict[str, Any] = {
        "judged_on": "battery" if kept is None else "deciding inputs",
        "inputs_run": inputs,
    }
    if kept is not None and ok:
        scope["judged_note"] = (
            f"{name} also matched on the {inputs} deciding inputs (every shape's first draw and one "
            f"input per side of each decision); not judged further because {kept} was kept"
        )
    return scope


def candidate_hint(name: str, claimed_hint: str | None, ok: bool, example: str | None) -> str | None:
    """The builder's hint, or for a failed trace without one, what a trace bakes in."""
    if name == "trace" and not ok and claimed_hint is None:
        return (
            f"the trace was recorded on input {example or 'the example'!r} and replays that run: "
            "shape- or data-dependent Python code is baked in"
        )
    return claimed_hint
