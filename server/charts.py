"""Charts for the pages as inline SVG, drawn on the server: the pages work offline, with no chart library.

Every chart scales to its container (a viewBox, no fixed width), carries a text alternative (role="img"
and a <title>), and gives each mark its own <title> so a pointer or a screen reader can read the value.
Text that came from a model (input labels) is escaped by markupsafe like everything in the templates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

# The error chart's log axis: tolerance used, from "a millionth of it" to "a hundred times over".
FLOOR, CEILING = 1e-6, 1e2
PASS, FAIL, INK, GRID = "#1a7f37", "#cf222e", "#24292f", "#d0d7de"


@dataclass(frozen=True)
class ErrorPoint:
    """One battery input: how much of the tolerance its worst element used (None: it raised)."""

    label: str
    used: float | None
    ok: bool
    detail: str


@dataclass(frozen=True)
class Bar:
    """One labelled latency."""

    label: str
    ms: float


def error_chart(title: str, points: list[ErrorPoint]) -> Markup:
    """A dot per battery input on a log scale of the tolerance it used, with the tolerance as a line.

    Exact matches sit on the floor; inputs that raised or broke the structure sit on the ceiling.
    """
    width, height, left, right, top, bottom = 640, 220, 56, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(used: float | None) -> float:
        value = CEILING if used is None or not math.isfinite(used) else min(max(used, FLOOR), CEILING)
        share = (math.log10(value) - math.log10(FLOOR)) / (math.log10(CEILING) - math.log10(FLOOR))
        return top + plot_h * (1 - share)

    failing = sum(not p.ok for p in points)
    summary = (
        f"{title}: {len(points)} inputs, {failing} over the tolerance" if points else f"{title}: no inputs"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(summary)}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    for exponent in range(int(math.log10(FLOOR)), int(math.log10(CEILING)) + 1, 2):
        y = y_of(10.0**exponent)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{INK}">'
            f"{_power(exponent)}</text>"
        )
    tolerance_y = y_of(1.0)
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{tolerance_y:.1f}" y2="{tolerance_y:.1f}" '
        f'stroke="{FAIL}" stroke-dasharray="6 4" stroke-width="1.5"/>'
        f'<text x="{width - right}" y="{tolerance_y - 5:.1f}" text-anchor="end" font-size="11" '
        f'fill="{FAIL}">tolerance</text>'
    )
    step = plot_w / max(len(points), 1)
    for i, point in enumerate(points):
        x = left + step * (i + 0.5)
        y = y_of(point.used)
        colour = PASS if point.ok else FAIL
        mark = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
            if point.ok
            else f'<path d="M{x - 5:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 5:.1f}M{x - 5:.1f} {y + 5:.1f}'
            f'L{x + 5:.1f} {y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>'
        )
        parts.append(
            f'<g class="{"pass" if point.ok else "fail"}"><title>{escape(point.detail)}</title>{mark}</g>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" '
        f'fill="{INK}">'
        f"battery inputs in order ({len(points)}); up: share of the tolerance used (log)</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(title: str, bars: list[Bar]) -> Markup:
    """Horizontal bars of milliseconds, each labelled with its value."""
    row, left, right, top = 30, 150, 90, 6
    width = 640
    height = top * 2 + row * max(len(bars), 1)
    longest = max((b.ms for b in bars), default=0.0) or 1.0
    summary = f"{title}: " + ", ".join(f"{b.label} {b.ms:.3g} ms" for b in bars)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(summary)}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    for i, bar in enumerate(bars):
        y = top + row * i
        length = (width - left - right) * bar.ms / longest
        parts.append(
            f'<text x="{left - 8}" y="{y + 19}" text-anchor="end" font-size="13" fill="{INK}">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{left}" y="{y + 5}" width="{max(length, 1):.1f}" height="{row - 10}" fill="#0969da">'
            f"<title>{escape(bar.label)}: {bar.ms:.4g} ms</title></rect>"
            f'<text x="{left + length + 6:.1f}" y="{y + 19}" font-size="13" fill="{INK}">'
            f"{bar.ms:.3g} ms</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _power(exponent: int) -> str:
    return "1" if exponent == 0 else f"10{_superscript(exponent)}"


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
