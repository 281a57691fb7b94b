"""Jinja2 filters for the pages: times, sizes, seconds and errors as people read them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from regctl.registry.sizes import human_size


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


FILTERS = {"when": when, "num": num, "seconds": seconds, "size": size, "percent": percent}
