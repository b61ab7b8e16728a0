"""Line plots as inline SVG text: no plotting library and nothing to load, so ``report.html`` opens anywhere.

``line_plot`` draws series of (x, y) with NaN as gaps, vertical event markers (re-detections) and a legend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np

WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 26, 38


@dataclass
class Series:
    """One line: ``xs``/``ys`` (NaN ys break the line), its legend label and CSS colour."""

    label: str
    xs: np.ndarray
    ys: np.ndarray
    colour: str = "#1f77b4"
    step: bool = False  # a staircase (the CED)


@dataclass
class Marker:
    """A vertical line at ``x`` (an event such as a re-detection)."""

    x: float
    label: str
    colour: str = "#d62728"
    dashed: bool = True


@dataclass
class Plot:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    y_range: tuple[float, float] | None = None
    x_range: tuple[float, float] | None = None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _range(values: Sequence[np.ndarray], given: tuple[float, float] | None) -> tuple[float, float]:
    if given is not None:
        return given
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return lo - pad if lo < 0 or lo - pad >= 0 else 0.0, hi + pad


def line_plot(plot: Plot, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The plot as an ``<svg>`` element (text)."""
    x0, x1 = _range([s.xs for s in plot.series] + [np.array([m.x for m in plot.markers], float)], plot.x_range)
    y0, y1 = _range([s.ys for s in plot.series], plot.y_range)
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: np.ndarray | float) -> np.ndarray | float:
        return LEFT + (np.asarray(x, float) - x0) / (x1 - x0) * pw

    def py(y: np.ndarray | float) -> np.ndarray | float:
        return TOP + ph - (np.asarray(y, float) - y0) / (y1 - y0) * ph

    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(plot.title)}">',
           f'<title>{escape(plot.title)}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
           f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(plot.title)}</text>']
    for t in nice_ticks(y0, y1):
        y = py(t)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 8):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" stroke="#999"/>'
                   f'<text x="{x:.1f}" y="{TOP + ph + 15}" font-size="10" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
               f'{escape(plot.x_label)}</text>')
    out.append(f'<text x="12" y="{TOP + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 12 {TOP + ph / 2})">{escape(plot.y_label)}</text>')
    for m in plot.markers:
        x = px(m.x)
        dash = ' stroke-dasharray="4 3"' if m.dashed else ""
        out.append(f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="{m.colour}"'
                   f'{dash}><title>{escape(m.label)}</title></line>')
    for s in plot.series:
        for xs, ys in _runs(np.asarray(s.xs, float), np.asarray(s.ys, float)):
            if s.step:
                xs, ys = np.repeat(xs, 2)[1:], np.repeat(ys, 2)[:-1]
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(xs), py(np.clip(ys, y0, y1))))
            if len(xs) == 1:
                out.append(f'<circle cx="{px(xs[0]):.1f}" cy="{py(ys[0]):.1f}" r="2" fill="{s.colour}"/>')
            else:
                out.append(f'<polyline class="series" points="{pts}" fill="none" stroke="{s.colour}" '
                           'stroke-width="1.5"/>')
    legend = [(s.label, s.colour, False) for s in plot.series if s.label]
    legend += list(dict.fromkeys((m.label.split(" (")[0], m.colour, True) for m in plot.markers))
    lx = LEFT + pw
    for label, colour, dashed in reversed(legend):
        lx -= 8 * len(label) + 30
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        out.append(f'<line x1="{lx}" x2="{lx + 16}" y1="12" y2="12" stroke="{colour}" stroke-width="2"{dash}/>'
                   f'<text x="{lx + 20}" y="16" font-size="10">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _runs(xs: np.ndarray, ys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The maximal stretches of finite values (NaN breaks the line)."""
    from facetrack.evaluation.scoring import _runs as true_runs

    return [(xs[a:b], ys[a:b]) for a, b in true_runs(np.isfinite(xs) & np.isfinite(ys))]
