"""Production KPIs from cycle reports and faults: cycle-time statistics, output, scrap, throughput.

All times are in the clock's seconds (sim time in a simulated cell). Cycle and step statistics cover
parts with status 'done' only: a scrapped part may have stopped early and would distort them.
"""

from __future__ import annotations

import logging
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


def kpis(reports: Sequence[CycleReport], faults: Sequence[FaultRecord] = ()) -> dict[str, float]:
    """Headline KPIs of the reports (and faults) given, aggregated over all of them.

    Keys: parts (done), scrap, scrap_rate (scrap / all parts), mean_cycle_time and p95_cycle_time (done
    parts), span (first start to last end of any part), throughput_per_hour (done parts per hour of span),
    faults (all records) and errors (level ERROR). Undefined ratios (no parts, zero span) are NaN.
    Filter the inputs by cell for per-cell figures.
    """
    done = _done(reports)
    scrap = sum(1 for r in reports if r.status == "scrap")
    stats = cycle_stats([r.cycle_time for r in done])
    if reports:
        span = max(r.end for r in reports) - min(r.start for r in reports)
    else:
        span = _NAN
    total = len(done) + scrap
    return {
        "parts": float(len(done)),
        "scrap": float(scrap),
        "scrap_rate": scrap / total if total else _NAN,
        "mean_cycle_time": stats.mean,
        "p95_cycle_time": stats.p95,
        "span": span,
        "throughput_per_hour": len(done) * 3600.0 / span if span > 0 else _NAN,
        "faults": float(len(faults)),
        "errors": float(sum(1 for f in faults if f.level == "ERROR")),
    }

