"""The one-line verdicts of a conversion: why a candidate was kept, or why none could be."""

from __future__ import annotations

from typing import Any

from regctl.worker.contract import UNKEPT_MAX_BYTES

NOT_RUN = "not run"  # a candidate's `judged_on` when the builder held it back, neither compiled nor saved
MB = 1_000_000


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
    if entry.get("judged_on") == NOT_RUN:
        return f"{chosen} matches eager on all {size} inputs; {entry['judged_note']}"
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


def held_back_entry(name: str, kept: str | None, full_round: bool, weights_bytes: int) -> dict[str, Any]:
    """What a candidate the builder held back (neither compiled nor saved) gets in its report entry."""
    if full_round:  # the full round saves every candidate: holding one back there is not allowed
        return {"error": f"the model process did not save the {name} artifact"}
    if kept is None:  # the preferred one failed: the full round saves and judges this one
        return {"error": f"{name} was not saved in the first round; the full round judges it"}
    return {
        "judged_on": NOT_RUN,
        "inputs_run": 0,
        "judged_note": (
            f"{name} was not compiled or run because {kept} compiled first and was kept: a candidate "
            f"that is not kept is built and judged only for weights up to {UNKEPT_MAX_BYTES / MB:.0f} "
            f"MB, and these are {weights_bytes / MB:.0f} MB; had {kept} failed, {name} would have been "
            "built and judged in full"
        ),
    }
