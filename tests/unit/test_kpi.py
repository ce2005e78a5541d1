"""KPIs (cycle statistics, headline figures, MTBF/MTTR, OEE), the plain-text report tables and the cycle plot."""

from __future__ import annotations

import math
import statistics
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.supervisor.kpi import CycleStats, cycle_stats, downtime, kpis, step_stats
from cobot_cell.supervisor.log import FaultRecord
from cobot_cell.supervisor.report import cycle_table, kpi_table, plot_cycles, render


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
    # neither fault is cleared: both count as down until the span end, [111, 135] once
    assert k["downtime"] == pytest.approx(24.0)
    assert k["mtbf"] == pytest.approx((35.0 - 24.0) / 2)
    assert math.isnan(k["mttr"])
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
    k = kpis([], ideal_cycle_time=5.0)
    assert (k["parts"], k["scrap"], k["faults"], k["errors"]) == (0, 0, 0, 0)
    for key in (
        "scrap_rate",
        "mean_cycle_time",
        "p95_cycle_time",
        "span",
        "throughput_per_hour",
        "downtime",
        "mtbf",
        "mttr",
        "availability",
        "quality",
        "performance",
        "oee",
    ):
        assert math.isnan(k[key]), key


def fault(fid: int, raised: float, cleared: float | None = None, level: str = "ERROR") -> FaultRecord:
    return FaultRecord(
        fid,
        "cell_a",
        raised,
        level,
        "ur5e_left",
        "PROTECTIVE_STOP",
        "stop",
        fault_key=f"b-{fid}",
        acknowledged=None if cleared is None else cleared,
        cleared=cleared,
    )


def test_reliability_and_oee_with_overlapping_and_open_faults(shift: list[CycleReport]) -> None:
    # span [100, 135] = 35 s; faults [105, 112] and [110, 116] overlap: down [105, 116] = 11 s once;
    # fault 3 is still open at 128: down until the span end, 7 s. Downtime 18 s, operating time 17 s.
    faults = [fault(1, 105.0, 112.0), fault(2, 110.0, 116.0), fault(3, 128.0)]
    k = kpis(shift, faults, ideal_cycle_time=4.0)
    assert k["downtime"] == pytest.approx(18.0)
    assert k["mtbf"] == pytest.approx(17.0 / 3)  # operating time / faults raised
    assert k["mttr"] == pytest.approx((7.0 + 6.0) / 2)  # over the two cleared faults, not clipped
    assert k["availability"] == pytest.approx(17.0 / 35)
    assert k["quality"] == pytest.approx(3 / 4)
    assert k["performance"] == pytest.approx(4.0 * 4 / 17)  # done and scrap parts took their cycle
    assert k["oee"] == pytest.approx(17 / 35 * 16 / 17 * 3 / 4)
    assert k["oee"] == pytest.approx(4.0 * 3 / 35)  # = ideal time of the good parts / span
    assert all(type(v) is float for v in k.values())


def test_reliability_and_oee_without_faults(shift: list[CycleReport]) -> None:
    k = kpis(shift, ideal_cycle_time=8.0)
    assert k["downtime"] == 0.0
    assert k["availability"] == 1.0
    assert math.isnan(k["mtbf"]) and math.isnan(k["mttr"])  # no failure, no repair: undefined
    assert k["quality"] == 0.75
    assert k["performance"] == pytest.approx(8.0 * 4 / 35)
    assert k["oee"] == pytest.approx(8.0 * 3 / 35)


def test_performance_and_oee_are_nan_without_an_ideal_cycle_time(shift: list[CycleReport]) -> None:
    k = kpis(shift, [fault(1, 105.0, 112.0)])
    assert k["availability"] == pytest.approx(28.0 / 35)
    assert k["mtbf"] == pytest.approx(28.0) and k["mttr"] == pytest.approx(7.0)
    assert math.isnan(k["performance"]) and math.isnan(k["oee"])


def test_faults_outside_the_span_are_clipped_but_counted(shift: list[CycleReport]) -> None:
    # [90, 102] is down for 2 s of the span; [140, open) after the last part adds no downtime
    faults = [fault(1, 90.0, 102.0), fault(2, 140.0)]
    k = kpis(shift, faults)
    assert k["downtime"] == pytest.approx(2.0)
    assert k["mtbf"] == pytest.approx(33.0 / 2)
    assert k["mttr"] == pytest.approx(12.0)


def test_a_cell_down_for_the_whole_span() -> None:
    k = kpis([report(1, 0.0, 10.0)], [fault(1, 0.0)], ideal_cycle_time=5.0)
    assert (k["downtime"], k["availability"], k["mtbf"]) == (10.0, 0.0, 0.0)
    assert math.isnan(k["performance"]) and math.isnan(k["oee"])  # no operating time to perform in


@pytest.mark.parametrize("ideal", [0.0, -1.0, float("nan"), float("inf")])
def test_ideal_cycle_time_must_be_positive(shift: list[CycleReport], ideal: float) -> None:
    with pytest.raises(ValueError) as err:
        kpis(shift, ideal_cycle_time=ideal)
    assert str(err.value) == f"ideal_cycle_time must be a positive number of seconds, got {ideal!r}"


def test_fault_cleared_before_raised_is_refused(shift: list[CycleReport]) -> None:
    with pytest.raises(ValueError) as err:
        kpis(shift, [FaultRecord(7, "cell_a", 110.0, "ERROR", "s", "C", "m", cleared=109.5)])
    assert str(err.value) == "fault 7: cleared 109.5 is before raised 110.0"


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0.0),
        ([(2.0, 4.0)], 2.0),
        ([(2.0, 4.0), (4.0, 6.0)], 4.0),  # adjacent
        ([(2.0, 8.0), (3.0, 4.0)], 6.0),  # nested
        ([(6.0, 7.0), (1.0, 3.0), (2.0, 5.0)], 5.0),  # unsorted, overlapping, and a separate one
        ([(-5.0, 1.0), (9.0, None)], 2.0),  # clipped at both ends; open until the end
        ([(-5.0, -1.0), (11.0, None), (3.0, 3.0)], 0.0),  # wholly outside, or empty
    ],
)
def test_downtime_is_the_union_clipped_to_the_window(
    intervals: list[tuple[float, float | None]], expected: float
) -> None:
    faults = [FaultRecord(i, "c", a, "ERROR", "s", "C", "m", cleared=b) for i, (a, b) in enumerate(intervals)]
    assert downtime(faults, 0.0, 10.0) == expected


@given(
    st.lists(st.tuples(st.integers(-5, 25), st.one_of(st.none(), st.integers(0, 30))), max_size=8),
    st.integers(0, 10),
    st.integers(0, 20),
)
def test_downtime_matches_counting_unit_seconds(spans: list[tuple[int, int | None]], start: int, length: int) -> None:
    end = start + length
    faults = [
        FaultRecord(i, "c", float(a), "ERROR", "s", "C", "m", cleared=None if b is None else float(max(a, b)))
        for i, (a, b) in enumerate(spans)
    ]
    covered = sum(
        1
        for t in range(start, end)
        if any(f.time <= t and t + 1 <= (end if f.cleared is None else f.cleared) for f in faults)
    )
    assert downtime(faults, float(start), float(end)) == covered


def test_kpis_all_scrap_has_no_cycle_time_but_a_rate() -> None:
    k = kpis([report(1, 0.0, 5.0, status="scrap")])
    assert k["parts"] == 0 and k["scrap_rate"] == 1.0 and k["throughput_per_hour"] == 0.0
    assert math.isnan(k["mean_cycle_time"])


def test_cycle_table_renders_parts_and_durations(shift: list[CycleReport]) -> None:
    text = render([cycle_table(shift)])
    assert "\x1b" not in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "Cycles: cell_a run run-1" in text
    for header in ("part", "status", "cycle time [s]", "takt [s]", "pick [s]", "weld [s]"):
        assert header in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] and line.split()[1].isdigit()}
    assert sorted(rows) == ["1", "2", "3", "4"]
    # the takt: since the previous part was done (none for the first part, nor for a scrapped one)
    assert [c for c in rows["1"].split() if c != "│"] == ["1", "done", "10.00", "-", "3.00", "7.00"]
    assert [c for c in rows["3"].split() if c != "│"] == ["3", "done", "8.00", "8.00", "2.50", "5.50"]
    assert [c for c in rows["4"].split() if c != "│"] == ["4", "scrap", "5.00", "-", "5.00", "-"]


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


def test_kpi_table_shows_reliability_and_oee_with_units(shift: list[CycleReport]) -> None:
    faults = [fault(1, 105.0, 112.0), fault(2, 110.0, 116.0), fault(3, 128.0)]
    text = render(kpi_table(kpis(shift, faults, ideal_cycle_time=4.0)))
    for label, value in [
        ("downtime [s]", "18.00"),
        ("MTBF [s]", "5.67"),
        ("MTTR [s]", "6.50"),
        ("availability", "48.6%"),
        ("performance", "94.1%"),
        ("quality", "75.0%"),
        ("OEE", "34.3%"),
    ]:
        assert any(
            line.split("│")[1].strip() == label and line.split()[-2] == value
            for line in text.splitlines()
            if line.count("│") == 3
        ), label


def test_kpi_table_shows_nan_as_n_a_and_unknown_keys_by_name() -> None:
    text = render(kpi_table({"mean_cycle_time": float("nan"), "oee": float("nan"), "takt": 0.8125}))
    assert any("mean cycle time [s]" in line and "n/a" in line for line in text.splitlines())
    assert any("OEE" in line and "n/a" in line for line in text.splitlines())
    assert any("takt" in line and "0.8125" in line for line in text.splitlines())


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_plot_cycles_writes_a_png(shift: list[CycleReport], tmp_path: Path) -> None:
    import matplotlib.image

    path = plot_cycles(shift, tmp_path / "cycles.png")
    assert path == tmp_path / "cycles.png"
    assert path.stat().st_size > 10_000
    assert png_size(path) == (1000, 500)
    pixels = matplotlib.image.imread(path)  # decodes the whole file: CRCs and zlib stream are valid
    assert pixels.shape[:2] == (500, 1000)
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::97]}) > 5  # not a blank canvas
    assert path.read_bytes()[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"


def test_plot_cycles_of_many_parts_and_runs(tmp_path: Path) -> None:
    reports = [
        CycleReport(
            f"cell_{p % 2}",
            "bracket",
            "run-1",
            p,
            10.0 * p,
            10.0 * p + 8.0,
            "scrap" if p % 7 == 0 else "done",
            (step("pick", 10.0 * p, 10.0 * p + 3.0), step("weld", 10.0 * p + 3.0, 10.0 * p + 8.0)),
        )
        for p in range(1, 61)
    ]
    path = plot_cycles(reports, str(tmp_path / "many.png"), title="Shift")
    assert png_size(path) == (1000, 500)


def test_plot_cycles_refuses_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        plot_cycles([], tmp_path / "empty.png")
    assert str(err.value) == "plot_cycles: no cycle reports to plot"
    assert not (tmp_path / "empty.png").exists()


@given(
    parts=st.lists(
        st.tuples(
            st.integers(0, 30), st.floats(0.0, 500.0), st.floats(0.1, 60.0), st.sampled_from(["done", "done", "scrap"])
        ),
        max_size=40,
    ),
    faults=st.lists(st.tuples(st.floats(0.0, 600.0), st.one_of(st.none(), st.floats(0.0, 100.0))), max_size=6),
    ideal=st.one_of(st.none(), st.floats(1.0, 30.0)),
)
def test_the_accumulator_gives_the_kpis_of_everything_added(parts, faults, ideal) -> None:
    from cobot_cell.supervisor.kpi import KpiAccumulator

    reports = {}
    for n, start, cycle, status in parts:  # a part number repeated is a duplicate delivery: counted once
        reports.setdefault(
            n,
            CycleReport(cell="c", job="j", run_id="r", part=n, start=start, end=start + cycle, status=status, steps=()),
        )
    records = [
        FaultRecord(i + 1, "c", t, "ERROR", "s", "X", "m", f"k{i}", None, None if repair is None else t + repair)
        for i, (t, repair) in enumerate(faults)
    ]
    acc = KpiAccumulator()
    for n, *_ in parts:
        acc.add_report(reports[n])
    for f in records:  # raised first, cleared by a later update, as the supervisor sees them
        acc.update_fault(f.id, f.cell, f.time, f.level, f.source, f.code, f.message, f.fault_key, None, None)
        acc.update_fault(f.id, f.cell, f.time, f.level, f.source, f.code, f.message, f.fault_key, None, f.cleared)
    got, want = acc.kpis(ideal), kpis(list(reports.values()), records, ideal)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9, nan_ok=True), key
