"""Production KPIs from cycle reports and faults: cycle-time statistics, output, scrap, throughput, MTBF/MTTR, OEE.

All times are in the clock's seconds (sim time in a simulated cell). Cycle and step statistics cover
parts with status 'done' only: a scrapped part may have stopped early and would distort them.
"""

from __future__ import annotations

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
    intervals = sorted(
        (max(f.time, start), min(end if f.cleared is None else f.cleared, end)) for f in faults
    )
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
    if ideal_cycle_time is not None and not (math.isfinite(ideal_cycle_time) and ideal_cycle_time > 0):
        raise ValueError(f"ideal_cycle_time must be a positive number of seconds, got {ideal_cycle_time!r}")
    _check_faults(faults)
    done = _done(reports)
    scrap = sum(1 for r in reports if r.status == "scrap")
    stats = cycle_stats([r.cycle_time for r in done])
    if reports:
        t0, t1 = min(r.start for r in reports), max(r.end for r in reports)
        span = t1 - t0
        down = downtime(faults, t0, t1)
    else:
        span = down = _NAN
    operating = span - down
    total = len(done) + scrap
    repairs = [f.cleared - f.time for f in faults if f.cleared is not None]
    availability = operating / span if span > 0 else _NAN
    quality = len(done) / total if total else _NAN
    if ideal_cycle_time is not None and operating > 0:
        performance = ideal_cycle_time * total / operating
    else:
        performance = _NAN
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
        "downtime": down,
        "mtbf": operating / len(faults) if faults and span > 0 else _NAN,
        "mttr": float(np.mean(repairs)) if repairs else _NAN,
        "availability": availability,
        "quality": quality,
        "performance": performance,
        "oee": availability * performance * quality,
    }
