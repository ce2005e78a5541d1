"""supervisor: logs every part and fault of any number of cells to SQLite and publishes KPIs.

It finds cells by their `<cell>/cycle` topics (diagnostic_msgs/DiagnosticStatus cycle reports, reliable and
transient-local, so a late supervisor still receives the parts already made), records non-OK statuses from
`/diagnostics` as faults, and publishes per-cell KPIs on `~/kpis` (diagnostic_msgs/DiagnosticArray).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from ..core.reports import CycleReport
from ..supervisor.kpi import kpis
from ..supervisor.log import ProductionLog
from .common import LATCHED, REPORTS, key_values, level_name, route_core_logging, run_node, status_msg

CYCLE_TYPE = "diagnostic_msgs/msg/DiagnosticStatus"


@dataclass(frozen=True)
class SupervisorParams:
    """Parameters of the supervisor node."""

    db: str
    cells: tuple[str, ...]
    discovery_period: float
    flush_period: float
    kpi_period: float


class SupervisorNode(Node):
    """Production log and KPIs for every cell on the ROS graph."""

    def __init__(self) -> None:
        super().__init__("supervisor")
        route_core_logging(self)
        d = self._declare
        self.params = SupervisorParams(
            db=d("db", "production.db", "SQLite production log path"),
            cells=tuple(c for c in d("cells", [""], "cells to follow at once (others are discovered)") if c),
            discovery_period=d("discovery_period", 0.5, "seconds (wall) between looks for new cell topics"),
            flush_period=d("flush_period", 0.05, "seconds (wall) between batched writes to the log"),
            kpi_period=d("kpi_period", 1.0, "seconds (wall) between KPI publications"),
        )
        self.log = ProductionLog(self.params.db)
        self._pending: list[CycleReport] = []
        self._subscribed: set[str] = set()
        self._last_status: dict[str, tuple[str, str]] = {}
        self.cells: set[str] = set()
        self.received = 0
        self.rejected = 0
        self.kpi_pub = self.create_publisher(DiagnosticArray, "~/kpis", LATCHED)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        for cell in self.params.cells:
            self._follow(f"/{cell}/cycle")
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.params.discovery_period, self._discover, clock=steady)
        self.create_timer(self.params.flush_period, self._flush, clock=steady)
        self.create_timer(self.params.kpi_period, self._publish_kpis, clock=steady)
        self._discover()
        self.get_logger().info(f"supervisor logging to {self.params.db}")

    def _declare(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _follow(self, topic: str) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        self.create_subscription(DiagnosticStatus, topic, self._on_cycle, REPORTS)
        self.get_logger().info(f"following cycle reports on {topic}")

    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name.endswith("/cycle") and CYCLE_TYPE in types:
                self._follow(name)

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        self.received += 1
        try:
            report = CycleReport.from_key_values(key_values(msg))
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"bad cycle report '{msg.name}' ignored: {exc}")
            return
        self.cells.add(report.cell)
        self._pending.append(report)
        if len(self._pending) >= 500:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self.log.record_cycles(batch)
        except ValueError as exc:  # one bad report: keep the others
            self.get_logger().warning(f"batch refused ({exc}); writing one by one")
            for r in batch:
                try:
                    self.log.record_cycle(r)
                except ValueError as one:
                    self.rejected += 1
                    self.get_logger().warning(f"cycle report refused: {one}")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        for st in msg.status:
            level = level_name(st.level)
            prev = self._last_status.get(st.name)
            self._last_status[st.name] = (level, st.message)
            if level == "OK" or prev == (level, st.message):
                continue
            kv = dict(key_values(st))
            cell = kv.get("cell") or st.hardware_id or st.name.strip("/").split("/")[0]
            time = float(kv["time"]) if "time" in kv else stamp
            self.log.record_fault(cell, time, level if level in ("WARN", "ERROR", "STALE") else "ERROR",
                                  kv.get("source", st.name), kv.get("code", ""), st.message)

    def _publish_kpis(self) -> None:
        self._flush()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        for cell in sorted(self.cells):
            k = kpis(self.log.parts(cell=cell), self.log.faults(cell=cell))
            pairs = [(name, "nan" if isinstance(v, float) and math.isnan(v) else f"{v:g}") for name, v in k.items()]
            arr.status.append(status_msg(f"{cell}/kpis", DiagnosticStatus.OK, f"{int(k['parts'])} parts",
                                         pairs, hardware_id=cell))
        self.kpi_pub.publish(arr)

    def destroy_node(self) -> None:
        """Write what is pending and close the log."""
        self._flush()
        self.log.close()
        super().destroy_node()


def main(args=None) -> int:
    """Run the supervisor node."""
    return run_node(SupervisorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
