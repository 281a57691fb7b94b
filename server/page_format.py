"""Jinja2 filters for the pages: times, sizes, seconds and errors as people read them; and `page_text`,
the pages' finalize, which shows every hidden character of every value as a visible escape."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from regctl.registry.figures import ratio_text
from regctl.registry.text import human_size, visible, visible_data


def when(value: datetime | None) -> str:
    """'2026-11-30 02:35:12 UTC'; an em dash for no time."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def num(value: Any) -> str:
    """A float to three significant digits ('inf' and missing values spelled out)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    if not math.isfinite(value):
        return "∞" if value > 0 else ("nan" if math.isnan(value) else "-∞")
    return f"{value:.3g}"


def seconds(value: Any) -> str:
    """Seconds as '0.42 s', '12.3 s' or '3 min 5 s'."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    if value >= 120:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{value:.3g} s"


def size(value: Any) -> str:
    """Bytes as '1.2 MB' (as the CLI writes them)."""
    return human_size(value) if isinstance(value, int) else "—"


def percent(value: Any) -> str:
    """A share of the tolerance as a percentage: 0.25 -> '25%'."""
    if value is None or not isinstance(value, int | float):
        return "—"
    if not math.isfinite(value):
        return "∞"
    return f"{100 * value:.3g}%"


def ratio(latency: Any) -> str:
    """A report's latency section as '0.88× eager's time (0.80–0.95, noisy)' (registry/figures.py)."""
    return ratio_text(latency) or "—"


FILTERS = {"when": when, "num": num, "seconds": seconds, "size": size, "percent": percent, "ratio": ratio}


def page_text(value: Any) -> Any:
    """Every `{{ value }}` of every template: a string's hidden characters (controls, bidi overrides,
    zero-width) as visible escapes (registry/text.py), before autoescape makes it HTML-safe.

    Markup (the pages' own charts) passes unchanged; line breaks stay (the CSS decides how they show).
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


async def visible_events(chunks: AsyncIterable[str | bytes]) -> AsyncIterator[str | bytes]:
    """Server-sent events for the pages' script, every string in their JSON shown by `page_text`'s rule.

    The script writes values with textContent (never markup); this keeps bidi overrides and other
    hidden characters of a live progress line or error from reaching the page either.
    """
    async for chunk in chunks:
        yield _visible_event(chunk) if isinstance(chunk, str) else chunk


def _visible_event(chunk: str) -> str:
    lines = []
    for line in chunk.split("\n"):
        if line.startswith("data: "):
            with contextlib.suppress(ValueError):  # not JSON: a line the stream itself wrote
                line = "data: " + json.dumps(visible_data(json.loads(line[6:])), separators=(",", ":"))
        lines.append(line)
    return "\n".join(lines)
