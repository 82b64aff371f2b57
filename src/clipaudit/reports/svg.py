"""Inline SVG charts: bars, histograms with threshold lines, curves with interval bands.

Every label passes through ``html.escape`` here because chart text comes from data (reason
codes, concept names from user prompt files); the result is wrapped in ``Markup`` so the
template inserts it as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#3b6ea8", "#c8553d", "#5b8c5a", "#8e6c8a", "#d4a017", "#4f9da6", "#7a7a7a")


def _num(v: float) -> str:
    return f"{v:.1f}"


def _fmt(v: float) -> str:
    if v == 0 or (abs(v) >= 0.01 and abs(v) < 1e5):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:.2e}"


def hbars(
    items: Sequence[tuple[str, float]], width: int = 520, bar_h: int = 18, title: str = ""
) -> Markup:
    """Horizontal bars, one per (label, value), values written at the bar ends."""
    if not items:
        return Markup("")
    label_w = min(220, 8 + 7 * max(len(str(k)) for k, _ in items))
    plot_w = width - label_w - 70
    top = max((v for _, v in items), default=0) or 1
    h = bar_h * len(items) + 8
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(items):
        y = 4 + i * bar_h
        w = max(0.0, plot_w * value / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">'
            f"{escape(str(label))}</text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{_num(w)}" height="{bar_h - 5}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.1f}">'
            f"{escape(_fmt(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(
    edges: Sequence[float],
    counts: Sequence[int],
    lines: Sequence[tuple[str, float]] = (),
    width: int = 420,
    height: int = 150,
    title: str = "",
) -> Markup:
    """Bars between ``edges`` with a labelled vertical line at each threshold."""
    if len(counts) == 0:
        return Markup("")
    left, right, top, bottom = 36, 10, 14, 28
    pw, ph = width - left - right, height - top - bottom
    lo, hi = float(edges[0]), float(edges[-1])
    span = (hi - lo) or 1.0
    cmax = max(counts) or 1

    def x(v: float) -> float:
        return left + pw * (v - lo) / span

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#555"/>',
    ]
    for i, c in enumerate(counts):
        x0, x1 = x(float(edges[i])), x(float(edges[i + 1]))
        bh = ph * c / cmax
        parts.append(
            f'<rect x="{_num(x0)}" y="{_num(top + ph - bh)}" width="{_num(max(x1 - x0 - 1, 0.5))}" '
            f'height="{_num(bh)}" fill="{PALETTE[0]}"><title>{escape(_fmt(float(edges[i])))}–'
            f"{escape(_fmt(float(edges[i + 1])))}: {c}</title></rect>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 12}" text-anchor="start">{escape(_fmt(lo))}</text>'
        f'<text x="{left + pw}" y="{height - 12}" text-anchor="end">{escape(_fmt(hi))}</text>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{cmax}</text>'
    )
    for j, (name, v) in enumerate(lines):
        if v is None or not math.isfinite(v):
            continue
        xv = min(max(x(v), left), left + pw)
        color = PALETTE[1 + j % (len(PALETTE) - 1)]
        parts.append(
            f'<line x1="{_num(xv)}" y1="{top - 4}" x2="{_num(xv)}" y2="{top + ph}" '
            f'stroke="{color}" stroke-width="2" stroke-dasharray="4 2"/>'
            f'<text x="{_num(xv + 3)}" y="{top + 4 + 11 * j}" fill="{color}">'
            f"{escape(name)} {escape(_fmt(v))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def curves(
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float], Sequence[tuple[float, float] | None]]],
    hline: tuple[str, float] | None = None,
    width: int = 420,
    height: int = 170,
    title: str = "",
    log_x: bool = True,
) -> Markup:
    """Lines over ``xs`` (log scale by default), each with its interval as a shaded band."""
    if not xs or not series:
        return Markup("")
    left, right, top, bottom = 44, 110, 12, 28
    pw, ph = width - left - right, height - top - bottom
    tx = [math.log10(v) if log_x and v > 0 else float(v) for v in xs]
    vals = [v for _, ys, _ in series for v in ys if v is not None and math.isfinite(v)]
    vals += [
        b for _, _, cis in series for ci in cis if ci is not None for b in ci if math.isfinite(b)
    ]
    if hline is not None:
        vals.append(hline[1])
    if not vals:
        return Markup("")
    lo, hi = min([*vals, 0.0]), max([*vals, 0.0])
    span_y = (hi - lo) or 1.0
    x_lo, x_hi = min(tx), max(tx)
    span_x = (x_hi - x_lo) or 1.0

    def px(v: float) -> float:
        return left + pw * (v - x_lo) / span_x

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / span_y)

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{_num(py(0))}" x2="{left + pw}" y2="{_num(py(0))}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{_num(py(hi) + 8)}" text-anchor="end">{escape(_fmt(hi))}</text>',
        f'<text x="{left - 4}" y="{_num(py(lo))}" text-anchor="end">{escape(_fmt(lo))}</text>',
    ]
    for xv, t in zip(xs, tx, strict=True):
        parts.append(
            f'<text x="{_num(px(t))}" y="{height - 10}" text-anchor="middle">'
            f"{escape(_fmt(xv))}</text>"
        )
    for i, (name, ys, cis) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        band = [(px(t), ci) for t, ci in zip(tx, cis, strict=True) if ci is not None]
        if len(band) >= 2:
            pts = [f"{_num(x)},{_num(py(ci[1]))}" for x, ci in band]
            pts += [f"{_num(x)},{_num(py(ci[0]))}" for x, ci in reversed(band)]
            parts.append(f'<polygon points="{" ".join(pts)}" fill="{color}" opacity="0.15"/>')
        line = [
            f"{_num(px(t))},{_num(py(y))}"
            for t, y in zip(tx, ys, strict=True)
            if y is not None and math.isfinite(y)
        ]
        parts.append(
            f'<polyline points="{" ".join(line)}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{left + pw + 6}" y="{top + 10 + 13 * i}" fill="{color}">'
            f"{escape(name)}</text>"
        )
    if hline is not None:
        parts.append(
            f'<line x1="{left}" y1="{_num(py(hline[1]))}" x2="{left + pw}" '
            f'y2="{_num(py(hline[1]))}" stroke="{PALETTE[1]}" stroke-dasharray="4 2"/>'
            f'<text x="{left + pw + 6}" y="{_num(py(hline[1]) + 4)}" fill="{PALETTE[1]}">'
            f"{escape(hline[0])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel(steps: Sequence[tuple[str, int]], width: int = 560, title: str = "") -> Markup:
    """Centred bars that narrow from the input count to the kept count."""
    if not steps:
        return Markup("")
    top = max(v for _, v in steps) or 1
    bar_h, h = 26, 30 * len(steps) + 4
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    plot_w = width - 200
    for i, (label, v) in enumerate(steps):
        w = max(2.0, plot_w * v / top)
        x0 = 200 + (plot_w - w) / 2
        y = 2 + 30 * i
        parts.append(
            f'<text x="190" y="{y + 18}" text-anchor="end">{escape(label)} {v:,}</text>'
            f'<rect x="{_num(x0)}" y="{y}" width="{_num(w)}" height="{bar_h}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
