"""The fault matrix (docs/faults.md) with real processes: each fault, detected, lands in its documented PackML
state with the fault recorded; the operator's documented action recovers; every part is in the ledger once."""

from __future__ import annotations

import re
import sqlite3

from conftest import DEMO

PARTS = 2


def _ledger_exact(rig, parts: int = PARTS, scrap: set[int] = frozenset()) -> None:
    ledger = rig.ledger()
    assert [p for _, p, _ in ledger] == list(range(1, parts + 1)), ledger
    assert len({r for r, _, _ in ledger}) == 1, ledger
    assert {p for _, p, s in ledger if s == "scrap"} == set(scrap), ledger
    assert all(s in ("done", "scrap") for _, _, s in ledger), ledger


def _faults(rig) -> list[tuple[str, str]]:
    """(code, source) of every fault the cell status showed."""
    return rig.client.faults_seen


def _logged(rig) -> list[tuple[str, str]]:
    """(code, source) of every fault in the supervisor's production log, by time."""
    if not rig.db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True) as db:
            return db.execute("SELECT code, source FROM faults ORDER BY time, id").fetchall()
    except sqlite3.OperationalError:  # the supervisor is creating it
        return []


def _seen(rig, code: str, source: str | None = None, times: int = 1) -> None:
    """Wait until the cell status has shown a fault with this code (and source), and the supervisor has logged
    it in the production log's faults table (`times` times)."""

    def count(faults: list[tuple[str, str]]) -> int:
        return sum(1 for c, s in faults if c == code and (source is None or s == source))

    rig.wait(lambda: count(_faults(rig)) >= times, f"fault {code} in the cell status", 30)
    rig.wait(lambda: count(_logged(rig)) >= times, f"fault {code} in the production log", 30)


def _start_resuming(rig) -> None:
    """Start a resumed run the documented way: if an arm is off where the journal left it, `start` is refused
    naming `reapproach`; reapproach, then start. A planner that has just come up first needs joint states."""
    reply: list[tuple[bool, str]] = []

    def attempt() -> bool:
        reply[:] = [rig.client.command("start")]
        return reply[0][0] or "no joint states" not in reply[0][1]

    rig.wait(attempt, "start accepted or refused for a reason other than missing joint states", 30)
    ok, msg = reply[0]
    if not ok:
        assert "call reapproach" in msg, msg
        rig.ok("reapproach")
        rig.wait(lambda: rig.client.command("start")[0], "start accepted after reapproach", 60)


def _start(rig) -> None:
    rig.ok("reset")
    rig.wait_state("Idle")
    rig.ok("start")
    rig.wait_state("Execute")


def test_protective_stop_holds_and_resumes_after_acknowledge(cell_rig):
    rig = cell_rig(parts=PARTS)
    _start(rig)
    rig.wait(lambda: rig.client.status.get("part") == "1", "part 1 under way")
    rig.inject("picker", "protective_stop")
    rig.wait_state("Held", timeout=30)
    _seen(rig, "PROTECTIVE_STOP", "picker")
    ok, msg = rig.client.command("unhold")
    assert not ok and "reports protective stop" in msg, msg
    rig.inject("picker", "")
    rig.wait(lambda: rig.client.command("unhold")[0] or rig.client.state != "Held", "unhold accepted", 30)
    rig.wait_state("Complete", timeout=180)
    rig.wait_reports(2)
    assert [r.part for r in rig.client.reports] == [1, 2]
    _ledger_exact(rig)


def test_estop_aborts_then_clear_reset_start_resumes_the_part(cell_rig):
    rig = cell_rig(parts=PARTS)
    _start(rig)
    rig.wait(lambda: rig.client.status.get("part") == "1", "part 1 under way")
    rig.inject("picker", "estop")
    rig.wait_state("Aborted", timeout=30)
    _seen(rig, "ESTOP", "picker")
    ok, msg = rig.client.command("start")
    assert not ok and msg.startswith("cannot start in state Aborted"), msg
    rig.inject("picker", "")
    rig.ok("clear")
    rig.wait_state("Stopped")
    rig.ok("reset")
    rig.wait_state("Idle")
    # the part under way when the e-stop came (part 1, or part 2 when part 1 ended before the e-stop reached the sim)
    assert re.search(r"part [12] interrupted", rig.client.status.get("resume", "")), rig.client.status
    _start_resuming(rig)  # the arm stopped mid-move
    rig.wait_state("Complete", timeout=180)
    _ledger_exact(rig)


def test_io_failure_is_retried_then_holds_and_recovers(cell_rig):
    rig = cell_rig(parts=PARTS)
    rig.inject("welder", "io_fail")
    _start(rig)
    rig.wait_state("Held", timeout=120)
    rig.wait(lambda: len(_faults(rig)) >= 2, "two faults in the cell status", 30)
    codes = [c for c, _ in _faults(rig)]
    assert codes[:2] == ["IO_FAILED", "IO_FAILED"], codes  # the first failure, then the failed retry
    _seen(rig, "IO_FAILED", times=2)
    rig.inject("welder", "")
    rig.ok("acknowledge")
    rig.ok("unhold")
    rig.wait_state("Complete", timeout=180)
    _ledger_exact(rig)


def test_grip_miss_scraps_the_part_and_goes_on(cell_rig):
    text = DEMO.read_text().replace(
        "        params: {from: infeed, to: fixture}",
        "        params: {from: infeed, to: fixture}\n        fault_policy: {retries: 0, then: scrap}",
    )
    rig = cell_rig(cell_text=text, parts=PARTS)
    rig.inject("picker", "grip_miss")
    _start(rig)
    rig.wait(lambda: len(rig.client.reports) >= 1, "the first part's report", 120)
    rig.inject("picker", "")
    rig.wait_state("Complete", timeout=180)
    rig.wait_reports(2)
    assert rig.client.reports[0].status == "scrap"
    assert rig.client.reports[1].status == "done"
    _seen(rig, "GRIP_MISSED", "picker/load_blank")
    _ledger_exact(rig, scrap={1})


def test_killed_sim_driver_aborts_and_the_part_resumes_after_restart(cell_rig):
    rig = cell_rig(parts=PARTS)
    _start(rig)
    rig.wait(lambda: rig.client.status.get("part") == "1", "part 1 under way")
    rig.nodes.kill("/welder/sim_cobot")
    rig.wait_state("Aborted", timeout=60)
    _seen(rig, "STALE_JOINT_STATES", "welder")
    rig.nodes.restart("/welder/sim_cobot")
    rig.ok("clear")
    rig.wait_state("Stopped")
    rig.wait(lambda: rig.client.command("reset")[0], "reset accepted", 60)
    rig.wait_state("Idle")
    _start_resuming(rig)
    rig.wait_state("Complete", timeout=180)
    _ledger_exact(rig)


def test_killed_planner_comes_back_stopped_and_resumes_the_interrupted_part(cell_rig):
    rig = cell_rig(parts=PARTS)
    _start(rig)
    rig.wait(lambda: len(rig.client.reports) == 1, "part 1 done", 120)
    rig.wait(lambda: rig.client.status.get("part") == "2", "part 2 under way")
    rig.nodes.kill("/demo/task_planner")
    before = rig.ledger()
    assert [(p, s) for _, p, s in before] == [(1, "done"), (2, "in_progress")]
    rig.client.state = None
    rig.nodes.restart("/demo/task_planner")
    rig.wait_state("Stopped", timeout=60)
    rig.wait(lambda: "part 2 interrupted" in rig.client.status.get("resume", ""), "the interrupted part", 30)
    rig.ok("reset")
    rig.wait_state("Idle")
    _start_resuming(rig)
    rig.wait_state("Complete", timeout=180)
    _ledger_exact(rig)
    rig.nodes.stop()
    with sqlite3.connect(rig.db) as db:
        parts = db.execute("SELECT part, status FROM parts ORDER BY part").fetchall()
    assert parts == [(1, "done"), (2, "done")]
