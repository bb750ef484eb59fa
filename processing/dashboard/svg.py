"""Inline SVG charts drawn in Python: column, horizontal bar and line charts.

Why not a JavaScript chart library: the dashboard must open offline, from an e-mail
attachment or a USB stick, years later, and print the same. Static SVG needs nothing
but the browser and works with scripting disabled.

Every mark carries its exact value as an integer in ``data-value`` and as text in a
``<title>`` (a tooltip, and what a screen reader announces); each chart is an
``role="img"`` with a title and a description. Values stay integers; only pixel
geometry is float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from processing.dashboard.fmt import nice_ticks

# Tableau 10: distinguishable, colour-blind tolerant, prints well in grey.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")

Text = Callable[[int], str]
TickText = Callable[[int, int], str]  # (value, step) -> label


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _a(value: object) -> str:
    """An attribute value, escaped."""
    return escape(str(value), quote=True)


def _n(x: float) -> str:
    """A pixel coordinate, short."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


@dataclass(frozen=True)
class Series:
    """One named row of integer values, one per category (a merchant's daily sales)."""

    name: str
    values: Sequence[int]
    color: str


@dataclass(frozen=True)
class _Scale:
    """Maps integer values to a pixel range; ticks come from ``nice_ticks``."""

    ticks: list[int]
    start: float  # pixel of the lowest tick
    end: float  # pixel of the highest tick

    @classmethod
    def of(cls, lo: int, hi: int, start: float, end: float) -> _Scale:
        return cls(nice_ticks(lo, hi), start, end)

    @property
    def step(self) -> int:
        return self.ticks[1] - self.ticks[0]

    def __call__(self, value: int) -> float:
        lo, hi = self.ticks[0], self.ticks[-1]
        return self.start + (self.end - self.start) * (value - lo) / (hi - lo)


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class="chart" id="{_a(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{_a(chart_id)}-t {_a(chart_id)}-d">',
        f'<title id="{_a(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{_a(chart_id)}-d">{escape(desc)}</desc>',
    ]


def _mark_rect(x: float, y: float, w: float, h: float, fill: str, tip: str, series: str, category: str,
               value: int) -> str:
    return (f'<rect class="mark" x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.5))}" height="{_n(max(h, 0.5))}" '
            f'fill="{fill}" data-series="{_a(series)}" data-category="{_a(category)}" data-value="{value}">'
            f'<title>{escape(tip)}</title></rect>')


def _value_axis_y(scale: _Scale, left: float, right: float, tick_text: TickText) -> list[str]:
    """Horizontal grid lines and labels for a vertical value axis."""
    out = ['<g class="axis y" aria-hidden="true">']
    for t in scale.ticks:
        y = scale(t)
        cls = "zero" if t == 0 else "grid"
        out.append(f'<line class="{cls}" x1="{_n(left)}" x2="{_n(right)}" y1="{_n(y)}" y2="{_n(y)}"/>')
        out.append(f'<text x="{_n(left - 8)}" y="{_n(y)}" text-anchor="end" dominant-baseline="middle">'
                   f'{escape(tick_text(t, scale.step))}</text>')
    out.append("</g>")
    return out


def _category_labels(labels: Sequence[str], centers: Sequence[float], y: float, min_gap: float) -> list[str]:
    """Category labels under the plot, thinned so they never overlap."""
    if not labels:
        return []
    every = 1
    if len(centers) > 1:
        spacing = (centers[-1] - centers[0]) / (len(centers) - 1)
        every = max(1, -(-int(min_gap) // max(int(spacing), 1)))
    out = ['<g class="axis x" aria-hidden="true">']
    for i, (label, cx) in enumerate(zip(labels, centers, strict=True)):
        if i % every == 0:
            out.append(f'<text x="{_n(cx)}" y="{_n(y)}" text-anchor="middle">{escape(label)}</text>')
    out.append("</g>")
    return out


def column_chart(*, chart_id: str, title: str, desc: str, categories: Sequence[str],
                 series: Sequence[Series], value_text: Text, tick_text: TickText,
                 tip_categories: Sequence[str] | None = None, width: int = 960, height: int = 300) -> str:
    """Vertical stacked bars per category: a day's column is its total, a colour per series.

    Negative values (a day with more cancellations than sales) go below the zero line
    instead of being clipped, so the chart never contradicts the table beside it.
    """
    left, right, top, bottom = 68.0, 12.0, 14.0, 30.0
    n = len(categories)
    tips = tip_categories or categories
    his = [sum(max(s.values[i], 0) for s in series) for i in range(n)]
    los = [sum(min(s.values[i], 0) for s in series) for i in range(n)]
    scale = _Scale.of(min(los, default=0), max(his, default=0), height - bottom, top)
    out = _open(chart_id, title, desc, width, height)
    out += _value_axis_y(scale, left, width - right, tick_text)
    band = (width - left - right) / max(n, 1)
    gap = min(band * 0.25, 12.0)
    centers = [left + band * (i + 0.5) for i in range(n)]
    out.append('<g class="marks">')
    for i, category in enumerate(categories):
        x0 = left + band * i + gap / 2
        bar_w = band - gap
        up = down = 0
        for s in series:
            v = s.values[i]
            if v == 0:
                continue
            base = up if v > 0 else down  # positives stack up from zero, negatives down
            y1, y2 = scale(base), scale(base + v)
            if v > 0:
                up += v
            else:
                down += v
            tip = f"{s.name}, {tips[i]}: {value_text(v)}"
            out.append(_mark_rect(x0, min(y1, y2), bar_w, abs(y2 - y1), s.color, tip, s.name, category, v))
    out.append("</g>")
    out += _category_labels(categories, centers, height - bottom + 18, 64)
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True)
class HBarRow:
    """One horizontal bar: a label, stacked integer segments, and the text at its end."""

    label: str
    segments: Sequence[tuple[str, int, str]]  # (segment name, value, colour)
    end_text: str


def hbar_chart(*, chart_id: str, title: str, desc: str, rows: Sequence[HBarRow], value_text: Text,
               tick_text: TickText, width: int = 470, row_height: int = 34, label_width: int = 120) -> str:
    """Horizontal stacked bars with the figure printed at each bar's end (settlement, points)."""
    left, right, top, bottom = float(label_width), 92.0, 8.0, 26.0
    label_chars = label_width // 7  # about 7 px per character at the label's font size
    height = int(top + bottom + row_height * max(len(rows), 1))
    hi = max((sum(max(v, 0) for _, v, _ in r.segments) for r in rows), default=0)
    scale = _Scale.of(0, hi, left, width - right)
    out = _open(chart_id, title, desc, width, height)
    out.append('<g class="axis x" aria-hidden="true">')
    for t in scale.ticks:
        x = scale(t)
        out.append(f'<line class="{"zero" if t == 0 else "grid"}" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(top)}" '
                   f'y2="{_n(height - bottom)}"/>')
        out.append(f'<text x="{_n(x)}" y="{_n(height - bottom + 16)}" text-anchor="middle">'
                   f'{escape(tick_text(t, scale.step))}</text>')
    out.append("</g>")
    out.append('<g class="marks">')
    bar_h = row_height * 0.62
    for i, row in enumerate(rows):
        y = top + row_height * i + (row_height - bar_h) / 2
        out.append(f'<text class="label" x="{_n(left - 8)}" y="{_n(y + bar_h / 2)}" text-anchor="end" '
                   f'dominant-baseline="middle">{escape(_short(row.label, label_chars))}'
                   f'<title>{escape(row.label)}</title></text>')
        acc = 0
        for name, v, fill in row.segments:
            if v <= 0:
                continue
            x1, x2 = scale(acc), scale(acc + v)
            acc += v
            out.append(_mark_rect(x1, y, x2 - x1, bar_h, fill, f"{row.label}, {name}: {value_text(v)}",
                                  name, row.label, v))
        out.append(f'<text class="value" x="{_n(scale(acc) + 6)}" y="{_n(y + bar_h / 2)}" '
                   f'dominant-baseline="middle">{escape(row.end_text)}</text>')
    out.append("</g></svg>")
    return "\n".join(out)


def line_chart(*, chart_id: str, title: str, desc: str, xs: Sequence[int], labels: Sequence[str],
               values: Sequence[int], value_text: Text, tick_text: TickText, name: str,
               line_color: str = PALETTE[0], width: int = 960, height: int = 260) -> str:
    """A line with a light area under it; ``xs`` are integer positions (day ordinals), so gaps show."""
    left, right, top, bottom = 68.0, 16.0, 14.0, 30.0
    out = _open(chart_id, title, desc, width, height)
    scale = _Scale.of(min(values, default=0), max(values, default=0), height - bottom, top)
    out += _value_axis_y(scale, left, width - right, tick_text)
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0, 1)
    span = max(x_hi - x_lo, 1)

    def px(x: int) -> float:
        if x_hi == x_lo:
            return (left + width - right) / 2
        return left + (width - left - right) * (x - x_lo) / span

    points = [(px(x), scale(v)) for x, v in zip(xs, values, strict=True)]
    if points:
        line = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)} {_n(y)}" for i, (x, y) in enumerate(points))
        base = _n(scale(max(scale.ticks[0], 0)))
        area = f"{line} L{_n(points[-1][0])} {base} L{_n(points[0][0])} {base} Z"
        out.append(f'<path class="area" d="{area}" fill="{line_color}" aria-hidden="true"/>')
        out.append(f'<path class="line" d="{line}" stroke="{line_color}" data-series="{_a(name)}"/>')
    radius = 3.2 if len(points) <= 45 else 1.8
    out.append('<g class="marks">')
    for (x, y), label, v in zip(points, labels, values, strict=True):
        out.append(f'<circle class="mark point" cx="{_n(x)}" cy="{_n(y)}" r="{radius}" fill="{line_color}" '
                   f'data-series="{_a(name)}" data-category="{_a(label)}" data-value="{v}">'
                   f'<title>{escape(f"{name}, {label}: {value_text(v)}")}</title></circle>')
    out.append("</g>")
    out += _category_labels(labels, [p[0] for p in points], height - bottom + 18, 64)
    out.append("</svg>")
    return "\n".join(out)
