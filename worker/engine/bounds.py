"""Bounds on what a report may hold: warnings de-duplicated and capped, and the report's total size.

A model may raise millions of warnings, each megabytes long. They are bounded three times, because
the side that raises them is untrusted: where they are raised (capture.WarningLog, in the model
process), where the judge assembles the report from what the model process wrote
(report.add_warnings), and on the supervisor's side, which caps the whole report before it is
stored (`trim_report`). The report says how many warnings it left out (`warnings_dropped`).

Torch-free and dependency-free: the supervisor imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

MAX_WARNINGS = 100  # distinct warnings kept per list (file, line, category, message)
MAX_WARNING_CHARS = 2000  # per message
MAX_COUNT = 2**31 - 1
MAX_REPORT_BYTES = 1024 * 1024  # a report's JSON on the version row and in its blob
TRIMMED_KEY = "trimmed"
# What the pipeline and the pages read from a report: kept whole (shrunk) whatever else is cut.
KEEP_KEYS = ("ok", "method", "why", "error", "proved", "sandbox", "seed", "battery_seed", "versions")
_KEEP_SECTION_BYTES = 16 * 1024  # the last resort keeps every top-level section at most this big
_MAX_DEPTH = 24


def clip(text: str, limit: int = MAX_WARNING_CHARS) -> str:
    """`text` cut to `limit` characters, the cut marked with '…'."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def warning_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two warnings the same: file, line, category and (clipped) message."""
    return (entry.get("file"), entry.get("line"), entry.get("category"), entry.get("message"))


def bounded_warnings(
    entries: Iterable[Mapping[str, Any]], *, limit: int = MAX_WARNINGS
) -> tuple[list[dict[str, Any]], int]:
    """De-duplicated, capped warnings in first-seen order, and how many raised ones were left out.

    Each entry is a mapping with category, message, file, line and optionally count (occurrences,
    1 when absent); anything else in it is ignored. Fields of the wrong type are made harmless
    (untrusted input): text becomes str and is clipped, a line or count that is not a positive int
    becomes None or 1. The second value counts occurrences, not distinct warnings.
    """
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    dropped = 0
    for raw in entries:
        entry = _warning(raw)
        key = warning_key(entry)
        if key in kept:
            kept[key]["count"] = min(MAX_COUNT, kept[key]["count"] + entry["count"])
        elif len(kept) < limit:
            kept[key] = entry
        else:
            dropped = min(MAX_COUNT, dropped + entry["count"])
    return list(kept.values()), dropped


def _warning(raw: Mapping[str, Any]) -> dict[str, Any]:
    line, count, file = raw.get("line"), raw.get("count", 1), raw.get("file")
    return {
        "category": clip(str(raw.get("category") or "Warning"), 200),
        "message": clip(str(raw.get("message") or "")),
        "file": clip(str(file), 1000) if file is not None else None,
        "line": line if _positive_int(line) else None,
        "count": min(count, MAX_COUNT) if _positive_int(count) else 1,
    }


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (how the registry stores it)."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def trim_report(
    report: dict[str, Any], max_bytes: int = MAX_REPORT_BYTES, keep: Iterable[str] = KEEP_KEYS
) -> dict[str, Any]:
    """`report` itself when its JSON fits in `max_bytes`; else a smaller copy that says it was trimmed.

    Shrinks step by step: long strings clipped and long lists and mappings cut below the top level
    (each cut marked), then tighter. As a last resort it keeps the `keep` fields (what the pipeline
    reads: `proved`, the verdict, the sandbox) and the other top-level fields that are small on
    their own, and replaces the rest with a note. `trimmed` records the original size, so a reader
    knows the report is not whole.
    """
    size = json_size(report)
    if size <= max_bytes:
        return report
    note = {"original_bytes": size, "limit_bytes": max_bytes, "note": "too large: trimmed"}
    for chars, items in ((MAX_WARNING_CHARS, 200), (500, 50), (200, 10)):
        trimmed = {**_shrink(report, chars, items, 0), TRIMMED_KEY: note}
        if json_size(trimmed) <= max_bytes:
            return trimmed
    shrunk = _shrink(report, 200, 10, 0)
    kept = {key: shrunk[key] for key in keep if key in shrunk}
    last = {**kept, TRIMMED_KEY: note}
    total = json_size(last)
    for key, value in shrunk.items():
        if key in last:
            continue
        cost = json_size(value) + len(key) + 8
        if cost <= _KEEP_SECTION_BYTES and total + cost <= max_bytes:
            last[key], total = value, total + cost
        elif total + len(key) + 40 <= max_bytes:
            last[key], total = "(trimmed: too large)", total + len(key) + 40
    return last


def _shrink(value: Any, chars: int, items: int, depth: int) -> Any:
    if isinstance(value, str):
        return clip(value, chars)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list):
        return "(trimmed: nested too deeply)"
    if isinstance(value, dict):
        pairs = list(value.items())
        cut = len(pairs) if depth == 0 else items  # the top level keeps every section's name
        out = {clip(str(k), chars): _shrink(v, chars, items, depth + 1) for k, v in pairs[:cut]}
        if len(pairs) > cut:
            out["(trimmed)"] = f"{len(pairs) - cut} more entries"
        return out
    if isinstance(value, list | tuple):
        out_list = [_shrink(v, chars, items, depth + 1) for v in value[:items]]
        if len(value) > items:
            out_list.append(f"(trimmed: {len(value) - items} more)")
        return out_list
    return value
