"""Production KPIs from cycle reports and faults: cycle-time statistics, output, scrap, throughput, MTBF/MTTR, OEE.

All times are in the clock's seconds (sim time in a simulated cell). Cycle and step statistics cover
parts with status 'done' only: a scrapped part may have stopped early and would distort them.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cobot_cell.core.reports import CycleReport
from cobot_cell.supervisor.log import FaultRecord

logger = logging.getLogger(__name__)

_NAN = float("nan")


@dataclass(frozen=True)
class CycleStats:
    """Summary of a set of durations in seconds; with count 0 every other field is NaN."""

    count: int
    mean: float
    p95: float
    min: float
    max: float
    std: float


def cycle_stats(cycle_times: Sequence[float]) -> CycleStats:
    """Count, mean, p95, min, max and population std (ddof=0) of durations; empty gives count 0 and NaNs.

    p95 is numpy's default percentile, linear interpolation between the two nearest ranks: for sorted
    values x[0..n-1] it is x[i] + f * (x[i+1] - x[i]) where i + f = 0.95 * (n - 1).
    """
    values = np.asarray(cycle_times, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"cycle_stats: expected a flat sequence of durations, got shape {values.shape}")
    if values.size == 0:
        return CycleStats(0, _NAN, _NAN, _NAN, _NAN, _NAN)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"cycle_stats: durations must be finite, got {float(values[bad[0]])!r} at index {int(bad[0])}")
    return CycleStats(
        count=int(values.size),
        mean=float(values.mean()),
        p95=float(np.percentile(values, 95)),
        min=float(values.min()),
        max=float(values.max()),
        std=float(values.std()),
    )


def _done(reports: Iterable[CycleReport]) -> list[CycleReport]:
    return [r for r in reports if r.status == "done"]


def step_stats(reports: Iterable[CycleReport]) -> dict[str, CycleStats]:
    """Duration statistics per step name over done parts, in order of the steps' first appearance."""
    durations: dict[str, list[float]] = {}
    for report in _done(reports):
        for step in report.steps:
            durations.setdefault(step.step, []).append(step.duration)
    return {name: cycle_stats(values) for name, values in durations.items()}


def downtime(faults: Iterable[FaultRecord], start: float, end: float) -> float:
    """Seconds of [start, end] covered by at least one fault, each from raised to cleared (open: to `end`).

    Overlapping faults count once (the union of their intervals); parts of a fault outside [start, end] do not count.
    """
    intervals = sorted((max(f.time, start), min(end if f.cleared is None else f.cleared, end)) for f in faults)
    total = 0.0
    cur_start, cur_end = start, start
    for a, b in intervals:
        if b <= a:
            continue
        if a > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    return total + (cur_end - cur_start)


def _check_faults(faults: Sequence[FaultRecord]) -> None:
    for f in faults:
        if f.cleared is not None and f.cleared < f.time:
            raise ValueError(f"fault {f.id}: cleared {f.cleared!r} is before raised {f.time!r}")


def kpis(
    reports: Sequence[CycleReport],
    faults: Sequence[FaultRecord] = (),
    ideal_cycle_time: float | None = None,
) -> dict[str, float]:
    """Headline KPIs of the reports (and faults) given, aggregated over all of them.

    Keys:
    - parts (done), scrap, scrap_rate (scrap / all parts), mean_cycle_time and p95_cycle_time (done parts),
      span (first start to last end of any part), throughput_per_hour (done parts per hour of span),
      faults (all records) and errors (level ERROR);
    - downtime: seconds of the span covered by faults, the union of their [raised, cleared] intervals clipped
      to the span, a fault not cleared yet counting until the span end;
    - mtbf: operating time (span - downtime) / number of faults (every record given, so filter the faults to
      the period of interest); mttr: mean of cleared - raised over the cleared faults;
    - availability: operating time / span; quality: done / (done + scrap);
      performance: ideal_cycle_time * (done + scrap) / operating time (scrap took its cycle too; quality
      accounts for it), NaN without an ideal cycle time; may exceed 1 if the ideal time is too long;
    - oee: availability * performance * quality, which is ideal_cycle_time * done / span.

    Undefined values are NaN: ratios with nothing to divide by (no parts, zero span, no operating time),
    mtbf without faults, mttr without a cleared fault, performance and oee without ideal_cycle_time.
    Filter the inputs by cell for per-cell figures.
    """
    _check_ideal(ideal_cycle_time)
    _check_faults(faults)
    done = _done(reports)
    scrap = sum(1 for r in reports if r.status == "scrap")
    stats = cycle_stats([r.cycle_time for r in done])
    window = (min(r.start for r in reports), max(r.end for r in reports)) if reports else None
    return _kpis(len(done), scrap, stats.mean, stats.p95, window, faults, ideal_cycle_time)


def _check_ideal(ideal_cycle_time: float | None) -> None:
    if ideal_cycle_time is not None and not (math.isfinite(ideal_cycle_time) and ideal_cycle_time > 0):
        raise ValueError(f"ideal_cycle_time must be a positive number of seconds, got {ideal_cycle_time!r}")


def _kpis(
    done: int,
    scrap: int,
    mean: float,
    p95: float,
    window: tuple[float, float] | None,
    faults: Sequence[FaultRecord],
    ideal_cycle_time: float | None,
) -> dict[str, float]:
    """The KPI formulas (see `kpis`) from the aggregates of the parts and the faults."""
    if window is not None:
        span = window[1] - window[0]
        down = downtime(faults, *window)
    else:
        span = down = _NAN
    operating = span - down
    total = done + scrap
    repairs = [f.cleared - f.time for f in faults if f.cleared is not None]
    availability = operating / span if span > 0 else _NAN
    quality = done / total if total else _NAN
    if ideal_cycle_time is not None and operating > 0:
        performance = ideal_cycle_time * total / operating
    else:
        performance = _NAN
    return {
        "parts": float(done),
        "scrap": float(scrap),
        "scrap_rate": scrap / total if total else _NAN,
        "mean_cycle_time": mean,
        "p95_cycle_time": p95,
        "span": span,
        "throughput_per_hour": done * 3600.0 / span if span > 0 else _NAN,
        "faults": float(len(faults)),
        "errors": float(sum(1 for f in faults if f.level == "ERROR")),
        "downtime": down,
        "mtbf": operating / len(faults) if faults and span > 0 else _NAN,
        "mttr": float(np.mean(repairs)) if repairs else _NAN,
        "availability": availability,
        "quality": quality,
        "performance": performance,
        "oee": availability * performance * quality,
    }


class KpiAccumulator:
    """One cell's KPIs kept up to date part by part and fault by fault, so publishing them costs no pass over the
    production log: the same figures as `kpis()` over everything added (p95 from a sorted list of done cycle
    times; downtime over the cell's faults, which are few next to its parts)."""

    def __init__(self) -> None:
        self._keys: set[tuple[str, int]] = set()
        self._cycles: list[float] = []  # done parts' cycle times, sorted
        self._sum = 0.0
        self.scrap = 0
        self._t0, self._t1 = math.inf, -math.inf
        self._faults: dict[object, FaultRecord] = {}

    def add_report(self, report: CycleReport) -> bool:
        """Count a part once (by run and part number); False if it was already counted."""
        key = (report.run_id, report.part)
        if key in self._keys:
            return False
        self._keys.add(key)
        if report.status == "done":
            bisect.insort(self._cycles, report.cycle_time)
            self._sum += report.cycle_time
        elif report.status == "scrap":
            self.scrap += 1
        self._t0, self._t1 = min(self._t0, report.start), max(self._t1, report.end)
        return True

    def set_fault(self, fault: FaultRecord) -> None:
        """A fault as the log now has it (a later update of the same id replaces the earlier one)."""
        self._faults[fault.id] = fault

    def update_fault(
        self,
        fault_id: int,
        cell: str,
        time: float,
        level: str,
        source: str,
        code: str,
        message: str,
        fault_key: str | None,
        acknowledged: float | None,
        cleared: float | None,
    ) -> None:
        """A fault life-cycle update as the log applies it: the first values stay, times once set are kept."""
        old = self._faults.get(fault_id)
        if old is None:
            self._faults[fault_id] = FaultRecord(
                fault_id, cell, time, level, source, code, message, fault_key, acknowledged, cleared
            )
        else:
            self._faults[fault_id] = dataclasses.replace(
                old,
                acknowledged=old.acknowledged if old.acknowledged is not None else acknowledged,
                cleared=old.cleared if old.cleared is not None else cleared,
            )

    def _p95(self) -> float:
        n = len(self._cycles)
        if n == 0:
            return _NAN
        pos = 0.95 * (n - 1)  # numpy's default (linear) percentile, as cycle_stats
        i = int(pos)
        f = pos - i
        return self._cycles[i] + f * (self._cycles[i + 1] - self._cycles[i]) if i + 1 < n else self._cycles[i]

    def kpis(self, ideal_cycle_time: float | None = None) -> dict[str, float]:
        """The KPIs of everything added (as `kpis()` computes them)."""
        _check_ideal(ideal_cycle_time)
        done = len(self._cycles)
        window = (self._t0, self._t1) if self._keys else None
        return _kpis(
            done,
            self.scrap,
            self._sum / done if done else _NAN,
            self._p95(),
            window,
            list(self._faults.values()),
            ideal_cycle_time,
        )
