"""The JSON-safe report of a conversion or a validation.

Shape of a conversion report (keys are always present; values may be None):

    method          "script" | "trace" | None
    why             one sentence: the choice and the reason, or the failure
    error           the one-line failure, None when ok
    model           {"entrypoint", "kind" ("function" or the module class), "device"}
    requested       the method asked for: "auto" | "script" | "trace"
    battery_size    number of input sets
    candidates      {"script": {...}, "trace": {...}} for the methods tried, each with
                    ok, error, detail, hint, failed_input, max_abs_error, max_rel_error,
                    compile_s, battery_s, cases (every input it ran, in battery order: {label, group,
                    ok, max_abs_error, max_rel_error, tolerance_used}; a rejected candidate's list
                    ends at the input that exposed it; inputs it raised on come last), runtime,
                    runtime_note, judged_on ("battery", "deciding inputs", or "not run": held
                    back, neither compiled nor saved, contract.UNKEPT_MAX_BYTES), inputs_run and judged_note;
                    trace adds warnings [{message, file, line, count}],
                    strict and note
    shapes          per battery shape of the accepted artifact:
                    [{label, shape, cases, max_abs_error, max_rel_error}]
    outputs         the output signature over the battery, one entry per leaf (outputs.py):
                    [{path, within, kind, dtype, shape, varies}]
    libtorch        the LibTorch stage (libtorch.py): {ran, ok, skipped, error, detail, cases,
                    failures, failed_input, max_abs_error, max_rel_error, build_s, run_s}
    latency         {"input", "eager_ms", "artifact_ms", "eager", "artifact", "ratio", "ratio_range",
                    "noisy", "measured_by", "runs"}: eager and the kept artifact timed interleaved in
                    one model-side process (engine/latency.py); eager and artifact are {median_ms,
                    q1_ms, q3_ms, runs}; ratio is artifact / eager and ratio_range what the two
                    interquartile ranges allow, both at two significant figures; noisy when the
                    ranges overlap or either spread is over 20% of its median. Advisory: the model
                    side's word, never part of the verdict
    optimize        {"applied", "note", "unoptimized_ms", "optimized_ms"}
    export          {"ok", "error", "failed_input", "notes", "max_abs_error", "max_rel_error", "seconds"}
    torch_warnings  warnings raised by torch itself (TorchScript deprecations ...), de-duplicated
    model_warnings  other warnings (the model's own, third-party), de-duplicated; each list holds at
                    most bounds.MAX_WARNINGS entries {category, message, file, line, count}, messages
                    clipped to bounds.MAX_WARNING_CHARS
    warnings_dropped how many raised warnings neither list kept (beyond the caps; 0 when none)
    coverage        what the battery exercised in the model's files, the reference runner's word
                    (coverage.py in this folder): lines run, decision points and the values they took
    versions        {"torch", "python"}
    sandbox         added by the supervisor: {"model": ..., "judge": ...}, each the protections its
                    process ran under (worker/sandbox/confine.py: mode, namespaces, network,
                    filesystem, uid, limits, environment, process_tree, missing)
    timings         {"load_s", "battery_s", "script_s", "trace_s", "optimize_s", "libtorch_s",
                     "latency_s", "export_s", "total_s"}

Non-finite floats become the strings "inf", "-inf" and "nan" so the report is strict JSON.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from regctl.registry.figures import two_significant
from regctl.registry.spec import ModelSpec
from regctl.worker.contract import empty_section
from regctl.worker.engine.bounds import bounded_warnings
from regctl.worker.engine.capture import warning_dict
from regctl.worker.engine.exchange import LatencyPair
from regctl.worker.engine.latency import noisy, ratio_range
from regctl.worker.judge.coverage import empty_coverage
from regctl.worker.judge.evaluate import CandidateCheck

TIMING_KEYS = (
    "load_s",
    "battery_s",
    "script_s",
    "trace_s",
    "optimize_s",
    "libtorch_s",
    "latency_s",
    "export_s",
    "total_s",
)


NOT_ASKED = (
    'not asked for: add "exported" (or "aoti", "executorch", "onnx") to formats to export and prove a .pt2'
)


def export_section(spec: ModelSpec) -> dict[str, Any]:
    """The report's `export` section before the exported program is judged, or why it never is."""
    asked = spec.wants_program()
    return {
        "requested": asked,
        "ok": False,
        "error": "not attempted" if asked else None,
        "skipped": None if asked else NOT_ASKED,
        "failed_input": None,
        "notes": [],
    }


def new_report(spec: ModelSpec, requested: str) -> dict[str, Any]:
    """An empty conversion report with every key present."""
    return {
        "method": None,
        "why": None,
        "error": None,
        "model": {"entrypoint": spec.entrypoint, "kind": None, "device": spec.device},
        "requested": requested,
        "battery_size": 0,
        "candidates": {},
        "shapes": [],
        "outputs": [],
        "libtorch": empty_section(),
        "latency": None,
        "optimize": {"applied": False, "note": None, "unoptimized_ms": None, "optimized_ms": None},
        "export": export_section(spec),
        "torch_warnings": [],
        "model_warnings": [],
        "warnings_dropped": 0,
        "coverage": empty_coverage(),
        "versions": versions(),
        "timings": dict.fromkeys(TIMING_KEYS, 0.0),
    }


def candidate_entry(
    *,
    error: str | None = None,
    detail: str | None = None,
    hint: str | None = None,
    check: CandidateCheck | None = None,
    compile_s: float = 0.0,
    battery_s: float = 0.0,
) -> dict[str, Any]:
    """One candidate's verdict: ok only when it compiled and matched eager on the whole battery."""
    ok = error is None and check is not None and check.ok
    return {
        "ok": ok,
        "error": error if error is not None else (check.error if check else None),
        "detail": detail,
        "hint": None if ok else hint,
        "failed_input": check.failed_input if check else None,
        "max_abs_error": check.max_abs_error if check else None,
        "max_rel_error": check.max_rel_error if check else None,
        "compile_s": round(compile_s, 4),
        "battery_s": round(battery_s, 4),
        "cases": case_entries(check) if check else [],
    }


def case_entries(check: CandidateCheck) -> list[dict[str, Any]]:
    """Per battery input: the errors and how much of the tolerance they used (over 1 fails).

    An input on which the candidate raised has no output to measure: it is listed failing, errors None.
    """
    measured = {r.case.label: r for r in check.results}
    entries = []
    for r in check.results:
        c = r.comparison
        entries.append(
            {
                "label": r.case.label,
                "group": r.case.group,
                "ok": c.ok,
                "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error,
                "tolerance_used": c.tolerance_used,
            }
        )
    for label in check.failures:
        if label not in measured:
            entries.append(
                {
                    "label": label,
                    "group": None,
                    "ok": False,
                    "max_abs_error": None,
                    "max_rel_error": None,
                    "tolerance_used": None,
                }
            )
    return entries


def add_warnings(report: dict[str, Any], records: Iterable[Any], dropped: int = 0) -> None:
    """Add the warnings a run raised to the report's (TracerWarnings excluded: they belong to the
    trace candidate); each role of a job adds its own, and the same warning is counted, not repeated.

    The records come from the model side (untrusted, up to the exchange's caps): they are
    de-duplicated and capped again here (bounds.bounded_warnings), and `warnings_dropped` adds
    what was cut to the `dropped` the model side reported. A record may carry its own `count`.
    """
    torch_side = _listed(report.get("torch_warnings"))
    model_side = _listed(report.get("model_warnings"))
    for r in records:
        if r.category != "TracerWarning":
            (torch_side if r.from_torch is True else model_side).append(warning_dict(r))
    report["torch_warnings"], torch_dropped = bounded_warnings(torch_side)
    report["model_warnings"], model_dropped = bounded_warnings(model_side)
    earlier = _count(report.get("warnings_dropped"))
    report["warnings_dropped"] = earlier + _count(dropped) + torch_dropped + model_dropped


def _listed(entries: Any) -> list[dict[str, Any]]:
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def latency_entry(measured: LatencyPair, by: str) -> dict[str, Any]:
    """Eager beside the artifact, measured interleaved by the role `by`; ratio > 1: the artifact is slower.

    The exchange already refused non-finite, unbounded or unordered figures.
    """
    eager, artifact = measured.eager, measured.artifact
    low, high = ratio_range(eager, artifact)
    return {
        "input": measured.input,
        "eager_ms": eager.median_ms,
        "artifact_ms": artifact.median_ms,
        "eager": eager.model_dump(),
        "artifact": artifact.model_dump(),
        "ratio": two_significant(artifact.median_ms / eager.median_ms),
        "ratio_range": [two_significant(low), two_significant(high)],
        "noisy": noisy(eager, artifact),
        "measured_by": f"{by} (model side): eager and the artifact interleaved in one process",
        "runs": {"eager": eager.runs, "artifact": artifact.runs},
    }


def versions() -> dict[str, str]:
    """The versions a report was produced with."""
    return {"torch": torch.__version__, "python": platform.python_version()}


def json_safe(value: Any) -> Any:
    """A copy of `value` that json.dumps(allow_nan=False) accepts."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
