"""Plain-text production reports: a cycle table and a KPI table, built with rich."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

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
}


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def cycle_table(reports: Sequence[CycleReport], title: str = "Cycles") -> Table:
    """One row per part: part, status, cycle time and each step's duration in seconds (2 decimals).

    Step columns follow the steps' first appearance; a step a part did not run shows '-'. When the
    reports come from more than one (cell, run), leading cell and run columns tell the parts apart.
    """
    runs = {(r.cell, r.run_id) for r in reports}
    several = len(runs) > 1
    if len(runs) == 1:
        cell, run_id = next(iter(runs))
        title = f"{title}: {cell} run {run_id}"
    step_names: dict[str, None] = {}
    for report in reports:
        for step in report.steps:
            step_names.setdefault(step.step, None)

    # Text, not str, everywhere: rich would read "[s]" or a bracketed name as markup.
    table = Table(title=Text(title))
    if several:
        table.add_column(Text("cell"))
        table.add_column(Text("run"))
    table.add_column(Text("part"), justify="right", no_wrap=True)
    table.add_column(Text("status"))
    table.add_column(Text("cycle time [s]"), justify="right", no_wrap=True)
    for name in step_names:
        table.add_column(Text(f"{name} [s]"), justify="right", no_wrap=True)

    for report in reports:
        durations = {step.step: step.duration for step in report.steps}
        row = [str(report.part), report.status, _seconds(report.cycle_time)]
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
