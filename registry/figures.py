"""How a measured ratio is shown: two significant figures, never without its spread.

Shared by the worker (the report's text), the CLI and the version page; imports neither torch nor
Celery. A latency ratio is artifact / eager (below 1: the artifact is faster). Its spread is the
range the two interquartile ranges allow, [artifact q1 / eager q3, artifact q3 / eager q1].
"""

from __future__ import annotations

import math
from typing import Any


def two_significant(value: float) -> float:
    """`value` rounded to two significant figures (0.004631 -> 0.0046, 123.4 -> 120.0)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, 1 - math.floor(math.log10(abs(value))))


def significant_text(value: float) -> str:
    """`value` at two significant figures as text, without exponent or spurious digits."""
    rounded = two_significant(value)
    if rounded == 0 or not math.isfinite(rounded):
        return str(rounded)
    decimals = max(0, 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


def ratio_text(latency: Any) -> str | None:
    """'0.88× eager's time (0.80–0.95, noisy)' from a report's latency section; None without a ratio.

    The spread is part of the figure: a section without `ratio_range` (a report written before it
    existed) says its spread is unknown rather than show the ratio alone.
    """
    if not isinstance(latency, dict) or not _number(latency.get("ratio")):
        return None
    spread = latency.get("ratio_range")
    if isinstance(spread, list | tuple) and len(spread) == 2 and all(_number(v) for v in spread):
        within = f"{significant_text(spread[0])}–{significant_text(spread[1])}"
    else:
        within = "spread not measured"
    noisy = ", noisy" if latency.get("noisy") is True else ""
    return f"{significant_text(latency['ratio'])}× eager's time ({within}{noisy})"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
