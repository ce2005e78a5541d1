"""The walking skeleton with real processes: two sim cobots, the planner and the supervisor make 3 parts;
operator commands and parameters in the wrong state or with bad values are refused with a reason."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"
PARTS = 3


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """The demo cell's node set running at 20x, with an operator client on the same private domain."""
    from cobot_cell.ros.client import CellClient

    work = tmp_path_factory.mktemp("cell")
    cfg = load_cell(DEMO)
    with DomainLease() as lease:
        specs = node_specs(
            cfg,
            DEMO,
            BringupOptions(rate=20.0, parts=PARTS, db=str(work / "production.db"), journal=str(work / "journal.db")),
        )
        nodes = NodeSet(specs, work, ros_env(lease.domain_id, work / "ros_log"))
        client = None
        try:
            nodes.start()
            client = CellClient("demo", domain_id=lease.domain_id, use_sim_time=True)
            client.wait_for(
                lambda: client.state == "Stopped" and client.status.get("job") == "bracket",
                60,
                "the planner to come up",
            )
            yield client, nodes, work
        finally:
            if client is not None:
                client.close()
            nodes.stop()
            logs = {p.spec.fqn: p.log_path.read_text()[-2000:] for p in nodes.procs if p.log_path.exists()}
            for fqn, text in logs.items():
                print(f"--- {fqn}\n{text}")
    assert not nodes.unclean_exits(), nodes.unclean_exits()


def test_command_in_wrong_state_is_refused(cell):
    client, _, _ = cell
    assert client.command("start") == (False, "cannot start in state Stopped: allowed commands are reset, abort")
    assert client.command("unhold") == (False, "cannot unhold in state Stopped: allowed commands are reset, abort")
    assert client.state == "Stopped"


def test_bad_parameters_are_refused_with_the_reason(cell):
    client, _, _ = cell
    assert client.set_parameter("job", "nope") == (False, "unknown job 'nope': expected one of bracket")
    assert client.set_parameter("parts", 0) == (False, "parts must be a whole number from 1 to 999999999, got 0")
    assert client.set_parameter("parts", 10**12) == (
        False,
        "parts must be a whole number from 1 to 999999999, got 1000000000000",
    )
    assert client.set_parameter("parts", PARTS) == (True, "")
    client.wait_for(lambda: client.status.get("parts") == str(PARTS), 10, "status with the part count")


@pytest.mark.parametrize(
    "name, value",
    [
        ("cell_file", "other.yaml"),
        ("tick", 0.02),
        ("tolerance", 0.01),
        ("timeout_factor", 2.0),
        ("timeout_margin", 3.0),
        ("start_timeout", 30.0),
        ("stamp_trajectories", False),
        ("journal", "other.db"),
        ("max_backdate", 60.0),
        ("stale_timeout", 5.0),
        ("timeout_wall_min", 4.0),
        ("use_sim_time", False),
    ],
)
def test_parameters_read_at_start_refuse_a_new_value(cell, name, value):
    """Values of the right type, which a node without this check would accept and then ignore."""
    client, _, _ = cell
    assert client.set_parameter(name, value) == (
        False,
        f"parameter {name} is read at start only: restart the planner to change it",
    )


def test_three_parts_through_real_nodes_are_logged_exactly_once(cell):
    client, nodes, work = cell
    assert client.command("reset")[0]
    client.wait_for(lambda: client.state == "Idle", 20, "Idle")
    ok, msg = client.command("start")
    assert ok, msg
    ok, msg = client.command("start")
    assert not ok and msg.startswith("cannot start in state ")
    client.wait_for(lambda: client.state in ("Complete", "Aborted"), 240, "the run to end")
    assert client.state == "Complete", client.status
    client.wait_for(lambda: len(client.reports) >= PARTS, 30, "every cycle report")
    assert [r.part for r in client.reports] == [1, 2, 3]
    client.wait_for(lambda: client.kpis.get("demo", {}).get("parts") == str(PARTS), 30, "the supervisor's KPIs")
    run_ids = {r.run_id for r in client.reports}
    assert len(run_ids) == 1
    for r in client.reports:
        assert [s.step for s in r.steps] == ["load_blank", "weld_seams", "palletise"]
        # the DAG is a chain: each step starts when its predecessor ends
        assert all(b.start >= a.end - 1e-9 for a, b in zip(r.steps, r.steps[1:]))
        assert r.cycle_time == pytest.approx(sum(s.duration for s in r.steps), abs=0.5)

    nodes.stop()  # the supervisor flushes and closes the log on shutdown
    with sqlite3.connect(work / "production.db") as db:
        parts = db.execute("SELECT part, status, cycle_time FROM parts ORDER BY part").fetchall()
        steps = db.execute("SELECT part, step FROM steps ORDER BY part, start").fetchall()
    assert [p[0] for p in parts] == [1, 2, 3] and {p[1] for p in parts} == {"done"}
    for (_part, _status, cycle_time), report in zip(parts, client.reports):
        assert cycle_time == pytest.approx(report.cycle_time, abs=1e-9)
    assert len(steps) == 3 * PARTS


def test_planner_refuses_a_bad_cell_file_and_starts_nothing(tmp_path, domain):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("after: [load_blank]", "after: [palletise]"))
    proc = subprocess.run(
        [sys.executable, "-m", "cobot_cell.ros.planner_node", "--ros-args", "-p", f"cell_file:={bad}"],
        env=ros_env(domain, tmp_path / "log"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "jobs.bracket.steps (line" in proc.stderr
    assert "cycle in 'after': weld_seams -> palletise -> weld_seams" in proc.stderr


def test_seconds_split_carries_a_rounded_up_second():
    from cobot_cell.ros.common import split_seconds

    assert split_seconds(0.9999999999) == (1, 0)
    assert split_seconds(1.5) == (1, 500_000_000)
    assert split_seconds(0.0) == (0, 0)
    times = [0.0, 0.49999999995, 0.9999999999, 1.0000000004]
    ns = [s * 1_000_000_000 + n for s, n in map(split_seconds, times)]
    assert ns == sorted(ns)
