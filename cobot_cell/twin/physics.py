"""The twin's physics loop: joint servos following trajectories, grips, parts and collision detection.

Each physics step (TIMESTEP) every joint's servo gets its reference from the trajectory being followed: the
position and velocity go into the actuator (kp (q_ref - q) + kv (v_ref - v)), the arm's Coriolis and gravity
forces and its inertia times the reference acceleration are added as feed-forward, as a ros2_control arm
controller with a dynamics model does. Joint states are read back from the physics.

A gripper that closes looks for a part at its TCP: the TCP inside the part's box (a tolerance around it) means the
part is held (a weld constraint between tool0 and the part, as a vacuum cup or closed fingers hold it: fingers are
not modelled); nothing there is a missed grip, sensed as no part. Opening the gripper releases the part, which the
physics puts down: where it was placed (on a station or the stack), or dropped.

Contacts between bodies of different owners (two cobots, a cobot and a station, the floor or a free part, a
carried part and anything but its gripper) deeper than a tolerance are collisions: the cobots involved stop as
on a protective stop and the collision is reported with both bodies named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .model import TIMESTEP, TwinModel, contacts, home_state

log = logging.getLogger(__name__)

GRIP_TOLERANCE = 0.01
"""How far (m) outside a part's box the TCP may be and still take it."""
CARRIED_TOLERANCE = 0.005
"""Penetration (m) of a carried part into a station or another part that counts as a collision (a part set down
presses into its support a little)."""
ARM_TOLERANCE = 0.0005
"""Penetration (m) of a cobot link or tool into anything that counts as a collision."""
DROP_SPEED = 0.05
"""A released part moving slower than this (m/s) has come to rest."""
CONTROL_STEPS = 2
"""Physics steps per servo update: 250 Hz, as a ros2_control update loop; contacts are checked as often."""
SETTLE_TIME = 0.2
"""A released part is at rest once it has moved slower than DROP_SPEED for this long (s)."""


class Reference:
    """Time-parametrised joint reference (cubic Hermite through the knots): position, velocity, acceleration."""

    def __init__(self, q: np.ndarray):
        self.hold = np.asarray(q, dtype=float).copy()
        self._zero = np.zeros_like(self.hold)
        self.t0 = 0.0
        self.times: np.ndarray | None = None
        self.pos: np.ndarray | None = None
        self.vel: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """A trajectory is being followed."""
        return self.times is not None

    @property
    def end_time(self) -> float:
        """Clock time the trajectory ends (the hold: now)."""
        return self.t0 + float(self.times[-1]) if self.times is not None else 0.0

    def follow(self, t0: float, times: np.ndarray, pos: np.ndarray, vel: np.ndarray | None, q_now: np.ndarray) -> None:
        """Follow knots (times from t0); a first knot after 0 starts from q_now; no velocities: zero at knots."""
        times = np.asarray(times, dtype=float)
        pos = np.asarray(pos, dtype=float)
        vel = np.zeros_like(pos) if vel is None else np.asarray(vel, dtype=float)
        if times[0] > 0.0:
            times = np.concatenate([[0.0], times])
            pos = np.vstack([q_now, pos])
            vel = np.vstack([np.zeros_like(q_now), vel])
        self.t0, self.times, self.pos, self.vel = t0, times, pos, vel
        self.hold = pos[-1].copy()

    def stop_at(self, q: np.ndarray) -> None:
        """Hold q from now on."""
        self.times = self.pos = self.vel = None
        self.hold = np.asarray(q, dtype=float).copy()

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity and acceleration at clock time t."""
        zero = self._zero
        if self.times is None:
            return self.hold, zero, zero
        assert self.pos is not None and self.vel is not None
        rel = t - self.t0
        times = self.times
        if rel >= times[-1]:
            self.times = self.pos = self.vel = None
            return self.hold, zero, zero
        if rel <= 0.0:
            return self.pos[0], zero, zero
        k = int(np.searchsorted(times, rel, side="right")) - 1
        h = times[k + 1] - times[k]
        s = (rel - times[k]) / h
        p0, p1, m0, m1 = self.pos[k], self.pos[k + 1], self.vel[k] * h, self.vel[k + 1] * h
        s2, s3 = s * s, s * s * s
        q = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1
        dq = ((6 * s2 - 6 * s) * p0 + (3 * s2 - 4 * s + 1) * m0 + (-6 * s2 + 6 * s) * p1 + (3 * s2 - 2 * s) * m1) / h
        ddq = ((12 * s - 6) * p0 + (6 * s - 4) * m0 + (-12 * s + 6) * p1 + (6 * s - 2) * m1) / (h * h)
        return q, dq, ddq


@dataclass(frozen=True)
class Collision:
    """Two bodies in contact that must not touch, and the cobots stopped for it."""

    time: float
    body1: str
    body2: str
    cobots: tuple[str, ...]
    depth: float

    @property
    def message(self) -> str:
        """One line for the operator."""
        return (
            f"collision: {self.body1} and {self.body2} ({self.depth * 1000:.1f} mm) at t={self.time:.3f} s; "
            f"stopped {', '.join(self.cobots)}"
        )


@dataclass
class GripResult:
    """What closing a gripper found."""

    held: bool
    part: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Drop:
    """A released part that came to rest on the floor, off every station."""

    part: int
    cobot: str
    position: np.ndarray


@dataclass
class TwinEvents:
    """What happened since the last call to `Twin.events()`."""

    collisions: list[Collision] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)


class Twin:
    """A running twin: advance it with `step_to(t)`, command it with `follow`, `stop`, `set_io`."""

    def __init__(self, twin: TwinModel, feed: bool = True, stop_on_collision: bool = True):
        import mujoco

        self.mj = mujoco
        self.tm = twin
        self.m = twin.model
        self.d = mujoco.MjData(self.m)
        home_state(twin, self.d)
        self.t = 0.0
        self.refs = {n: Reference(c.home) for n, c in twin.cobots.items()}
        self.stopped: dict[str, str] = {}
        """cobot -> why it is stopped (a collision): trajectories are refused until cleared."""
        self.io: dict[tuple[str, str], bool] = {(n, io): False for n, c in twin.cobots.items() for io in c.tools}
        self.held: dict[tuple[str, str], int] = {}
        """(cobot, gripper io) -> part index held."""
        self.part_state = ["parked"] * len(twin.parts)
        """Per part: parked, free (on a station, a stack or the floor), held."""
        self.part_age = [0] * len(twin.parts)
        self._spawned = 0
        self.released: dict[int, tuple[str, float]] = {}
        """Parts let go and not yet at rest -> (the cobot that let go, when)."""
        self.feed = feed
        self.stop_on_collision = stop_on_collision
        self.errors: dict[str, list[float]] = {n: [] for n in twin.cobots}
        self.keep_errors = False
        self._touching: set[tuple[int, int]] = set()
        self._events = TwinEvents()
        self._ff = np.zeros(self.m.nv)
        self._acc = np.zeros(self.m.nv)
        self._phase = 0
        """Physics steps since the servos' last update."""
        self._jacp = np.zeros((3, self.m.nv))
        self._arm_dofs = np.concatenate([c.dof for c in twin.cobots.values()])
        self._kv_kp = {
            n: -self.m.actuator_biasprm[c.actuators, 2] / self.m.actuator_gainprm[c.actuators, 0]
            for n, c in twin.cobots.items()
        }
        for i in range(len(twin.parts)):
            self._set_contacts(i, "parked")
        if feed:
            for name, st in twin.cfg.stations.items():
                if st.kind == "infeed":
                    self.spawn_part(name)

    # ------------------------------------------------------------------------------------------ commands
    def joint_positions(self, cobot: str) -> np.ndarray:
        """Measured joint positions of a cobot (from the physics)."""
        return np.array(self.d.qpos[self.tm.cobots[cobot].qpos], dtype=float)

    def joint_velocities(self, cobot: str) -> np.ndarray:
        """Measured joint velocities of a cobot."""
        return np.array(self.d.qvel[self.tm.cobots[cobot].dof], dtype=float)

    def moving(self, cobot: str) -> bool:
        """A trajectory is being followed."""
        return self.refs[cobot].active

    def follow(
        self,
        cobot: str,
        times: np.ndarray,
        positions: np.ndarray,
        velocities: np.ndarray | None = None,
        start: float | None = None,
    ) -> bool:
        """Follow a trajectory from clock time `start` (default now); False if the cobot is stopped."""
        if cobot in self.stopped:
            return False
        self.refs[cobot].follow(
            self.t if start is None else start, times, positions, velocities, self.joint_positions(cobot)
        )
        return True

    def stop(self, cobot: str) -> None:
        """Stop where the arm is (an empty trajectory)."""
        self.refs[cobot].stop_at(self.joint_positions(cobot))

    def clear(self, cobot: str | None = None) -> None:
        """Clear the stop of one cobot (or all): trajectories are accepted again."""
        for name in [cobot] if cobot else list(self.stopped):
            self.stopped.pop(name, None)

    def tcp(self, cobot: str, io: str) -> np.ndarray:
        """A tool's TCP position in the cell frame."""
        return np.array(self.d.site_xpos[self.tm.cobots[cobot].tools[io].site], dtype=float)

    def set_io(self, cobot: str, io: str, on: bool) -> GripResult | None:
        """Switch a tool output; for a gripper, close on (or release) a part. None for other tools."""
        self.io[(cobot, io)] = on
        tool = self.tm.cobots[cobot].tools[io]
        if tool.kind != "gripper":
            return None
        if not on:
            part = self.held.pop((cobot, io), None)
            if part is not None:
                self._release(cobot, io, part)
                if self.feed:
                    self._refeed()
            return GripResult(False, part)
        if (cobot, io) in self.held:
            return GripResult(True, self.held[(cobot, io)])
        part, reason = self._part_at(self.tcp(cobot, io))
        if part is None:
            return GripResult(False, None, reason)
        self._grip(cobot, io, part)
        return GripResult(True, part)

    def sensed(self, cobot: str, io: str) -> bool:
        """A tool's sensed state: for a gripper, a part held; for other tools, the output."""
        if self.tm.cobots[cobot].tools[io].kind == "gripper":
            return (cobot, io) in self.held
        return self.io[(cobot, io)]

    # ------------------------------------------------------------------------------------------ parts
    def spawn_part(self, station: str, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), yaw: float = 0.0) -> int:
        """Put a part on a station's top face (at an offset in its frame); the oldest part is reused when the pool
        is used up (a full pallet taken away)."""
        from ..motion.transforms import pose_matrix

        parked = [i for i, s in enumerate(self.part_state) if s == "parked"]
        if parked:
            i = parked[0]
        else:
            free = [i for i, s in enumerate(self.part_state) if s == "free"]
            if not free:
                raise RuntimeError("every part of the twin is held")
            i = min(free, key=lambda k: self.part_age[k])
        st = self.tm.cfg.stations[station]
        frame = pose_matrix(st.pose.xyz, st.pose.rpy)
        p = frame @ np.array([offset[0], offset[1], offset[2] + self.tm.part_box[2] / 2 + 1e-4, 1.0])
        yaw_total = yaw + float(np.arctan2(frame[1, 0], frame[0, 0]))
        self._place(i, p[:3], yaw_total)
        self.part_state[i] = "free"
        self._spawned += 1
        self.part_age[i] = self._spawned
        self._set_contacts(i, "free")
        return i

    def part_position(self, part: int) -> np.ndarray:
        """A part's centre in the cell frame."""
        return np.array(self.d.xpos[self.tm.parts[part]], dtype=float)

    def _place(self, i: int, xyz: np.ndarray, yaw: float) -> None:
        adr, dof = self.tm.part_qpos[i], self.tm.part_dof[i]
        self.d.qpos[adr : adr + 3] = xyz
        self.d.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.d.qvel[dof : dof + 6] = 0.0
        self.mj.mj_forward(self.m, self.d)

    def _set_contacts(self, i: int, state: str, cobot: str | None = None) -> None:
        from .model import _ALL, _PART

        if state == "free":
            masks = _PART, _ALL
        elif state == "held":
            assert cobot is not None
            masks = 0, _ALL & ~self.tm.cobots[cobot].bit
        else:
            masks = 0, 0
        g, b = self.tm.part_geoms[i], self.tm.parts[i]
        # the broadphase filters by the body's masks (the union of its geoms'), the narrowphase by the geom's
        self.m.geom_contype[g], self.m.geom_conaffinity[g] = masks
        self.m.body_contype[b], self.m.body_conaffinity[b] = masks
        self.m.body_gravcomp[b] = 1.0 if state == "parked" else 0.0

    def _refeed(self) -> None:
        """Every infeed without a part gets one."""
        for name, st in self.tm.cfg.stations.items():
            if st.kind != "infeed":
                continue
            top = np.asarray(st.pose.xyz)
            occupied = any(
                s == "free"
                and np.linalg.norm(self.part_position(i)[:2] - top[:2]) < 0.05
                and abs(self.part_position(i)[2] - top[2] - self.tm.part_box[2] / 2) < 0.02
                for i, s in enumerate(self.part_state)
            )
            if not occupied:
                self.spawn_part(name)

    def _part_at(self, point: np.ndarray) -> tuple[int | None, str]:
        """The free part whose box holds `point` (within GRIP_TOLERANCE), else None and what was nearest."""
        half = np.asarray(self.tm.part_box) / 2
        best, best_gap = None, np.inf
        for i, s in enumerate(self.part_state):
            if s != "free":
                continue
            b = self.tm.parts[i]
            local = self.d.xmat[b].reshape(3, 3).T @ (point - self.d.xpos[b])
            gap = float(np.linalg.norm(np.maximum(np.abs(local) - half, 0.0)))
            if gap < best_gap:
                best, best_gap = i, gap
        if best is not None and best_gap <= GRIP_TOLERANCE:
            return best, ""
        if best is None or best_gap > 0.2:
            return None, "no part at the TCP"
        return None, f"nearest part {best_gap * 1000:.0f} mm from the TCP (tolerance {GRIP_TOLERANCE * 1000:.0f} mm)"

    def _grip(self, cobot: str, io: str, part: int) -> None:
        c = self.tm.cobots[cobot]
        tool0 = int(self.m.eq_obj1id[self.tm.welds[(cobot, io, part)]])
        b = self.tm.parts[part]
        r1 = self.d.xmat[tool0].reshape(3, 3)
        rel_pos = r1.T @ (self.d.xpos[b] - self.d.xpos[tool0])
        rel_mat = r1.T @ self.d.xmat[b].reshape(3, 3)
        quat = np.zeros(4)
        self.mj.mju_mat2Quat(quat, rel_mat.reshape(-1))
        eq = self.tm.welds[(cobot, io, part)]
        self.m.eq_data[eq, 0:3] = 0.0
        self.m.eq_data[eq, 3:6] = rel_pos
        self.m.eq_data[eq, 6:10] = quat
        self.m.eq_data[eq, 10] = 1.0
        self.d.eq_active[eq] = 1
        self.held[(cobot, io)] = part
        self.part_state[part] = "held"
        self.released.pop(part, None)
        self._set_contacts(part, "held", c.name)

    def _release(self, cobot: str, io: str, part: int) -> None:
        self.d.eq_active[self.tm.welds[(cobot, io, part)]] = 0
        # fully awake: a part let go at rest would otherwise fall asleep where it was let go
        self.d.tree_asleep[self.m.body_treeid[self.tm.parts[part]]] = -(1 + self.mj.mjMINAWAKE)
        self.part_state[part] = "free"
        self.released[part] = (cobot, self.t)
        self._set_contacts(part, "free")

    # ------------------------------------------------------------------------------------------ stepping
    def step_to(self, t: float) -> None:
        """Advance the physics to clock time t (whole steps; the servos update every CONTROL_STEPS steps, whatever
        the times asked for)."""
        n = int((t - self.t) / TIMESTEP + 1e-9)
        while n > 0:
            k = min(CONTROL_STEPS - self._phase, n)
            self._step(k)
            n -= k

    def _step(self, k: int = 1) -> None:
        """k physics steps, after a servo update when a servo period begins."""
        m, d, mj = self.m, self.d, self.mj
        t_next = self.t + k * TIMESTEP
        if self._phase == 0:
            self._servo()
        self._phase = (self._phase + k) % CONTROL_STEPS
        refs = [self.refs[name].sample(t_next)[0] for name in self.tm.cobots] if self.keep_errors else []
        mj.mj_step(m, d, nstep=k)
        self.t = t_next
        if self.keep_errors:
            for (name, c), q in zip(self.tm.cobots.items(), refs):
                self.errors[name].append(float(np.max(np.abs(d.qpos[c.qpos] - q))))
        if d.ncon and float(np.min(d.contact.dist[: d.ncon])) < -min(ARM_TOLERANCE, CARRIED_TOLERANCE):
            self._check_contacts()
        elif self._touching:
            self._touching.clear()
        if self.released:
            self._watch_released()

    def _servo(self) -> None:
        """The servos' commands and feed-forward for the next CONTROL_STEPS steps."""
        m, d, mj = self.m, self.d, self.mj
        acc = self._acc
        # The servos aim at the reference (CONTROL_STEPS - 1) / 2 steps into the period: with MuJoCo's
        # semi-implicit Euler the arm then meets the reference at the period's end (measured: 0.1 mrad on a
        # 2 rad/s move; aiming at the period's end makes it run ahead by ~1.5 steps of motion).
        t_ref = self.t + (CONTROL_STEPS - 1) * TIMESTEP / 2
        for name, c in self.tm.cobots.items():
            q, dq, ddq = self.refs[name].sample(t_ref)
            d.ctrl[c.actuators] = q + self._kv_kp[name] * dq
            acc[c.dof] = ddq
        mj.mj_mulM(m, d, self._ff, acc)
        for (cobot, io), part in self.held.items():  # payload compensation: the held part's weight and inertia
            tool0 = int(m.eq_obj1id[self.tm.welds[(cobot, io, part)]])
            mj.mj_jac(m, d, self._jacp, None, d.xipos[self.tm.parts[part]], tool0)
            self._ff += self.tm.part_mass * (self._jacp.T @ (self._jacp @ acc - m.opt.gravity))
        d.qfrc_applied[self._arm_dofs] = self._ff[self._arm_dofs] + d.qfrc_bias[self._arm_dofs]

    def _check_contacts(self) -> None:
        if self.d.ncon == 0:
            if self._touching:
                self._touching.clear()
            return
        now: set[tuple[int, int]] = set()
        for b1, b2, depth in contacts(self.tm, self.d, ARM_TOLERANCE):
            who = self._collision(b1, b2, depth)
            if who is None:
                continue
            pair = (min(b1, b2), max(b1, b2))
            now.add(pair)
            if pair in self._touching:
                continue
            for cobot in who if self.stop_on_collision else ():
                self.stopped[cobot] = "collision"
                self.refs[cobot].stop_at(self.joint_positions(cobot))
            hit = Collision(self.t, self.tm.body_name(b1), self.tm.body_name(b2), who, depth)
            log.warning(hit.message)
            self._events.collisions.append(hit)
        self._touching = now

    def _collision(self, b1: int, b2: int, depth: float) -> tuple[str, ...] | None:
        """The cobots to stop for a contact, or None when it is no collision (resting parts, a part in its grip)."""
        o1, o2 = self.tm.body_owner.get(b1, ("floor", "")), self.tm.body_owner.get(b2, ("floor", ""))
        kinds = {o1[0], o2[0]}
        if kinds <= {"part", "station", "floor"}:
            carriers = [c for o in (o1, o2) if o[0] == "part" and (c := self._carrier(int(o[1]))) is not None]
            if not carriers or depth <= CARRIED_TOLERANCE:
                return None
            return tuple(dict.fromkeys(carriers))
        if "part" in kinds:
            part = int((o1 if o1[0] == "part" else o2)[1])
            other = o2 if o1[0] == "part" else o1
            carrier = self._carrier(part)
            if carrier == other[1] or (carrier is None and self._at_tcp(other[1], part)):
                return None  # the part in a cobot's hand (held, or at its gripper's TCP) is not checked against it
            cobots = [other[1]] + ([carrier] if carrier and carrier != other[1] else [])
            return tuple(cobots)
        return tuple(dict.fromkeys(o[1] for o in (o1, o2) if o[0] in ("cobot", "tool")))

    def _at_tcp(self, cobot: str, part: int) -> bool:
        """One of the cobot's grippers has its TCP at the part (about to take it, or just let it go)."""
        half = np.asarray(self.tm.part_box) / 2 + GRIP_TOLERANCE
        b = self.tm.parts[part]
        for tool in self.tm.cobots[cobot].tools.values():
            if tool.kind == "gripper":
                local = self.d.xmat[b].reshape(3, 3).T @ (self.d.site_xpos[tool.site] - self.d.xpos[b])
                if np.all(np.abs(local) <= half):
                    return True
        return False

    def _carrier(self, part: int) -> str | None:
        for (cobot, _io), p in self.held.items():
            if p == part:
                return cobot
        return None

    def _watch_released(self) -> None:
        for part, (cobot, since) in list(self.released.items()):
            dof = self.tm.part_dof[part]
            if np.linalg.norm(self.d.qvel[dof : dof + 6]) > DROP_SPEED:
                self.released[part] = (cobot, self.t)  # still moving: at rest only SETTLE_TIME after it stops
                continue
            if self.t - since < SETTLE_TIME:
                continue
            del self.released[part]
            pos = self.part_position(part)
            if pos[2] < self.tm.part_box[2] / 2 + 0.01 and not self._over_station(pos):
                self._events.dropped.append(Drop(part, cobot, pos))
                log.warning(f"part {part} dropped: at rest on the floor at {np.round(pos, 3).tolist()}")

    def _over_station(self, pos: np.ndarray) -> bool:
        return any(
            np.linalg.norm(np.asarray(st.pose.xyz[:2]) - pos[:2]) < 0.3 and st.pose.xyz[2] < 0.01
            for st in self.tm.cfg.stations.values()
        )

    def events(self) -> TwinEvents:
        """Collisions and dropped parts since the last call."""
        out, self._events = self._events, TwinEvents()
        return out

    def tracking_error(self, cobot: str) -> float:
        """Largest joint deviation (rad) from the reference right now."""
        q, _, _ = self.refs[cobot].sample(self.t)
        return float(np.max(np.abs(self.joint_positions(cobot) - q)))
