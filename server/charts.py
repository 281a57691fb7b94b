"""Charts for the pages as inline SVG, drawn on the server: the pages work offline, with no chart library.

Every chart scales to the width it is given (a viewBox, width 100% in the stylesheet, no minimum), so
a phone shows the whole chart and every failing mark without scrolling; the drawing is sized so its
text stays legible at 390 px. Each chart carries a text alternative (role="img" and a <title>), and
each mark its own <title> so a pointer or a screen reader can read the value. Text that came from a
model (input labels) is escaped by markupsafe like everything in the templates.

A mark is never drawn off the chart: a value past an end of the scale is clamped to that end and
its true value is written beside it; an exact match sits on its own line labelled 0, below the log
scale (a log scale has no zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

# The error chart's log axis, as shares of the tolerance: from "a millionth of it" (lower when some
# input's error was smaller, down to LOWEST) to "a hundred times over"; past those, marks are clamped.
FLOOR, CEILING, LOWEST = 1e-6, 1e2, 1e-12
PASS, FAIL, INK, GRID, MUTED = "#1a7f37", "#cf222e", "#24292f", "#d0d7de", "#59636e"
WIDTH = 400  # drawing units; the page scales the chart to its box (about 330 px on a phone)
FONT = 12
# Per character of the charts' font, in drawing units: enough to keep labels inside the drawing.
CHAR_W = 0.62 * FONT


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


@dataclass(frozen=True)
class _Scale:
    """The error chart's y axis: a log scale from `low` to CEILING above a separate zero line."""

    low: float
    top: float
    log_bottom: float
    zero_y: float

    def y(self, used: float) -> float:
        share = (math.log10(used) - math.log10(self.low)) / (math.log10(CEILING) - math.log10(self.low))
        return self.log_bottom - (self.log_bottom - self.top) * share


def error_chart(title: str, points: list[ErrorPoint]) -> Markup:
    """A mark per battery input on a log scale of the tolerance it used, with the tolerance as a line.

    Exact matches sit on the zero line; inputs that raised, or whose error was not finite or past the
    scale, sit on the top edge with their value written beside them.
    """
    height, left, right, top, bottom = 230, 50, 10, 20, 28
    plot_w = WIDTH - left - right
    zero_y = height - bottom - 6
    scale = _Scale(_floor_for(points), top, zero_y - 26, zero_y)

    failing = sum(not p.ok for p in points)
    summary = (
        f"{title}: {len(points)} inputs, {failing} over the tolerance" if points else f"{title}: no inputs"
    )
    parts = [
        f'<svg class="chart error-chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(summary)}" preserveAspectRatio="xMidYMid meet" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    low_exponent = round(math.log10(scale.low))
    step = 2 if math.log10(CEILING) - low_exponent <= 8 else 3
    for exponent in range(int(math.log10(CEILING)), low_exponent - 1, -1):
        if exponent % step:
            continue
        y = scale.y(10.0**exponent)
        parts.append(_hline(left, WIDTH - right, y, GRID))
        parts.append(_text(left - 6, y + 4, _power(exponent), anchor="end", cls="tick"))
    # The zero line, apart from the log scale and marked as a break in the axis.
    parts.append(_hline(left, WIDTH - right, zero_y, GRID))
    parts.append(_text(left - 6, zero_y + 4, "0", anchor="end", cls="tick zero"))
    gap = (scale.log_bottom + zero_y) / 2
    parts.append(f'<path d="M{left - 4} {gap + 1:.1f}l8 -5M{left - 4} {gap + 6:.1f}l8 -5" stroke="{MUTED}"/>')
    tolerance_y = scale.y(1.0)
    parts.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{tolerance_y:.1f}" y2="{tolerance_y:.1f}" '
        f'stroke="{FAIL}" stroke-dasharray="6 4" stroke-width="1.5"/>'
    )
    parts.append(_text(WIDTH - right, tolerance_y - 5, "tolerance", anchor="end", fill=FAIL))
    step_x = plot_w / max(len(points), 1)
    for i, point in enumerate(points):
        x = left + step_x * (i + 0.5)
        y, note = _place(point.used, scale)
        parts.append(_mark(point, x, y, note, left, WIDTH - right))
    # Short enough for the narrowest drawing; the page's caption says what the axes mean.
    caption = f"{len(points)} input{'' if len(points) == 1 else 's'}, in battery order"
    parts.append(_text(left + plot_w / 2, height - 8, caption, anchor="middle", cls="axis"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _floor_for(points: list[ErrorPoint]) -> float:
    """The log scale's bottom: FLOOR, or the power of ten below the smallest error (not below LOWEST)."""
    smallest = min(
        (p.used for p in points if p.used is not None and math.isfinite(p.used) and p.used > 0),
        default=FLOOR,
    )
    return max(LOWEST, min(FLOOR, 10.0 ** math.floor(math.log10(smallest))))


def _place(used: float | None, scale: _Scale) -> tuple[float, str | None]:
    """Where a value sits, and the true value to write beside it when it was clamped to an end."""
    if used is None:
        return scale.top, "raised"
    if math.isnan(used):
        return scale.top, "not a number"
    if used == 0:
        return scale.zero_y, None
    if used > CEILING:
        return scale.top, "∞ × tolerance" if math.isinf(used) else f"{_count(used)} × tolerance"
    if used < scale.low:
        return scale.y(scale.low), f"{used:.1g} × tolerance"
    return scale.y(used), None


def _mark(point: ErrorPoint, x: float, y: float, note: str | None, left: float, right: float) -> str:
    colour = PASS if point.ok else FAIL
    shape = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
        if point.ok
        else f'<path d="M{x - 5:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 5:.1f}M{x - 5:.1f} {y + 5:.1f}'
        f'L{x + 5:.1f} {y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>'
    )
    label = ""
    if note is not None:
        # An arrow says "further than drawn"; the value goes on the side with room for it.
        up = y < 40
        arrow_y = y - 9 if up else y + 9
        tip = -4 if up else 4
        shape += (
            f'<path d="M{x - 4:.1f} {arrow_y:.1f}l4 {tip}l4 {-tip}" fill="none" stroke="{colour}" '
            'stroke-width="1.5"/>'
        )
        width = len(note) * CHAR_W
        anchor, text_x = ("start", x + 9) if x + 9 + width <= right else ("end", x - 9)
        text_x = max(text_x, left + width) if anchor == "end" else text_x
        label = _text(text_x, y + 4, note, anchor=anchor, fill=colour, cls="clamped")
    return (
        f'<g class="{"pass" if point.ok else "fail"}{" clamped" if note else ""}">'
        f"<title>{escape(point.detail)}</title>{shape}{label}</g>"
    )


def bar_chart(title: str, bars: list[Bar]) -> Markup:
    """Horizontal bars of milliseconds, each with its label and value on its own line above the bar.

    Labels above the bars rather than beside them: at phone width no label or value can be cut off.
    """
    row, top = 40, 4
    height = top * 2 + row * max(len(bars), 1)
    longest = max((b.ms for b in bars), default=0.0) or 1.0
    summary = f"{title}: " + ", ".join(f"{b.label} {b.ms:.3g} ms" for b in bars)
    parts = [
        f'<svg class="chart bar-chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(summary)}" preserveAspectRatio="xMidYMid meet" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    for i, bar in enumerate(bars):
        y = top + row * i
        length = (WIDTH - 2) * bar.ms / longest
        parts.append(
            f'<g class="bar">{_text(0, y + 15, f"{bar.label}: {bar.ms:.3g} ms", anchor="start")}'
            f'<rect x="0" y="{y + 21}" width="{max(length, 1):.1f}" height="13" fill="#0969da">'
            f"<title>{escape(bar.label)}: {bar.ms:.4g} ms</title></rect></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str,
    fill: str = INK,
    size: int = FONT,
    cls: str | None = None,
) -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{klass}>'
        f"{escape(text)}</text>"
    )


def _hline(x1: float, x2: float, y: float, colour: str) -> str:
    return f'<line x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}"/>'


def _count(value: float) -> str:
    """3400.2 -> '3,400'; 2.5e9 -> '2.5e+09' (a count past a million reads better as a power)."""
    return f"{value:,.0f}" if value < 1e6 else f"{value:.2g}"


def _power(exponent: int) -> str:
    return "1" if exponent == 0 else f"10{_superscript(exponent)}"


def _superscript(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
