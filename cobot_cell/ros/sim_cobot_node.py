"""sim_cobot: a ros2_control stand-in for one arm.

Same interface as a joint_trajectory_controller on real hardware or in Gazebo:
`<controller>/joint_trajectory` (trajectory_msgs/JointTrajectory) in, `joint_states` out at `state_rate` Hz,
tool IO as std_srvs/SetBool services, health on `/diagnostics`. An empty trajectory stops the arm where it is.
Each IO also reports its sensed state on `<io>/state` (std_msgs/Bool, latched): for a gripper, part present.
Faults are injected with the `fault` parameter (see FAULTS); an empty value clears them.
With `backend: mujoco` the node is the cell's physics twin instead (cobot_cell.ros.twin_driver): one node serving
every cobot of the cell file `cell_file`.
With `publish_clock` the node owns `/clock` and runs simulated time at `rate` x real time: every wall tick
(`clock_hz`) sets simulated time to rate x the wall time since start (a late tick catches up, at most
MAX_CATCH_UP ticks at once, so a stalled host slows the simulation instead of jumping it). Joint states are
sampled at exact multiples of 1 / state_rate of simulated time (a burst per tick when the sim runs faster than
real time), so they are the same at any rate; other sim nodes follow `/clock` and sample the same way.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock_type import ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from .common import LATCHED, STATES, run_node, split_seconds, status_msg

MAX_CATCH_UP = 5  # /clock ticks a late timer may catch up at once
BACKENDS = ("kinematic", "mujoco")

# Faults the sim can be told to have (parameter `fault`), as a test or an integrator would provoke them.
FAULTS = {
    "": "ok",
    "protective_stop": "protective stop",
    "estop": "emergency stop",
    "stale": "joint states stopped (driver hung)",
    "io_fail": "IO fault: outputs do not switch",
    "grip_miss": "gripper closes on nothing (no part sensed)",
}


@dataclass(frozen=True)
class SimParams:
    """Parameters of a sim_cobot node, read once at start."""

    joint_names: tuple[str, ...]
    initial_positions: tuple[float, ...]
    io_names: tuple[str, ...]
    process_io: tuple[str, ...]
    heartbeat_topic: str
    heartbeat_timeout: float
    controller: str
    state_rate: float
    publish_clock: bool
    rate: float
    clock_hz: float
    clock_file: str


def read_clock_file(path: str) -> float:
    """The time a /clock owner last sent, from its clock file (0 when the file is missing or empty)."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return 0.0
    try:
        t = float(text or 0.0)
    except ValueError:
        raise ValueError(f"parameter clock_file: {path} holds {text[:40]!r}, not a time in seconds") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"parameter clock_file: {path} holds {t}, not a time >= 0")
    return t


def _time_msg(t: float) -> TimeMsg:
    sec, nanosec = split_seconds(t)
    return TimeMsg(sec=sec, nanosec=nanosec)


class TrajectoryFollower:
    """Interpolates a JointTrajectory in time (cubic Hermite with velocities, linear without)."""

    def __init__(self, q: np.ndarray):
        self.q = q.astype(float).copy()
        self._t0 = 0.0
        self._times: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        self._vel: np.ndarray | None = None

    @property
    def moving(self) -> bool:
        """A trajectory is being followed."""
        return self._times is not None

    def start(self, t0: float, times: np.ndarray, pos: np.ndarray, vel: np.ndarray | None) -> None:
        """Follow a new trajectory from the current position, its times counted from t0."""
        if times[0] > 0.0:  # first point in the future: start from where the arm is now
            times = np.concatenate([[0.0], times])
            pos = np.vstack([self.q, pos])
            if vel is not None:
                vel = np.vstack([np.zeros_like(self.q), vel])
        self._t0, self._times, self._pos, self._vel = t0, times, pos, vel

    def stop(self) -> None:
        """Stop where the arm is."""
        self._times = self._pos = self._vel = None

    def update(self, t: float) -> np.ndarray:
        """Joint positions at time t."""
        if self._times is None:
            return self.q
        assert self._pos is not None
        rel = t - self._t0
        times = self._times
        if rel >= times[-1]:
            self.q = self._pos[-1].copy()
            self.stop()
            return self.q
        if rel <= times[0]:
            self.q = self._pos[0].copy()
            return self.q
        k = int(np.searchsorted(times, rel, side="right")) - 1
        h = times[k + 1] - times[k]
        s = (rel - times[k]) / h
        p0, p1 = self._pos[k], self._pos[k + 1]
        if self._vel is None:
            self.q = p0 + s * (p1 - p0)
        else:
            v0, v1 = self._vel[k] * h, self._vel[k + 1] * h
            h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
            self.q = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        return self.q


class SimCobotNode(Node):
    """Simulated ros2_control arm with a joint trajectory controller, joint states and tool IO."""

    def __init__(self) -> None:
        super().__init__("sim_cobot")
        d = self._declare
        backend = d(
            "backend",
            "kinematic",
            "kinematic (this node, one per cobot, trajectories followed exactly) or "
            "mujoco (one node for the whole cell's physics twin: docs/simulation.md)",
        )
        if backend not in BACKENDS:
            raise ValueError(f"parameter backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "mujoco":
            from .twin_driver import TwinDriver

            self.twin = TwinDriver(self)
            return
        self.params = SimParams(
            joint_names=tuple(d("joint_names", [""], "joint names, in controller order")),
            initial_positions=tuple(d("initial_positions", [0.0], "start positions (rad), one per joint")),
            io_names=tuple(d("io_names", [""], "tool IO services (std_srvs/SetBool), e.g. gripper/grip")),
            process_io=tuple(
                d(
                    "process_io",
                    [""],
                    "IO of process tools (the arc): dropped, with the motion, on "
                    "e-stop, protective stop or a silent planner",
                )
            ),
            heartbeat_topic=d("heartbeat_topic", "", "the planner's heartbeat (std_msgs/Header); '' = not watched"),
            heartbeat_timeout=d(
                "heartbeat_timeout", 0.5, "wall seconds without a heartbeat before process IO is dropped"
            ),
            controller=d("controller", "joint_trajectory_controller", "controller namespace of the topic"),
            state_rate=d("state_rate", 100.0, "joint_states rate (Hz of node time)"),
            publish_clock=d("publish_clock", False, "own /clock and run simulated time"),
            rate=d("rate", 1.0, "simulated seconds per wall second when publishing /clock"),
            clock_hz=d("clock_hz", 100.0, "/clock ticks per wall second when publishing /clock"),
            clock_file=d(
                "clock_file",
                "",
                "with publish_clock: file that keeps the last /clock time; a restarted "
                "owner goes on from it, so /clock never goes back (empty: start at 0)",
            ),
        )
        # carried payload (kg) reported in diagnostics: the tool's mass, plus the part's while part_io holds one
        self.payload = (
            float(d("tool_mass", 0.0, "mass of the mounted tool (kg), for the payload report")),
            float(d("part_mass", 0.0, "mass of the part the gripper carries (kg)")),
            str(d("part_io", "", "the gripper IO whose part counts in the payload")),
        )
        p = self.params
        joints = [j for j in p.joint_names if j]
        if not joints:
            raise ValueError("parameter joint_names: at least one joint name is required")
        if len(p.initial_positions) != len(joints):
            raise ValueError(
                f"parameter initial_positions: expected {len(joints)} values, got {len(p.initial_positions)}"
            )
        if p.state_rate <= 0 or p.rate <= 0 or p.clock_hz <= 0 or p.heartbeat_timeout <= 0:
            raise ValueError("parameters state_rate, rate, clock_hz and heartbeat_timeout must be > 0")
        unknown = [io for io in p.process_io if io and io not in p.io_names]
        if unknown:
            raise ValueError(f"parameter process_io: {unknown[0]!r} is not one of io_names {list(p.io_names)}")
        if p.publish_clock and self.get_parameter("use_sim_time").value:
            raise ValueError("parameter publish_clock: the /clock owner cannot also use_sim_time")
        self.joints = joints
        self.index = {j: i for i, j in enumerate(joints)}
        self.follower = TrajectoryFollower(np.asarray(p.initial_positions, dtype=float))
        self.io_state: dict[str, bool] = {}
        self.io_sensed: dict[str, Publisher[Bool]] = {}
        self.fault = ""
        self.process_io = {io for io in p.process_io if io}
        self._heartbeat_wall = -float("inf")
        self.ignored = 0
        self.rejected = 0
        self._sim_t = 0.0
        self._sim0 = 0.0
        self._wall0: float | None = None
        self._clock_t: float | None = None
        self._next_sample: float | None = None
        self._clock_fd: int | None = None
        if p.publish_clock and p.clock_file:
            self._sim_t = self._sim0 = read_clock_file(p.clock_file)
            self._clock_fd = os.open(p.clock_file, os.O_WRONLY | os.O_CREAT, 0o644)

        self.js_pub = self.create_publisher(JointState, "joint_states", STATES)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointTrajectory, f"{p.controller}/joint_trajectory", self._on_trajectory, 10)
        for io in (n for n in p.io_names if n):
            self.io_state[io] = False
            self.io_sensed[io] = self.create_publisher(Bool, f"{io}/state", LATCHED)
            self.io_sensed[io].publish(Bool(data=False))
            self.create_service(SetBool, io, partial(self._handle_io, io))
        if p.publish_clock:
            self.clock_pub = self.create_publisher(Clock, "/clock", 10)
            self.create_timer(1.0 / p.clock_hz, self._on_clock_tick)
        elif self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self._on_clock, 10)
        else:
            self.create_timer(1.0 / p.state_rate, lambda: self._advance_to(self._now()))
        if p.heartbeat_topic:
            self.create_subscription(Header, p.heartbeat_topic, self._on_heartbeat, 10)
            self.create_timer(
                min(0.05, p.heartbeat_timeout / 4),
                self._watch_heartbeat,
                clock=rclpy.clock.Clock(clock_type=ClockType.STEADY_TIME),
            )
        self.declare_parameter(
            "fault",
            "",
            ParameterDescriptor(description="inject a fault: " + ", ".join(f"'{k}' ({v})" for k, v in FAULTS.items())),
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0, self._publish_health)
        self.get_logger().info(
            f"sim cobot up: {len(joints)} joints, IO {sorted(self.io_state) or 'none'}"
            + (f", owning /clock at {p.rate:g}x" if p.publish_clock else "")
            + (f" from t={self._sim_t:.3f} s ({p.clock_file})" if self._sim_t else "")
        )

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _now(self) -> float:
        if self.params.publish_clock:
            return self._sim_t
        if self._clock_t is not None:
            return self._clock_t
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_clock_tick(self) -> None:
        p = self.params
        now = time.monotonic()
        if self._wall0 is None:
            self._wall0 = now
        target = self._sim0 + p.rate * (now - self._wall0)
        step = p.rate / p.clock_hz
        if target - self._sim_t > MAX_CATCH_UP * step:  # the host stalled: slow down, do not jump
            self._sim0 = self._sim_t + MAX_CATCH_UP * step - p.rate * (now - self._wall0)
            target = self._sim_t + MAX_CATCH_UP * step
        if target <= self._sim_t:
            return
        self._sim_t = target
        if self._clock_fd is not None:  # on file before anyone sees it: a restart never repeats a time
            os.pwrite(self._clock_fd, f"{target:24.9f}\n".encode(), 0)
        self.clock_pub.publish(Clock(clock=_time_msg(self._sim_t)))
        self._advance_to(self._sim_t)

    def _on_clock(self, msg: Clock) -> None:
        self._clock_t = msg.clock.sec + msg.clock.nanosec * 1e-9
        self._advance_to(self._clock_t)

    def _on_set_parameters(self, params: list[Parameter[Any]]) -> SetParametersResult:
        for p in params:
            if p.name == "fault":
                if p.value not in FAULTS:
                    return SetParametersResult(
                        successful=False,
                        reason=(f"unknown fault {p.value!r}: expected one of {', '.join(repr(k) for k in FAULTS)}"),
                    )
                self._set_fault(p.value)
        return SetParametersResult(successful=True)

    def _on_heartbeat(self, msg: Header) -> None:
        self._heartbeat_wall = time.monotonic()

    @property
    def _planner_alive(self) -> bool:
        return (
            not self.params.heartbeat_topic or time.monotonic() - self._heartbeat_wall < self.params.heartbeat_timeout
        )

    def _watch_heartbeat(self) -> None:
        if not self._planner_alive:
            self._drop_process("planner heartbeat lost")

    def _drop_process(self, why: str) -> None:
        """Switch every lit process tool off and stop the arm with it (as a welding power source does)."""
        lit = [io for io in sorted(self.process_io) if self.io_state.get(io)]
        if not lit:
            return
        self.follower.update(self._now())
        self.follower.stop()
        for io in lit:
            self.io_state[io] = False
            self.io_sensed[io].publish(Bool(data=False))
        self.get_logger().warning(f"{why}: {', '.join(lit)} switched off, motion stopped")

    def _set_fault(self, fault: str) -> None:
        self.fault = fault
        if fault in ("protective_stop", "estop"):
            self._drop_process(FAULTS[fault])
            self.follower.update(self._now())
            self.follower.stop()
        self.get_logger().warning(f"fault injected: {FAULTS[fault]}" if fault else "faults cleared")
        self._publish_health()

    def _advance_to(self, t: float) -> None:
        """Publish a joint state for every sample time up to t."""
        if self.fault == "stale":
            self._next_sample = None
            return
        period = 1.0 / self.params.state_rate
        if self._next_sample is None or t < self._next_sample - 10 * period:  # first sample, or time reset
            self._next_sample = math.floor(t / period) * period
        while self._next_sample <= t + 1e-9:
            q = self.follower.update(self._next_sample)
            msg = JointState(name=self.joints, position=q.tolist())
            msg.header.stamp = _time_msg(self._next_sample)
            self.js_pub.publish(msg)
            self._next_sample = round((self._next_sample + period) / period) * period

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if self.fault in ("protective_stop", "estop"):
            self.ignored += 1
            self.get_logger().error(f"trajectory ignored: {FAULTS[self.fault]}")
            return
        if not msg.points:
            self.follower.stop()
            self.get_logger().info("empty trajectory: stopped")
            return
        unknown = [j for j in msg.joint_names if j not in self.index]
        if unknown or len(set(msg.joint_names)) != len(msg.joint_names):
            self.rejected += 1
            self.get_logger().error(f"trajectory rejected: unknown or repeated joints {unknown or msg.joint_names}")
            return
        n = len(msg.points)
        times = np.array([pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.points])
        if np.any(np.diff(times) <= 0):
            self.rejected += 1
            self.get_logger().error("trajectory rejected: time_from_start must increase strictly")
            return
        cols = [self.index[j] for j in msg.joint_names]
        pos = np.repeat(self.follower.q[None, :], n, axis=0)
        have_vel = all(len(pt.velocities) == len(cols) for pt in msg.points)
        vel = np.zeros((n, len(self.joints))) if have_vel else None
        for i, pt in enumerate(msg.points):
            if len(pt.positions) != len(cols):
                self.rejected += 1
                self.get_logger().error(
                    f"trajectory rejected: point {i} has {len(pt.positions)} positions, expected {len(cols)}"
                )
                return
            pos[i, cols] = pt.positions
            if vel is not None:
                vel[i, cols] = pt.velocities
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        now = self._now()
        self.follower.update(now)
        self.follower.start(stamp if stamp > 0 else now, times, pos, vel)

    def _handle_io(self, io: str, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        if self.fault in ("io_fail", "protective_stop", "estop"):
            resp.success, resp.message = False, f"{io}: {FAULTS[self.fault]}"
            return resp
        if req.data and io in self.process_io and not self._planner_alive:
            resp.success, resp.message = False, f"{io}: no heartbeat from the planner"
            return resp
        self.io_state[io] = bool(req.data)
        sensed = bool(req.data) and self.fault != "grip_miss"
        self.io_sensed[io].publish(Bool(data=sensed))
        resp.success = True
        resp.message = f"{io} {'on' if req.data else 'off'}"
        return resp

    def _publish_health(self) -> None:
        if self.fault == "stale":
            return  # a hung driver says nothing
        name = f"{self.get_namespace().rstrip('/')}/{self.get_name()}"
        pairs = [
            ("moving", str(self.follower.moving).lower()),
            ("rejected_trajectories", str(self.rejected)),
            ("fault", self.fault),
        ]
        pairs += [(f"io.{k}", str(v).lower()) for k, v in sorted(self.io_state.items())]
        tool, part, part_io = self.payload
        holding = self.io_state.get(part_io, False) and self.fault != "grip_miss"
        pairs.append(("payload_kg", f"{tool + (part if holding else 0.0):.3f}"))
        level = (
            DiagnosticStatus.ERROR
            if self.fault in ("protective_stop", "estop")
            else DiagnosticStatus.WARN
            if self.fault
            else DiagnosticStatus.OK
        )
        arr = DiagnosticArray(status=[status_msg(name, level, FAULTS[self.fault], pairs, hardware_id=name)])
        arr.header.stamp = _time_msg(self._now())
        self.diag_pub.publish(arr)


def main(args: Sequence[str] | None = None) -> int:
    """Run the sim_cobot node."""
    return run_node(SimCobotNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
