"""The shift report's charts as PNG files (matplotlib, Agg): the ones the HMI draws as SVG, for mail and archives.

`write_charts(report, directory)` writes one PNG per chart (cycle-time trend with the bottleneck bound, OEE and
its factors, fault Pareto, downtime timeline, Gantt of the last minutes with waits) plus `report.png`, all on one
sheet. `python -m cobot_cell.supervisor.charts DB --sheet OUT` writes the sheet alone (the HMI's PNG export runs
it in a child process, so the HMI never loads matplotlib).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cobot_cell.hmi.svg import BAD, PALETTE, WAIT  # the HMI's chart colours (svg.py is plain text, no web imports)

if TYPE_CHECKING:
    from cobot_cell.hmi.shift import ShiftReport

logger = logging.getLogger(__name__)

GANTT_WINDOW = 300.0


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_trend(ax: Any, rep: ShiftReport) -> None:
    """Cycle time per part (scrap in red) and the bottleneck bound."""
    ax.set_title("Cycle time per part")
    if not rep.reports:
        _empty(ax, "no parts")
        return
    x = list(range(1, len(rep.reports) + 1))
    ax.plot(x, [r.cycle_time for r in rep.reports], color=PALETTE[0], marker="o", markersize=3, label="cycle time")
    scrap = [(xi, r.cycle_time) for xi, r in zip(x, rep.reports) if r.status != "done"]
    if scrap:
        ax.scatter(*zip(*scrap), color=BAD, marker="X", zorder=3, label="scrap")
    if rep.bound:
        ax.axhline(rep.bound, color=BAD, linestyle="--", label=f"bottleneck bound {rep.bound:.2f} s")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("part (in order made)")
    ax.set_ylabel("s")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def draw_oee(ax: Any, rep: ShiftReport) -> None:
    """OEE and its three factors as bars from 0 to 100 %."""
    k = rep.kpis()
    names = ["OEE", "availability", "performance", "quality"]
    values = [k[n.lower()] if n != "OEE" else k["oee"] for n in names]
    ax.set_title("OEE")
    ys = list(range(len(names)))[::-1]
    for y, v in zip(ys, values):
        ax.barh(y, 1.0, color="#eee")
        if math.isfinite(v):
            ax.barh(y, min(max(v, 0.0), 1.0), color=PALETTE[2] if v >= 0.85 else PALETTE[1] if v >= 0.6 else BAD)
        ax.text(1.02, y, f"{v:.1%}" if math.isfinite(v) else "n/a", va="center")
    ax.set_yticks(ys, names)
    ax.set_xlim(0, 1.18)
    ax.set_xticks([0, 0.5, 1.0], ["0", "50%", "100%"])


def draw_pareto(ax: Any, rep: ShiftReport) -> None:
    """Time lost per fault code, largest first, with the cumulative share."""
    items = [i for i in rep.pareto() if i[1] > 0]
    ax.set_title("Time lost per fault code")
    if not items:
        _empty(ax, "no downtime")
        return
    codes = [c for c, _, _ in items]
    lost = [t for _, t, _ in items]
    ax.bar(codes, lost, color=PALETTE[5])
    ax.set_ylabel("s lost")
    ax.tick_params(axis="x", labelrotation=20, labelsize="small")
    total, cum = sum(lost), 0.0
    shares = []
    for t in lost:
        cum += t
        shares.append(cum / total)
    twin = ax.twinx()
    twin.plot(codes, shares, color=PALETTE[0], marker="o")
    twin.set_ylim(0, 1.05)
    twin.set_yticks([0, 0.5, 1.0], ["0", "50%", "100%"])


def draw_downtime(ax: Any, rep: ShiftReport) -> None:
    """When faults held the cell down over the report's span."""
    t0, t1 = rep.span
    ax.set_title("Downtime (red: a fault was active)")
    if t1 <= t0:
        _empty(ax, "no production")
        return
    ax.broken_barh([(t0, t1 - t0)], (0, 1), color=PALETTE[2], alpha=0.35)
    ax.broken_barh([(a, b - a) for a, b, _ in rep.downtime_intervals()], (0, 1), color=BAD)
    ax.set_xlim(t0, t1)
    ax.set_yticks([])
    ax.set_xlabel("cell time [s]")


def draw_gantt(ax: Any, rep: ShiftReport, window: float = GANTT_WINDOW) -> None:
    """The last `window` seconds: one lane per cobot, each step a bar, waits within a part hatched grey."""
    from cobot_cell.hmi.model import gantt_bars

    ax.set_title(f"Last {window / 60:g} min")
    if not rep.reports:
        _empty(ax, "no parts")
        return
    t1 = rep.span[1]
    t0 = max(t1 - window, rep.span[0])
    bars = gantt_bars([r for r in rep.reports if r.end >= t0], [], {}, {}, t1)
    lanes = list(dict.fromkeys(b.lane for b in bars))
    row = {name: len(lanes) - 1 - i for i, name in enumerate(lanes)}
    for b in bars:
        if b.kind == "wait":
            ax.broken_barh(
                [(b.start, b.end - b.start)],
                (row[b.lane] - 0.15, 0.3),
                facecolor="#eee",
                edgecolor=WAIT,
                hatch="///",
                linewidth=0,
            )
        else:
            ax.broken_barh(
                [(b.start, b.end - b.start)], (row[b.lane] - 0.35, 0.7), color=PALETTE[b.colour % len(PALETTE)]
            )
    names: dict[str, int] = {}
    for b in bars:
        if b.kind == "step":
            names.setdefault(b.label, b.colour)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(color=PALETTE[c % len(PALETTE)], label=n) for n, c in names.items()]
        + [Patch(facecolor="#eee", edgecolor=WAIT, hatch="///", label="wait")],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize="small",
    )
    ax.set_yticks(list(row.values()), list(row))
    ax.set_xlim(t0, t1)
    ax.set_xlabel("cell time [s]")


CHARTS: dict[str, tuple[Callable[[Any, ShiftReport], None], tuple[float, float]]] = {
    "trend": (draw_trend, (8, 4)),
    "oee": (draw_oee, (6, 3)),
    "pareto": (draw_pareto, (7, 4)),
    "downtime": (draw_downtime, (10, 2)),
    "gantt": (draw_gantt, (10, 3.5)),
}


def _kpi_text(rep: ShiftReport) -> str:
    k = rep.kpis()

    def f(key: str, fmt: str) -> str:
        return fmt.format(k[key]) if math.isfinite(k[key]) else "n/a"

    return (
        f"parts {f('parts', '{:.0f}')}   scrap {f('scrap', '{:.0f}')}   "
        f"mean cycle {f('mean_cycle_time', '{:.2f}')} s"
        f"   p95 {f('p95_cycle_time', '{:.2f}')} s   throughput {f('throughput_per_hour', '{:.1f}')}/h   "
        f"downtime {f('downtime', '{:.1f}')} s   faults {f('faults', '{:.0f}')}   MTBF {f('mtbf', '{:.0f}')} s"
        f"   MTTR {f('mttr', '{:.1f}')} s"
    )


def write_sheet(rep: ShiftReport, path: str | os.PathLike[str]) -> Path:
    """Every chart and the headline KPIs on one PNG page (A4 landscape proportions)."""
    fig = _figure(14, 9.9)
    run = f"run {rep.run_id}" if rep.run_id else f"{len(rep.runs)} run(s)"
    fig.suptitle(f"Shift report: cell {rep.cell}, {run}, {len(rep.reports)} parts\n{_kpi_text(rep)}", fontsize=12)
    grid = fig.add_gridspec(3, 2, height_ratios=[1.2, 1.0, 0.55])
    draw_gantt(fig.add_subplot(grid[0, :]), rep)
    draw_trend(fig.add_subplot(grid[1, 0]), rep)
    draw_oee(fig.add_subplot(grid[1, 1]), rep)
    draw_downtime(fig.add_subplot(grid[2, 0]), rep)
    draw_pareto(fig.add_subplot(grid[2, 1]), rep)
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def write_charts(rep: ShiftReport, directory: str | os.PathLike[str]) -> list[Path]:
    """One PNG per chart, the cycle plot and the one-page sheet in `directory` (created); their paths."""
    from cobot_cell.supervisor.report import plot_cycles

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (draw, size) in CHARTS.items():
        fig = _figure(*size)
        draw(fig.add_subplot(), rep)
        fig.savefig(d / f"{name}.png", format="png")
        written.append(d / f"{name}.png")
    if rep.reports:
        written.append(plot_cycles(list(rep.reports), d / "cycles.png"))
    written.append(write_sheet(rep, d / "report.png"))
    logger.info("%d charts written to %s", len(written), d)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m cobot_cell.supervisor.charts DB (--sheet PNG | --plot DIR) [--cell C] [--run R] [--ideal S]`."""
    from cobot_cell.hmi.shift import load_report
    from cobot_cell.supervisor.log import ProductionLog

    p = argparse.ArgumentParser(prog="python -m cobot_cell.supervisor.charts", description=__doc__.splitlines()[0])
    p.add_argument("db")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--sheet", help="write the one-page report PNG here")
    out.add_argument("--plot", help="write every chart as a PNG into this directory")
    p.add_argument("--cell", help="the cell (default: the first in the log)")
    p.add_argument("--run", help="one run only")
    p.add_argument("--ideal", type=float, help="ideal cycle time [s] (default: the bottleneck bound)")
    args = p.parse_args(argv)
    if not Path(args.db).is_file():
        print(f"error: no production log at {args.db}", file=sys.stderr)
        return 2
    cell = args.cell
    if cell is None:
        with ProductionLog(args.db) as log:
            cells = list(dict.fromkeys(r.cell for r in log.parts(with_steps=False)))
        if not cells:
            print(f"error: no parts in {args.db}", file=sys.stderr)
            return 2
        cell = cells[0]
    rep = load_report(args.db, cell, args.run, args.ideal)
    if args.sheet:
        write_sheet(rep, args.sheet)
    else:
        write_charts(rep, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
