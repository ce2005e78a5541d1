"""The supervisor as a real process: cycle reports of two cells (a re-send and malformed ones among them), a fault's
life cycle and a driver health status in; exactly the right rows in the production log and KPIs on ~/kpis out."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from cobot_cell.core.faults import Code, Fault
from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.core.wire import FaultUpdate, encode_cycle, encode_fault
from cobot_cell.ros.common import LATCHED, REPORTS, key_values, level_of, status_msg
from cobot_cell.ros.processes import DomainLease, ros_env
from cobot_cell.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
IDEAL_CYCLE_TIME = 5.0


def cycle(cell: str, part: int, start: float, end: float, status: str = "done") -> CycleReport:
    mid = (start + end) / 2
    steps = (StepTiming("pick", "pick", "arm", start, mid), StepTiming("weld", "weld", "arm", mid, end))
    return CycleReport(cell, "bracket", "r1", part, start, end, status, steps)


def cycle_msg(report: CycleReport) -> DiagnosticStatus:
    return status_msg(
        f"{report.cell}/cycle", DiagnosticStatus.OK, report.status, encode_cycle(report), hardware_id=report.cell
    )


def fault_array(fault: Fault, cell: str, key: str) -> DiagnosticArray:
    """A fault update as the planner publishes it (the wire codec's encoding and level)."""
    update = FaultUpdate.of(fault, cell, key)
    return DiagnosticArray(
        status=[
            status_msg(
                f"{cell}/task_planner/faults",
                level_of(update.level),
                fault.message,
                encode_fault(update),
                hardware_id=cell,
            )
        ]
    )


class Operator:
    """An in-test node on a private Context: publishes reports and faults, follows /supervisor/kpis."""

    def __init__(self, domain_id: int):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("supervisor_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.cycle_pubs = {
            c: self.node.create_publisher(DiagnosticStatus, f"/{c}/cycle", REPORTS) for c in ("c1", "c2")
        }
        self.diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.kpis: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/supervisor/kpis", self._on_kpis, LATCHED)

    def _on_kpis(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.kpis[st.hardware_id] = dict(key_values(st))

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen) -> None:
        def spin(dt: float) -> None:
            if proc.poll() is not None:
                raise AssertionError(f"supervisor exited with {proc.returncode} while waiting for {what}")
            self.executor.spin_once(timeout_sec=dt)

        wait_until(predicate, timeout, what, step=spin, poll=0.05, detail=lambda: f"; kpis {self.kpis}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def start_supervisor(db: Path, env: dict[str, str], log_path: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "cobot_cell.ros.supervisor_node",
        "--ros-args",
        "-p",
        f"db:={db}",
        "-p",
        "cells:=['c1','c2']",
        "-p",
        "kpi_period:=0.2",
        *extra,
    ]
    with open(log_path, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT (the supervisor flushes and closes the log), then SIGKILL after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_supervisor_logs_parts_once_and_fault_life_cycle(tmp_path: Path) -> None:
    db = tmp_path / "production.db"
    log_path = tmp_path / "supervisor.log"
    c1 = [cycle("c1", 1, 0.0, 10.0), cycle("c1", 2, 10.0, 20.0), cycle("c1", 3, 20.0, 24.0, "scrap")]
    c2_good = cycle("c2", 1, 0.0, 8.0)
    missing_end = [(k, v) for k, v in encode_cycle(cycle("c2", 2, 8.0, 16.0)) if k != "end"]
    nan_start = dataclasses.replace(cycle("c2", 3, 16.0, 24.0), start=float("nan"))  # parses; the log refuses it
    fault = Fault(
        id=1, code=Code.PROTECTIVE_STOP, message="protective stop", raised=12.0, cobot="arm", step="weld", skill="weld"
    )
    acknowledged = dataclasses.replace(fault, acknowledged=13.0)
    cleared = dataclasses.replace(acknowledged, cleared=15.0)
    driver_health = DiagnosticArray(
        status=[
            status_msg(
                "arm/driver",
                DiagnosticStatus.ERROR,
                "protective stop",
                [("cell", "c1"), ("code", "PROTECTIVE_STOP")],
                "c1",
            )
        ]
    )

    with DomainLease() as lease:
        env = ros_env(lease.domain_id, tmp_path / "log")
        proc = start_supervisor(db, env, log_path, "-p", f"ideal_cycle_time:={IDEAL_CYCLE_TIME}")
        op = None
        try:
            op = Operator(lease.domain_id)
            # Cycle topics are transient-local: reports published before the supervisor subscribes still arrive.
            for report in (c1[0], c1[1], c1[1], c1[2]):  # part 2 is sent twice
                op.cycle_pubs["c1"].publish(cycle_msg(report))
            op.cycle_pubs["c2"].publish(cycle_msg(c2_good))
            op.cycle_pubs["c2"].publish(status_msg("c2/cycle", DiagnosticStatus.OK, "done", missing_end, "c2"))
            op.cycle_pubs["c2"].publish(cycle_msg(nan_start))
            # /diagnostics is volatile: publish once the supervisor's subscription is matched.
            op.wait_for(lambda: op.diag_pub.get_subscription_count() > 0, 30, "the /diagnostics subscription", proc)
            op.diag_pub.publish(driver_health)
            for update in (fault, acknowledged, cleared):
                op.diag_pub.publish(fault_array(update, "c1", "boot7-1"))

            op.wait_for(
                lambda: (
                    op.kpis.get("c1", {}).get("parts") == "2"
                    and op.kpis["c1"].get("mttr") == "3"
                    and op.kpis.get("c2", {}).get("parts") == "1"
                ),
                30,
                "KPIs with every part and the cleared fault",
                proc,
            )
            k1, k2 = op.kpis["c1"], op.kpis["c2"]
            # c1: span [0, 24], down [12, 15]: operating 21 s, one fault
            assert {
                key: k1[key]
                for key in (
                    "parts",
                    "scrap",
                    "faults",
                    "errors",
                    "span",
                    "downtime",
                    "mtbf",
                    "mttr",
                    "availability",
                    "quality",
                    "performance",
                    "oee",
                )
            } == {
                "parts": "2",
                "scrap": "1",
                "faults": "1",
                "errors": "1",
                "span": "24",
                "downtime": "3",
                "mtbf": "21",
                "mttr": "3",
                "availability": "0.875",
                "quality": f"{2 / 3:g}",
                "performance": f"{IDEAL_CYCLE_TIME * 3 / 21:g}",
                "oee": f"{IDEAL_CYCLE_TIME * 2 / 24:g}",
            }
            assert (k2["parts"], k2["scrap"], k2["faults"], k2["mtbf"], k2["availability"]) == (
                "1",
                "0",
                "0",
                "nan",
                "1",
            )
        finally:
            if op is not None:
                op.close()
            code = stop(proc)
            print(log_path.read_text()[-3000:])
    assert code == 0

    with sqlite3.connect(db) as conn:
        parts = conn.execute(
            'SELECT cell, run_id, part, status, "start", "end" FROM parts ORDER BY cell, part'
        ).fetchall()
        steps = conn.execute(
            "SELECT cell, part, count(*) FROM steps GROUP BY cell, part ORDER BY cell, part"
        ).fetchall()
        faults = conn.execute(
            "SELECT cell, time, level, source, code, message, fault_key, acknowledged, cleared FROM faults"
        ).fetchall()
    assert parts == [
        ("c1", "r1", 1, "done", 0.0, 10.0),
        ("c1", "r1", 2, "done", 10.0, 20.0),
        ("c1", "r1", 3, "scrap", 20.0, 24.0),
        ("c2", "r1", 1, "done", 0.0, 8.0),
    ]
    assert steps == [("c1", 1, 2), ("c1", 2, 2), ("c1", 3, 2), ("c2", 1, 2)]
    # one row for the fault's three updates, none for the driver's own health status
    assert faults == [("c1", 12.0, "ERROR", "arm/weld", "PROTECTIVE_STOP", "protective stop", "boot7-1", 13.0, 15.0)]
    text = log_path.read_text()
    assert "bad cycle report 'c2/cycle' ignored: cycle report: missing key 'end'" in text
    assert "cycle report refused: cycle report c2/r1/3: start is not finite: nan" in text


def test_negative_ideal_cycle_time_is_refused(tmp_path: Path) -> None:
    with DomainLease() as lease:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cobot_cell.ros.supervisor_node",
                "--ros-args",
                "-p",
                f"db:={tmp_path / 'p.db'}",
                "-p",
                "ideal_cycle_time:=-2.0",
            ],
            cwd=ROOT,
            env=ros_env(lease.domain_id, tmp_path / "log"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert "error: ideal_cycle_time must be >= 0 s (0 = unknown), got -2.0" in proc.stderr
    assert not (tmp_path / "p.db").exists()


def test_queued_reports_are_written_before_the_node_closes(tmp_path: Path) -> None:
    """The writer thread takes what the callbacks queued; destroying the node right after a burst loses none."""
    from cobot_cell.ros.supervisor_node import SupervisorNode

    db = tmp_path / "production.db"
    reports = [cycle("c1", k, 10.0 * k, 10.0 * k + 9.0) for k in range(1, 1201)]
    fault = Fault(
        id=1, code=Code.IO_FAILED, message="gripper valve", raised=55.0, cobot="arm", step="pick", skill="pick"
    )
    with DomainLease() as lease:
        context = Context()
        rclpy.init(args=["--ros-args", "-p", f"db:={db}"], context=context, domain_id=lease.domain_id)
        try:
            node = SupervisorNode(context=context)
            for r in reports[:600]:
                node._on_cycle(cycle_msg(r))
            node._on_diagnostics(fault_array(fault, "c1", "boot9-1"))
            node._on_diagnostics(
                fault_array(dataclasses.replace(fault, acknowledged=56.0, cleared=58.0), "c1", "boot9-1")
            )
            assert node.wait_written(timeout=30)
            node._publish_kpis()
            assert "c1" in node._kpi_status and node._kpi_status["c1"].message == "600 parts"
            for r in reports[600:]:
                node._on_cycle(cycle_msg(r))
            node.destroy_node()  # at once: the writer may not have started on these yet
        finally:
            context.try_shutdown()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), min(part), max(part) FROM parts").fetchone() == (1200, 1, 1200)
        assert conn.execute("SELECT count(*) FROM steps").fetchone() == (2400,)
        assert conn.execute("SELECT fault_key, acknowledged, cleared FROM faults").fetchall() == [
            ("boot9-1", 56.0, 58.0)
        ]


def test_kpis_after_a_restart_start_from_the_log_and_go_on_incrementally(tmp_path: Path) -> None:
    from cobot_cell.supervisor.log import ProductionLog

    db = tmp_path / "production.db"
    with ProductionLog(db) as log:  # what an earlier supervisor logged
        log.record_cycles([cycle("c1", p, 10.0 * p, 10.0 * p + 8.0) for p in range(1, 4)])
        log.record_fault("c1", 12.0, "ERROR", "arm", "ESTOP", "e-stop", fault_key="b-1", cleared=15.0)
    with DomainLease() as lease:
        env = ros_env(lease.domain_id, tmp_path / "ros_log")
        proc = start_supervisor(db, env, tmp_path / "supervisor.log")
        op = Operator(lease.domain_id)
        try:
            op.wait_for(lambda: op.kpis.get("c1", {}).get("parts") == "3", 30, "KPIs from the log", proc)
            assert (op.kpis["c1"]["faults"], op.kpis["c1"]["mttr"]) == ("1", "3")
            op.cycle_pubs["c1"].publish(cycle_msg(cycle("c1", 3, 30.0, 38.0)))  # already logged: not counted
            op.cycle_pubs["c1"].publish(cycle_msg(cycle("c1", 4, 40.0, 50.0)))
            op.wait_for(lambda: op.kpis.get("c1", {}).get("parts") == "4", 30, "the new part counted", proc)
            assert float(op.kpis["c1"]["mean_cycle_time"]) == 8.5
        finally:
            op.close()
            assert stop(proc) == 0, (tmp_path / "supervisor.log").read_text()
