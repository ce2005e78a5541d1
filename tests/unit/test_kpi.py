"""KPIs (cycle statistics, headline figures) and the plain-text report tables."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.supervisor.kpi import CycleStats, cycle_stats, kpis, step_stats
from cobot_cell.supervisor.log import FaultRecord
from cobot_cell.supervisor.report import cycle_table, kpi_table, render


def linear_percentile(values: list[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks, written out independently of numpy."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])


def report(
    part: int, start: float, end: float, status: str = "done", steps: tuple[StepTiming, ...] = ()
) -> CycleReport:
    return CycleReport("cell_a", "bracket", "run-1", part, start, end, status, steps)


def step(name: str, start: float, end: float) -> StepTiming:
    return StepTiming(name, name, "ur5e_left", start, end)


@pytest.fixture
def shift() -> list[CycleReport]:
    """Three done parts (10 s, 12 s, 8 s) and one scrap, from t=100 to t=135."""
    return [
        report(1, 100.0, 110.0, steps=(step("pick", 100.0, 103.0), step("weld", 103.0, 110.0))),
        report(2, 110.0, 122.0, steps=(step("pick", 110.0, 114.0), step("weld", 114.0, 122.0))),
        report(3, 122.0, 130.0, steps=(step("pick", 122.0, 124.5), step("weld", 124.5, 130.0))),
        report(4, 130.0, 135.0, status="scrap", steps=(step("pick", 130.0, 135.0),)),
    ]


def test_cycle_stats_of_1_to_100() -> None:
    s = cycle_stats([float(i) for i in range(100, 0, -1)])  # order must not matter
    assert s.count == 100
    assert s.mean == pytest.approx(50.5)
    # linear interpolation: rank 0.95 * 99 = 94.05 between x[94] = 95 and x[95] = 96
    assert s.p95 == pytest.approx(95.05)
    assert (s.min, s.max) == (1.0, 100.0)
    assert s.std == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert s.std == pytest.approx(statistics.pstdev(range(1, 101)))


def test_cycle_stats_of_one_value() -> None:
    assert cycle_stats([7.25]) == CycleStats(count=1, mean=7.25, p95=7.25, min=7.25, max=7.25, std=0.0)


def test_cycle_stats_of_nothing_is_count_0_and_nan() -> None:
    s = cycle_stats([])
    assert s.count == 0
    assert all(math.isnan(v) for v in (s.mean, s.p95, s.min, s.max, s.std))


def test_cycle_stats_returns_plain_floats() -> None:
    s = cycle_stats([1, 2, 3])
    assert type(s.count) is int
    assert all(type(v) is float for v in (s.mean, s.p95, s.min, s.max, s.std))


def test_cycle_stats_refuses_non_finite() -> None:
    with pytest.raises(ValueError) as err:
        cycle_stats([1.0, 2.0, float("nan")])
    assert str(err.value) == "cycle_stats: durations must be finite, got nan at index 2"


def test_cycle_stats_refuses_nested_input() -> None:
    with pytest.raises(ValueError) as err:
        cycle_stats([[1.0, 2.0], [3.0, 4.0]])  # type: ignore[list-item]
    assert str(err.value) == "cycle_stats: expected a flat sequence of durations, got shape (2, 2)"


@given(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=200))
def test_cycle_stats_matches_independent_formulas(values: list[float]) -> None:
    s = cycle_stats(values)
    assert s.count == len(values)
    assert (s.min, s.max) == (min(values), max(values))
    assert s.mean == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-9)
    assert s.p95 == pytest.approx(linear_percentile(values, 95), rel=1e-9, abs=1e-9)
    assert s.std == pytest.approx(statistics.pstdev(values), rel=1e-6, abs=1e-6)
    assert s.min <= s.p95 <= s.max


def test_step_stats_per_step_over_done_parts(shift: list[CycleReport]) -> None:
    stats = step_stats(shift)
    assert list(stats) == ["pick", "weld"]
    assert stats["pick"] == cycle_stats([3.0, 4.0, 2.5])  # the scrapped part's 5 s pick is left out
    assert stats["weld"].count == 3
    assert stats["weld"].mean == pytest.approx((7.0 + 8.0 + 5.5) / 3)
    assert stats["weld"].max == 8.0


def test_kpis_of_a_small_shift(shift: list[CycleReport]) -> None:
    faults = [
        FaultRecord(1, "cell_a", 111.0, "WARN", "pendant", "LINK", "pendant link lost"),
        FaultRecord(2, "cell_a", 131.0, "ERROR", "ur5e_left", "E_STOP", "protective stop"),
    ]
    k = kpis(shift, faults)
    assert k["parts"] == 3
    assert k["scrap"] == 1
    assert k["scrap_rate"] == pytest.approx(0.25)
    assert k["mean_cycle_time"] == pytest.approx(10.0)
    # done cycle times sorted 8, 10, 12: rank 0.95 * 2 = 1.9 -> 10 + 0.9 * 2
    assert k["p95_cycle_time"] == pytest.approx(11.8)
    assert k["span"] == pytest.approx(35.0)
    assert k["throughput_per_hour"] == pytest.approx(3 * 3600 / 35)
    assert (k["faults"], k["errors"]) == (2, 1)
    assert all(type(v) is float for v in k.values())


def test_kpis_span_covers_parallel_cells() -> None:
    reports = [
        CycleReport("a", "j", "r", 1, 0.0, 30.0),
        CycleReport("b", "j", "r", 1, 10.0, 20.0),
        CycleReport("b", "j", "r", 2, 20.0, 60.0),
    ]
    k = kpis(reports)
    assert k["span"] == 60.0
    assert k["throughput_per_hour"] == pytest.approx(3 * 60.0)


def test_kpis_of_nothing() -> None:
    k = kpis([])
    assert (k["parts"], k["scrap"], k["faults"], k["errors"]) == (0, 0, 0, 0)
    for key in ("scrap_rate", "mean_cycle_time", "p95_cycle_time", "span", "throughput_per_hour"):
        assert math.isnan(k[key]), key


def test_kpis_all_scrap_has_no_cycle_time_but_a_rate() -> None:
    k = kpis([report(1, 0.0, 5.0, status="scrap")])
    assert k["parts"] == 0 and k["scrap_rate"] == 1.0 and k["throughput_per_hour"] == 0.0
    assert math.isnan(k["mean_cycle_time"])


def test_cycle_table_renders_parts_and_durations(shift: list[CycleReport]) -> None:
    text = render([cycle_table(shift)])
    assert "\x1b" not in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "Cycles: cell_a run run-1" in text
    for header in ("part", "status", "cycle time [s]", "pick [s]", "weld [s]"):
        assert header in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] and line.split()[1].isdigit()}
    assert sorted(rows) == ["1", "2", "3", "4"]
    assert [c for c in rows["1"].split() if c != "│"] == ["1", "done", "10.00", "3.00", "7.00"]
    assert [c for c in rows["3"].split() if c != "│"] == ["3", "done", "8.00", "2.50", "5.50"]
    assert [c for c in rows["4"].split() if c != "│"] == ["4", "scrap", "5.00", "5.00", "-"]


def test_cycle_table_rounds_to_two_decimals() -> None:
    text = render(cycle_table([report(1, 0.0, 1.0 / 3.0, steps=(step("pick", 0.0, 0.123456),))]))
    assert "0.33" in text and "0.12" in text and "0.333" not in text


def test_cycle_table_adds_cell_and_run_columns_for_several_runs() -> None:
    reports = [CycleReport("cell_a", "j", "run-1", 1, 0.0, 4.0), CycleReport("cell_b", "j", "run-9", 1, 0.0, 5.0)]
    lines = render(cycle_table(reports)).splitlines()
    assert any(line.split()[1:4] == ["cell", "┃", "run"] for line in lines)
    assert any(line.split()[1:6] == ["cell_b", "│", "run-9", "│", "1"] for line in lines)


def test_names_with_brackets_are_not_markup() -> None:
    text = render(cycle_table([report(1, 0.0, 2.0, steps=(step("[bold]glue[/bold]", 0.0, 2.0),))]))
    assert "[bold]glue[/bold] [s]" in text


def test_kpi_table(shift: list[CycleReport]) -> None:
    text = render(kpi_table(kpis(shift)))
    assert "KPIs" in text
    for label, value in [
        ("parts done", "3"),
        ("scrap", "1"),
        ("scrap rate", "25.0%"),
        ("mean cycle time [s]", "10.00"),
        ("p95 cycle time [s]", "11.80"),
        ("throughput [parts/h]", "308.57"),
    ]:
        assert any(label in line and line.split()[-2] == value for line in text.splitlines()), label


def test_kpi_table_shows_nan_as_n_a_and_unknown_keys_by_name() -> None:
    text = render(kpi_table({"mean_cycle_time": float("nan"), "oee": 0.8125}))
    assert any("mean cycle time [s]" in line and "n/a" in line for line in text.splitlines())
    assert any("oee" in line and "0.8125" in line for line in text.splitlines())
