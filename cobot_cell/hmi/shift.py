"""The shift report's model: a production log's parts and faults -> cycle table, KPIs, fault Pareto, downtime, CSV."""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field

from ..core.reports import CycleReport
from ..supervisor.kpi import kpis
from ..supervisor.log import FaultRecord, ProductionLog
from . import svg
from .model import bottleneck_bound

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShiftReport:
    """One cell's parts and faults over a period (a run, or the whole log), with what the report derives from them."""

    cell: str
    run_id: str | None
    reports: tuple[CycleReport, ...]
    faults: tuple[FaultRecord, ...]
    ideal_cycle_time: float | None = None
    runs: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # (run id, parts) of the cell's log

    @property
    def span(self) -> tuple[float, float]:
        """First part start to last part end (0, 0 without parts)."""
        if not self.reports:
            return 0.0, 0.0
        return min(r.start for r in self.reports), max(r.end for r in self.reports)

    @property
    def bound(self) -> float | None:
        """Bottleneck bound of the done parts."""
        return bottleneck_bound(self.reports)

    def kpis(self) -> dict[str, float]:
        """Headline KPIs (supervisor.kpi.kpis), the ideal cycle time defaulting to the bottleneck bound."""
        return kpis(self.reports, self.faults, ideal_cycle_time=self.ideal_cycle_time or self.bound)

    def downtime_intervals(self) -> list[tuple[float, float, str]]:
        """(raised, cleared or end of span, code) of each fault, clipped to the span."""
        t0, t1 = self.span
        out = []
        for f in self.faults:
            a, b = max(f.time, t0), min(f.cleared if f.cleared is not None else t1, t1)
            if b > a:
                out.append((a, b, f.code))
        return out

    def pareto(self) -> list[tuple[str, float, int]]:
        """(code, seconds lost, number of faults) per fault code, most time lost first."""
        lost: dict[str, list[float]] = {}
        for a, b, code in self.downtime_intervals():
            lost.setdefault(code, []).append(b - a)
        counts: dict[str, int] = {}
        for f in self.faults:
            counts[f.code] = counts.get(f.code, 0) + 1
        items = [(code, sum(lost.get(code, [])), n) for code, n in counts.items()]
        return sorted(items, key=lambda i: (-i[1], i[0]))

    def step_names(self) -> list[str]:
        """Step names in order of first appearance."""
        names: dict[str, None] = {}
        for r in self.reports:
            for s in r.steps:
                names.setdefault(s.step, None)
        return list(names)

    def rows(self) -> list[dict[str, str]]:
        """The cycle table: one row per part, times in seconds with 3 decimals, '' for a step a part did not run."""
        names = self.step_names()
        rows = []
        for r in self.reports:
            d = {s.step: s.duration for s in r.steps}
            row = {
                "cell": r.cell,
                "job": r.job,
                "run": r.run_id,
                "part": str(r.part),
                "status": r.status,
                "start [s]": f"{r.start:.3f}",
                "end [s]": f"{r.end:.3f}",
                "cycle time [s]": f"{r.cycle_time:.3f}",
            }
            row.update({f"{n} [s]": f"{d[n]:.3f}" if n in d else "" for n in names})
            rows.append(row)
        return rows

    def csv(self) -> str:
        """The cycle table as CSV (header row first)."""
        names = self.step_names()
        header = ["cell", "job", "run", "part", "status", "start [s]", "end [s]", "cycle time [s]"] + [
            f"{n} [s]" for n in names
        ]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def charts(self) -> dict[str, str]:
        """The report's charts as SVG: cycle-time trend, OEE factors, fault Pareto, downtime timeline."""
        k = self.kpis()
        t0, t1 = self.span

        def v(key: str) -> float | None:
            return k[key] if math.isfinite(k[key]) else None

        return {
            "trend": svg.trend([(str(r.part), r.cycle_time, r.status) for r in self.reports], self.bound, width=1000),
            "oee": svg.factors(
                [
                    ("OEE", v("oee")),
                    ("availability", v("availability")),
                    ("performance", v("performance")),
                    ("quality", v("quality")),
                ]
            ),
            "pareto": svg.pareto(self.pareto()),
            "downtime": svg.timeline(self.downtime_intervals(), t0, t1),
        }


def load_report(
    db: str, cell: str, run_id: str | None = None, ideal_cycle_time: float | None = None, read_only: bool = False
) -> ShiftReport:
    """Read a shift report from a production log: one run, or (run_id None) the cell's whole log."""
    with ProductionLog(db, read_only=read_only) as log:
        everything = log.parts(cell=cell, with_steps=False)
        reports = log.parts(cell=cell, run_id=run_id) if run_id else log.parts(cell=cell)
        faults = log.faults(cell=cell)
    runs: dict[str, int] = {}
    for r in sorted(everything, key=lambda r: r.start):
        runs[r.run_id] = runs.get(r.run_id, 0) + 1
    reports = sorted(reports, key=lambda r: r.start)
    if reports:
        t0, t1 = min(r.start for r in reports), max(r.end for r in reports)
        faults = [f for f in faults if f.time <= t1 and (f.cleared is None or f.cleared >= t0)]
    elif run_id:
        faults = []
    return ShiftReport(
        cell=cell,
        run_id=run_id,
        reports=tuple(reports),
        faults=tuple(faults),
        ideal_cycle_time=ideal_cycle_time,
        runs=tuple(runs.items()),
    )
