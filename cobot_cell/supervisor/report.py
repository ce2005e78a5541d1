"""Production reports: a cycle table and a KPI table as plain text (rich), and a cycle-time plot (matplotlib)."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cobot_cell.core.reports import CycleReport

logger = logging.getLogger(__name__)

RENDER_WIDTH = 100
MISSING = "-"

# KPI key -> (label, format); keys not listed are shown by name with a general format.
_KPI_FORMATS: dict[str, tuple[str, str]] = {
    "parts": ("parts done", "{:.0f}"),
    "scrap": ("scrap", "{:.0f}"),
    "scrap_rate": ("scrap rate", "{:.1%}"),
    "mean_cycle_time": ("mean cycle time [s]", "{:.2f}"),
    "p95_cycle_time": ("p95 cycle time [s]", "{:.2f}"),
    "span": ("span [s]", "{:.2f}"),
    "throughput_per_hour": ("throughput [parts/h]", "{:.2f}"),
    "faults": ("faults", "{:.0f}"),
    "errors": ("errors", "{:.0f}"),
    "downtime": ("downtime [s]", "{:.2f}"),
    "mtbf": ("MTBF [s]", "{:.2f}"),
    "mttr": ("MTTR [s]", "{:.2f}"),
    "availability": ("availability", "{:.1%}"),
    "performance": ("performance", "{:.1%}"),
    "quality": ("quality", "{:.1%}"),
    "oee": ("OEE", "{:.1%}"),
}


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _title_and_steps(reports: Sequence[CycleReport], title: str) -> tuple[str, dict[str, None]]:
    """The title (naming the cell and run when there is one) and the step names in order of first appearance."""
    runs = {(r.cell, r.run_id) for r in reports}
    if len(runs) == 1:
        cell, run_id = next(iter(runs))
        title = f"{title}: {cell} run {run_id}"
    step_names: dict[str, None] = {}
    for report in reports:
        for step in report.steps:
            step_names.setdefault(step.step, None)
    return title, step_names


def cycle_table(reports: Sequence[CycleReport], title: str = "Cycles") -> Table:
    """One row per part: part, status, cycle time, takt (time since the run's previous part was done: with parts
    in flight, shorter than the cycle) and each step's duration in seconds (2 decimals).

    Step columns follow the steps' first appearance; a step a part did not run shows '-'. When the
    reports come from more than one (cell, run), leading cell and run columns tell the parts apart.
    """
    runs = {(r.cell, r.run_id) for r in reports}
    several = len(runs) > 1
    title, step_names = _title_and_steps(reports, title)

    # Text, not str, everywhere: rich would read "[s]" or a bracketed name as markup.
    table = Table(title=Text(title))
    if several:
        table.add_column(Text("cell"))
        table.add_column(Text("run"))
    table.add_column(Text("part"), justify="right", no_wrap=True)
    table.add_column(Text("status"))
    table.add_column(Text("cycle time [s]"), justify="right", no_wrap=True)
    table.add_column(Text("takt [s]"), justify="right", no_wrap=True)
    for name in step_names:
        table.add_column(Text(f"{name} [s]"), justify="right", no_wrap=True)

    last_end: dict[tuple[str, str], float] = {}  # takt: since the run's previous part was done
    for report in reports:
        durations = {step.step: step.duration for step in report.steps}
        run = (report.cell, report.run_id)
        takt = report.end - last_end[run] if report.status == "done" and run in last_end else None
        if report.status == "done":
            last_end[run] = report.end
        row = [
            str(report.part),
            report.status,
            _seconds(report.cycle_time),
            _seconds(takt) if takt is not None else MISSING,
        ]
        row += [_seconds(durations[n]) if n in durations else MISSING for n in step_names]
        cells = ([report.cell, report.run_id] if several else []) + row
        table.add_row(*(Text(c) for c in cells))
    return table


def _format_kpi(fmt: str, value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return fmt.format(value)


def kpi_table(k: Mapping[str, float], title: str = "KPIs") -> Table:
    """Two columns, KPI and value, in the mapping's order; undefined (NaN) values show 'n/a'."""
    table = Table(title=Text(title))
    table.add_column(Text("KPI"))
    table.add_column(Text("value"), justify="right", no_wrap=True)
    for key, value in k.items():
        label, fmt = _KPI_FORMATS.get(key, (key, "{:.6g}"))
        table.add_row(Text(label), Text(_format_kpi(fmt, value)))
    return table


def render(tables: Table | Iterable[Table]) -> str:
    """Render one or more tables to plain text, 100 columns wide, without colour or styles."""
    if isinstance(tables, Table):
        tables = [tables]
    console = Console(
        file=io.StringIO(),
        record=True,
        width=RENDER_WIDTH,
        no_color=True,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        highlight=False,
    )
    for table in tables:
        console.print(table)
    return console.export_text()


def plot_cycles(reports: Sequence[CycleReport], path: str | os.PathLike[str], title: str = "Cycle times") -> Path:
    """Write a PNG of each part's step durations as stacked bars and its cycle time as a marker; return the path.

    Parts are plotted in the order given, one bar each; done and scrap parts have their own marker, and scrap
    bars are hatched. Steps that ran in parallel stack above the cycle time (the bar is busy time, not elapsed).
    """
    if not reports:
        raise ValueError("plot_cycles: no cycle reports to plot")
    # The figure is drawn on its own Agg canvas: no pyplot, so no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    title, step_names = _title_and_steps(reports, title)

    fig = Figure(figsize=(10, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(1, len(reports) + 1))
    scrap = [r.status == "scrap" for r in reports]
    palette = [f"C{i % 10}" for i in range(len(step_names))]
    bottom = [0.0] * len(reports)
    for colour, name in zip(palette, step_names):
        heights = [sum(s.duration for s in r.steps if s.step == name) for r in reports]
        bars = ax.bar(x, heights, bottom=bottom, color=colour, label=name, width=0.8)
        for bar, is_scrap in zip(bars, scrap):
            if is_scrap:
                bar.set_hatch("//")
                bar.set_alpha(0.6)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for status, marker, colour in (("done", "o", "black"), ("scrap", "X", "red")):
        points = [(xi, r.cycle_time) for xi, r in zip(x, reports) if r.status == status]
        if points:
            ax.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                marker=marker,
                color=colour,
                zorder=3,
                label=f"cycle time ({status})",
            )
    if len(reports) <= 40:  # few enough to name every part
        several = len({(r.cell, r.run_id) for r in reports}) > 1
        ax.set_xticks(
            x, [f"{r.cell}/{r.part}" if several else str(r.part) for r in reports], rotation=90 if several else 0
        )
        ax.set_xlabel("cell/part" if several else "part")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("part (n-th in the order given)")
    ax.set_ylabel("time [s]")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    out = Path(path)
    fig.savefig(out, format="png")
    logger.debug("cycle plot of %d parts written to %s", len(reports), out)
    return out
