"""The pendant session without ROS: command mapping, the queue and its timeouts, the ERR rate limit, heartbeats
and the enabling-device watchdog, on a virtual wall clock with a fake cell link."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cobot_cell.core.ports import VirtualClock
from cobot_cell.pendant.protocol import BRIDGE_MESSAGES, Frame, Reason, decode_all, encode
from cobot_cell.pendant.session import (
    CallResult,
    CellRequest,
    PendantFault,
    PendantSession,
    SessionParams,
    cell_request,
)


class FakeLink:
    """The cell as a test plays it: calls wait until the test answers them; services can be missing."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.calls: list[tuple[CellRequest, Callable[[CallResult], None]]] = []
        self.cancelled: list[object] = []
        self.missing: set[str] = set()
        self.holds = 0
        self.faults: list[PendantFault] = []

    def write(self, data: bytes) -> None:
        self.out += data

    def call(self, request: CellRequest, done: Callable[[CallResult], None]) -> object | None:
        if request.describe() in self.missing:
            return None
        self.calls.append((request, done))
        return len(self.calls)

    def cancel(self, handle: object) -> None:
        self.cancelled.append(handle)

    def service_name(self, request: CellRequest) -> str:
        return f"/demo/{request.service or 'task_planner/set_parameters'}"

    def hold(self) -> None:
        self.holds += 1

    def fault(self, fault: PendantFault) -> None:
        self.faults.append(fault)

    def frames(self) -> list[Frame]:
        """Every frame written since the last call (and forget them)."""
        got = decode_all(bytes(self.out), BRIDGE_MESSAGES)
        self.out.clear()
        assert all(isinstance(f, Frame) for f in got), got
        return [f for f in got if isinstance(f, Frame)]

    def replies(self) -> list[tuple[int, str, tuple[str, ...]]]:
        """(seq, OK/ERR, args) of the replies written since the last call."""
        return [(f.seq, f.kind, f.args) for f in self.frames() if f.kind in ("OK", "ERR")]


class Rig:
    def __init__(self, **params: object) -> None:
        self.wall = VirtualClock(1000.0)
        self.cell_clock = VirtualClock(50.0)
        self.link = FakeLink()
        self.session = PendantSession(
            SessionParams(cell="demo", version="0.1.0", **params),  # type: ignore[arg-type]
            self.link,
            self.wall.now,
            self.cell_clock.now,
            session_id="b00t",
        )
        self.seq = 0

    def send(self, kind: str, *args: str, seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.session.received(encode(Frame(seq, kind, args)))
        return seq

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Let wall time pass, ticking like the node's timer."""
        end = self.wall.now() + seconds
        while self.wall.now() < end - 1e-9:
            self.wall.advance(min(step, end - self.wall.now()))
            self.session.tick()


@pytest.mark.parametrize(
    ("kind", "args", "state", "expected"),
    [
        ("START", (), "Idle", CellRequest(service="start")),
        ("REAPPROACH", (), "Held", CellRequest(service="reapproach")),
        ("RESUME", (), "Held", CellRequest(service="unhold")),
        ("RESUME", (), "Suspended", CellRequest(service="unsuspend")),
        ("RESUME", (), "Idle", "nothing to resume in state Idle: RESUME works in Held or Suspended"),
        ("RESUME", (), None, "nothing to resume in state unknown: RESUME works in Held or Suspended"),
        ("ACK", (), "Held", CellRequest(service="acknowledge", refused=Reason.NOFAULT)),
        ("JOB", ("bracket",), "Idle", CellRequest(parameter="job", value="bracket")),
        ("PARTS", ("12",), "Idle", CellRequest(parameter="parts", value=12)),
    ],
)
def test_pendant_commands_map_to_cell_commands(
    kind: str, args: tuple[str, ...], state: str | None, expected: CellRequest | str
) -> None:
    assert cell_request(Frame(1, kind, args), state) == expected


def test_hello_on_open_and_in_reply_to_the_pendants_hello() -> None:
    r = Rig()
    r.session.cell_state("Idle")
    r.session.cell_status({"state": "Idle", "job": "bracket", "parts": "2", "parts_done": "0"})
    r.link.frames()
    r.session.opened()
    assert [(f.kind, f.args[:2]) for f in r.link.frames()] == [
        ("HELLO", ("1", "demo")),
        ("STATE", ("Idle",)),
        ("STAT", ("Idle", "bracket")),
    ]
    seq = r.send("HELLO", "1", "pendant-7")
    frames = r.link.frames()
    assert (frames[0].seq, frames[0].kind) == (seq, "OK")
    assert frames[0].args == ("cobot_cell pendant bridge 0.1.0 for cell demo",)
    assert [f.kind for f in frames[1:]] == ["HELLO", "STATE", "STAT"]
    r.send("HELLO", "2")
    assert r.link.replies() == [(r.seq, "ERR", ("VERSION", "protocol version 2 not supported: the bridge speaks 1"))]


def test_commands_run_one_at_a_time_in_order_with_the_cells_answer() -> None:
    r = Rig()
    r.session.cell_state("Idle")
    first, second, third = r.send("START"), r.send("JOB", "bracket"), r.send("ACK")
    assert [c[0] for c in r.link.calls] == [CellRequest(service="start")] and r.session.queued == 2
    r.link.calls[0][1](CallResult(True, "start: state Starting"))
    assert [c[0].describe() for c in r.link.calls] == ["start", "job=bracket"]
    r.link.calls[1][1](CallResult(True, ""))
    r.link.calls[2][1](CallResult(False, "no active fault to acknowledge"))
    assert r.link.replies() == [
        (first, "OK", ("start: state Starting",)),
        (second, "OK", ("job bracket",)),
        (third, "ERR", ("NOFAULT", "no active fault to acknowledge")),
    ]
    assert not r.session.busy


def test_a_refusal_and_a_failed_call_are_answered_with_their_reason() -> None:
    r = Rig()
    r.session.cell_state("Idle")
    hold, parts, resume = r.send("HOLD"), r.send("PARTS", "0"), r.send("RESUME")
    r.link.calls[0][1](CallResult(False, "cannot hold in state Idle"))
    r.link.calls[1][1](CallResult(False, "boom", failed=True))
    assert r.link.replies() == [
        (hold, "ERR", ("REFUSED", "cannot hold in state Idle")),
        (parts, "ERR", ("UNAVAILABLE", "call failed: boom")),
        (resume, "ERR", ("REFUSED", "nothing to resume in state Idle: RESUME works in Held or Suspended")),
    ]
    assert len(r.link.calls) == 2  # RESUME in Idle never reached the cell


def test_a_missing_service_is_retried_until_the_command_timeout() -> None:
    r = Rig(command_timeout=2.0)
    r.link.missing.add("start")
    seq = r.send("START")
    r.run(1.0)
    assert r.link.calls == [] and r.link.replies() == []
    r.link.missing.clear()  # the planner came up in time
    r.run(0.1)
    assert len(r.link.calls) == 1
    r.link.calls[0][1](CallResult(True, "start: state Starting"))
    assert r.link.replies() == [(seq, "OK", ("start: state Starting",))]
    r.link.missing.add("stop")
    seq = r.send("STOP")
    r.run(1.95)
    assert r.link.replies() == []
    r.run(0.1)
    assert r.link.replies() == [(seq, "ERR", ("UNAVAILABLE", "planner service /demo/stop not available"))]


def test_a_call_without_an_answer_times_out_and_its_late_answer_is_ignored() -> None:
    r = Rig(command_timeout=2.0)
    first, second = r.send("STOP"), r.send("RESET")
    r.run(2.05)
    assert r.link.cancelled == [1]
    assert r.link.replies() == [(first, "ERR", ("UNAVAILABLE", "no reply from /demo/stop within 2 s"))]
    assert [c[0].service for c in r.link.calls] == ["stop", "reset"]  # the next one runs at once
    r.link.calls[0][1](CallResult(True, "stop: state Stopped"))  # too late
    r.link.calls[1][1](CallResult(True, "reset: state Idle"))
    assert r.link.replies() == [(second, "OK", ("reset: state Idle",))]


def test_a_full_queue_answers_busy() -> None:
    r = Rig(max_queued=2)
    seqs = [r.send("HOLD") for _ in range(5)]
    assert len(r.link.calls) == 1 and r.session.queued == 2
    assert r.link.replies() == [(s, "ERR", ("BUSY", "2 commands already waiting")) for s in seqs[3:]]
    assert r.session.counters.busy_replies == 2


def test_a_retransmission_gets_the_same_reply_without_a_second_call() -> None:
    r = Rig()
    seq = r.send("STOP")
    r.link.calls[0][1](CallResult(True, "stop: state Stopped"))
    first = r.link.replies()
    r.send("STOP", seq=seq)
    assert r.link.replies() == first and len(r.link.calls) == 1
    r.send("RESET", seq=seq)
    assert r.link.replies() == [(seq, "ERR", ("SEQ", f"sequence number {seq} already used"))]


def test_err_replies_to_malformed_input_are_rate_limited() -> None:
    r = Rig(error_rate=5)
    r.session.received(b"junk\r\n" * 20)
    assert len(r.link.replies()) == 5 and r.session.counters.dropped_errors == 15
    r.wall.advance(0.5)  # two and a half tokens back
    r.session.received(b"junk\r\n" * 3)
    assert len(r.link.replies()) == 2 and r.session.counters.dropped_errors == 16
    r.wall.advance(10.0)  # the bucket holds at most one second's worth
    r.session.received(b"junk\r\n" * 7)
    assert len(r.link.replies()) == 5


def test_a_partial_frame_is_dropped_after_the_frame_timeout() -> None:
    r = Rig(frame_timeout=0.3)
    r.session.received(b"$4,STO")
    r.run(0.25)
    assert r.link.replies() == []
    r.run(0.1)
    [(seq, kind, args)] = r.link.replies()
    assert kind == "ERR" and args[0] == "FORMAT" and "no CRLF" in args[1]


def test_heartbeats_go_out_while_the_device_is_open() -> None:
    r = Rig(heartbeat_period=0.5)
    r.run(2.0)
    assert r.link.frames() == []  # no device
    r.session.opened()
    r.link.frames()
    r.run(2.1, step=0.125)  # exact binary steps: HB at +0.5, +1.0, +1.5 and +2.0 s
    assert [f.kind for f in r.link.frames()] == ["HB"] * 4
    r.session.closed()
    r.run(2.0)
    assert r.link.frames() == []


def test_losing_the_enabling_devices_heartbeat_in_execute_holds_and_raises_a_keyed_fault() -> None:
    r = Rig(enabling_device=True, heartbeat_timeout=1.0)
    r.session.opened()
    r.send("HB", seq=0)
    r.session.cell_state("Execute")
    for _ in range(10):  # a pendant beating every 0.2 s
        r.send("HB", seq=0)
        r.run(0.2)
    assert r.link.holds == 0 and r.link.faults == []
    r.cell_clock.advance(7.0)
    r.run(0.75)  # 0.95 s since the last frame
    assert r.link.holds == 0
    r.run(0.1)
    assert r.link.holds == 1
    [fault] = r.link.faults
    assert fault == PendantFault(
        "b00t-hb1", "pendant heartbeat lost (no frame from the pendant for 1.05 s): holding the cell", 57.0
    )
    assert (fault.code, fault.source, fault.severity) == ("HEARTBEAT_LOST", "pendant_bridge", "WARN")
    r.run(0.5)
    assert r.link.holds == 1  # not again within the timeout
    r.session.cell_state("Held")
    r.run(3.0)
    assert r.link.holds == 1  # only in Execute
    r.cell_clock.advance(4.0)
    r.send("HB", seq=0)  # the pendant is back: the fault clears at that cell time
    assert r.link.faults[1] == PendantFault("b00t-hb1", fault.message, 57.0, cleared=61.0)
    r.session.cell_state("Execute")
    r.run(1.2)
    assert r.link.holds == 2 and r.link.faults[2].key == "b00t-hb2"


def test_no_device_in_execute_holds_an_enabling_device_cell_only() -> None:
    r = Rig(enabling_device=True)
    r.session.cell_state("Execute")
    assert r.link.holds == 1
    assert r.link.faults[0].message == "pendant heartbeat lost (no pendant connected): holding the cell"
    plain = Rig(enabling_device=False)
    plain.session.cell_state("Execute")
    plain.run(3.0)
    assert plain.link.holds == 0 and plain.link.faults == []


def test_cell_news_reach_the_pendant_stat_only_when_it_changes_and_faults_once() -> None:
    r = Rig()
    status = {
        "state": "Execute",
        "job": "bracket",
        "parts": "2",
        "parts_done": "1",
        "part": "2",
        "last_cycle_time": "7.912",
        "fault_code": "GRIP MISSED",
        "fault_acknowledged": "false",
        "fault": "picker: no part",
    }
    r.session.cell_status(status)
    r.session.cell_status(dict(status))
    [stat] = r.link.frames()
    assert stat.args == ("Execute", "bracket", "1", "2", "2", "7.912", "GRIP_MISSED", "0", "picker: no part")
    r.session.cell_cycle("1", "done", 7.91234, "bracket", "r1")
    r.session.cell_cycle("2", "scrap", None, "bracket", "r1")
    assert [f.args for f in r.link.frames()] == [
        ("1", "done", "7.912", "bracket", "r1"),
        ("2", "scrap", "0", "bracket", "r1"),
    ]
    for _ in range(3):
        r.session.cell_fault("ERROR", ("k1",), "ESTOP", "picker", "emergency stop")
    r.session.cell_fault("WARN", ("k2",), "HEARTBEAT_LOST", "pendant_bridge", "lost")
    assert [f.args for f in r.link.frames()] == [
        ("ERROR", "ESTOP", "picker", "emergency stop"),
        ("WARN", "HEARTBEAT_LOST", "pendant_bridge", "lost"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("heartbeat_timeout", 0.0, "parameter heartbeat_timeout: must be > 0, got 0.0"),
        ("command_timeout", float("inf"), "parameter command_timeout: must be > 0, got inf"),
        ("error_rate", 0, "parameter error_rate: must be >= 1, got 0"),
    ],
)
def test_bad_session_parameters_are_named(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError) as err:
        SessionParams(cell="demo", **{field: value})  # type: ignore[arg-type]
    assert str(err.value) == message
