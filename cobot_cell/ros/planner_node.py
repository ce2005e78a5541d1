"""task_planner: hosts the cell controller (PackML machine + job sequencer) and drives the cobots over ROS 2.

Per cobot it talks to a ros2_control-style driver: `<ns>/<controller>/joint_trajectory` out,
`<ns>/joint_states` in, tool IO through std_srvs/SetBool. For the operator it offers std_srvs/Trigger services
(reset, start, stop, hold, unhold, suspend, unsuspend, abort, clear), the `job` and `parts` parameters, the
cell state (std_msgs/String, latched), a status (diagnostic_msgs/DiagnosticStatus) and one cycle report per
part on `cycle`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.client import Client
from rclpy.clock import Clock as RosClockType
from rclpy.clock_type import ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..core.cell import CellController, CellStatus
from ..core.config import CellConfig, Cobot
from ..core.faults import DRIVER_FAULT_KEYS, Code, Fault
from ..core.journal import Journal
from ..core.motion_watch import DriverClock, MotionWatch, WatchLimits
from ..core.packml import Command, State
from ..core.plan import SkillState, TrajectoryLike
from ..core.ports import CobotPort, Pending
from ..core.reports import CycleReport
from ..core.wire import FaultUpdate, encode_cycle, encode_fault, encode_status
from ..motion.trajectory import Trajectory
from ..plant.authority import Source
from ..skills import make_planner, pallet_places
from ..skills.checked_cell import load_checked
from ..skills.recovery import SkillRecovery
from ..skills.schedule import estimate as estimate_steady_state
from ..skills.zones import CellZones
from .authority import PRODUCT_PARAMETERS, NodeAuthority
from .common import (
    LATCHED,
    REPORTS,
    STATE_CHANGES,
    STATES,
    JointReader,
    key_values,
    level_name,
    level_of,
    route_core_logging,
    run_node,
    split_seconds,
    status_msg,
)
from .twin_sync import PlannerSync


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
    journal: str
    max_backdate: float
    stale_timeout: float
    timeout_wall_min: float
    max_parts_in_flight: int = 0


class RosClock(DriverClock):
    """Cell time (cobot_cell.core.motion_watch.DriverClock) on the node's clock and its joint-state stamps."""

    def __init__(self, node: Node, stale_after: float = 3.0):
        clock = node.get_clock()
        super().__init__(lambda: clock.now().nanoseconds * 1e-9, stale_after)


class WallClock:
    """Monotonic wall time in seconds (driver start-up is a wall-time matter, whatever the sim rate)."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


HEARTBEAT_PERIOD = 0.1  # wall seconds between the planner's heartbeats
MAX_PREPARED = 64  # trajectories converted ahead per cobot (a planned-ahead step has about 10)


class RosCobotPort(CobotPort):
    """A cobot behind a joint trajectory controller topic, joint_states and SetBool IO services."""

    def __init__(self, node: PlannerNode, name: str, cobot: Cobot, namespace: str, params: PlannerParams):
        self.name = name
        self.node = node
        self.joints = list(cobot.joints)
        self.params = params
        self.clock: RosClock = node.clock
        self.watch = MotionWatch(
            name,
            WatchLimits(
                params.tolerance,
                params.timeout_factor,
                params.timeout_margin,
                params.timeout_wall_min,
                params.stamp_trajectories,
            ),
            node.clock,
        )
        self._q: np.ndarray | None = None
        self._reader = JointReader(self.joints)
        self._moving: Pending | None = None
        self.last_stamp = -1.0
        self.last_rx = -float("inf")
        self.sensed_instantly = params.stamp_trajectories
        self.namespace = namespace
        self.health: tuple[str, str] | None = None  # (code, message) while the driver reports a fault
        self.stale_reported = False
        self._sensed: dict[str, bool] = {}
        self._prepared: dict[int, tuple[TrajectoryLike, list[JointTrajectoryPoint]]] = {}
        for t in cobot.tools.values():
            if t.confirm or t.is_process:  # part present; a process tool confirmed off
                node.create_subscription(Bool, f"{namespace}/{t.io}/state", partial(self._on_sensed, t.io), LATCHED)
        self.pub = node.create_publisher(JointTrajectory, f"{namespace}/{cobot.controller}/joint_trajectory", 10)
        node.create_subscription(JointState, f"{namespace}/joint_states", self._on_joint_states, STATES)
        self.io_clients: dict[str, Client[SetBool.Request, SetBool.Response]] = {
            t.io: node.create_client(SetBool, f"{namespace}/{t.io}") for t in cobot.tools.values()
        }

    def _on_joint_states(self, msg: JointState) -> None:
        q = self._reader.read(msg.name, msg.position)
        if q is None:
            return  # not our joints, or malformed: the last positions stand
        self._q = q
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.last_stamp = max(self.last_stamp, stamp)
        self.last_rx = time.monotonic()
        self.stale_reported = False
        self.clock.observe(stamp)
        if (self._moving is not None and self.watch.due(self._moving, stamp)) or self.node.due(stamp):
            self.node.on_cobot_event()

    def _on_sensed(self, io: str, msg: Bool) -> None:
        self._sensed[io] = bool(msg.data)
        self.node.on_cobot_event()

    def sensed(self, io: str) -> bool | None:
        return self._sensed.get(io)

    @property
    def stale(self) -> bool:
        """No joint state for longer than the stale timeout (wall time)."""
        return time.monotonic() - self.last_rx > self.params.stale_timeout

    def ready(self) -> str | None:
        """None when the driver is up (fresh joint states, no fault, IO services present), else what is wrong."""
        if self._q is None:
            return f"no joint states from '{self.name}'"
        if self.stale:
            return f"joint states from '{self.name}' stopped {time.monotonic() - self.last_rx:.1f} s ago"
        if self.health is not None:
            return f"driver of '{self.name}' reports {self.health[1]}"
        for io, client in self.io_clients.items():
            if not client.service_is_ready():
                return f"IO service '{io}' of '{self.name}' not available"
        return None

    def joint_positions(self) -> np.ndarray | None:
        return None if self._q is None else self._q.copy()

    @staticmethod
    def _points(trajectory: TrajectoryLike) -> list[JointTrajectoryPoint]:
        if isinstance(trajectory, Trajectory):
            times, positions, velocities = trajectory.times, trajectory.positions, trajectory.velocities
        else:  # the core promises a duration and a final point only: reach it at rest by then
            final = np.asarray(trajectory.final, dtype=float)
            times, positions, velocities = np.array([trajectory.duration]), final[None, :], np.zeros((1, final.size))
        points = []
        last_ns = -1
        for t, p, v in zip(np.asarray(times), np.asarray(positions), np.asarray(velocities)):
            sec, nanosec = split_seconds(float(t))
            ns = sec * 1_000_000_000 + nanosec
            if ns <= last_ns:  # knots closer than a nanosecond: a controller needs strictly increasing times
                continue
            last_ns = ns
            points.append(
                JointTrajectoryPoint(
                    positions=p.tolist(), velocities=v.tolist(), time_from_start=Duration(sec=sec, nanosec=nanosec)
                )
            )
        return points

    def prepare(self, trajectory: TrajectoryLike) -> None:
        """Build the trajectory's message points now (a long move has hundreds: ms of Python at a step start)."""
        if len(self._prepared) >= MAX_PREPARED:  # plans that were dropped (replanned, run abandoned)
            self._prepared.clear()
        # keyed by identity; the entry holds the trajectory itself, so the id cannot be reused while it is here
        self._prepared[id(trajectory)] = (trajectory, self._points(trajectory))

    def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
        msg = JointTrajectory(joint_names=self.joints)
        prepared = self._prepared.pop(id(trajectory), None)
        msg.points = prepared[1] if prepared is not None and prepared[0] is trajectory else self._points(trajectory)
        pending = self.watch.move(trajectory, start)
        if self.params.stamp_trajectories:
            msg.header.stamp.sec, msg.header.stamp.nanosec = split_seconds(pending.started)
        if len(msg.points) == 1 and trajectory.duration <= 0:
            # A zero-length move still settles the arm on its target (it may be a little off, e.g. after a
            # resume): one point reached gently rather than at once.
            msg.points[0].time_from_start = Duration(sec=0, nanosec=100_000_000)
            msg.points[0].velocities = [0.0] * len(self.joints)
        if msg.points:
            self.pub.publish(msg)
            self.node.twin_sync.commands += 1
        self._moving = pending
        return pending

    def set_io(self, io: str, value: bool, start: float | None = None) -> Pending:
        pending = self.watch.io(io, start)
        client = self.io_clients.get(io)
        if client is None or not client.service_is_ready():
            pending.fail(f"IO service '{io}' of '{self.name}' not available", "IO_MISSING")
            return pending
        future = client.call_async(SetBool.Request(data=value))
        self.node.twin_sync.commands += 1

        def done(fut: Future[SetBool.Response]) -> None:
            self.node.twin_sync.replies += 1
            exc = fut.exception()
            reply = None if exc is not None else fut.result()
            if exc is not None or reply is None:  # None: the call was cancelled
                pending.fail(f"IO service '{io}' of '{self.name}' failed: {exc or 'call cancelled'}", "IO_FAILED")
            elif not reply.success:
                pending.fail(f"IO service '{io}' of '{self.name}' refused: {reply.message}", "IO_FAILED")
            else:
                self.watch.io_done(pending)
            self.node.on_cobot_event()

        future.add_done_callback(done)
        return pending

    def confirm(self, io: str, expected: bool, timeout: float, code: str, start: float | None = None) -> Pending:
        pending = super().confirm(io, expected, timeout, code, self.watch.confirm_start(start))
        return self.watch.watch_confirm(pending)

    def poll(self, pending: Pending) -> None:
        if self.watch.poll(self, pending, self._q, self.last_stamp):
            self._moving = None

    def stop(self) -> None:
        self._moving = None
        self.pub.publish(JointTrajectory(joint_names=self.joints))
        self.node.twin_sync.commands += 1


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
            tick=d("tick", 0.01, "update period in wall seconds"),
            tolerance=d("tolerance", 0.005, "joint position tolerance (rad) for a motion to count as arrived"),
            timeout_factor=d("timeout_factor", 1.5, "a motion fails after planned duration x this + margin"),
            timeout_margin=d("timeout_margin", 2.0, "seconds added to the motion timeout"),
            start_timeout=d("start_timeout", 15.0, "wall seconds Starting waits for every driver to be ready"),
            stamp_trajectories=d(
                "stamp_trajectories",
                False,
                "stamp each trajectory with its planned start (cell time) instead of 'now'; "
                "for simulated drivers sharing /clock, so timings do not depend on "
                "planner lag. Leave false for real controllers",
            ),
            journal=d("journal", "", "SQLite journal of job progress (default: <cell>.journal.db here)"),
            max_backdate=d(
                "max_backdate",
                30.0,
                "clock seconds an event time may lag the clock before the clock "
                "is used instead (raise with the sim rate)",
            ),
            stale_timeout=d("stale_timeout", 2.0, "wall seconds without joint states before a driver is stale"),
            timeout_wall_min=d(
                "timeout_wall_min",
                2.0,
                "a motion or confirmation never fails sooner than this many wall seconds after "
                "dispatch (a planner lagging a fast sim sees data older than its command)",
            ),
            max_parts_in_flight=d(
                "max_parts_in_flight",
                0,
                "parts in flight at most (0: the cell file's cell.max_parts_in_flight, else the "
                "fixtures' total capacity; 1: one part at a time)",
            ),
        )
        if self.params.max_parts_in_flight < 0:
            raise ValueError(
                f"parameter max_parts_in_flight: expected 0 (the cell file's) or more, got "
                f"{self.params.max_parts_in_flight}"
            )
        if not self.params.cell_file:
            raise ValueError("parameter cell_file: a cell file is required")
        # Checked in a child process: this one never imports pydantic (memory).
        self.cfg: CellConfig
        self.cfg, step_params = load_checked(self.params.cell_file)
        self.clock = RosClock(self)
        self.twin_sync = PlannerSync(self)  # the physics twin's lockstep (cobot_cell.ros.twin_sync)
        self.ports = {
            name: RosCobotPort(self, name, cobot, self.cfg.cobot_namespace(name), self.params)
            for name, cobot in self.cfg.cobots.items()
        }
        self._updating = False
        self._last_status: CellStatus | None = None
        self.state_pub = self.create_publisher(String, "state", STATE_CHANGES)
        self.status_pub = self.create_publisher(DiagnosticStatus, "status", LATCHED)
        self.cycle_pub = self.create_publisher(DiagnosticStatus, "cycle", REPORTS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # fault updates again, transient local: a supervisor that connects later still gets them
        self.faults_pub = self.create_publisher(DiagnosticStatus, "faults", REPORTS)
        self.heartbeat_pub = self.create_publisher(Header, "heartbeat", 10)
        self.boot_id = os.urandom(4).hex()
        journal_path = self.params.journal or f"{self.cfg.cell.name}.journal.db"
        skill_state = SkillState()
        self.controller = CellController(
            self.cfg,
            self.ports,
            make_planner(self.cfg, skill_state, step_params),
            self.clock,
            job=self.params.job or None,
            parts=self.params.parts,
            on_state=self._on_state,
            on_cycle=self._on_cycle,
            on_fault=self._on_fault,
            ready_check=self._ready,
            start_timeout=self.params.start_timeout,
            wall_clock=WallClock(),
            journal=Journal(journal_path),
            recovery=SkillRecovery(self.cfg),
            skill_state=skill_state,
            settle_time=1.0,
            max_backdate=self.params.max_backdate,
            boot_id=self.boot_id,
            zones=CellZones(self.cfg) if self.cfg.zones else None,
            max_parts_in_flight=self.params.max_parts_in_flight or None,
            pallets=pallet_places(self.cfg),
        )
        self._bounds: dict[str, float] = {}
        self._step_params = step_params
        self._set_bound()
        self._announce_boot()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for cmd in COMMANDS:
            self.create_service(Trigger, cmd, partial(self._handle_command, cmd))
        self.create_service(Trigger, "acknowledge", self._handle_acknowledge)
        self.create_service(Trigger, "reapproach", self._handle_reapproach)
        self.create_service(Trigger, "parts_removed", self._handle_parts_removed)
        self.create_service(Trigger, "pallet_changed", self._handle_pallet_changed)
        # command authority: every command, local or remote, passes through it (see docs/opcua.md)
        self.authority = NodeAuthority(
            self,
            self.cfg.cell.name,
            {
                **{cmd: partial(self._command, cmd) for cmd in COMMANDS},
                "acknowledge": self._acknowledge,
                "reapproach": self.controller.reapproach,
                "parts_removed": self.controller.parts_removed,
                "pallet_changed": self.controller.pallet_changed,
            },
        )
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        for station, topic in self.cfg.infeed_sensors.items():  # part-present sensors, relative to the cell
            self.create_subscription(Bool, topic, lambda msg, s=station: self._on_infeed(s, msg), LATCHED)
        self.create_timer(0.1, self._watch_drivers, clock=RosClockType(clock_type=ClockType.STEADY_TIME))
        # Wall-clock tick: dwell ends and acting states are checked at a steady rate whatever the sim rate
        # (event times stay exact; this only bounds how late they are noticed).
        self.create_timer(self.params.tick, self._on_tick, clock=RosClockType(clock_type=ClockType.STEADY_TIME))
        # Wall-clock heartbeat whatever the sim rate: a driver drops its process tools when it stops.
        self.create_timer(HEARTBEAT_PERIOD, self._beat, clock=RosClockType(clock_type=ClockType.STEADY_TIME))
        self._publish_state()
        self.get_logger().info(
            f"cell '{self.cfg.cell.name}' loaded: job '{self.controller.job}', "
            f"{self.controller.parts_target} part(s), cobots {', '.join(self.ports)}"
        )

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _beat(self) -> None:
        self.heartbeat_pub.publish(Header(frame_id=self.boot_id))

    def _announce_boot(self) -> None:
        """Tell the supervisor this planner started: faults a previous, dead incarnation left open are closed
        at the last moment the journal saw it alive."""
        c = self.controller
        pairs = [
            ("cell", self.cfg.cell.name),
            ("boot", self.boot_id),
            ("previous_boot", c.previous_boot or ""),
            ("last_alive", "" if c.last_alive is None else repr(c.last_alive)),
        ]
        self.faults_pub.publish(
            status_msg(
                f"{self.cfg.cell.name}/task_planner/boot",
                DiagnosticStatus.OK,
                "planner started",
                pairs,
                hardware_id=self.cfg.cell.name,
            )
        )

    # ------------------------------------------------------------------ callbacks
    def _ready(self) -> str | None:
        for port in self.ports.values():
            problem = port.ready()
            if problem:
                return problem
        return None

    def due(self, stamp: float) -> bool:
        """Something of the job (a dwell ending) is due at driver stamp `stamp`: worth an update at once."""
        t = self.controller.next_event()
        return t is not None and stamp >= t - 1e-9

    def on_cobot_event(self) -> None:
        """Joint states or an IO reply arrived: let the controller react at once."""
        self._update()

    def _on_tick(self) -> None:
        self._update()
        if self.controller.status() != self._last_status:
            self._publish_status()

    def _on_infeed(self, station: str, msg: Bool) -> None:
        self.controller.infeed_sensed(station, bool(msg.data))
        self._on_tick()

    def _update(self) -> None:
        if self._updating:
            return
        self._updating = True
        try:
            self.controller.update()
        finally:
            self._updating = False
        self.twin_sync.publish(self.clock.data_time, self.controller.next_event())

    def _handle_command(self, cmd: str, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.authority.reply(resp, Source.LOCAL, "", cmd, lambda: self._command(cmd))

    def _command(self, cmd: str) -> str:
        self.controller.command(cmd)  # CommandRefused (a ValueError) refuses with its reason
        return f"{cmd}: state {self.controller.state.value}"

    def _handle_acknowledge(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.authority.reply(resp, Source.LOCAL, "", "acknowledge", self._acknowledge)

    def _acknowledge(self) -> str:
        done = self.controller.acknowledge()
        self._publish_status()
        return "acknowledged " + ", ".join(f"fault {f.id} ({f.code.value})" for f in done)

    def _handle_reapproach(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.authority.reply(resp, Source.LOCAL, "", "reapproach", self.controller.reapproach)

    def _handle_parts_removed(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.authority.reply(resp, Source.LOCAL, "", "parts_removed", self.controller.parts_removed)

    def _handle_pallet_changed(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.authority.reply(resp, Source.LOCAL, "", "pallet_changed", self.controller.pallet_changed)

    def _set_bound(self) -> None:
        """The selected job's takt lower bound, from the steady-state estimate (computed once per job)."""
        job = self.controller.job
        if job not in self._bounds:
            try:
                est = estimate_steady_state(
                    self.cfg, job, max_parts_in_flight=self.controller.max_parts_in_flight, params=self._step_params
                )
            except Exception as exc:  # noqa: BLE001 - the cell runs without it; OEE then has no ideal cycle
                self.get_logger().warning(f"job '{job}': no takt bound ({exc})")
                return
            self._bounds[job] = est.bound
            self.get_logger().info(
                f"job '{job}': takt bound {est.bound:.2f} s ({est.bottleneck}), estimated takt "
                f"{est.takt:.2f} s with up to {est.max_parts_in_flight} part(s) in flight"
            )
        self.controller.bound = self._bounds[job]

    def _cobot_of(self, status_name: str) -> str | None:
        for name, port in self.ports.items():
            if status_name.startswith(port.namespace.rstrip("/") + "/"):
                return name
        return None

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            cobot = self._cobot_of(st.name)
            if cobot is None:
                continue
            port = self.ports[cobot]
            if level_name(st.level) == "ERROR":
                if port.health is None:
                    kv = dict(key_values(st))
                    code = DRIVER_FAULT_KEYS.get(kv.get("fault", ""), Code.DRIVER_ERROR)
                    port.health = (code.value, st.message)
                    self.controller.raise_fault(code, f"driver reports {st.message}", cobot=cobot)
            elif port.health is not None:
                port.health = None
                self.get_logger().info(f"driver of '{cobot}' reports {st.message} again")
        self._update()

    def _watch_drivers(self) -> None:
        running = self.controller.state in (
            State.EXECUTE,
            State.HOLDING,
            State.UNHOLDING,
            State.SUSPENDING,
            State.UNSUSPENDING,
            State.COMPLETING,
        )
        for name, port in self.ports.items():
            if running and port.joint_positions() is not None and port.stale and not port.stale_reported:
                port.stale_reported = True
                self.controller.raise_fault(
                    Code.STALE_JOINT_STATES,
                    f"no joint states from '{name}' for {time.monotonic() - port.last_rx:.1f} s",
                    cobot=name,
                )
        self._update()

    def _on_set_parameters(self, params: list[Parameter[Any]]) -> SetParametersResult:
        try:
            for p in params:
                if p.name == "job":
                    self.controller.check_job(p.value)
                elif p.name == "parts":
                    self.controller.check_parts(p.value)
                elif p.name not in PRODUCT_PARAMETERS:
                    # every other parameter (use_sim_time too) is read once in __init__: a new value would change
                    # nothing, so refuse it rather than report a success
                    raise ValueError(f"parameter {p.name} is read at start only: restart the planner to change it")
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        refusal = self.authority.on_parameters(params)
        if refusal is not None:
            return SetParametersResult(successful=False, reason=refusal)
        for p in params:
            if p.name == "job":
                self.controller.set_job(p.value)
                self._set_bound()
            elif p.name == "parts":
                self.controller.set_parts(p.value)
        self._publish_status()
        return SetParametersResult(successful=True)

    def _on_state(self, old: State, new: State, trigger: str) -> None:
        self._publish_state()

    def _on_cycle(self, report: CycleReport) -> None:
        self.cycle_pub.publish(
            status_msg(
                f"{self.cfg.cell.name}/cycle",
                DiagnosticStatus.OK,
                f"part {report.part} {report.status} in {report.cycle_time:.3f} s",
                encode_cycle(report),
                hardware_id=self.cfg.cell.name,
            )
        )
        self._publish_status()

    def _on_fault(self, fault: Fault) -> None:
        update = FaultUpdate.of(fault, self.cfg.cell.name, f"{self.boot_id}-{fault.id}")
        status = status_msg(
            f"{self.cfg.cell.name}/task_planner/faults",
            level_of(update.level),
            fault.message,
            encode_fault(update),
            hardware_id=self.cfg.cell.name,
        )
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)
        self.faults_pub.publish(status)
        if hasattr(self, "controller"):
            self._publish_status()

    def _publish_state(self) -> None:
        self.state_pub.publish(String(data=self.controller.state.value))
        self._publish_status()

    def _publish_status(self) -> None:
        s = self.controller.status()
        self._last_status = s
        level = DiagnosticStatus.ERROR if s.fault else DiagnosticStatus.OK
        self.status_pub.publish(
            status_msg(
                f"{self.cfg.cell.name}/status", level, s.state.value, encode_status(s), hardware_id=self.cfg.cell.name
            )
        )


def main(args: Sequence[str] | None = None) -> int:
    """Run the task_planner node."""
    return run_node(PlannerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
