"""Parts in flight through the real nodes: the three-cobot cell (config/three_cobot_cell.yaml) makes parts with
overlap, and a planner killed with two parts in flight resumes both with an exact ledger."""

from __future__ import annotations

import json
import sqlite3

from conftest import ROOT
from test_fault_matrix import _start, _start_resuming

THREE = (ROOT / "config" / "three_cobot_cell.yaml").read_text()


def _logged_parts(rig) -> list[tuple[int, str]]:
    with sqlite3.connect(f"file:{rig.db}?mode=ro", uri=True) as db:
        return db.execute("SELECT part, status FROM parts ORDER BY part").fetchall()


def test_the_three_cobot_cell_makes_ten_parts_with_overlap(cell_rig):
    rig = cell_rig(cell_text=THREE, parts=10)
    _start(rig)
    rig.wait(lambda: len(rig.client.status.get("parts_in_flight", "").split(",")) >= 2, "two parts in flight", 60)
    # the pallet holds 8: the operator changes it when the cell says it is full (PALLET_FULL), and the cell goes on
    rig.wait(
        lambda: rig.client.change_full_pallet() is not None or rig.client.state == "Complete",
        "a full pallet, or the run complete",
        240,
    )
    rig.wait_state("Complete", timeout=240)
    rig.wait_reports(10)
    reports = sorted(rig.client.reports, key=lambda r: r.part)
    assert [r.part for r in reports] == list(range(1, 11)) and {r.status for r in reports} == {"done"}
    # some part's first step starts before the part before it has ended
    first = {r.part: min(s.start for s in r.steps) for r in reports}
    assert any(first[r.part + 1] < r.end - 1e-6 for r in reports[:-1])
    # every report carries its takt (after the first) and the cell's bound, which the takt does not beat by much
    assert reports[0].takt is None and all(r.takt is not None and r.takt > 0 for r in reports[1:])
    bound = reports[0].bound
    assert bound is not None and all(r.bound == bound for r in reports)
    mean_takt = (reports[-1].end - reports[1].end) / 8
    assert mean_takt >= 0.97 * bound
    rig.wait(lambda: len(_logged_parts(rig)) == 10, "10 parts in the production log", 30)
    assert _logged_parts(rig) == [(p, "done") for p in range(1, 11)]


def test_a_planner_killed_with_two_parts_in_flight_resumes_both_with_an_exact_ledger(cell_rig):
    rig = cell_rig(cell_text=THREE, parts=5)
    _start(rig)
    # part 1 is done and two parts are in flight, one of them waiting in the feeder's gripper
    rig.wait(
        lambda: (
            len(rig.client.reports) >= 1
            and len(rig.client.status.get("parts_in_flight", "").split(",")) >= 2
            and rig.client.status.get("waiting", "")
        ),
        "two parts in flight after part 1",
        120,
    )
    rig.nodes.kill("/frames/task_planner")
    before = rig.ledger()
    in_progress = [p for _, p, s in before if s == "in_progress"]
    assert len(in_progress) >= 2, before
    rig.client.state = None
    rig.nodes.restart("/frames/task_planner")
    rig.wait_state("Stopped", timeout=60)
    rig.wait(
        lambda: all(f"part {p} interrupted" in rig.client.status.get("resume", "") for p in in_progress),
        "both interrupted parts named",
        30,
    )
    rig.ok("reset")
    rig.wait_state("Idle")
    _start_resuming(rig)
    rig.wait_state("Complete", timeout=240)
    ledger = rig.ledger()
    assert [(p, s) for _, p, s in ledger] == [(p, "done") for p in range(1, 6)]
    assert len({r for r, _, _ in ledger}) == 1
    rig.nodes.stop()
    assert _logged_parts(rig) == [(p, "done") for p in range(1, 6)]  # each part logged once
    with sqlite3.connect(rig.journal) as db:
        (nxt,) = db.execute("SELECT value FROM skill_state WHERE key = 'pallet.pallet.next'").fetchone()
    assert json.loads(nxt) == 5  # five places filled: the pallet count is exact
