"""The operator client keeps following a cell when a cycle report it cannot read arrives."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.ros.common import REPORTS, status_msg
from cobot_cell.ros.processes import DomainLease


def _msg(pairs: list[tuple[str, str]]) -> DiagnosticStatus:
    return status_msg("demo/cycle", DiagnosticStatus.OK, "part", pairs, hardware_id="demo")


def test_a_malformed_cycle_report_is_counted_and_the_next_one_read() -> None:
    from cobot_cell.ros.client import CellClient

    good = CycleReport("demo", "bracket", "r1", 1, 0.0, 4.0, "done", (StepTiming("pick", "pick", "arm", 0.0, 4.0),))
    bad = [kv for kv in good.to_key_values() if kv[0] != "part"]
    with DomainLease() as lease, CellClient("demo", domain_id=lease.domain_id) as client:
        pub = client.node.create_publisher(DiagnosticStatus, "/demo/cycle", REPORTS)
        pub.publish(_msg(bad))
        pub.publish(_msg([("cell", "demo"), ("part", "one")]))
        pub.publish(_msg(good.to_key_values()))
        client.wait_for(lambda: len(client.reports) == 1, 20, "the good report")
        assert client.reports == [good] and client.malformed_reports == 2
