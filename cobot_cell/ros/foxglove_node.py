"""foxglove: serves a cell's live data to Foxglove (WebSocket on loopback) and/or records it to an MCAP file.

Subscribes to every cobot's joint states, the cell's PackML state, cycle reports and faults, and the supervisor's
KPIs, and logs them on the channels of `cobot_cell.twin.record` (JSON, log time = the cell's clock), with the
cell's URDF on `/robot_description`. Joint states are thinned to `state_hz` per cobot (of the cell's clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from .common import LATCHED, REPORTS, STATE_CHANGES, STATES, key_values, level_name, run_node

URDF_EVERY = 5.0  # wall seconds between repeats of the URDF, for viewers that connect later


@dataclass(frozen=True)
class FoxgloveParams:
    """Parameters of the foxglove node, read once at start."""

    cell_file: str
    record: str
    port: int
    state_hz: float


class FoxgloveNode(Node):
    """Logs the cell's topics to Foxglove channels (live server, MCAP file)."""

    def __init__(self) -> None:
        super().__init__("foxglove")
        from ..skills import load_cell
        from ..twin.model import render_urdf
        from ..twin.record import Recorder, cell_topics

        def d(name: str, default, description: str):
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        p = self.params = FoxgloveParams(
            cell_file=d("cell_file", "", "cell file (YAML)"),
            record=d("record", "", "MCAP file to record to ('' = no recording)"),
            port=int(d("port", -1, "WebSocket port of the live server on 127.0.0.1 (-1 = no server, 0 = any)")),
            state_hz=float(d("state_hz", 25.0, "joint states logged per second of cell time, per cobot")),
        )
        if not p.cell_file:
            raise ValueError("parameter cell_file: required")
        if p.state_hz <= 0:
            raise ValueError(f"parameter state_hz: must be > 0, got {p.state_hz}")
        cfg = load_cell(p.cell_file)
        self.cell = cfg.cell.name
        namespaces = [cfg.cobot_namespace(n) for n in cfg.cobots]
        self.urdf = render_urdf(p.cell_file)
        self.recorder = Recorder(
            cell_topics(self.cell, namespaces),
            record=p.record or None,
            port=None if p.port < 0 else p.port,
            name=f"cobot_cell {self.cell}",
        )
        self._last: dict[str, float] = {}
        for ns in namespaces:
            topic = f"{ns.rstrip('/')}/joint_states"
            self.create_subscription(
                JointState, topic, lambda msg, topic=topic: self._on_joint_states(topic, msg), STATES
            )
        self.create_subscription(String, f"/{self.cell}/state", self._on_state, STATE_CHANGES)
        self.create_subscription(
            DiagnosticStatus, f"/{self.cell}/cycle", lambda msg: self._on_status(f"/{self.cell}/cycle", msg), REPORTS
        )
        self.create_subscription(
            DiagnosticStatus, f"/{self.cell}/faults", lambda msg: self._on_status(f"/{self.cell}/faults", msg), REPORTS
        )
        self.create_subscription(DiagnosticArray, "/supervisor/kpis", self._on_kpis, LATCHED)
        self._urdf_wall = -float("inf")
        self._send_urdf()
        import rclpy

        self.create_timer(1.0, self._send_urdf, clock=rclpy.clock.Clock(clock_type=rclpy.clock.ClockType.STEADY_TIME))
        where = ([f"recording to {p.record}"] if p.record else []) + (
            [f"serving ws://127.0.0.1:{self.recorder.port}"] if self.recorder.port is not None else []
        )
        self.get_logger().info(f"foxglove up: cell '{self.cell}', {' and '.join(where)}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _send_urdf(self) -> None:
        if time.monotonic() - self._urdf_wall >= URDF_EVERY:
            self._urdf_wall = time.monotonic()
            self.recorder.text("/robot_description", self._now(), self.urdf)

    def _on_joint_states(self, topic: str, msg: JointState) -> None:
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if t - self._last.get(topic, -float("inf")) < 1.0 / self.params.state_hz - 1e-9:
            return
        self._last[topic] = t
        self.recorder.joint_state(topic, t, msg.name, msg.position, msg.velocity or [0.0] * len(msg.position))

    def _on_state(self, msg: String) -> None:
        self.recorder.text(f"/{self.cell}/state", self._now(), msg.data)

    def _on_status(self, topic: str, msg: DiagnosticStatus) -> None:
        self.recorder.key_values(topic, self._now(), key_values(msg), msg.name, level_name(msg.level), msg.message)

    def _on_kpis(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.recorder.key_values(
                "/supervisor/kpis", self._now(), key_values(st), st.name, level_name(st.level), st.message
            )

    def destroy_node(self) -> None:
        """Finish the recording and stop the server."""
        self.recorder.close()
        super().destroy_node()


def main(args=None) -> int:
    """Run the foxglove node."""
    return run_node(FoxgloveNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
