"""Time-parameterised joint trajectories: trapezoidal joint moves, waypoint paths and Cartesian lines.

A ``Trajectory`` is a list of knots (time, joint positions, joint velocities) starting at t = 0, the form a
``joint_trajectory_controller`` takes; between knots it is a cubic Hermite curve, as the controller
interpolates. ``joint_move`` is a synchronised rest-to-rest trapezoid (the slowest joint sets the
duration, every joint starts and stops together within its own velocity and acceleration limit);
``joint_path`` chains such moves through waypoints; ``linear_move`` moves the flange (or a TCP) on a straight
line with slerped orientation, solving IK at every path sample and timing the path parameter with a
trapezoid that respects the tool speed and the joint limits; ``concatenate`` joins trajectories end to
start. Bad arguments raise ``ValueError`` naming the argument; infeasible lines raise ``UnreachableError``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .kinematics import ArmModel, UnreachableError, fk, ik
from .transforms import Vector, interpolate_pose, invert, rotation_angle

__all__ = [
    "Trajectory",
    "trapezoid_times",
    "joint_move",
    "joint_path",
    "linear_move",
    "path_move",
    "PathMove",
    "PathTiming",
    "concatenate",
    "MAX_JOINT_STEP",
    "LIMIT_RTOL",
]

Limits = float | Sequence[float] | np.ndarray

MAX_JOINT_STEP = 0.2
"""Largest joint change (rad) allowed between two samples of a Cartesian line before it is rejected."""
_KNOT_JOINT_STEP = 0.02  # a Cartesian line is resampled until no joint moves more than this (rad) per knot
_MAX_LINE_SAMPLES = 20000
LIMIT_RTOL = 1e-12
"""Relative slack of the velocity and acceleration limits (the rounding of the profile parameters)."""
_KNOT_EPS = 1e-9  # grid knots closer than this (s) to a phase switch are dropped
_JOIN_TOL = 1e-9  # position / velocity mismatch allowed where trajectories are concatenated


@dataclass(frozen=True)
class Trajectory:
    """Joint trajectory knots: times (N,) from 0.0 strictly increasing, positions and velocities (N, J)."""

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray

    def __post_init__(self) -> None:
        times = np.array(self.times, dtype=float)
        pos = np.array(self.positions, dtype=float)
        vel = np.array(self.velocities, dtype=float)
        if times.ndim != 1 or times.size == 0:
            raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
        if pos.ndim != 2 or pos.shape[0] != times.size:
            raise ValueError(f"positions must have shape ({times.size}, J), got {pos.shape}")
        if vel.shape != pos.shape:
            raise ValueError(f"velocities must have the shape of positions {pos.shape}, got {vel.shape}")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))):
            raise ValueError("times, positions and velocities must be finite")
        if times[0] != 0.0:
            raise ValueError(f"times must start at 0.0, got {times[0]}")
        if np.any(np.diff(times) <= 0.0):
            raise ValueError("times must be strictly increasing")
        for name, arr in (("times", times), ("positions", pos), ("velocities", vel)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def duration(self) -> float:
        """Time of the last knot (s); 0.0 for a single-knot trajectory."""
        return float(self.times[-1])

    @property
    def start(self) -> np.ndarray:
        """Joint positions at t = 0."""
        return np.array(self.positions[0])

    @property
    def final(self) -> np.ndarray:
        """Joint positions at the end."""
        return np.array(self.positions[-1])

    @property
    def joint_count(self) -> int:
        """Number of joints J."""
        return int(self.positions.shape[1])

    def _segment(self, t: float) -> tuple[int, float, float]:
        """Knot index i, local fraction s in [0, 1] and interval length h for a time, clamped to the span."""
        t = min(max(float(t), 0.0), self.duration)
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        i = min(i, self.times.size - 2)
        h = float(self.times[i + 1] - self.times[i])
        return i, (t - float(self.times[i])) / h, h

    def sample(self, t: float) -> np.ndarray:
        """Joint positions at time t (clamped to [0, duration]); exact at knots, cubic Hermite between."""
        if self.times.size == 1 or t >= self.duration:
            return np.array(self.positions[-1])
        if t <= 0.0:
            return np.array(self.positions[0])
        i, s, h = self._segment(t)
        if s == 0.0:
            return np.array(self.positions[i])
        s2, s3 = s * s, s * s * s
        q: np.ndarray = (
            (2 * s3 - 3 * s2 + 1) * self.positions[i]
            + (s3 - 2 * s2 + s) * h * self.velocities[i]
            + (-2 * s3 + 3 * s2) * self.positions[i + 1]
            + (s3 - s2) * h * self.velocities[i + 1]
        )
        return q

    def sample_velocity(self, t: float) -> np.ndarray:
        """Joint velocities at time t (clamped to [0, duration]), the derivative of ``sample``."""
        if self.times.size == 1 or t >= self.duration:
            return np.array(self.velocities[-1])
        if t <= 0.0:
            return np.array(self.velocities[0])
        i, s, h = self._segment(t)
        s2 = s * s
        v: np.ndarray = (
            (6 * s2 - 6 * s) / h * self.positions[i]
            + (3 * s2 - 4 * s + 1) * self.velocities[i]
            + (-6 * s2 + 6 * s) / h * self.positions[i + 1]
            + (3 * s2 - 2 * s) * self.velocities[i + 1]
        )
        return v


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return v


def _limits(value: Limits, name: str, joints: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(joints, float(arr))
    if arr.shape != (joints,):
        raise ValueError(f"{name} must be a number or have {joints} values (one per joint), got shape {arr.shape}")
    if not np.all(np.isfinite(arr) & (arr > 0.0)):
        raise ValueError(f"{name} must be positive and finite, got {arr.tolist()}")
    return arr


def _joint_vector(value: Vector, name: str, joints: int | None = None, ref: str = "") -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D joint vector, got shape {arr.shape}")
    if joints is not None and arr.size != joints:
        raise ValueError(f"{name} has {arr.size} joint values but {ref} has {joints}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def trapezoid_times(distance: float, v_max: float, a_max: float) -> tuple[float, float]:
    """(total time, acceleration time) of the fastest rest-to-rest trapezoid (or triangle) over |distance|."""
    d = abs(float(distance))
    if not math.isfinite(d):
        raise ValueError(f"distance must be finite, got {distance}")
    v = _positive(v_max, "v_max")
    a = _positive(a_max, "a_max")
    if d == 0.0:
        return 0.0, 0.0
    if d >= v * v / a:
        return d / v + v / a, v / a
    ta = math.sqrt(d / a)
    return 2.0 * ta, ta


def _single_knot(q: np.ndarray) -> Trajectory:
    return Trajectory(np.zeros(1), q[None, :].copy(), np.zeros((1, q.size)))


def joint_move(q0: Vector, q1: Vector, v_max: Limits, a_max: Limits, sample_dt: float = 0.02) -> Trajectory:
    """Synchronised rest-to-rest trapezoidal joint move from q0 to q1.

    The slowest joint sets the duration. Every joint follows that joint's profile shape scaled to its own
    distance when this stays within its limits (the usual case: a straight line in joint space); a joint for
    which it would not gets its own trapezoid at its acceleration limit, stretched to the same duration.
    Knots every sample_dt, plus the exact phase-switch instants (so ``sample`` reproduces the piecewise
    quadratic profile exactly) and the end point. A zero-length move is a single knot with duration 0.0.
    """
    start = _joint_vector(q0, "q0")
    goal = _joint_vector(q1, "q1", start.size, "q0")
    v = _limits(v_max, "v_max", start.size)
    a = _limits(a_max, "a_max", start.size)
    dt = _positive(sample_dt, "sample_dt")
    delta = goal - start
    dist = np.abs(delta)
    if not np.any(dist > 0.0):
        return _single_knot(goal)
    t_min = np.array([trapezoid_times(d, vi, ai)[0] for d, vi, ai in zip(dist, v, a)])
    k = int(np.argmax(t_min))
    T = float(t_min[k])
    ta_k = trapezoid_times(dist[k], v[k], a[k])[1]

    # Per joint: cruise speed vc and acceleration time ta (acceleration vc / ta).
    vc = dist / (T - ta_k)
    ta = np.full(start.size, ta_k)
    own = (vc > v * (1 + LIMIT_RTOL)) | (vc / ta_k > a * (1 + LIMIT_RTOL))
    own[k] = False
    if np.any(own):
        # Trapezoid at the joint's acceleration limit lasting T: vc^2/a - vc*T + d = 0, smaller root.
        disc = np.sqrt(np.maximum(T * T - 4.0 * dist[own] / a[own], 0.0))
        vc[own] = 2.0 * dist[own] / (T + disc)
        ta[own] = vc[own] / a[own]

    # Every phase switch of every joint is a knot, however close two of them are, so each knot interval lies
    # in one phase of every joint and the cubic between knots is that joint's quadratic exactly. Grid knots
    # within _KNOT_EPS of a switch (or of the ends) are dropped, switches never are.
    switches = np.concatenate([ta[dist > 0], T - ta[dist > 0]])
    switches = switches[(switches > 0.0) & (switches < T)]
    grid = np.arange(1, int(T // dt) + 1) * dt
    near = np.abs(grid[:, None] - np.concatenate([switches, [0.0, T]])[None, :]).min(axis=1) <= _KNOT_EPS
    times = np.sort(np.concatenate([[0.0, T], switches, grid[~near & (grid < T)]]))
    times = times[np.concatenate([[True], times[1:] != times[:-1]])]  # each once (np.unique imports numpy.ma: ~1 MB)

    frac, rate = _trapezoid_eval(times[:, None], T, ta[None, :], vc[None, :], dist[None, :])
    direction = np.sign(delta)
    positions = start + direction * frac
    velocities = direction * rate
    positions[-1] = goal
    velocities[0] = 0.0
    velocities[-1] = 0.0
    return Trajectory(times, positions, velocities)


def _trapezoid_eval(
    t: np.ndarray, T: float, ta: np.ndarray, vc: np.ndarray, dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance covered and speed at times t of rest-to-rest trapezoids (broadcast over joints)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(ta > 0.0, vc / ta, 0.0)
    accel = t < ta
    decel = t > T - ta
    tr = T - t
    pos = np.where(
        accel, 0.5 * acc * t * t, np.where(decel, dist - 0.5 * acc * tr * tr, 0.5 * acc * ta * ta + vc * (t - ta))
    )
    vel = np.where(accel, acc * t, np.where(decel, acc * tr, vc))
    return pos, vel


def concatenate(trajs: Sequence[Trajectory]) -> Trajectory:
    """Join trajectories end to start; each must begin where (and as fast as) the previous one ends."""
    items = list(trajs)
    if not items:
        raise ValueError("trajs must contain at least one trajectory")
    joints = items[0].joint_count
    times, pos, vel = [items[0].times], [items[0].positions], [items[0].velocities]
    offset = items[0].duration
    for n, tr in enumerate(items[1:], start=1):
        if tr.joint_count != joints:
            raise ValueError(f"trajs[{n}] has {tr.joint_count} joints but trajs[0] has {joints}")
        gap = float(np.max(np.abs(tr.positions[0] - pos[-1][-1])))
        if gap > _JOIN_TOL:
            raise ValueError(f"trajs[{n}] starts {gap:.3g} rad away from where trajs[{n - 1}] ends")
        jump = float(np.max(np.abs(tr.velocities[0] - vel[-1][-1])))
        if jump > _JOIN_TOL:
            raise ValueError(f"trajs[{n}] starts with a velocity {jump:.3g} rad/s off the end of trajs[{n - 1}]")
        if tr.times.size > 1:
            times.append(tr.times[1:] + offset)
            pos.append(tr.positions[1:])
            vel.append(tr.velocities[1:])
            offset += tr.duration
    return Trajectory(np.concatenate(times), np.concatenate(pos), np.concatenate(vel))


def joint_path(waypoints: np.ndarray, v_max: Limits, a_max: Limits, sample_dt: float = 0.02) -> Trajectory:
    """Rest-to-rest synchronised joint moves through each waypoint (rows of an (M, J) array), concatenated."""
    wp = np.asarray(waypoints, dtype=float)
    if wp.ndim != 2 or wp.shape[0] == 0 or wp.shape[1] == 0:
        raise ValueError(f"waypoints must be an (M, J) array with M >= 1, got shape {wp.shape}")
    if not np.all(np.isfinite(wp)):
        raise ValueError("waypoints must be finite")
    v = _limits(v_max, "v_max", wp.shape[1])
    a = _limits(a_max, "a_max", wp.shape[1])
    _positive(sample_dt, "sample_dt")
    moves = [joint_move(wp[i], wp[i + 1], v, a, sample_dt) for i in range(wp.shape[0] - 1)]
    return concatenate([_single_knot(wp[0])] + moves)


@dataclass(frozen=True)
class PathTiming:
    """How a Cartesian path was timed: its cruise speed and the limit that sets it."""

    length: float
    """Path length (m) the speed refers to (0.0 for a pure rotation)."""
    speed: float
    """Cruise speed along the path (m/s): the requested speed unless `limit` names a joint (reached when the
    path is long enough for the ramps to end)."""
    max_speed: float
    """The fastest cruise the joint limits allow along this path (m/s; inf if the path moves no joint)."""
    limit: str
    """'speed' (the requested tool speed), '<joint> velocity' or '<joint> acceleration'."""


@dataclass(frozen=True)
class PathMove:
    """A timed Cartesian path: the joint trajectory and how it was timed."""

    trajectory: Trajectory
    timing: PathTiming


_LINES: OrderedDict[tuple[object, ...], Trajectory] = OrderedDict()
_LINES_KEPT = 64  # recent straight lines: a pallet's places share their grasp-side lines
_LINES_LOCK = threading.Lock()


def linear_move(
    model: ArmModel,
    q0: Vector,
    T_goal: np.ndarray,
    speed: float,
    v_max: Limits,
    a_max: Limits,
    base_step: float = 0.005,
    *,
    tcp: np.ndarray | None = None,
) -> Trajectory:
    """Straight-line move of the flange (or of the TCP at flange pose @ tcp) from fk(q0) to T_goal.

    Position is interpolated linearly and orientation by slerp, with samples at most base_step metres apart
    (and at most base_step / 0.25 rad of rotation); the samples are timed by ``path_move``. A zero-length
    line gives a single knot. With `tcp`, T_goal, the line and `speed` refer to the TCP instead of the flange.
    The same inputs give the same (read-only) trajectory, kept for the most recent lines.
    """
    try:
        arrays = (np.asarray(x, dtype=float).tobytes() for x in (q0, T_goal, v_max, a_max))
        key: tuple[object, ...] | None = (
            model,
            *arrays,
            float(speed),
            float(base_step),
            None if tcp is None else np.asarray(tcp, float).tobytes(),
        )
    except (TypeError, ValueError):
        key = None  # not numbers: the checks below say what is wrong
    if key is not None:
        with _LINES_LOCK:
            if key in _LINES:
                _LINES.move_to_end(key)
                return _LINES[key]
    traj = _linear_move(model, q0, T_goal, speed, v_max, a_max, base_step, tcp=tcp)
    if key is not None:
        with _LINES_LOCK:
            _LINES[key] = traj
            if len(_LINES) > _LINES_KEPT:
                _LINES.popitem(last=False)
    return traj


def _linear_move(
    model: ArmModel,
    q0: Vector,
    T_goal: np.ndarray,
    speed: float,
    v_max: Limits,
    a_max: Limits,
    base_step: float,
    *,
    tcp: np.ndarray | None,
) -> Trajectory:
    start = _joint_vector(q0, "q0", model.dof, f"arm model '{model.name}'")
    goal = np.asarray(T_goal, dtype=float)
    if goal.shape != (4, 4) or not np.all(np.isfinite(goal)):
        raise ValueError(f"T_goal must be a finite 4x4 homogeneous matrix, got shape {goal.shape}")
    v_tool = _positive(speed, "speed")
    v = _limits(v_max, "v_max", model.dof)
    a = _limits(a_max, "a_max", model.dof)
    step = _positive(base_step, "base_step")
    tool = _tool(tcp)
    P0 = fk(model, start) @ tool
    length = float(np.linalg.norm(goal[:3, 3] - P0[:3, 3]))
    angle = rotation_angle(P0, goal)
    n = int(math.ceil(max(length / step, angle * 0.25 / step) - 1e-9))
    if n == 0:
        return _single_knot(start)

    def line(s: float) -> np.ndarray:
        return goal if s >= 1.0 else interpolate_pose(P0, goal, s)

    return _timed_path(model, start, line, n, length, v_tool, v, a, invert(tool), "linear move").trajectory


def path_move(
    model: ArmModel,
    q0: Vector,
    path: Callable[[float], np.ndarray],
    length: float,
    speed: float,
    v_max: Limits,
    a_max: Limits,
    samples: int,
    *,
    tcp: np.ndarray | None = None,
    exact: bool = False,
    what: str = "path",
) -> PathMove:
    """Move the flange (or the TCP at flange pose @ tcp) through the poses path(s), s from 0 to 1.

    path(0) must be where q0 puts the flange (TCP). `length` (m) is what `speed` (m/s) refers to, e.g. the
    seam length of a weaving weld path. The path is sampled at `samples` + 1 evenly spaced s, refined until
    no joint moves more than 0.02 rad between samples; IK at each sample is seeded by the previous solution
    and UnreachableError names the fraction of the path where IK fails or a joint would jump more than
    MAX_JOINT_STEP rad (a singularity or a configuration change: never a joint flip). The path parameter
    follows a trapezoid whose cruise keeps the tool at or below `speed` (exactly at it with `exact`, e.g. a weld)
    and every joint within v_max, and whose acceleration, with the path-curvature term, keeps every joint within
    a_max; of those trapezoids it takes the fastest. `timing` says which limit sets the cruise and the fastest
    cruise the joints allow. Knots are the samples plus the phase switches of the trapezoid, so the cubic a
    controller interpolates between knots never leaves a phase.
    """
    start = _joint_vector(q0, "q0", model.dof, f"arm model '{model.name}'")
    v_tool = _positive(speed, "speed")
    v = _limits(v_max, "v_max", model.dof)
    a = _limits(a_max, "a_max", model.dof)
    if not (math.isfinite(length) and length >= 0.0):
        raise ValueError(f"length must be finite and >= 0, got {length}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    tool = _tool(tcp)
    P0 = fk(model, start) @ tool
    first = np.asarray(path(0.0), dtype=float)
    if first.shape != (4, 4) or not np.all(np.isfinite(first)):
        raise ValueError(f"path(0) must be a finite 4x4 homogeneous matrix, got shape {first.shape}")
    off = max(float(np.linalg.norm(first[:3, 3] - P0[:3, 3])), rotation_angle(first, P0))
    if off > 1e-6:
        raise ValueError(f"path(0) is {off:.3g} m (rad) away from where q0 puts the tool")
    return _timed_path(model, start, path, int(samples), length, v_tool, v, a, invert(tool), what, exact)


def _tool(tcp: np.ndarray | None) -> np.ndarray:
    if tcp is None:
        return np.eye(4)
    tool = np.asarray(tcp, dtype=float)
    if tool.shape != (4, 4) or not np.all(np.isfinite(tool)):
        raise ValueError(f"tcp must be a finite 4x4 homogeneous matrix, got shape {tool.shape}")
    return tool


def _timed_path(
    model: ArmModel,
    start: np.ndarray,
    path: Callable[[float], np.ndarray],
    n: int,
    length: float,
    v_tool: float,
    v: np.ndarray,
    a: np.ndarray,
    tool_inv: np.ndarray,
    what: str,
    exact: bool = False,
) -> PathMove:
    q = _path_samples(model, start, path, tool_inv, n, what)
    finest = float(np.max(np.abs(np.diff(q, axis=0))))
    if finest > _KNOT_JOINT_STEP:
        # Joints move a lot per Cartesian step (e.g. near a singularity): refine so that the cubic
        # interpolation between knots stays close to the path.
        n = min(int(math.ceil(n * finest / _KNOT_JOINT_STEP)), _MAX_LINE_SAMPLES)
        q = _path_samples(model, start, path, tool_inv, n, what)

    ds = 1.0 / n
    g = (np.abs(np.diff(q, axis=0)) / ds).max(axis=0)  # max |dq/ds| per joint
    h = (np.abs(np.diff(q, n=2, axis=0)).max(axis=0) / (ds * ds)) if n >= 2 else np.zeros(model.dof)
    rate, sddot, timing = _path_rate(model.joint_names, g, h, v, a, length, v_tool, exact)
    if rate == 0.0:  # no joint moves at all (sub-numerical path)
        return PathMove(_single_knot(start), timing)
    T, ta = trapezoid_times(1.0, rate, sddot)
    vc = sddot * ta
    s = np.linspace(0.0, 1.0, n + 1)
    dq_ds = np.gradient(q, ds, axis=0, edge_order=2 if n >= 2 else 1)

    # Knots at the phase switches too: a knot interval that spans the end of the ramp would make the
    # controller's cubic overshoot the cruise speed (by ~27 % on a short ramp).
    s_acc = 0.5 * sddot * ta * ta
    extra = [
        x for x in ((0.5,) if 2.0 * ta >= T else (s_acc, 1.0 - s_acc)) if 0.0 < x < 1.0 and np.min(np.abs(s - x)) > 1e-9
    ]
    if extra:
        i = np.minimum((np.array(extra) * n).astype(int), n - 1)
        q_x = np.empty((len(extra), model.dof))
        for k, (x, seed) in enumerate(zip(extra, i)):
            try:
                q_x[k] = ik(model, np.asarray(path(x), dtype=float) @ tool_inv, q[seed])
            except UnreachableError as exc:
                raise UnreachableError(f"{what} blocked at {x:.1%} of the path: {exc}") from None
        w = (np.array(extra) - s[i]) / ds
        d_x = (1.0 - w)[:, None] * dq_ds[i] + w[:, None] * dq_ds[i + 1]
        order = np.argsort(np.concatenate([s, extra]), kind="stable")
        s = np.concatenate([s, extra])[order]
        q = np.concatenate([q, q_x])[order]
        dq_ds = np.concatenate([dq_ds, d_x])[order]

    times, s_rate = _path_times(s, T, ta, vc, sddot)
    velocities = dq_ds * s_rate[:, None]
    velocities[0] = 0.0
    velocities[-1] = 0.0
    # The limits were set from chords of the even samples; a knot (or a sub-chord at a switch) may be a hair
    # faster. Slowing the whole move uniformly by that ratio keeps every knot and chord within v_max.
    chord = np.abs(np.diff(q, axis=0)) / np.diff(times)[:, None]
    ratio = max(float(np.max(np.abs(velocities) / v)), float(np.max(chord / v)), 1.0)
    if ratio > 1.0:
        times, velocities = times * ratio, velocities / ratio
    if ratio > 1.0:
        timing = PathTiming(length, timing.speed / ratio, timing.max_speed / ratio, timing.limit)
    return PathMove(Trajectory(times, q, velocities), timing)


def _path_rate(
    names: Sequence[str],
    g: np.ndarray,
    h: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
    length: float,
    v_tool: float,
    exact: bool,
) -> tuple[float, float, PathTiming]:
    """Cruise rate ds/dt and ramp acceleration of the path parameter, and the timing they give.

    With |q'| <= g and |q''| <= h per joint (per unit s), a cruise rate r needs g r <= v and h r^2 <= a, and a
    ramp of constant acceleration c up to it needs g c + h r^2 <= a: c(r) = min (a - h r^2) / g. The rate is the
    tool speed's (v_tool / length) when `exact` and the joints allow it, else the one in (0, r_max] that makes
    the trapezoid fastest (usually r_max; lower when a long ramp would lose more than the faster cruise wins).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vel = np.where(g > 0, v / g, np.inf)
        acc = np.where(h > 0, np.sqrt(a / h), np.inf)
    speed_cap = v_tool / length if length > 0 else math.inf
    joint_cap = float(min(vel.min(), acc.min()))
    if not np.any(g > 0):  # no joint moves (a sub-numerical path): nothing to time
        return 0.0, 0.0, PathTiming(length, 0.0, math.inf, "speed")

    def ramp(r: float) -> float:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return float(np.min(np.where(g > 0, (a - h * r * r) / g, np.inf)))

    def duration(r: float) -> float:
        c = ramp(r)
        return trapezoid_times(1.0, r, c)[0] if c > 0.0 else math.inf

    top = min(speed_cap, joint_cap)
    if exact and speed_cap < joint_cap and ramp(speed_cap) > 0.0:
        rate = speed_cap
    elif duration(top) <= duration(top * (1.0 - 1e-6)):
        # The duration is convex in the rate (1/r plus the largest r/c_j(r)) where the ramp ends before the
        # middle, and grows with r where it does not: still falling at the top, the top is the fastest.
        rate = top
    else:
        # Fastest trapezoid over the cruise rate: a grid, then golden-section search around its best point.
        grid = top * np.arange(1, 65) / 64.0
        k = int(np.argmin([duration(float(r)) for r in grid]))
        lo, hi = float(grid[max(k - 1, 0)]) if k > 0 else 0.0, float(grid[min(k + 1, 63)])
        phi = (math.sqrt(5.0) - 1.0) / 2.0
        for _ in range(60):
            m1, m2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
            if duration(m1) <= duration(m2):
                hi = m2
            else:
                lo = m1
        rate = min((float(grid[k]), 0.5 * (lo + hi)), key=duration)
    if rate >= speed_cap * (1.0 - 1e-12):
        limit = "speed"
    elif rate >= float(vel.min()) * (1.0 - 1e-12):
        limit = f"{names[int(np.argmin(vel))]} velocity"
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            limit = f"{names[int(np.argmin(np.where(g > 0, (a - h * rate * rate) / g, np.inf)))]} acceleration"
    return rate, ramp(rate), PathTiming(length, length * rate, length * joint_cap, limit)


def _path_samples(
    model: ArmModel, start: np.ndarray, path: Callable[[float], np.ndarray], tool_inv: np.ndarray, n: int, what: str
) -> np.ndarray:
    """IK at n + 1 evenly spaced poses of the path, each seeded by the previous; rejects jumps."""
    s = np.linspace(0.0, 1.0, n + 1)
    q = np.empty((n + 1, model.dof))
    q[0] = start
    for i in range(1, n + 1):
        pose = np.asarray(path(1.0 if i == n else float(s[i])), dtype=float)
        try:
            q[i] = ik(model, pose @ tool_inv, q[i - 1])
        except UnreachableError as exc:
            raise UnreachableError(f"{what} blocked at {s[i]:.1%} of the path: {exc}") from None
        jump = np.abs(q[i] - q[i - 1])
        j = int(np.argmax(jump))
        if jump[j] > MAX_JOINT_STEP:
            raise UnreachableError(
                f"{what} blocked at {s[i]:.1%} of the path: {model.joint_names[j]} would jump "
                f"{jump[j]:.3f} rad between samples (> {MAX_JOINT_STEP:g}; singularity or configuration change)"
            )
    return q


def _path_times(s: np.ndarray, T: float, ta: float, vc: float, acc: float) -> tuple[np.ndarray, np.ndarray]:
    """Times at which a rest-to-rest trapezoid over s in [0, 1] passes each s, and ds/dt there."""
    s_acc = 0.5 * acc * ta * ta
    t = np.where(
        s <= s_acc,
        np.sqrt(2.0 * np.maximum(s, 0.0) / acc),
        np.where(s >= 1.0 - s_acc, T - np.sqrt(2.0 * np.maximum(1.0 - s, 0.0) / acc), ta + (s - s_acc) / vc),
    )
    t[0], t[-1] = 0.0, T
    rate = np.where(t < ta, acc * t, np.where(t > T - ta, acc * (T - t), vc))
    return t, np.clip(rate, 0.0, vc)
