"""pendant_bridge through real node processes: a pty pair as the serial cable, the real planner and sim drivers.

One node set per module (sim cobots, task_planner, supervisor, pendant_bridge) with its journal and production log
in the run's own directory; a fixture brings the line and the cell back to the same state before every test, so
the tests pass alone and in any order. The pendant side is cobot_cell.pendant.link.PendantLink on the pty master, a
CellClient checks the planner independently.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cobot_cell.pendant.link import (
    FdChannel,
    LinkClosed,
    PendantLink,
    PtyPair,
    ScriptError,
    create_pty,
    parse_script,
    run_script,
)
from cobot_cell.pendant.protocol import Frame, checksum, encode
from cobot_cell.ros.bringup import BringupOptions, NodeSpec, node_specs
from cobot_cell.ros.client import CellClient
from cobot_cell.ros.processes import DomainLease, NodeProcess, NodeSet, ros_env
from cobot_cell.skills import load_cell
from cobot_cell.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
CELL_FILE = REPO / "config" / "demo_cell.yaml"
HEARTBEAT_TIMEOUT = 1.0
FRAME_TIMEOUT = 0.3


@dataclasses.dataclass
class Rig:
    """The running cell and the pendant on its line."""

    nodes: NodeSet
    client: CellClient
    pty: PtyPair
    link: PendantLink
    work: Path
    env: dict[str, str]
    cell: str
    cobots: tuple[str, ...]

    def bridge(self) -> NodeProcess:
        return self.nodes.proc(f"/{self.cell}/pendant_bridge")

    def attach(self) -> None:
        """A pendant on the current pty, beating its heart, after the bridge's HELLO."""
        self.link = PendantLink(FdChannel(self.pty.master), device="test-pendant")
        self.link.start_heartbeat(0.2)
        self.link.wait_for(
            lambda: bool(self.link.view.hellos) and bool(self.link.view.stat), 60, "the bridge's HELLO and STAT"
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("pendant_bridge")
    cfg = load_cell(str(CELL_FILE))
    port = work / "pendant"
    pty = create_pty(port)
    with DomainLease() as lease:
        env = ros_env(lease.domain_id, work / "log")
        specs = []
        # the planner's journal in this run's directory: no interrupted run of an earlier one to resume
        options = BringupOptions(rate=20.0, parts=2, db=str(work / "p.db"), journal=str(work / "journal.db"))
        for spec in node_specs(cfg, CELL_FILE, options):
            specs.append(spec)
        specs.append(
            NodeSpec(
                executable="pendant_bridge",
                module="cobot_cell.ros.pendant_node",
                name="pendant_bridge",
                namespace=f"/{cfg.cell.name}",
                parameters={
                    "port": str(port),
                    "enabling_device": True,
                    "heartbeat_timeout": HEARTBEAT_TIMEOUT,
                    "frame_timeout": FRAME_TIMEOUT,
                    "reconnect_min": 0.1,
                    "reconnect_max": 0.5,
                },
            )
        )
        nodes = NodeSet(specs, work / "nodes", env)
        client = None
        r = None
        try:
            nodes.start()
            client = CellClient(cfg.cell.name, domain_id=lease.domain_id, node_name="pendant_test_client")
            r = Rig(nodes, client, pty, None, work, env, cfg.cell.name, tuple(cfg.cobots))  # type: ignore[arg-type]
            r.attach()
            client.wait_for(lambda: client.state is not None and bool(client.status), 30, "the planner")
            yield r
        finally:
            if r is not None and r.link is not None:
                r.link.close()
            if client is not None:
                client.close()
            nodes.stop()
            (r.pty if r is not None else pty).close()
    assert not nodes.unclean_exits(), nodes.unclean_exits()


@pytest.fixture(autouse=True)
def fresh(rig: Rig) -> None:
    """Every test starts from the same place, whatever the one before it left behind: a pendant on the line and
    beating its heart, no injected driver fault, the cell Idle with job bracket and 2 parts and no active fault."""
    try:
        ok(rig.link.command("STATUS", timeout=2))
    except (TimeoutError, LinkClosed, OSError, AssertionError):  # the line was left closed or stuck
        rig.link.close()
        rig.pty.close()
        rig.pty = create_pty(rig.pty.path)
        rig.attach()
    if not rig.link.heartbeating:
        rig.link.start_heartbeat(0.2)
    for cobot in rig.cobots:
        assert rig.client.set_parameter("fault", "", node=f"/{cobot}/sim_cobot") == (True, "")
    to_idle(rig)
    ok(rig.link.command("JOB", "bracket"))
    ok(rig.link.command("PARTS", "2"))
    rig.link.wait_for(
        lambda: (
            (rig.link.view.stat.get("job"), rig.link.view.stat.get("parts"), rig.link.view.stat.get("fault"))
            == ("bracket", "2", "")
        ),
        5,
        "STAT with job bracket, 2 parts and no fault",
    )


def ok(reply: Frame) -> Frame:
    assert reply.kind == "OK", reply
    return reply


def to_idle(rig: Rig) -> None:
    """Bring the cell to Idle from wherever the previous test left it."""
    link = rig.link
    ok(link.command("STATUS"))
    link.wait_for(lambda: link.view.state is not None, 5, "the state")
    state = link.view.state
    if state == "Idle":
        return
    if state == "Aborted":
        ok(link.command("CLEAR"))
    elif state != "Stopped":
        ok(link.command("STOP"))
    link.wait_state("Stopped", 20)
    ok(link.command("RESET"))
    link.wait_state("Idle", 10)


def planner_snapshot(rig: Rig, window: float = 0.3) -> tuple[str | None, dict[str, str]]:
    """The planner's state and status as a CellClient sees them, after listening for `window` s."""
    end = time.monotonic() + window
    while time.monotonic() < end:
        rig.client.spin_once(0.05)
    return rig.client.state, dict(rig.client.status)


def faults_table(rig: Rig) -> list[tuple[str, str, str, float | None]]:
    """(level, source, code, cleared) of every fault in the supervisor's production log."""
    with sqlite3.connect(f"file:{rig.work / 'p.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT level, source, code, cleared FROM faults").fetchall()


def logged_faults(rig: Rig, code: str, cleared: bool) -> int:
    """How many faults with `code` the production log has (only the cleared ones when `cleared`)."""
    return sum(1 for r in faults_table(rig) if r[2] == code and (r[3] is not None or not cleared))


def states_since(link: PendantLink, mark: int) -> list[str]:
    return [r.item.args[0] for r in link.received[mark:] if isinstance(r.item, Frame) and r.item.kind == "STATE"]


# ------------------------------------------------------------------------------------------ tests
def test_hello_and_status_snapshot(rig: Rig) -> None:
    link = rig.link
    assert link.view.hellos[0].args == ("1", "demo", "0.1.0")
    hellos = len(link.view.hellos)
    assert ok(link.hello()).args == ("cobot_cell pendant bridge 0.1.0 for cell demo",)
    link.wait_for(lambda: len(link.view.hellos) > hellos, 5, "the bridge's HELLO after ours")
    assert link.view.hellos[hellos].args == ("1", "demo", "0.1.0")
    ok(link.command("STATUS"))
    link.wait_for(lambda: bool(link.view.stat), 5, "STAT")
    assert link.view.stat["job"] == "bracket" and link.view.stat["parts"] == "2"


def test_shift_from_the_pendant(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    assert ok(link.command("JOB", "bracket")).args == ("job bracket",)
    assert ok(link.command("PARTS", "2")).args == ("parts 2",)
    mark, cycles = len(link.received), len(link.view.cycles)
    ok(link.command("START"))
    link.wait_state("Execute", 20)
    assert ok(link.command("HOLD")).args == ("hold: state Holding",)
    link.wait_state("Held", 30)
    rig.client.wait_for(lambda: rig.client.state == "Held", 5, "the planner to be Held")
    assert ok(link.command("RESUME")).args == ("unhold: state Execute",)
    link.wait_state("Complete", 90)
    # the STAT frame may announce Complete before its STATE frame comes
    link.wait_for(lambda: "Complete" in states_since(link, mark), 10, "the Complete STATE frame")
    seen = states_since(link, mark)
    # In this order; acting states that end at once (Unholding) may be missing: the planner's state topic is
    # latched with depth 1, so DDS may deliver only the newer of two states published back to back.
    expected = ["Execute", "Held", "Execute", "Complete"]
    it = iter(seen)
    assert all(s in it for s in expected), seen
    new = link.view.cycles[cycles:]
    assert [(c.args[0], c.args[1], c.args[3]) for c in new] == [("1", "done", "bracket"), ("2", "done", "bracket")]
    link.wait_for(lambda: link.view.stat.get("parts_done") == "2", 5, "STAT with 2 parts done")
    assert float(link.view.stat["last_cycle_time"]) == pytest.approx(float(new[-1].args[2]), abs=1e-3)
    assert link.view.stat["fault"] == ""
    ok(link.command("RESET"))
    link.wait_state("Idle")


def test_scripted_pendant(rig: Rig) -> None:
    to_idle(rig)
    said: list[str] = []
    run_script(
        rig.link,
        parse_script("HELLO; PARTS 2; -PARTS 0; -HOLD; STOP; WAIT Stopped; RESET; WAIT Idle"),
        timeout=10,
        echo=said.append,
    )
    assert said == [
        "HELLO -> OK cobot_cell pendant bridge 0.1.0 for cell demo",
        "PARTS 2 -> OK parts 2",
        "PARTS 0 -> ERR REFUSED parts must be a whole number from 1 to 999999999; got 0",
        "HOLD -> ERR REFUSED cannot hold in state Idle: allowed commands are start; stop; abort",
        "STOP -> OK stop: state Stopped",
        "state Stopped",
        "RESET -> OK reset: state Idle",
        "state Idle",
    ]
    with pytest.raises(ScriptError) as exc:
        run_script(rig.link, parse_script("HOLD"))
    assert str(exc.value) == "HOLD: REFUSED cannot hold in state Idle: allowed commands are start; stop; abort"


def test_refusals_carry_the_planners_reason(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    before = planner_snapshot(rig)
    cases = [
        (("JOB", "nope"), ("REFUSED", "unknown job 'nope': expected one of bracket")),
        (("PARTS", "0"), ("REFUSED", "parts must be a whole number from 1 to 999999999; got 0")),
        (("PARTS", "-5"), ("REFUSED", "parts must be a whole number from 1 to 999999999; got -5")),
        (("HOLD",), ("REFUSED", "cannot hold in state Idle: allowed commands are start; stop; abort")),
        (("RESUME",), ("REFUSED", "nothing to resume in state Idle: RESUME works in Held or Suspended")),
        (("ACK",), ("NOFAULT", "no active fault to acknowledge")),
    ]
    for cmd, expected in cases:
        reply = link.command(*cmd)
        assert (reply.kind, reply.args) == ("ERR", expected), cmd
    assert planner_snapshot(rig) == before


def _framed(body: str) -> bytes:
    raw = body.encode("latin-1")
    return b"$" + raw + b"*%04X\r\n" % checksum(raw)


MALFORMED: dict[str, tuple[Callable[[int], bytes], str, str, bool]] = {
    # name: (bytes for seq n, reason, text, reply echoes seq n)
    "garbage": (lambda n: b"hello cell\r\n", "FORMAT", "9 bytes outside a frame ignored", False),
    "bad checksum": (lambda n: b"$%d,STOP*0000\r\n" % n, "CHECKSUM", "does not match the frame", False),
    "no checksum": (lambda n: b"$%d,STOP\r\n" % n, "FORMAT", "no checksum before CRLF", False),
    "overlong": (lambda n: b"$%d,JOB," % n + b"j" * 200 + b"\r\n", "TOOLONG", "frame longer than 128 bytes", False),
    "non-ascii": (lambda n: _framed(f"{n},JOB,caf\xe9"), "ASCII", "byte 0xE9 at offset", False),
    "unknown": (lambda n: _framed(f"{n},JUMP"), "UNKNOWN", "unknown command 'JUMP'", True),
    "bad argument": (
        lambda n: _framed(f"{n},PARTS,two"),
        "BADARG",
        "PARTS: argument parts 'two' is not a whole number",
        True,
    ),
    "missing argument": (
        lambda n: _framed(f"{n},PARTS"),
        "BADARG",
        "PARTS: expected 1 argument (parts) but got 0",
        True,
    ),
    "partial then new frame": (lambda n: b"$%d,STO" % n, "FORMAT", "before a new frame start", False),
    "partial timed out": (lambda n: b"$%d,STO" % n, "FORMAT", "and no CRLF", False),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frames_get_err_and_change_nothing(rig: Rig, case: str) -> None:
    link = rig.link
    to_idle(rig)
    before = planner_snapshot(rig, 0.1)
    make, reason, text, echoes = MALFORMED[case]
    seq = link.next_seq()
    errors = len(link.view.errors)
    mark = len(link.received)
    if case == "partial timed out":
        link.stop_heartbeat()  # an HB frame would cut the partial frame short
    t0 = time.monotonic()
    link.write(make(seq))
    if case == "partial then new frame":
        ok(link.command("STATUS"))
    if echoes:
        reply = link.reply(seq)
    else:
        link.wait_for(lambda: len(link.view.errors) > errors, 5, f"ERR for {case}")
        reply = link.view.errors[errors]
    assert reply.kind == "ERR" and reply.args[0] == reason and text in reply.args[1], reply
    if case == "partial timed out":
        assert time.monotonic() - t0 >= FRAME_TIMEOUT * 0.9
        link.start_heartbeat(0.2)
    ok(link.command("STATUS"))  # still answering
    assert set(states_since(link, mark)) <= {"Idle"}
    assert planner_snapshot(rig, 0.1) == before


def test_replayed_frames_are_not_executed_twice(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    seq = link.next_seq()
    stop = encode(Frame(seq, "STOP"))

    def replies_to(s: int) -> list[Frame]:
        return [
            r.item
            for r in link.received
            if isinstance(r.item, Frame) and r.item.kind in ("OK", "ERR") and r.item.seq == s
        ]

    link.write(stop)
    first = link.reply(seq)
    assert first.args == ("stop: state Stopped",)
    link.wait_state("Stopped")
    link.write(stop)  # retransmission: the same reply again, the planner is not asked a second time
    link.wait_for(lambda: len(replies_to(seq)) == 2, 5, "the repeated reply")
    assert replies_to(seq) == [first, first]
    for frame, text in (
        (Frame(seq, "RESET"), f"sequence number {seq} already used"),
        (Frame(seq - 1, "RESET"), f"stale sequence number {seq - 1} (last {seq})"),
        (Frame(0, "RESET"), "RESET needs a sequence number 1-9999"),
    ):
        n = len(replies_to(frame.seq)) if frame.seq else len(link.view.errors)
        link.write(encode(frame))
        if frame.seq:
            link.wait_for(lambda seq=frame.seq, n=n: len(replies_to(seq)) > n, 5, "ERR SEQ")
            reply = replies_to(frame.seq)[-1]
        else:
            link.wait_for(lambda n=n: len(link.view.errors) > n, 5, "ERR SEQ")
            reply = link.view.errors[-1]
        assert (reply.kind, reply.args) == ("ERR", ("SEQ", text))
    link.write(stop)  # the refusals did not replace the answer kept for a retransmission
    link.wait_for(lambda: len(replies_to(seq)) == 4, 5, "the repeated reply")
    assert replies_to(seq)[-1] == first
    assert planner_snapshot(rig)[0] == "Stopped"
    ok(link.command("RESET"))
    link.wait_state("Idle")


def test_random_burst_leaves_the_bridge_responsive(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    before = planner_snapshot(rig)
    mark, errors = len(link.received), len(link.view.errors)
    noise = random.Random(20240605).randbytes(10_000)
    link.write(noise)
    link.write(b"\r\n")
    ok(link.command("STATUS", timeout=5))  # how soon: bench/pendant_latency.py
    assert set(states_since(link, mark)) <= {"Idle"}
    assert planner_snapshot(rig) == before
    assert rig.bridge().popen.poll() is None
    n_err = len(link.view.errors) - errors
    assert 1 <= n_err <= 100  # rate-limited to 20/s


def test_status_burst_gets_one_reply_per_frame(rig: Rig) -> None:
    """1,000 STATUS frames in one write: each is answered exactly once (the bridge stops reading while its
    replies wait to be written, instead of dropping them), with its STATE and STAT."""
    link = rig.link
    to_idle(rig)
    seqs = [link.next_seq() for _ in range(1000)]
    burst = b"".join(encode(Frame(s, "STATUS")) for s in seqs)
    mark = len(link.received)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            link.write(burst)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failure.append(exc)

    link.channel.write_timeout = 60.0  # the bridge may pause reading while the pendant reads its replies
    writer = threading.Thread(target=write, name="burst-writer")
    writer.start()
    wanted = set(seqs)

    def replies() -> collections.Counter:
        return collections.Counter(
            r.item.seq
            for r in link.received[mark:]
            if isinstance(r.item, Frame) and r.item.kind in ("OK", "ERR") and r.item.seq in wanted
        )

    try:
        link.wait_for(lambda: len(replies()) == len(seqs), 90, "a reply to every frame of the burst")
    finally:
        writer.join(60)
        link.channel.write_timeout = 5.0
    assert not failure, failure
    ok(link.command("STATUS"))  # every reply of the burst is in before this one
    counts = replies()
    assert sorted(counts) == seqs and set(counts.values()) == {1}, [s for s in seqs if counts[s] != 1][:10]
    kinds = collections.Counter(r.item.kind for r in link.received[mark:] if isinstance(r.item, Frame))
    assert kinds["STATE"] >= len(seqs) and kinds["STAT"] >= len(seqs), kinds
    assert all(
        r.item.kind == "OK"
        for r in link.received[mark:]
        if isinstance(r.item, Frame) and r.item.kind in ("OK", "ERR") and r.item.seq in wanted
    )
    assert rig.bridge().popen.poll() is None


def test_command_burst_beyond_the_queue_gets_busy_and_a_log_line(rig: Rig) -> None:
    """40 commands in one write: one runs, 16 wait, the rest get ERR BUSY (logged); each gets one reply."""
    link = rig.link
    to_idle(rig)
    seqs = [link.next_seq() for _ in range(40)]
    mark = len(link.received)
    link.write(b"".join(encode(Frame(s, "HOLD")) for s in seqs))
    wanted = set(seqs)

    def replies() -> list[Frame]:
        return [
            r.item
            for r in link.received[mark:]
            if isinstance(r.item, Frame) and r.item.kind in ("OK", "ERR") and r.item.seq in wanted
        ]

    link.wait_for(lambda: {f.seq for f in replies()} == wanted, 30, "a reply to every command")
    ok(link.command("STATUS"))  # every reply of the burst is in before this one
    got = replies()
    assert sorted(f.seq for f in got) == seqs
    busy = [f for f in got if f.args[0] == "BUSY"]
    refused = [f for f in got if f.args[0] == "REFUSED"]
    assert len(busy) + len(refused) == len(seqs) and len(refused) >= 17, got
    assert busy[0].args[1] == "16 commands already waiting"
    log = rig.bridge().log_path
    wait_until(lambda: f"ERR BUSY to HOLD (seq {busy[0].seq})" in log.read_text(), 10, "the BUSY log line")
    assert planner_snapshot(rig)[0] == "Idle"


def test_heartbeat_loss_holds_the_cell(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    ok(link.command("START"))
    link.wait_state("Execute", 20)
    faults = len(link.view.faults)
    logged = logged_faults(rig, "HEARTBEAT_LOST", cleared=True)
    mark = len(link.received)
    link.stop_heartbeat()
    silent_since = time.perf_counter()
    link.wait_for(lambda: "Holding" in states_since(link, mark), 5, "the cell to hold")
    holding_at = next(
        r.t
        for r in link.received[mark:]
        if isinstance(r.item, Frame) and r.item.kind == "STATE" and r.item.args[0] == "Holding"
    )
    delay = holding_at - silent_since
    assert HEARTBEAT_TIMEOUT - 0.25 <= delay <= HEARTBEAT_TIMEOUT + 1.0, delay  # last HB up to 0.2 s before
    link.wait_for(lambda: len(link.view.faults) > faults, 5, "the heartbeat warning")
    warn = link.view.faults[faults]
    assert warn.args[:3] == ("WARN", "HEARTBEAT_LOST", "pendant_bridge") and "heartbeat lost" in warn.args[3]
    link.wait_state("Held", 30)
    link.start_heartbeat(0.2)
    # the bridge's fault is keyed: the supervisor logs it, and its clearing once the heartbeat is back
    wait_until(
        lambda: logged_faults(rig, "HEARTBEAT_LOST", cleared=True) > logged,
        10,
        "the cleared HEARTBEAT_LOST fault in the production log",
    )
    [(level, source)] = {(r[0], r[1]) for r in faults_table(rig) if r[2] == "HEARTBEAT_LOST"}
    assert (level, source) == ("WARN", "pendant_bridge")
    ok(link.command("RESUME"))
    link.wait_state("Execute", 10)
    link.wait_state("Complete", 90)  # no interrupted run left behind for the next start to resume
    print(f"\nheartbeat loss -> Holding after {delay * 1e3:.0f} ms (timeout {HEARTBEAT_TIMEOUT:g} s)")


def test_ack_acknowledges_a_fault(rig: Rig) -> None:
    link = rig.link
    to_idle(rig)
    faults = len(link.view.faults)
    picker = "/picker/sim_cobot"
    assert rig.client.set_parameter("fault", "estop", node=picker) == (True, "")  # the e-stop is pressed
    try:
        link.wait_for(lambda: len(link.view.faults) > faults, 10, "the FAULT frame")
        fault = link.view.faults[faults]
        assert fault.args[:3] == ("ERROR", "ESTOP", "picker") and "emergency stop" in fault.args[3], fault
        link.wait_for(
            lambda: link.view.stat.get("fault_code") == "ESTOP" and link.view.stat.get("fault_ack") == "0",
            5,
            "STAT with the fault",
        )
        assert link.view.stat["fault"].startswith("picker: ")
        reply = ok(link.command("ACK"))
        assert re.fullmatch(r"acknowledged fault \d+ \(ESTOP\)", reply.args[0]), reply
        link.wait_for(lambda: link.view.stat.get("fault_ack") == "1", 5, "STAT with the fault acknowledged")
        assert link.command("ACK").args == ("NOFAULT", "no active fault to acknowledge")
        assert len(link.view.faults) == faults + 1  # one FAULT frame per fault, not per update
    finally:
        assert rig.client.set_parameter("fault", "", node=picker) == (True, "")  # the e-stop is released
    ok(link.command("STOP"))
    link.wait_state("Stopped")
    ok(link.command("RESET"))
    link.wait_state("Idle")
    link.wait_for(
        lambda: link.view.stat.get("fault") == "" and link.view.stat.get("fault_code") == "", 5, "STAT without a fault"
    )


def test_closing_and_reopening_the_pty_recovers(rig: Rig) -> None:
    to_idle(rig)
    bridge_log = rig.bridge().log_path

    def losses() -> int:  # devices lost so far (an earlier test may have pulled the cable, or lost the heartbeat)
        return len(re.findall(r"pendant port \S+ lost: ", bridge_log.read_text()))

    before = losses()
    rig.link.close()
    rig.pty.close()  # the cable is pulled
    wait_until(lambda: losses() > before, 10, "the bridge to notice the lost device")
    assert rig.bridge().popen.poll() is None
    rig.pty = create_pty(rig.pty.path)  # plugged in again (same device link, new pty)
    rig.attach()
    link = rig.link
    assert link.view.hellos[0].args[:2] == ("1", "demo")
    ok(link.hello())
    ok(link.command("STOP"))
    link.wait_state("Stopped")
    ok(link.command("RESET"))
    link.wait_state("Idle")
