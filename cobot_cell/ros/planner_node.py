"""task_planner: hosts the cell controller (PackML machine + job sequencer) and drives the cobots over ROS 2.

Per cobot it talks to a ros2_control-style driver: `<ns>/<controller>/joint_trajectory` out,
`<ns>/joint_states` in, tool IO through std_srvs/SetBool. For the operator it offers std_srvs/Trigger services
(reset, start, stop, hold, unhold, suspend, unsuspend, abort, clear), the `job` and `parts` parameters, the
cell state (std_msgs/String, latched), a status (diagnostic_msgs/DiagnosticStatus) and one cycle report per
part on `cycle`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..core.cell import CellController, Fault
from ..core.config import CellConfig, Cobot
from ..core.packml import Command, CommandRefused, State
from ..core.plan import TrajectoryLike
from ..core.ports import CobotPort, Pending
from ..core.reports import CycleReport
from ..skills import load_cell, make_planner
from .common import LATCHED, REPORTS, STATES, route_core_logging, run_node, status_msg


@dataclass(frozen=True)
class PlannerParams:
    """Parameters of the task_planner node, read once at start (job and parts stay settable)."""

    cell_file: str
    job: str
    parts: int
    tick: float
    tolerance: float
    timeout_factor: float
    timeout_margin: float
    start_timeout: float
    stamp_trajectories: bool


class RosClock:
    """Cell time in seconds: the newest joint-state stamp while drivers report, else the node's clock.

    Timing steps and motions on the drivers' own stamps keeps cycle times the same whether the planner keeps
    up with a fast simulation or lags it by a few messages. When no joint state has arrived for
    `stale_after` wall seconds, time goes on with the node clock so dwells and timeouts still end.
    Never goes backwards.
    """

    def __init__(self, node: Node, stale_after: float = 3.0):
        self._clock = node.get_clock()
        self.stale_after = stale_after
        self.data_time = -1.0
        self._rx_wall = -float("inf")
        self._last = 0.0

    def node_now(self) -> float:
        """Node time (sim time when use_sim_time) in seconds."""
        return self._clock.now().nanoseconds * 1e-9

    def observe(self, stamp: float) -> None:
        """A driver reported data stamped `stamp`."""
        self._rx_wall = time.monotonic()
        if stamp > self.data_time:
            self.data_time = stamp

    @property
    def fresh(self) -> bool:
        """Joint states arrived within the last `stale_after` wall seconds."""
        return time.monotonic() - self._rx_wall < self.stale_after

    def now(self) -> float:
        """Cell time in seconds."""
        t = self.data_time if self.fresh else self.node_now()
        self._last = max(self._last, t)
        return self._last


class WallClock:
    """Monotonic wall time in seconds (driver start-up is a wall-time matter, whatever the sim rate)."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class RosCobotPort(CobotPort):
    """A cobot behind a joint trajectory controller topic, joint_states and SetBool IO services."""

    def __init__(self, node: "PlannerNode", name: str, cobot: Cobot, namespace: str, params: PlannerParams):
        self.name = name
        self.node = node
        self.joints = list(cobot.joints)
        self.params = params
        self.clock = node.clock
        self._q: np.ndarray | None = None
        self._cols: list[int] | None = None
        self._moving: Pending | None = None
        self.last_stamp = -1.0
        self.pub = node.create_publisher(JointTrajectory, f"{namespace}/{cobot.controller}/joint_trajectory", 10)
        node.create_subscription(JointState, f"{namespace}/joint_states", self._on_joint_states, STATES)
        self.io_clients = {t.io: node.create_client(SetBool, f"{namespace}/{t.io}") for t in cobot.tools.values()}

    def _on_joint_states(self, msg: JointState) -> None:
        if self._cols is None or len(msg.name) != len(self._cols) or any(
                msg.name[c] != j for c, j in zip(self._cols, self.joints)):
            try:
                self._cols = [list(msg.name).index(j) for j in self.joints]
            except ValueError:
                return  # a joint_states message without our joints: not ours
        pos = msg.position
        self._q = np.array([pos[c] for c in self._cols])
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.last_stamp = max(self.last_stamp, stamp)
        self.clock.observe(stamp)
        if self._moving is not None and stamp >= self._moving.started + self._moving.meta["duration"]:
            self.node.on_cobot_event()

    def ready(self) -> str | None:
        """None when the driver is up (joint states seen, IO services present), else what is missing."""
        if self._q is None:
            return f"no joint states from '{self.name}'"
        for io, client in self.io_clients.items():
            if not client.service_is_ready():
                return f"IO service '{io}' of '{self.name}' not available"
        return None

    def joint_positions(self) -> np.ndarray | None:
        return None if self._q is None else self._q.copy()

    def move(self, trajectory: TrajectoryLike) -> Pending:
        msg = JointTrajectory(joint_names=self.joints)
        times = np.asarray(trajectory.times)
        pos = np.asarray(trajectory.positions)
        vel = np.asarray(trajectory.velocities)
        for t, p, v in zip(times, pos, vel):
            sec = int(t)
            msg.points.append(JointTrajectoryPoint(
                positions=p.tolist(), velocities=v.tolist(),
                time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)))
        pending = Pending(started=self.clock.now(), meta={"kind": "move", "final": np.asarray(trajectory.final),
                                                          "duration": float(trajectory.duration)})
        if self.params.stamp_trajectories:
            sec = int(pending.started)
            msg.header.stamp.sec = sec
            msg.header.stamp.nanosec = int(round((pending.started - sec) * 1e9)) % 1_000_000_000
        if len(msg.points) > 1 or trajectory.duration > 0:
            self.pub.publish(msg)
        self._moving = pending
        return pending

    def set_io(self, io: str, value: bool) -> Pending:
        pending = Pending(started=self.clock.now(), meta={"kind": "io", "io": io})
        client = self.io_clients.get(io)
        if client is None or not client.service_is_ready():
            pending.fail(f"IO service '{io}' of '{self.name}' not available")
            return pending
        future = client.call_async(SetBool.Request(data=value))

        def done(fut) -> None:
            exc = fut.exception()
            if exc is not None:
                pending.fail(f"IO service '{io}' of '{self.name}' failed: {exc}")
            elif not fut.result().success:
                pending.fail(f"IO service '{io}' of '{self.name}' refused: {fut.result().message}")
            else:
                pending.finish()
            self.node.on_cobot_event()

        future.add_done_callback(done)
        return pending

    def poll(self, pending: Pending) -> None:
        if pending.done or pending.meta["kind"] != "move":
            return
        # On this cobot's own stamps: a planner lagging behind a fast sim sees late data, not a late arm.
        elapsed = (self.last_stamp if self.clock.fresh else self.clock.now()) - pending.started
        duration = pending.meta["duration"]
        if elapsed >= duration and self._q is not None and \
                float(np.max(np.abs(self._q - pending.meta["final"]))) <= self.params.tolerance:
            pending.finish()
            self._moving = None
        elif elapsed > duration * self.params.timeout_factor + self.params.timeout_margin:
            off = "no joint state" if self._q is None else \
                f"{float(np.max(np.abs(self._q - pending.meta['final']))):.4f} rad off target"
            pending.fail(f"motion of '{self.name}' did not arrive within {elapsed:.2f} s "
                         f"(planned {duration:.2f} s, {off})")
            self._moving = None

    def stop(self) -> None:
        self._moving = None
        self.pub.publish(JointTrajectory(joint_names=self.joints))


COMMANDS = [c.value for c in Command]


class PlannerNode(Node):
    """The cell's task planner."""

    def __init__(self) -> None:
        super().__init__("task_planner")
        route_core_logging(self)
        d = self._declare
        self.params = PlannerParams(
            cell_file=d("cell_file", "", "path of the cell file (YAML)"),
            job=d("job", "", "job to run (default: the first job of the cell file)"),
            parts=d("parts", 1, "parts per run (>= 1)"),
            tick=d("tick", 0.01, "update period in node-time seconds"),
            tolerance=d("tolerance", 0.005, "joint position tolerance (rad) for a motion to count as arrived"),
            timeout_factor=d("timeout_factor", 1.5, "a motion fails after planned duration x this + margin"),
            timeout_margin=d("timeout_margin", 2.0, "seconds added to the motion timeout"),
            start_timeout=d("start_timeout", 15.0, "wall seconds Starting waits for every driver to be ready"),
            stamp_trajectories=d("stamp_trajectories", False,
                                 "stamp each trajectory with its planned start (cell time) instead of 'now'; "
                                 "for simulated drivers sharing /clock, so timings do not depend on "
                                 "planner lag. Leave false for real controllers"),
        )
        if not self.params.cell_file:
            raise ValueError("parameter cell_file: a cell file is required")
        self.cfg: CellConfig = load_cell(self.params.cell_file)
        self.clock = RosClock(self)
        self.ports = {
            name: RosCobotPort(self, name, cobot, self.cfg.cobot_namespace(name), self.params)
            for name, cobot in self.cfg.cobots.items()
        }
        self._updating = False
        self.state_pub = self.create_publisher(String, "state", LATCHED)
        self.status_pub = self.create_publisher(DiagnosticStatus, "status", LATCHED)
        self.cycle_pub = self.create_publisher(DiagnosticStatus, "cycle", REPORTS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.controller = CellController(
            self.cfg, self.ports, make_planner(self.cfg), self.clock,
            job=self.params.job or None, parts=self.params.parts,
            on_state=self._on_state, on_cycle=self._on_cycle, on_fault=self._on_fault, ready_check=self._ready,
            start_timeout=self.params.start_timeout, wall_clock=WallClock(),
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for cmd in COMMANDS:
            self.create_service(Trigger, cmd, lambda req, resp, cmd=cmd: self._handle_command(cmd, resp))
        self.create_timer(self.params.tick, self._on_tick)
        self._publish_state()
        self.get_logger().info(f"cell '{self.cfg.cell.name}' loaded: job '{self.controller.job}', "
                               f"{self.controller.parts_target} part(s), cobots {', '.join(self.ports)}")

    def _declare(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    # ------------------------------------------------------------------ callbacks
    def _ready(self) -> str | None:
        for port in self.ports.values():
            problem = port.ready()
            if problem:
                return problem
        return None

    def on_cobot_event(self) -> None:
        """Joint states or an IO reply arrived: let the controller react at once."""
        self._update()

    def _on_tick(self) -> None:
        self._update()

    def _update(self) -> None:
        if self._updating:
            return
        self._updating = True
        try:
            self.controller.update()
        finally:
            self._updating = False

    def _handle_command(self, cmd: str, resp: Trigger.Response) -> Trigger.Response:
        try:
            self.controller.command(cmd)
        except CommandRefused as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        resp.success, resp.message = True, f"{cmd}: state {self.controller.state.value}"
        return resp

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            for p in params:
                if p.name == "job":
                    self.controller.check_job(p.value)
                elif p.name == "parts":
                    self.controller.check_parts(p.value)
                elif p.name in ("cell_file", "tick", "tolerance", "timeout_factor", "timeout_margin"):
                    raise ValueError(f"parameter {p.name} is read at start only")
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for p in params:
            if p.name == "job":
                self.controller.set_job(p.value)
            elif p.name == "parts":
                self.controller.set_parts(p.value)
        self._publish_status()
        return SetParametersResult(successful=True)

    def _on_state(self, old: State, new: State, trigger: str) -> None:
        self._publish_state()

    def _on_cycle(self, report: CycleReport) -> None:
        self.cycle_pub.publish(status_msg(f"{self.cfg.cell.name}/cycle", DiagnosticStatus.OK,
                                          f"part {report.part} {report.status} in {report.cycle_time:.3f} s",
                                          report.to_key_values(), hardware_id=self.cfg.cell.name))
        self._publish_status()

    def _on_fault(self, fault: Fault) -> None:
        arr = DiagnosticArray(status=[status_msg(
            f"{self.cfg.cell.name}/task_planner", DiagnosticStatus.ERROR, fault.message,
            [("cell", self.cfg.cell.name), ("code", fault.code), ("source", fault.source),
             ("time", repr(fault.time))], hardware_id=self.cfg.cell.name)])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def _publish_state(self) -> None:
        self.state_pub.publish(String(data=self.controller.state.value))
        self._publish_status()

    def _publish_status(self) -> None:
        s = self.controller.status()
        level = DiagnosticStatus.ERROR if s.fault else DiagnosticStatus.OK
        pairs = [("state", s.state.value), ("job", s.job), ("parts", str(s.parts_target)),
                 ("parts_done", str(s.parts_done)), ("part", "" if s.part is None else str(s.part)),
                 ("run_id", s.run_id),
                 ("last_cycle_time", "" if s.last_cycle_time is None else f"{s.last_cycle_time:.3f}"),
                 ("fault", "" if s.fault is None else f"{s.fault.source}: {s.fault.message}")]
        self.status_pub.publish(status_msg(f"{self.cfg.cell.name}/status", level, s.state.value, pairs,
                                           hardware_id=self.cfg.cell.name))


def main(args=None) -> int:
    """Run the task_planner node."""
    return run_node(PlannerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
