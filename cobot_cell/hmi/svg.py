"""Charts as SVG text, drawn on the server: Gantt lanes, cycle-time trend, OEE factors, fault Pareto, downtime timeline.

Every chart is one `<svg class="chart">` element scaled by its viewBox (it fills the width it is given) with a
`data-marks` attribute counting the data marks drawn, so a page test can tell an empty chart from a drawn one.
All text is escaped; nothing is fetched by the browser.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

logger = logging.getLogger(__name__)

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#4d4d4d")
WAIT = "#9e9e9e"
BAD = "#D55E00"
FONT = "font-family:system-ui,sans-serif"


@dataclass(frozen=True)
class Bar:
    """One bar of a Gantt lane: `kind` is 'step', 'running', 'wait' or 'station'; `colour` indexes PALETTE."""

    lane: str
    start: float
    end: float
    label: str
    kind: str = "step"
    colour: int = 0
    title: str = ""


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def _open(width: int, height: int, name: str, marks: int, label: str) -> list[str]:
    head = (
        f'<svg class="chart chart-{name}" data-marks="{marks}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" style="{FONT};width:100%;height:auto">'
    )
    return [head]


def _empty(width: int, height: int, name: str, label: str, text: str) -> str:
    out = _open(width, height, name, 0, label)
    out.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="16" '
        f'fill="#666">{escape(text)}</text></svg>'
    )
    return "".join(out)


def _ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def gantt(
    lanes: Sequence[str],
    bars: Sequence[Bar],
    t0: float,
    t1: float,
    width: int = 1200,
    lane_height: int = 34,
    title: str = "Gantt",
) -> str:
    """Lanes (cobots, then stations) over [t0, t1] clock seconds; waits are grey hatched, running steps outlined."""
    label_w, top, axis = 110, 8, 24
    height = top + lane_height * max(1, len(lanes)) + axis
    if not lanes or t1 <= t0:
        return _empty(width, height, "gantt", title, "no steps yet")
    scale = (width - label_w - 10) / (t1 - t0)
    row = {name: i for i, name in enumerate(lanes)}
    shown = [b for b in bars if b.lane in row and b.end > t0 and b.start < t1]
    out = _open(width, height, "gantt", sum(1 for b in shown if b.kind != "wait"), title)
    out.append(
        '<defs><pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eee"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{WAIT}" stroke-width="3"/></pattern></defs>'
    )
    for name, i in row.items():
        y = top + i * lane_height
        out.append(
            f'<rect x="{label_w}" y="{y}" width="{width - label_w - 10}" height="{lane_height}" '
            f'fill="{"#fafafa" if i % 2 else "#f2f2f2"}"/>'
        )
        out.append(
            f'<text x="{label_w - 6}" y="{y + lane_height * 0.62:.1f}" text-anchor="end" '
            f'font-size="14">{escape(name)}</text>'
        )
    for b in shown:
        x0 = label_w + (max(b.start, t0) - t0) * scale
        x1 = label_w + (min(b.end, t1) - t0) * scale
        y = top + row[b.lane] * lane_height + 4
        h = lane_height - 8
        w = max(x1 - x0, 1.0)
        tip = escape(b.title or f"{b.label} {b.start:.1f}-{b.end:.1f} s")
        if b.kind == "wait":
            out.append(
                f'<rect class="wait" x="{x0:.1f}" y="{y + h * 0.25:.1f}" width="{w:.1f}" '
                f'height="{h * 0.5:.1f}" fill="url(#wait)"><title>{tip}</title></rect>'
            )
            continue
        colour = PALETTE[b.colour % len(PALETTE)]
        style = (
            f'fill="{colour}" fill-opacity="0.35" stroke="{colour}" stroke-width="2" stroke-dasharray="4 2"'
            if b.kind == "running"
            else f'fill="{colour}"'
        )
        out.append(
            f'<rect class="{b.kind}" x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{h}" rx="2" {style}>'
            f"<title>{tip}</title></rect>"
        )
        if w > 7 * len(b.label) + 6:
            fill = "#000" if b.kind == "running" or b.colour % len(PALETTE) in (1, 4, 6) else "#fff"
            out.append(
                f'<text x="{x0 + 4:.1f}" y="{y + h * 0.68:.1f}" font-size="12" fill="{fill}">{escape(b.label)}</text>'
            )
    y_axis = top + lane_height * len(lanes)
    for t in _ticks(t0, t1):
        x = label_w + (t - t0) * scale
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{y_axis + 4}" stroke="#ccc"/>')
        out.append(f'<text x="{x:.1f}" y="{y_axis + 18}" text-anchor="middle" font-size="12">{_num(t)} s</text>')
    out.append("</svg>")
    return "".join(out)


def trend(
    points: Sequence[tuple[str, float, str]],
    bound: float | None = None,
    width: int = 480,
    height: int = 220,
    title: str = "Cycle time",
) -> str:
    """Cycle time per part (label, seconds, status) as a line with dots (scrap in red), and the bottleneck bound."""
    if not points:
        return _empty(width, height, "trend", title, "no parts yet")
    left, right, top, bottom = 48, 12, 12, 28
    values = [p[1] for p in points] + ([bound] if bound else [])
    hi = max(values) * 1.1 or 1.0
    ticks = _ticks(0.0, hi, 4)
    hi = max(hi, ticks[-1])
    n = len(points)
    sx = (width - left - right) / max(n - 1, 1)
    sy = (height - top - bottom) / hi

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + (i * sx if n > 1 else (width - left - right) / 2), height - bottom - v * sy

    out = _open(width, height, "trend", n, title)
    for t in ticks:
        y = height - bottom - t * sy
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{_num(t)}</text>'
        )
    if bound:
        y = height - bottom - bound * sy
        out.append(
            f'<line class="bound" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{BAD}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{width - right}" y="{y - 4:.1f}" text-anchor="end" font-size="12" fill="{BAD}">'
            f"bottleneck bound {bound:.2f} s</text>"
        )
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, p[1]) for i, p in enumerate(points)))
    out.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for i, (label, value, status) in enumerate(points):
        x, y = xy(i, value)
        colour = BAD if status != "done" else PALETTE[0]
        out.append(
            f'<circle class="part" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
            f"<title>part {escape(label)}: {value:.2f} s ({escape(status)})</title></circle>"
        )
    step = max(1, n // 10)
    for i in range(0, n, step):
        x, _ = xy(i, 0)
        out.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="12">{escape(points[i][0])}</text>'
        )
    out.append(f'<text x="4" y="{top + 2}" font-size="12" dominant-baseline="hanging">s</text></svg>')
    return "".join(out)


def factors(values: Sequence[tuple[str, float | None]], width: int = 480, height: int = 200, title: str = "OEE") -> str:
    """Horizontal bars from 0 to 100 % (OEE and its factors); an undefined value shows 'n/a'."""
    defined = [v for _, v in values if v is not None and math.isfinite(v)]
    out = _open(width, height, "oee", len(defined), title)
    label_w = 120
    row = (height - 8) / max(len(values), 1)
    for i, (name, value) in enumerate(values):
        y = 4 + i * row
        out.append(
            f'<text x="{label_w - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" font-size="16">{escape(name)}</text>'
        )
        out.append(
            f'<rect x="{label_w}" y="{y + 4:.1f}" width="{width - label_w - 70}" height="{row - 8:.1f}" fill="#eee"/>'
        )
        if value is None or not math.isfinite(value):
            out.append(f'<text x="{width - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" font-size="16">n/a</text>')
            continue
        frac = min(max(value, 0.0), 1.0)
        colour = PALETTE[2] if value >= 0.85 else PALETTE[1] if value >= 0.6 else BAD
        out.append(
            f'<rect class="factor" x="{label_w}" y="{y + 4:.1f}" '
            f'width="{(width - label_w - 70) * frac:.1f}" height="{row - 8:.1f}" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{width - 8}" y="{y + row * 0.62:.1f}" text-anchor="end" font-size="16" '
            f'font-weight="bold">{value:.1%}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def pareto(
    items: Sequence[tuple[str, float, int]],
    width: int = 700,
    height: int = 260,
    title: str = "Time lost per fault code",
) -> str:
    """(code, seconds lost, count) as bars, largest first, with the cumulative share as a line."""
    items = sorted(items, key=lambda i: -i[1])
    total = sum(i[1] for i in items)
    if not items or total <= 0:
        return _empty(width, height, "pareto", title, "no downtime")
    left, right, top, bottom = 56, 48, 14, 44
    n = len(items)
    bw = (width - left - right) / n
    hi = items[0][1] * 1.1
    ticks = _ticks(0.0, hi, 4)
    hi = max(hi, ticks[-1])
    sy = (height - top - bottom) / hi
    out = _open(width, height, "pareto", n, title)
    for t in ticks:
        y = height - bottom - t * sy
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{_num(t)} s</text>'
        )
    cum, pts = 0.0, []
    for i, (code, lost, count) in enumerate(items):
        x = left + i * bw + bw * 0.1
        h = lost * sy
        out.append(
            f'<rect class="code" x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bw * 0.8:.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[5]}"><title>{escape(code)}: {lost:.1f} s lost, {count} '
            f"fault(s)</title></rect>"
        )
        out.append(
            f'<text x="{x + bw * 0.4:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">'
            f'{escape(code)}</text><text x="{x + bw * 0.4:.1f}" y="{height - bottom + 30}" '
            f'text-anchor="middle" font-size="11" fill="#555">{lost:.0f} s, {count}x</text>'
        )
        cum += lost
        pts.append((x + bw * 0.4, top + (height - top - bottom) * (1 - cum / total)))
    out.append(
        f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" fill="none" '
        f'stroke="{PALETTE[0]}" stroke-width="2"/>'
    )
    for x, y in pts:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}"/>')
    out.append(f'<text x="{width - right + 4}" y="{top + 10}" font-size="12" fill="{PALETTE[0]}">100%</text></svg>')
    return "".join(out)


def timeline(
    intervals: Sequence[tuple[float, float, str]],
    t0: float,
    t1: float,
    width: int = 1200,
    height: int = 90,
    title: str = "Downtime",
) -> str:
    """Fault intervals (start, end, code) on one line over [t0, t1]: red where the cell was down."""
    if t1 <= t0:
        return _empty(width, height, "downtime", title, "no production yet")
    left, right = 10, 10
    scale = (width - left - right) / (t1 - t0)
    shown = [(a, b, c) for a, b, c in intervals if b > t0 and a < t1]
    out = _open(width, height, "downtime", len(shown), title)
    out.append(
        f'<rect x="{left}" y="14" width="{width - left - right}" height="36" fill="{PALETTE[2]}" fill-opacity="0.35"/>'
    )
    for a, b, code in shown:
        x0 = left + (max(a, t0) - t0) * scale
        w = max((min(b, t1) - max(a, t0)) * scale, 2.0)
        out.append(
            f'<rect class="down" x="{x0:.1f}" y="14" width="{w:.1f}" height="36" fill="{BAD}">'
            f"<title>{escape(code)}: {a:.1f}-{b:.1f} s ({b - a:.1f} s)</title></rect>"
        )
    for t in _ticks(t0, t1):
        x = left + (t - t0) * scale
        out.append(
            f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="56" stroke="#555"/>'
            f'<text x="{x:.1f}" y="72" text-anchor="middle" font-size="12">{_num(t)} s</text>'
        )
    out.append("</svg>")
    return "".join(out)
