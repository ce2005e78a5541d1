"""The physics backend of sim_cobot (`backend: mujoco`): one node serves every cobot of a cell from one twin.

Per cobot, the same interface as the kinematic sim: `<ns>/<controller>/joint_trajectory` in, `<ns>/joint_states`
(positions and velocities read from the physics) out at `state_rate` Hz of simulated time, tool IO services
`<ns>/<io>` with their sensed state on `<ns>/<io>/state`, health on `/diagnostics` as `<ns>/sim_cobot`.
The node owns `/clock` (or follows it) as the kinematic sim does; the physics advances with simulated time.

A collision stops the cobots involved as a protective stop does (trajectories ignored, IO refused) and reports
`fault: collision` with `fault_code: COLLISION` and both bodies at level ERROR, until the `fault` parameter is
set (to '' to clear every fault, or to inject one as `FAULT` for every cobot or `COBOT:FAULT` for one).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, Header, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from ..core.faults import Code
from .common import LATCHED, STATE_CHANGES, STATES, status_msg
from .sim_cobot_node import FAULTS, MAX_CATCH_UP, _time_msg, read_clock_file
from .twin_sync import SYNC_TOPIC, Sync

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.parameter import Parameter

TWIN_FAULTS = FAULTS  # the faults the kinematic sim can be told to have, injected per cobot here
STOPPING = ("protective_stop", "estop", "collision")
LOCKSTEP_SILENCE = 1.0  # wall seconds without a sync from the planner before simulated time stops holding for it
HOLD_WALL = 5.0  # wall seconds simulated time holds for an answer before it goes on at the planner's pace
MAX_LAG = 1.0  # wall seconds of simulated time a free run may catch up (the planner's turns, a slow tick)


def parse_trajectory(
    msg: JointTrajectory, index: dict[str, int], q: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | str:
    """(times, positions, velocities) of a trajectory over all of a cobot's joints, or why it is rejected."""
    unknown = [j for j in msg.joint_names if j not in index]
    if unknown or len(set(msg.joint_names)) != len(msg.joint_names):
        return f"unknown or repeated joints {unknown or list(msg.joint_names)}"
    times = np.array([pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.points])
    if np.any(np.diff(times) <= 0) or times[0] < 0:
        return "time_from_start must increase strictly"
    cols = [index[j] for j in msg.joint_names]
    pos = np.repeat(q[None, :], len(times), axis=0)
    have_vel = all(len(pt.velocities) == len(cols) for pt in msg.points)
    vel = np.zeros_like(pos) if have_vel else None
    for i, pt in enumerate(msg.points):
        if len(pt.positions) != len(cols):
            return f"point {i} has {len(pt.positions)} positions, expected {len(cols)}"
        pos[i, cols] = pt.positions
        if vel is not None:
            vel[i, cols] = pt.velocities
    return times, pos, vel


class TwinDriver:
    """Attaches the physics backend to a sim_cobot node: parameters, topics, services and the physics clock."""

    def __init__(self, node: Node) -> None:
        from ..skills import load_cell
        from ..twin.model import build
        from ..twin.physics import Twin
        from .bringup import heartbeat_topic

        self.node = node

        def d(name: str, default: Any, description: str) -> Any:
            return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        cell_file = d("cell_file", "", "cell file (YAML) of the whole cell the twin simulates")
        self.publish_clock = bool(d("publish_clock", False, "own /clock and run simulated time"))
        self.rate = float(d("rate", 1.0, "simulated seconds per wall second when publishing /clock"))
        self.clock_hz = float(d("clock_hz", 100.0, "/clock ticks per wall second when publishing /clock"))
        clock_file = d("clock_file", "", "file keeping the last /clock time (a restarted owner goes on from it)")
        self.state_rate = float(d("state_rate", 100.0, "joint_states rate (Hz of simulated time)"))
        hb = d("heartbeat_topic", "", "the planner's heartbeat (std_msgs/Header); '' = the cell's")
        self.hb_timeout = float(
            d("heartbeat_timeout", 0.5, "wall seconds without a heartbeat before process IO is dropped")
        )
        self.feed = bool(d("feed", True, "infeed stations present a new part whenever they are empty"))
        self.wait_wall = float(
            d(
                "wait_wall",
                0.2,
                "after a cobot's move ends or an output switches, simulated time advances one joint-state sample "
                "per turn_step until its next command, for at most this many wall seconds",
            )
        )
        self.turn_step = float(
            d("turn_step", 0.002, "wall seconds per joint-state sample while the planner has its turn")
        )
        run_state_rate = float(
            d(
                "run_state_rate",
                10.0,
                "joint_states rate (Hz of simulated time) of a free run between the planner's turns "
                "(owning /clock; at most state_rate)",
            )
        )
        if not cell_file:
            raise ValueError("parameter cell_file: the mujoco backend needs the cell file")
        if min(self.rate, self.clock_hz, self.state_rate, self.hb_timeout, self.turn_step) <= 0:
            raise ValueError("parameters rate, clock_hz, state_rate, heartbeat_timeout and turn_step must be > 0")
        if not 0 < run_state_rate <= self.state_rate:
            raise ValueError("parameter run_state_rate must be > 0 and at most state_rate")
        self.run_every = max(1, round(self.state_rate / run_state_rate))
        if self.wait_wall < 0:
            raise ValueError("parameter wait_wall must be >= 0")
        if self.publish_clock and node.get_parameter("use_sim_time").value:
            raise ValueError("parameter publish_clock: the /clock owner cannot also use_sim_time")
        self.cfg = load_cell(cell_file)  # a CellFileError is a ValueError: exit 2 with the reason
        self.twin = Twin(build(self.cfg, cell_file), feed=self.feed)  # TwinError: ValueError, before anything moves
        self.heartbeat_topic = hb or heartbeat_topic(self.cfg)
        self.faults: dict[str, str] = {name: "" for name in self.cfg.cobots}
        self.collision: dict[str, str] = {}
        self.dropped: dict[str, str] = {}
        self.rejected = {name: 0 for name in self.cfg.cobots}
        self.waiting: dict[str, tuple[float, float]] = {}
        """cobot -> (wall deadline, simulated time it began): the planner's turn, until its next command."""
        self.wall_in = {"physics": 0.0, "planner's turn": 0.0}
        self._hb_wall = -math.inf
        self._sim0 = self._t = 0.0
        self._wall0: float | None = None
        self._next_sample: float | None = None
        self._clock_wall = -math.inf
        self.sync: Sync | None = None
        """The planner's latest lockstep message (cobot_cell.ros.twin_sync), while it sends them."""
        self._sync_wall = -math.inf
        self.commands_in = 0
        """Commands (trajectories, IO calls) received; against the planner's count, rebased when it restarts."""
        self.replies_out = 0
        self.hold_at: float | None = None
        """Simulated time held for the planner to answer (lockstep), None in a free run."""
        self._hold_until = 0.0
        self._hold_seen = -math.inf
        self._hold_commands: int | None = None
        self._clock_fd: int | None = None
        if self.publish_clock and clock_file:
            self._t = self._sim0 = read_clock_file(clock_file)
            self._clock_fd = os.open(clock_file, os.O_WRONLY | os.O_CREAT, 0o644)
        self.twin.t = self._t
        for ref in self.twin.refs.values():
            ref.t0 = self._t

        self.ns = {name: self.cfg.cobot_namespace(name).rstrip("/") for name in self.cfg.cobots}
        self.index = {name: {j: i for i, j in enumerate(c.joints)} for name, c in self.cfg.cobots.items()}
        self.process = {(name, t.io) for name, c in self.cfg.cobots.items() for t in c.tools.values() if t.is_process}
        self.js_pub = {
            name: node.create_publisher(JointState, f"{self.ns[name]}/joint_states", STATES) for name in self.cfg.cobots
        }
        self.io_pub = {}
        for name, cobot in self.cfg.cobots.items():
            node.create_subscription(
                JointTrajectory,
                f"{self.ns[name]}/{cobot.controller}/joint_trajectory",
                lambda msg, name=name: self._on_trajectory(name, msg),
                10,
            )
            for tool in cobot.tools.values():
                pub = node.create_publisher(Bool, f"{self.ns[name]}/{tool.io}/state", LATCHED)
                pub.publish(Bool(data=False))
                self.io_pub[(name, tool.io)] = pub
                node.create_service(
                    SetBool,
                    f"{self.ns[name]}/{tool.io}",
                    self._io_service(name, tool.io),
                )
        self.diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.publish_clock:
            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
            node.create_timer(1.0 / self.clock_hz, self._on_tick)
            self._turn_timer = node.create_timer(self.turn_step, self._on_turn_step)
            self._turn_timer.cancel()
            node.create_subscription(Float64MultiArray, f"/{self.cfg.cell.name}/{SYNC_TOPIC}", self._on_sync, 50)
        else:
            node.create_subscription(Clock, "/clock", self._on_clock, 10)
        node.create_subscription(Header, self.heartbeat_topic, self._on_heartbeat, 10)
        # a state change (Starting, Execute, ...) is the planner's turn too: it plans the next steps
        node.create_subscription(String, f"/{self.cfg.cell.name}/state", self._on_cell_state, STATE_CHANGES)
        import rclpy

        node.create_timer(
            min(0.05, self.hb_timeout / 4),
            self._watch_heartbeat,
            clock=rclpy.clock.Clock(clock_type=rclpy.clock.ClockType.STEADY_TIME),
        )
        node.declare_parameter(
            "fault",
            "",
            ParameterDescriptor(
                description="inject a fault, FAULT (every cobot) or COBOT:FAULT: "
                + ", ".join(f"'{k}' ({v})" for k, v in TWIN_FAULTS.items())
                + "; '' clears every fault "
                "and collision stop"
            ),
        )
        node.add_on_set_parameters_callback(self._on_set_parameters)
        node.create_timer(1.0, self._publish_health)
        m = self.twin.m
        node.get_logger().info(
            f"sim twin (mujoco) up: cell '{self.cfg.cell.name}', {len(self.cfg.cobots)} cobots, {m.nbody} bodies, "
            f"{len(self.twin.tm.parts)} part bodies"
            + (f", owning /clock at {self.rate:g}x" if self.publish_clock else "")
        )

    # ------------------------------------------------------------------------------------------ time
    def _on_tick(self) -> None:
        """Free run: simulated time follows rate x wall time, catching up what the planner's turns cost."""
        if self.waiting or self.hold_at is not None:
            return
        now = time.monotonic()
        if self._wall0 is None:
            self._wall0 = now
        target = self._sim0 + self.rate * (now - self._wall0)
        if target - self._t > self.rate * MAX_LAG:  # the host stalled (or physics is slower): slow down
            self._sim0 = self._t + self.rate * MAX_LAG - self.rate * (now - self._wall0)
            target = self._t + self.rate * MAX_LAG
        target = min(target, self._t + MAX_CATCH_UP * self.rate / self.clock_hz)
        if target <= self._t:
            return
        self._advance_to(target, self._due_sample())
        self._publish_clock()
        self.wall_in["physics"] += time.monotonic() - now

    @property
    def lockstep(self) -> bool:
        """The planner sends its syncs: simulated time is held at each of its turns until it has answered."""
        return time.monotonic() - self._sync_wall < LOCKSTEP_SILENCE

    def _due_sample(self) -> float | None:
        """The first sample time at or after the planner's next action by itself (a dwell ending), in lockstep."""
        if self.sync is None or self.sync.next_due is None or not self.lockstep:
            return None
        period = 1.0 / self.state_rate
        return max(math.ceil(self.sync.next_due / period - 1e-9), math.floor(self._t / period + 1e-9) + 1) * period

    def _hold(self, seen: float, first_command: bool = False) -> None:
        """Hold simulated time until the planner has processed driver stamp `seen` and answered (lockstep), or
        with `first_command` until its next command arrives; for at most HOLD_WALL."""
        self.hold_at = self._t
        self._hold_seen = seen
        self._hold_commands = self.commands_in if first_command else None
        self._hold_until = time.monotonic() + HOLD_WALL
        if self._turn_timer.is_canceled():
            self._turn_timer.reset()

    def _answered(self) -> bool:
        """The planner has processed the held time and every IO reply, and its commands have all arrived (for the
        job starting: its first command has)."""
        s = self.sync
        if self._hold_commands is not None:
            return self.commands_in > self._hold_commands
        return (
            s is not None
            and s.processed >= self._hold_seen - 1e-9
            and s.replies >= self.replies_out
            and self.commands_in >= s.commands
        )

    def _on_sync(self, msg: Float64MultiArray) -> None:
        sync = Sync.from_msg(msg)
        if sync is None:
            return
        if self.sync is not None and (sync.commands < self.sync.commands or sync.replies < self.sync.replies):
            self.commands_in, self.replies_out = sync.commands, sync.replies  # a restarted planner counts afresh
        self.sync, self._sync_wall = sync, time.monotonic()
        self._release_if_answered()

    def _release_if_answered(self) -> None:
        """End a hold the planner has answered and run on."""
        if self.hold_at is not None and self._answered():
            self.hold_at = None
            self.waiting.clear()
            self._on_tick()

    def _on_turn_step(self) -> None:
        """The planner's turn: held in lockstep, else one joint-state sample per turn_step until it has answered
        (or wait_wall)."""
        now = time.monotonic()
        if self.hold_at is not None:
            if self._answered():
                self._turn_timer.cancel()
                self._release_if_answered()
                return
            if now < self._hold_until:
                return
            self.hold_at = None  # no answer: paced as without lockstep
        self.waiting = {c: w for c, w in self.waiting.items() if w[0] > now}
        if not self.waiting:
            self._turn_timer.cancel()
            return
        self._advance_to(self._t + 1.0 / self.state_rate)
        if now - self._clock_wall >= 1.0 / self.clock_hz:  # the planner times its turn on joint-state stamps
            self._publish_clock()
        self.wall_in["planner's turn"] += time.monotonic() - now

    def _wait_for_planner(self, cobots: Iterable[str], since: float, seen: float | None = None) -> None:
        """Cobots whose next command is the planner's to give: simulated time holds until the planner has seen
        driver stamp `seen` and answered (lockstep), else slows to its pace."""
        deadline = time.monotonic() + self.wait_wall
        self.waiting.update({n: (deadline, since) for n in cobots})
        if seen is not None and self.lockstep:
            self._hold(seen)
        elif self.waiting and self._turn_timer.is_canceled():
            self._turn_timer.reset()

    def _publish_clock(self) -> None:
        self._clock_wall = time.monotonic()
        if self._clock_fd is not None:  # on file before anyone sees it: a restart never repeats a time
            os.pwrite(self._clock_fd, f"{self._t:24.9f}\n".encode(), 0)
        self.clock_pub.publish(Clock(clock=_time_msg(self._t)))

    def _on_clock(self, msg: Clock) -> None:
        self._advance_to(msg.clock.sec + msg.clock.nanosec * 1e-9)

    def _advance_to(self, t: float, due: float | None = None) -> None:
        """Run the physics to t, publishing joint states at sample times on the way; stop at a move's end or at
        the sample `due` (the planner's turn)."""
        period = 1.0 / self.state_rate
        if self._next_sample is None:
            self._next_sample = math.ceil(self.twin.t / period - 1e-9) * period
        while self._next_sample <= t + 1e-9:
            moving = [n for n in self.cfg.cobots if self.twin.moving(n)]
            self.twin.step_to(self._next_sample)
            self._events()
            reached = self._next_sample
            index = round(reached / period)
            self._next_sample = (index + 1) * period
            ended = [n for n in moving if not self.twin.moving(n)]
            # every run_every-th sample of every cobot; each sample of the cobots whose turn it is (it ends a move)
            if not self.publish_clock or index % self.run_every == 0:
                self._publish_states(reached, self.cfg.cobots)
            elif ended or self.waiting:
                self._publish_states(reached, [*ended, *self.waiting])
            if ended and self.publish_clock:  # the planner's turn: stop here until it has answered
                self._t = reached
                self._wait_for_planner(ended, reached, seen=reached)
                return
            if due is not None and reached >= due - 1e-9:  # a dwell ends: the planner acts here
                if index % self.run_every != 0:
                    self._publish_states(reached, self.cfg.cobots)
                self._t = reached
                self._hold(reached)
                return
        self.twin.step_to(t)
        self._events()
        self._t = t

    def _publish_states(self, t: float, cobots: Iterable[str]) -> None:
        stamp = _time_msg(t)
        for name in dict.fromkeys(cobots):
            cobot = self.cfg.cobots[name]
            if self.faults[name] == "stale":
                continue
            msg = JointState(
                name=list(cobot.joints),
                position=self.twin.joint_positions(name).tolist(),
                velocity=self.twin.joint_velocities(name).tolist(),
            )
            msg.header.stamp = stamp
            self.js_pub[name].publish(msg)

    def _events(self) -> None:
        ev = self.twin.events()
        for hit in ev.collisions:
            for cobot in hit.cobots:
                self.collision[cobot] = hit.message
                self._drop_process(cobot, "collision")
            self.node.get_logger().error(hit.message)
        for drop in ev.dropped:
            text = f"part dropped by {drop.cobot}: at rest on the floor at {np.round(drop.position, 3).tolist()}"
            self.node.get_logger().warning(text)
            self.dropped[drop.cobot] = text
        if ev.collisions or ev.dropped:
            self._publish_health()

    # ------------------------------------------------------------------------------------------ commands
    def _stopped(self, cobot: str) -> str:
        """Why a cobot refuses motion and IO ('' when it does not)."""
        if cobot in self.collision:
            return "collision"
        return self.faults[cobot] if self.faults[cobot] in STOPPING else ""

    def _on_trajectory(self, cobot: str, msg: JointTrajectory) -> None:
        self.commands_in += 1
        why = self._stopped(cobot)
        if why:
            self.node.get_logger().error(f"{cobot}: trajectory ignored: {why}")
            return
        if not msg.points:
            self.twin.stop(cobot)
            return
        parsed = parse_trajectory(msg, self.index[cobot], self.twin.joint_positions(cobot))
        if isinstance(parsed, str):
            self.rejected[cobot] += 1
            self.node.get_logger().error(f"{cobot}: trajectory rejected: {parsed}")
            return
        times, pos, vel = parsed
        self._planner_answered(cobot)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.twin.follow(cobot, times, pos, vel, start=stamp if stamp > 0 else self.twin.t)
        self._release_if_answered()

    def _handle_io(self, cobot: str, io: str, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self.commands_in += 1
        self.replies_out += 1
        why = self._stopped(cobot) or (self.faults[cobot] if self.faults[cobot] == "io_fail" else "")
        if why:
            resp.success, resp.message = False, f"{io}: {TWIN_FAULTS.get(why, why)}"
            return resp
        if req.data and (cobot, io) in self.process and not self._planner_alive:
            resp.success, resp.message = False, f"{io}: no heartbeat from the planner"
            return resp
        if self.faults[cobot] == "grip_miss" and req.data:
            self.twin.io[(cobot, io)] = True
            self.io_pub[(cobot, io)].publish(Bool(data=False))
            resp.success, resp.message = True, f"{io} on"
            return resp
        result = self.twin.set_io(cobot, io, bool(req.data))
        if self.publish_clock:
            self._planner_answered(cobot)
            self._wait_for_planner([cobot], self.twin.t, seen=-math.inf)  # its reply, counted, is what it sees

        sensed = self.twin.sensed(cobot, io)
        self.io_pub[(cobot, io)].publish(Bool(data=sensed))
        if result is not None and req.data and not result.held:
            self.node.get_logger().warning(f"{cobot}: {io} closed on nothing: {result.reason}")
        resp.success = True
        resp.message = f"{io} {'on' if req.data else 'off'}" + (
            f" ({result.reason})" if result is not None and req.data and not result.held else ""
        )
        return resp

    def _io_service(self, cobot: str, io: str) -> Callable[[SetBool.Request, SetBool.Response], SetBool.Response]:
        return lambda req, resp: self._handle_io(cobot, io, req, resp)

    def _planner_answered(self, cobot: str) -> None:
        """A command for `cobot` came: its turn is over."""
        self.waiting.pop(cobot, None)

    def _on_cell_state(self, msg: String) -> None:
        if not self.publish_clock:
            return
        if msg.data == "Execute" and self.lockstep and not any(self.twin.moving(n) for n in self.cfg.cobots):
            self._hold(-math.inf, first_command=True)  # the job starts (or resumes) with its first command
        else:
            self._wait_for_planner(self.cfg.cobots, self.twin.t)

    def _on_heartbeat(self, msg: Header) -> None:
        self._hb_wall = time.monotonic()

    @property
    def _planner_alive(self) -> bool:
        return time.monotonic() - self._hb_wall < self.hb_timeout

    def _watch_heartbeat(self) -> None:
        if not self._planner_alive:
            for name in self.cfg.cobots:
                self._drop_process(name, "planner heartbeat lost")

    def _drop_process(self, cobot: str, why: str) -> None:
        lit = [io for (c, io) in sorted(self.process) if c == cobot and self.twin.io.get((c, io))]
        if not lit:
            return
        self.twin.stop(cobot)
        for io in lit:
            self.twin.set_io(cobot, io, False)
            self.io_pub[(cobot, io)].publish(Bool(data=False))
        self.node.get_logger().warning(f"{cobot}: {why}: {', '.join(lit)} switched off, motion stopped")

    def _on_set_parameters(self, params: list[Parameter[Any]]) -> SetParametersResult:
        for p in params:
            if p.name != "fault":
                continue
            value = str(p.value)
            cobot, _, fault = value.rpartition(":")
            targets = [cobot] if cobot else list(self.cfg.cobots)
            if cobot and cobot not in self.cfg.cobots:
                return SetParametersResult(
                    successful=False, reason=(f"unknown cobot {cobot!r}: expected one of {', '.join(self.cfg.cobots)}")
                )
            if fault not in TWIN_FAULTS:
                return SetParametersResult(
                    successful=False,
                    reason=(f"unknown fault {fault!r}: expected one of {', '.join(repr(k) for k in TWIN_FAULTS)}"),
                )
            for name in targets:
                self.faults[name] = fault
                if fault in STOPPING:
                    self._drop_process(name, TWIN_FAULTS[fault])
                    self.twin.stop(name)
                if not fault:
                    self.collision.pop(name, None)
                    self.dropped.pop(name, None)
                    self.twin.clear(name)
            self.node.get_logger().warning(
                f"fault injected on {', '.join(targets)}: {TWIN_FAULTS[fault]}"
                if fault
                else f"faults cleared on {', '.join(targets)}"
            )
            self._publish_health()
        return SetParametersResult(successful=True)

    def _publish_health(self) -> None:
        statuses = []
        for name in self.cfg.cobots:
            fault = self.faults[name]
            if fault == "stale":
                continue
            pairs = [
                ("moving", str(self.twin.moving(name)).lower()),
                ("rejected_trajectories", str(self.rejected[name])),
                ("backend", "mujoco"),
            ]
            pairs += [
                (f"wall_s.{k.replace(' ', '_').replace(chr(39), '')}", f"{v:.2f}") for k, v in self.wall_in.items()
            ]
            message = TWIN_FAULTS[fault]
            level = (
                DiagnosticStatus.ERROR
                if fault in ("protective_stop", "estop")
                else DiagnosticStatus.WARN
                if fault
                else DiagnosticStatus.OK
            )
            if name in self.collision:
                hit = self.collision[name]
                pairs += [("fault", "collision"), ("fault_code", Code.COLLISION.value), ("collision", hit)]
                message, level = hit, DiagnosticStatus.ERROR
            else:
                pairs.append(("fault", fault))
            held = [p for (c, _io), p in self.twin.held.items() if c == name]
            for (c, io), on in sorted(self.twin.io.items()):
                if c == name:
                    pairs.append((f"io.{io}", str(on).lower()))
            tools = self.cfg.cobots[name].tools.values()
            tool_mass = sum(float(t.mass or 0.0) for t in tools if t.kind == "gripper")
            pairs.append(("payload_kg", f"{tool_mass + len(held) * self.twin.tm.part_mass:.3f}"))
            if name in self.dropped:
                pairs.append(("part_dropped", self.dropped[name]))
                if level == DiagnosticStatus.OK:
                    level, message = DiagnosticStatus.WARN, self.dropped[name]
            status_name = f"{self.ns[name]}/sim_cobot"
            statuses.append(status_msg(status_name, level, message, pairs, hardware_id=status_name))
        if statuses:
            arr = DiagnosticArray(status=statuses)
            arr.header.stamp = _time_msg(self.twin.t)
            self.diag_pub.publish(arr)
