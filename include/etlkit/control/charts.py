"""Charts drawn as inline SVG on the server: horizontal bars and a line over ordered categories.

Why SVG from Python rather than a JavaScript chart library: the dashboard must render on MWAA in a
private network (no CDN), with nothing to vendor, build or keep patched, and a chart is then plain
markup that a test (or a screen reader, through ``<title>``) can read. Each chart is one *panel*: a
title and its ``(label, value)`` points, drawn on a scale of its own, because money in different
currencies must never share an axis (the marts have no exchange rates to add them up).

Every text that reaches the markup (labels, titles, values) is escaped here, so the result is safe
to insert unescaped (it is returned as :class:`markupsafe.Markup`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from markupsafe import Markup

BAR_HEIGHT = 18
BAR_GAP = 6
LABEL_WIDTH = 190
BAR_AREA = 300
VALUE_WIDTH = 90
LINE_WIDTH = 560
LINE_HEIGHT = 200
MARGIN = 8
AXIS_LEFT = 70  # room for the y axis' labels
AXIS_BOTTOM = 24  # room for the x axis' labels
MAX_LABEL_CHARS = 28
COLOURS = ("#3182ce", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795")


@dataclass(frozen=True)
class Panel:
    """One small chart: a title (a currency, say) and its points in display order."""

    title: str
    points: Sequence[tuple[str, float]]


def number(value: float | Decimal | int | None) -> str:
    """A compact figure for an axis or a bar's end: 1234567 -> 1.23M, 5321.5 -> 5.32k, 12.5 -> 12.5."""
    if value is None:
        return ""
    value = float(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _scale(values: Sequence[float]) -> float:
    """The axis maximum: the largest value (at least 1, so an all-zero panel draws empty bars)."""
    return max([*values, 0.0]) or 1.0


def bar_chart(panel: Panel, colour: str = COLOURS[0]) -> Markup:
    """Horizontal bars, one per point, longest for the largest value; negative values draw as 0."""
    values = [max(float(v), 0.0) for _, v in panel.points]
    top = _scale(values)
    width = LABEL_WIDTH + BAR_AREA + VALUE_WIDTH
    height = MARGIN * 2 + len(values) * (BAR_HEIGHT + BAR_GAP)
    parts = [
        f'<svg class="chart bars" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(panel.title)}</title>",
    ]
    for i, ((label, raw), value) in enumerate(zip(panel.points, values, strict=True)):
        y = MARGIN + i * (BAR_HEIGHT + BAR_GAP)
        length = round(BAR_AREA * value / top, 1)
        parts += [
            f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 5}" text-anchor="end">'
            f"{escape(_short(str(label)))}</text>",
            f'<rect class="point" x="{LABEL_WIDTH}" y="{y}" width="{length}" height="{BAR_HEIGHT}" '
            f'fill="{colour}" data-label="{_attr(label)}" data-value="{_attr(raw)}">'
            f"<title>{escape(str(label))}: {escape(str(raw))}</title></rect>",
            f'<text x="{LABEL_WIDTH + length + 4}" y="{y + BAR_HEIGHT - 5}">{escape(number(raw))}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(panel: Panel, colour: str = COLOURS[0]) -> Markup:
    """A line through the points (ordered categories, e.g. months) on a y axis from 0 to the maximum.

    The x axis labels the first, middle and last points only: months are self-explanatory in order,
    and every point names itself in its tooltip.
    """
    values = [float(v) for _, v in panel.points]
    top = _scale(values)
    bottom = min([*values, 0.0])
    plot_w = LINE_WIDTH - AXIS_LEFT - MARGIN
    plot_h = LINE_HEIGHT - AXIS_BOTTOM - MARGIN
    step = plot_w / max(len(values) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        x = AXIS_LEFT + (i * step if len(values) > 1 else plot_w / 2)
        y = MARGIN + plot_h * (top - value) / ((top - bottom) or 1.0)
        return round(x, 1), round(y, 1)

    base = MARGIN + plot_h
    parts = [
        f'<svg class="chart line" role="img" width="{LINE_WIDTH}" height="{LINE_HEIGHT}" '
        f'viewBox="0 0 {LINE_WIDTH} {LINE_HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(panel.title)}</title>",
        f'<line class="axis" x1="{AXIS_LEFT}" y1="{base}" x2="{LINE_WIDTH - MARGIN}" y2="{base}" '
        'stroke="#a0aec0"/>',
        f'<line class="axis" x1="{AXIS_LEFT}" y1="{MARGIN}" x2="{AXIS_LEFT}" y2="{base}" stroke="#a0aec0"/>',
        f'<text x="{AXIS_LEFT - 6}" y="{MARGIN + 10}" text-anchor="end">{escape(number(top))}</text>',
        f'<text x="{AXIS_LEFT - 6}" y="{base}" text-anchor="end">{escape(number(bottom))}</text>',
    ]
    coords = [xy(i, v) for i, v in enumerate(values)]
    if len(coords) > 1:
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    labelled = {0, len(values) // 2, len(values) - 1} if values else set()
    for i, ((label, raw), (x, y)) in enumerate(zip(panel.points, coords, strict=True)):
        parts.append(
            f'<circle class="point" cx="{x}" cy="{y}" r="3" fill="{colour}" data-label="{_attr(label)}" '
            f'data-value="{_attr(raw)}"><title>{escape(str(label))}: {escape(str(raw))}</title></circle>'
        )
        if i in labelled:  # the ends anchored inwards, so no label runs off the chart
            anchor = "start" if i == 0 and len(values) > 1 else "end" if i == len(values) - 1 else "middle"
            text = escape(_short(str(label)))
            parts.append(f'<text x="{x}" y="{LINE_HEIGHT - 6}" text-anchor="{anchor}">{text}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def draw(kind: str, panel: Panel, index: int = 0) -> Markup:
    """The panel drawn as ``kind`` (``bars`` or ``line``), in the index-th colour."""
    colour = COLOURS[index % len(COLOURS)]
    if kind == "bars":
        return bar_chart(panel, colour)
    if kind == "line":
        return line_chart(panel, colour)
    raise ValueError(f"unknown chart kind {kind!r}: 'bars' or 'line'")
