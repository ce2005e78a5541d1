"""A sensed infeed through the real nodes: sim_infeed publishes the part-present sensor, the planner starts a part
only on a part there and reports itself starved (status `starved`, OPC UA EquipmentStarved) while upstream stops."""

from __future__ import annotations

import sqlite3

from conftest import DEMO
from test_fault_matrix import _start

SENSED = DEMO.read_text().replace("    kind: infeed\n", "    kind: infeed\n    sensor: infeed/part_present\n", 1)


def _parts_started(rig) -> int:
    with sqlite3.connect(f"file:{rig.journal}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM ledger").fetchone()[0])


def test_the_cell_is_starved_while_upstream_stops_and_makes_its_parts_when_they_come(cell_rig):
    rig = cell_rig(cell_text=SENSED, parts=3)
    assert any(p.spec.executable == "sim_infeed" for p in rig.nodes.procs)
    ok, reason = rig.client.set_parameter("feeding", False, node="/demo/sim_infeed")
    assert ok, reason
    _start(rig)
    # part 1 starts on the part that was waiting; once the picker took it, no part comes: starved
    rig.wait(lambda: rig.client.status.get("starved") == "true", "the cell starved", 120)
    assert rig.client.state == "Execute" and rig.client.status.get("fault", "") == ""
    started = _parts_started(rig)
    assert started == 1
    rig.wait_reports(1, timeout=120)
    rig.wait(lambda: rig.client.status.get("parts_in_flight", "") == "", "part 1 finished", 60)
    assert _parts_started(rig) == 1 and rig.client.status.get("starved") == "true"
    ok, reason = rig.client.set_parameter("feeding", True, node="/demo/sim_infeed")
    assert ok, reason
    rig.wait_state("Complete", timeout=240)
    rig.wait_reports(3)
    assert sorted((r.part, r.status) for r in rig.client.reports) == [(1, "done"), (2, "done"), (3, "done")]
    assert rig.client.status.get("starved") == "false"
    ok, reason = rig.client.set_parameter("interval", 1.0, node="/demo/sim_infeed")
    assert not ok and "read once at start" in reason
