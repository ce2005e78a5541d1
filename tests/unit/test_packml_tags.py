"""PackML tag mapping: state numbers and nesting (OPC 30050), available transitions, counts, StopReason,
alarms and warnings from faults, state times, CntrlCmd map parsing."""

from __future__ import annotations

import math

import pytest

from cobot_cell.core.packml import State
from cobot_cell.core.reports import CycleReport
from cobot_cell.plant.packml import (
    BASE,
    EXECUTE,
    MACHINE,
    STATE_NUMBERS,
    CellTracker,
    available_transitions,
    parse_cntrl_cmd_map,
    state_path,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def report(part: int, status: str = "done", run: str = "r1", job: str = "bracket", cycle: float = 10.0):
    return CycleReport(
        cell="c", job=job, run_id=run, part=part, start=part * 10.0, end=part * 10.0 + cycle, status=status, steps=()
    )


def test_every_cell_state_has_its_tr88_number_and_a_place_in_the_nested_machines() -> None:
    assert {s.value for s in State} == set(STATE_NUMBERS)
    assert sorted(STATE_NUMBERS.values()) == list(range(1, 18))
    assert (STATE_NUMBERS["Stopped"], STATE_NUMBERS["Execute"], STATE_NUMBERS["Complete"]) == (2, 6, 17)
    assert state_path("Aborted") == {BASE: "Aborted", MACHINE: None, EXECUTE: None}
    assert state_path("Stopped") == {BASE: "Cleared", MACHINE: "Stopped", EXECUTE: None}
    assert state_path("Held") == {BASE: "Cleared", MACHINE: "Running", EXECUTE: "Held"}
    with pytest.raises(ValueError, match="unknown PackML state 'Dancing'"):
        state_path("Dancing")


def test_available_transitions_leave_the_current_state() -> None:
    assert available_transitions(EXECUTE, "Execute") == [
        "ExecuteToCompleting",
        "ExecuteToHolding",
        "ExecuteToSuspending",
    ]
    assert available_transitions(MACHINE, "Stopped") == ["StoppedToRunning"]
    assert available_transitions(EXECUTE, None) == []


def test_cntrl_cmd_map() -> None:
    assert parse_cntrl_cmd_map("")[2] == "start"
    assert parse_cntrl_cmd_map("10=start, 20=stop") == {10: "start", 20: "stop"}
    for text, message in (
        ("x=start", "expected NUMBER=COMMAND"),
        ("1=fly", "command must be one of reset"),
        ("1=start,1=stop", "numbers must be >= 1 and appear once"),
        ("0=start", ">= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_cntrl_cmd_map(text)


def test_counts_per_job_this_run_and_accumulated() -> None:
    t = CellTracker("c", jobs=("bracket", "frame"))
    for r in (report(1), report(2, "scrap"), report(2, "scrap"), report(3)):
        t.on_report(r)
    tags = t.tags()
    assert [(n.id, n.name, n.count, n.acc_count) for n in tags.processed] == [(1, "bracket", 3, 3), (2, "frame", 0, 0)]
    assert [(n.count, n.acc_count) for n in tags.defective] == [(1, 1), (0, 0)]
    t.on_report(report(1, run="r2"))  # a new run restarts Count, not AccCount
    assert [(n.count, n.acc_count) for n in t.tags().processed][0] == (1, 4)


def test_stop_reason_is_the_first_fault_and_alarms_follow_the_fault_life_cycle() -> None:
    clock = Clock()
    t = CellTracker("c", clock=clock)
    t.on_state("Execute")
    fault = {
        "id": "3",
        "code": "PROTECTIVE_STOP",
        "message": "driver reports protective stop",
        "acknowledged": "",
        "cleared": "",
    }
    t.on_fault("b-3", fault)
    t.on_fault("b-4", {"id": "4", "code": "ESTOP", "message": "later", "acknowledged": "", "cleared": ""})
    t.on_state("Holding")
    t.on_state("Held")
    tags = t.tags()
    assert (tags.stop_reason.id, tags.stop_reason.value, tags.stop_reason.trigger) == (3, 1, True)
    assert tags.stop_reason.message == "PROTECTIVE_STOP: driver reports protective stop"
    assert [a.id for a in tags.alarms] == [3, 4] and tags.warnings == ()
    clock.t += 5
    t.on_fault("b-3", {**fault, "acknowledged": "12.5"})
    tags = t.tags()
    assert [a.id for a in tags.alarms] == [4] and [w.id for w in tags.warnings] == [3]
    assert tags.warnings[0].ack_time == 1005.0 and tags.stop_reason.ack_time == 1005.0
    t.on_fault("b-3", {**fault, "acknowledged": "12.5", "cleared": "13.0"})
    assert t.tags().stop_reason.trigger is False and [w.id for w in t.tags().warnings] == []
    t.on_state("Resetting")
    assert t.tags().stop_reason.id == 0


def test_a_fault_arriving_after_the_state_it_caused_is_still_the_stop_reason() -> None:
    t = CellTracker("c")
    t.on_state("Execute")
    t.on_state("Holding")
    t.on_fault("k", {"id": "1", "code": "GRIP_MISSED", "message": "no part", "acknowledged": "", "cleared": ""})
    assert t.tags().stop_reason.id == 1


def test_state_times_and_speed() -> None:
    clock = Clock()
    t = CellTracker("c", clock=clock, mach_speed=360.0)
    t.on_status({"state": "Execute", "job": "bracket", "parts": "5", "parts_done": "1", "run_id": "r1"})
    clock.t += 30
    for part in range(1, 4):
        t.on_report(report(part, cycle=12.0))
    tags = t.tags()
    assert tags.state_current_time == 30 and tags.state_cumulative_time[STATE_NUMBERS["Execute"]] == 30
    assert tags.cur_mach_speed == pytest.approx(300.0) and tags.mach_speed == 360.0
    assert (tags.job, tags.parts_target, tags.parts_done, tags.product_id) == ("bracket", 5, 1, 0)
    t.on_state("Held")
    clock.t += 10
    tags = t.tags()
    assert tags.cur_mach_speed == 0.0 and tags.state_cumulative_time[STATE_NUMBERS["Held"]] == 10
    assert tags.state_cumulative_time[STATE_NUMBERS["Execute"]] == 30 and tags.mode_current_time == 40
    assert all(math.isnan(v) for v in tags.kpis.values())
    t.on_kpis({"oee": "0.5", "mtbf": "nan", "parts": "3"})
    assert t.tags().kpis["oee"] == 0.5 and t.tags().kpis["parts"] == 3.0 and math.isnan(t.tags().kpis["mtbf"])


def test_stop_reason_is_set_when_the_acting_state_passed_between_two_status_updates() -> None:
    t = CellTracker("c", clock=Clock())
    t.on_state("Execute")
    t.on_fault(
        "b-3",
        {
            "id": "3",
            "code": "PROTECTIVE_STOP",
            "message": "driver reports protective stop",
            "acknowledged": "",
            "cleared": "",
        },
    )
    t.on_state("Held")  # Holding was over before the status showed it
    tags = t.tags()
    assert (tags.stop_reason.id, tags.stop_reason.trigger) == (3, True)


def test_equipment_blocked_follows_the_planners_full_pallet_status() -> None:
    from cobot_cell.core.cell import CellStatus
    from cobot_cell.core.packml import State
    from cobot_cell.core.wire import decode_status, encode_status

    t = CellTracker("c")
    t.on_status(decode_status(encode_status(CellStatus(State.EXECUTE, "bracket", 10, 3, 4, "r", None, None))))
    assert (t.tags().blocked, t.tags().starved) == (False, False)
    t.on_status(
        decode_status(encode_status(CellStatus(State.HELD, "bracket", 10, 8, 9, "r", None, None, blocked=True)))
    )
    assert (t.tags().blocked, t.tags().starved) == (True, False)
