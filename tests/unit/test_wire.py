"""The wire codec: cycle reports, fault updates and cell status round-trip; versions and bad keys are named;
fields added to the report dataclasses cross the wire without codec edits; older and newer writers are read."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobot_cell.core.cell import CellStatus
from cobot_cell.core.faults import Code, Fault
from cobot_cell.core.packml import State
from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.core.wire import (
    WIRE_VERSION,
    FaultUpdate,
    decode_cycle,
    decode_fault,
    decode_status,
    encode_cycle,
    encode_fault,
    encode_status,
)

REPORT = CycleReport(
    "demo",
    "bracket",
    "r-7",
    3,
    10.0,
    17.912345678901,
    "scrap",
    (StepTiming("load_blank", "pick", "picker", 10.0, 12.5), StepTiming("weld", "weld", "welder", 12.5, 17.9)),
)

names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=12)
times = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    cell=names,
    job=names,
    run=names,
    part=st.integers(1, 10**9),
    start=times,
    end=times,
    status=st.sampled_from(["done", "scrap"]),
    steps=st.lists(st.tuples(names, names, names, times, times), max_size=5, unique_by=lambda s: s[0]),
)
def test_cycle_reports_round_trip_exactly(
    cell: str,
    job: str,
    run: str,
    part: int,
    start: float,
    end: float,
    status: str,
    steps: list[tuple[str, str, str, float, float]],
) -> None:
    report = CycleReport(cell, job, run, part, start, end, status, tuple(StepTiming(*s) for s in steps))
    assert decode_cycle(encode_cycle(report)) == report


def test_cycle_report_keys_carry_the_version_and_the_derived_cycle_time() -> None:
    kv = dict(encode_cycle(REPORT))
    assert kv["wire"] == str(WIRE_VERSION) == "1"
    assert kv["cycle_time"] == repr(REPORT.cycle_time) and kv["steps"] == "load_blank,weld"
    assert (kv["step.weld.skill"], kv["step.weld.cobot"], kv["step.weld.end"]) == ("weld", "welder", "17.9")
    assert REPORT.to_key_values() == encode_cycle(REPORT)
    assert CycleReport.from_key_values(encode_cycle(REPORT)) == REPORT


def test_a_report_of_the_first_release_without_the_version_key_is_read() -> None:
    old = [
        ("cell", "demo"),
        ("job", "bracket"),
        ("run_id", "r1"),
        ("part", "1"),
        ("status", "done"),
        ("start", "0.0"),
        ("end", "8.5"),
        ("cycle_time", "8.5"),
        ("steps", "s1"),
        ("step.s1.skill", "pick"),
        ("step.s1.cobot", "picker"),
        ("step.s1.start", "0.0"),
        ("step.s1.end", "8.5"),
    ]
    assert decode_cycle(old) == CycleReport(
        "demo", "bracket", "r1", 1, 0.0, 8.5, "done", (StepTiming("s1", "pick", "picker", 0.0, 8.5),)
    )


@dataclasses.dataclass(frozen=True)
class TracedReport(CycleReport):
    """A later release's report: one more field, with a default."""

    operator: str = ""
    energy: float | None = None


def test_a_field_added_to_the_report_crosses_the_wire_without_codec_edits() -> None:
    newer = TracedReport(
        **{f.name: getattr(REPORT, f.name) for f in dataclasses.fields(REPORT)}, operator="ann", energy=1.25
    )
    kv = encode_cycle(newer)
    assert ("operator", "ann") in kv and ("energy", "1.25") in kv
    assert decode_cycle(kv, TracedReport) == newer
    assert decode_cycle(kv) == REPORT  # an older reader ignores what it does not know
    older = encode_cycle(REPORT)
    assert decode_cycle(older, TracedReport) == TracedReport(
        **{f.name: getattr(REPORT, f.name) for f in dataclasses.fields(REPORT)}
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wire": "2"}, "cycle report: wire format version 2 not supported (this reader: 1)"),
        ({"wire": "x"}, "cycle report: key 'wire' is not a whole number: 'x'"),
        ({"part": "3.5"}, "cycle report: key 'part' is not a whole number: '3.5'"),
        ({"end": "late"}, "cycle report: key 'end' is not a number: 'late'"),
        ({"step.weld.start": ""}, "cycle report: key 'step.weld.start' is not a number: ''"),
        ({"status": "lost"}, "cycle report: key 'status' must be one of done, scrap, got 'lost'"),
        ({"job": None}, "cycle report: missing key 'job'"),
        ({"step.load_blank.cobot": None}, "cycle report: missing key 'step.load_blank.cobot'"),
        ({"steps": None}, "cycle report: missing key 'steps'"),
    ],
)
def test_a_bad_cycle_report_names_the_key(change: dict[str, str | None], message: str) -> None:
    kv = dict(encode_cycle(REPORT))
    for k, v in change.items():
        if v is None:
            del kv[k]
        else:
            kv[k] = v
    with pytest.raises(ValueError) as err:
        decode_cycle(kv)
    assert str(err.value) == message


FAULT = Fault(
    7, Code.GRIP_MISSED, "grip not confirmed", 12.5, cobot="picker", step="load_blank", skill="pick", acknowledged=13.0
)


def test_fault_updates_round_trip_with_key_severity_and_level() -> None:
    update = FaultUpdate.of(FAULT, "demo", "b00t-7")
    kv = encode_fault(update)
    assert dict(kv)["severity"] == "ERROR" and dict(kv)["time"] == "12.5" and "message" not in dict(kv)
    assert decode_fault(kv, "grip not confirmed") == update
    assert (update.source, update.level) == ("picker/load_blank", "WARN")  # acknowledged
    cleared = dataclasses.replace(update, cleared=14.0)
    assert decode_fault(encode_fault(cleared), cleared.message) == cleared and cleared.level == "OK"
    raised = FaultUpdate(
        "demo", "p-hb1", "pendant heartbeat lost", 3.0, "HEARTBEAT_LOST", "pendant_bridge", severity="WARN"
    )
    assert raised.level == "WARN" and decode_fault(encode_fault(raised), raised.message) == raised


def test_a_status_without_fault_key_is_not_a_fault_update_and_old_keys_are_read() -> None:
    assert decode_fault([("cell", "demo"), ("code", "ESTOP")], "e-stop") is None
    old = {"cell": "", "id": "1", "code": "ESTOP", "time": "4.0", "acknowledged": "", "cleared": "", "fault_key": "k"}
    f = decode_fault(old, "e-stop", cell="demo", source="picker/sim_cobot")
    assert f == FaultUpdate("demo", "k", "e-stop", 4.0, "ESTOP", "picker/sim_cobot", id=1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"raised": "", "time": ""}, "fault k: missing key 'raised'"),
        ({"acknowledged": "soon"}, "fault k: key 'acknowledged' is not a number: 'soon'"),
        ({"id": "one"}, "fault k: key 'id' is not a whole number: 'one'"),
        ({"wire": "9"}, "fault k: wire format version 9 not supported (this reader: 1)"),
    ],
)
def test_a_bad_fault_update_names_the_key(change: dict[str, str], message: str) -> None:
    kv = {**dict(encode_fault(FaultUpdate.of(FAULT, "demo", "k"))), **change}
    with pytest.raises(ValueError) as err:
        decode_fault(kv, "m")
    assert str(err.value) == message


def test_cell_status_encodes_what_displays_show_and_decodes_by_version() -> None:
    s = CellStatus(
        State.HELD,
        "bracket",
        10,
        4,
        5,
        "r-7",
        7.91234,
        FAULT,
        scrap=1,
        resume="weld",
        running=(("welder", "weld", 40.5),),
        parts=(5, 6),
        waiting=(("picker", 6, "load_blank", "fixture"),),
        bound=38.25,
        blocked=True,
    )
    kv = encode_status(s)
    assert decode_status(kv) == {
        "wire": "1",
        "state": "Held",
        "job": "bracket",
        "parts": "10",
        "parts_done": "4",
        "part": "5",
        "run_id": "r-7",
        "last_cycle_time": "7.912",
        "fault": "picker/load_blank: grip not confirmed",
        "fault_id": "7",
        "fault_code": "GRIP_MISSED",
        "fault_acknowledged": "true",
        "scrap": "1",
        "resume": "weld",
        "running": "welder:weld@40.5",
        "parts_in_flight": "5,6",
        "waiting": "picker:6:load_blank:fixture",
        "bound": "38.250",
        "blocked": "true",
        "starved": "false",
    }
    idle = dict(encode_status(CellStatus(State.IDLE, "bracket", 1, 0, None, "", None, None)))
    assert (idle["part"], idle["last_cycle_time"], idle["fault"], idle["fault_acknowledged"]) == ("", "", "", "")
    with pytest.raises(ValueError) as err:
        decode_status([("wire", "3"), ("state", "Idle")])
    assert str(err.value) == "cell status: wire format version 3 not supported (this reader: 1)"
