"""HMI page models: live snapshot (state colours, commands, steps, faults, Gantt with waits and stations, OEE),
SVG charts, and the shift report (Pareto, downtime, CSV)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.hmi import svg
from cobot_cell.hmi.model import (
    PACKML_COLOURS,
    LiveModel,
    allowed_commands,
    bottleneck_bound,
    gantt_bars,
    parse_fault,
    parse_running,
    step_stations,
)
from cobot_cell.hmi.shift import ShiftReport, load_report
from cobot_cell.supervisor.log import FaultRecord, ProductionLog

STATIONS = {"load_blank": ("infeed", "fixture"), "weld_seams": ("fixture",), "palletise": ("fixture", "pallet")}


def part(n: int, t0: float, status: str = "done", run: str = "r1") -> CycleReport:
    """A demo-cell part: load 0-2 s (picker), weld 2-6 s (welder), palletise 6-8 s (picker)."""
    steps = (
        StepTiming("load_blank", "pick", "picker", t0, t0 + 2.0),
        StepTiming("weld_seams", "weld", "welder", t0 + 2.0, t0 + 6.0),
        StepTiming("palletise", "palletise", "picker", t0 + 6.0, t0 + 8.0),
    )
    return CycleReport("demo", "bracket", run, n, t0, t0 + 8.0, status, steps)


def test_allowed_commands_follow_packml():
    assert allowed_commands("Stopped") == ["reset", "abort"]
    assert allowed_commands("Execute") == ["stop", "hold", "suspend", "abort"]
    assert allowed_commands("Held") == ["stop", "unhold", "abort"]
    assert allowed_commands("nonsense") == []
    assert allowed_commands(None) == []


def test_every_packml_state_has_a_banner_colour():
    from cobot_cell.core.packml import State

    assert set(PACKML_COLOURS) == {s.value for s in State}
    assert PACKML_COLOURS["Execute"][0] != PACKML_COLOURS["Aborted"][0] != PACKML_COLOURS["Held"][0]


def test_parse_running():
    steps = parse_running("picker:load_blank@1.5;welder:weld_seams@2.25")
    assert [(s.cobot, s.step, s.start) for s in steps] == [
        ("picker", "load_blank", 1.5),
        ("welder", "weld_seams", 2.25),
    ]
    assert parse_running("") == []
    with pytest.raises(ValueError, match=r"malformed entry 'picker@x'"):
        parse_running("picker@x")
    with pytest.raises(ValueError, match=r"malformed entry 'picker:step@nan'"):
        parse_running("picker:step@nan")


def test_parse_fault():
    f = parse_fault(
        {
            "fault_key": "b-1",
            "id": "1",
            "code": "GRIP_MISSED",
            "source": "picker/load_blank",
            "raised": "3.5",
            "acknowledged": "",
            "cleared": "",
        },
        "grip not confirmed",
    )
    assert (f.key, f.id, f.code, f.raised, f.acknowledged, f.active, f.message) == (
        "b-1",
        1,
        "GRIP_MISSED",
        3.5,
        None,
        True,
        "grip not confirmed",
    )
    with pytest.raises(ValueError, match="key 'acknowledged' is not a number: 'soon'"):
        parse_fault({"fault_key": "b-1", "raised": "1", "acknowledged": "soon"})
    with pytest.raises(ValueError, match="'fault_key' and 'raised' are required"):
        parse_fault({"raised": "1"})


def test_step_stations_from_parameters():
    steps = [
        ("load_blank", {"from": "infeed", "to": "fixture"}),
        ("weld", {"station": "fixture", "speed": 0.02}),
        ("stack", {"places": ["pallet", "nowhere"]}),
    ]
    assert step_stations(steps, ["infeed", "fixture", "pallet"]) == {
        "load_blank": ("infeed", "fixture"),
        "weld": ("fixture",),
        "stack": ("pallet",),
    }


def test_bottleneck_bound_is_the_busiest_cobots_median_work():
    # picker works 4 s per part, welder 4 s; make the welder slower on one part: medians stay 4 and 4
    reports = [part(1, 0.0), part(2, 8.0), part(3, 16.0, status="scrap")]
    assert bottleneck_bound(reports) == pytest.approx(4.0)
    slow = CycleReport(
        "demo", "bracket", "r1", 4, 30.0, 41.0, "done", (StepTiming("weld_seams", "weld", "welder", 30.0, 41.0),)
    )
    assert bottleneck_bound([slow]) == pytest.approx(11.0)
    assert bottleneck_bound([]) is None


def test_gantt_bars_show_waits_and_stations():
    bars = gantt_bars([part(1, 0.0)], [], STATIONS, {}, now=10.0)
    picker = [(b.kind, b.label, b.start, b.end) for b in bars if b.lane == "picker"]
    # the picker waits for the weld between its two steps
    assert picker == [("step", "load_blank", 0.0, 2.0), ("wait", "wait", 2.0, 6.0), ("step", "palletise", 6.0, 8.0)]
    welder = [(b.kind, b.start, b.end) for b in bars if b.lane == "welder"]
    assert welder == [("wait", 0.0, 2.0), ("step", 2.0, 6.0)]
    stations = {b.lane: (b.start, b.end, b.label) for b in bars if b.kind == "station"}
    assert stations == {"infeed": (0.0, 2.0, "part 1"), "fixture": (0.0, 8.0, "part 1"), "pallet": (6.0, 8.0, "part 1")}


def test_gantt_bars_of_the_part_under_way_end_at_now():
    current = [("load_blank", "picker", 10.0, 12.0), ("weld_seams", "welder", 12.0, None)]
    bars = gantt_bars([], current, STATIONS, {}, now=13.5, part=2)
    running = [b for b in bars if b.kind == "running"]
    assert [(b.lane, b.label, b.start, b.end) for b in running] == [("welder", "weld_seams", 12.0, 13.5)]
    assert any(b.kind == "step" and b.label == "load_blank" and b.end == 12.0 for b in bars)


def model_with_a_run() -> LiveModel:
    m = LiveModel("demo", ["picker", "welder"], STATIONS, window=60.0)
    m.set_state("Execute")
    for n in range(1, 4):
        m.add_report(part(n, 8.0 * (n - 1)))
    m.set_status(
        {
            "state": "Execute",
            "job": "bracket",
            "parts": "5",
            "parts_done": "3",
            "part": "4",
            "run_id": "r1",
            "running": "picker:load_blank@24.0",
        },
        now=25.0,
    )
    return m


def test_snapshot_shows_state_counter_steps_and_charts():
    m = model_with_a_run()
    s = m.snapshot(now=25.0)
    assert s["state"] == "Execute" and s["colour"]["background"] == PACKML_COLOURS["Execute"][0]
    assert s["commands"] == ["stop", "hold", "suspend", "abort"]
    assert (s["parts_done"], s["parts_target"], s["part"], s["job"]) == (3, 5, 4, "bracket")
    assert s["steps"] == [
        {"cobot": "picker", "step": "load_blank", "since": 24.0},
        {"cobot": "welder", "step": "", "since": None},
    ]
    assert s["bottleneck_bound"] == pytest.approx(4.0)
    # 3 parts of 8 s back to back, no faults: availability 1, performance 4 s ideal x 3 / 24 s, quality 1
    assert s["oee"]["availability"] == pytest.approx(1.0)
    assert s["oee"]["performance"] == pytest.approx(0.5)
    assert s["oee"]["quality"] == pytest.approx(1.0)
    assert s["oee"]["oee"] == pytest.approx(0.5)
    gantt = s["charts"]["gantt"]
    # 3 parts x 3 steps + 1 running + 3 x 3 station spans + the running part's 2 stations
    assert 'data-marks="21"' in gantt and "running" in gantt and 'class="wait"' in gantt
    assert 'data-marks="3"' in s["charts"]["trend"] and "bottleneck bound 4.00 s" in s["charts"]["trend"]
    assert 'data-marks="4"' in s["charts"]["oee"]


def test_a_step_that_stops_running_keeps_its_bar_until_the_report_comes():
    m = model_with_a_run()
    m.set_status({"state": "Execute", "part": "4", "run_id": "r1", "running": "welder:weld_seams@26.0"}, now=26.0)
    bars = re.findall(r'<rect class="(step|running)"[^>]*><title>([^<]*)</title>', m.snapshot(27.0)["charts"]["gantt"])
    assert ("step", "part 4 load_blank on picker: 24.0-26.0 s") in bars
    assert ("running", "part 4 weld_seams on welder: 26.0-27.0 s (running)") in bars
    m.add_report(part(4, 24.0))
    assert "(running)" not in m.snapshot(33.0)["charts"]["gantt"]


def test_faults_reports_and_versions():
    m = model_with_a_run()
    v = m.version
    assert m.add_report(part(3, 16.0)) is False, "a report seen before is not added again"
    assert m.version == v
    m.set_fault(
        parse_fault(
            {"fault_key": "b-1", "id": "1", "code": "GRIP_MISSED", "source": "picker/load_blank", "raised": "20.0"},
            "grip <not> confirmed",
        )
    )
    s = m.snapshot(25.0)
    assert m.version > v
    assert s["faults"] == [
        {
            "key": "b-1",
            "id": 1,
            "code": "GRIP_MISSED",
            "source": "picker/load_blank",
            "message": "grip <not> confirmed",
            "raised": 20.0,
            "acknowledged": False,
        }
    ]
    m.set_fault(
        parse_fault(
            {
                "fault_key": "b-1",
                "id": "1",
                "code": "GRIP_MISSED",
                "raised": "20.0",
                "acknowledged": "20.5",
                "cleared": "21.0",
            }
        )
    )
    assert m.snapshot(27.0)["faults"] == []
    assert m.snapshot(27.0)["oee"]["availability"] < 1.0


def test_malformed_running_key_keeps_the_last_steps(caplog):
    m = model_with_a_run()
    m.set_status({"state": "Execute", "part": "4", "run_id": "r1", "running": "garbage"})
    assert m.snapshot()["steps"][0]["step"] == "load_blank"
    assert "malformed entry 'garbage'" in caplog.text


def test_the_snapshot_says_when_the_cell_is_starved_or_blocked():
    m = model_with_a_run()
    for starved, blocked in (("true", "false"), ("false", "true"), ("false", "false")):
        m.set_status({"state": "Execute", "run_id": "r1", "starved": starved, "blocked": blocked})
        snap = m.snapshot()
        assert (snap["starved"], snap["blocked"]) == (starved == "true", blocked == "true")


def test_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="window must be > 0 s, got 0"):
        LiveModel("demo", [], window=0)
    with pytest.raises(ValueError, match="ideal_cycle_time must be > 0 s, got -1"):
        LiveModel("demo", [], ideal_cycle_time=-1)


def test_svg_escapes_text_and_counts_marks():
    bars = [svg.Bar("<lane>", 0.0, 5.0, "<script>x</script>", "step")]
    out = svg.gantt(["<lane>"], bars, 0.0, 10.0)
    assert "<script>" not in out and "&lt;script&gt;" in out and "&lt;lane&gt;" in out
    assert 'data-marks="1"' in out
    assert 'data-marks="0"' in svg.gantt([], [], 0.0, 1.0)
    assert 'data-marks="0"' in svg.trend([])
    assert 'data-marks="0"' in svg.pareto([])
    assert "n/a" in svg.factors([("OEE", None)])


def shift() -> ShiftReport:
    faults = (
        FaultRecord(1, "demo", 8.5, "ERROR", "picker", "GRIP_MISSED", "m", "k1", 9.0, 10.5),
        FaultRecord(2, "demo", 12.0, "ERROR", "picker", "GRIP_MISSED", "m", "k2", 12.5, 13.0),
        FaultRecord(3, "demo", 20.0, "ERROR", "welder", "ESTOP", "m", "k3", None, None),
    )
    return ShiftReport("demo", None, tuple(part(n, 8.0 * (n - 1)) for n in range(1, 4)), faults)


def test_shift_pareto_and_downtime():
    rep = shift()
    assert rep.downtime_intervals() == [(8.5, 10.5, "GRIP_MISSED"), (12.0, 13.0, "GRIP_MISSED"), (20.0, 24.0, "ESTOP")]
    assert rep.pareto() == [("ESTOP", 4.0, 1), ("GRIP_MISSED", 3.0, 2)]
    assert rep.kpis()["downtime"] == pytest.approx(7.0)
    charts = rep.charts()
    assert 'data-marks="2"' in charts["pareto"] and 'data-marks="3"' in charts["downtime"]
    assert 'data-marks="3"' in charts["trend"]


def test_shift_csv():
    rows = list(csv.reader(io.StringIO(shift().csv())))
    assert rows[0] == [
        "cell",
        "job",
        "run",
        "part",
        "status",
        "start [s]",
        "end [s]",
        "cycle time [s]",
        "load_blank [s]",
        "weld_seams [s]",
        "palletise [s]",
    ]
    assert rows[1] == ["demo", "bracket", "r1", "1", "done", "0.000", "8.000", "8.000", "2.000", "4.000", "2.000"]
    assert len(rows) == 4


def test_load_report_from_a_production_log(tmp_path):
    db = tmp_path / "p.db"
    with ProductionLog(db) as log:
        log.record_cycles([part(1, 0.0), part(2, 8.0), part(1, 100.0, run="r2")])
        log.record_fault("demo", 9.0, "ERROR", "picker", "GRIP_MISSED", "m", fault_key="k", cleared=10.0)
    rep = load_report(str(db), "demo", "r1")
    assert [r.part for r in rep.reports] == [1, 2] and rep.runs == (("r1", 2), ("r2", 1))
    assert [f.code for f in rep.faults] == ["GRIP_MISSED"]
    assert [f.code for f in load_report(str(db), "demo", "r2").faults] == []
    assert len(load_report(str(db), "demo").reports) == 3
