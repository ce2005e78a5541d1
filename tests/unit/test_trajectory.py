"""Trajectory knots and sampling, trapezoidal joint moves, waypoint paths and Cartesian lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from cobot_cell.motion.kinematics import UnreachableError, arm_model, fk
from cobot_cell.motion.trajectory import (
    LIMIT_RTOL,
    MAX_JOINT_STEP,
    Trajectory,
    _path_rate,  # the timing rule itself, checked by brute force
    concatenate,
    joint_move,
    joint_path,
    linear_move,
    path_move,
    trapezoid_times,
)
from cobot_cell.motion.transforms import pose_matrix, rotation_angle, slerp, translation

UR5E = arm_model("ur5e")
HOME = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])
V_MAX = np.array([1.2, 1.2, 1.5, 2.0, 2.0, 2.0])
A_MAX = np.array([2.5, 2.5, 3.0, 4.0, 4.0, 4.0])
TOL = 1e-9

positions = st.lists(st.floats(min_value=-6.0, max_value=6.0, allow_nan=False), min_size=6, max_size=6).map(np.array)
limits = st.lists(st.floats(min_value=0.1, max_value=5.0), min_size=6, max_size=6).map(np.array)


def second_differences(tr: Trajectory) -> np.ndarray:
    """|acceleration| from second finite differences of positions on a uniform knot grid."""
    dt = np.diff(tr.times)
    p = tr.positions
    return (
        np.abs((p[2:] - p[1:-1]) / dt[1:, None] - (p[1:-1] - p[:-2]) / dt[:-1, None])
        / (0.5 * (dt[1:] + dt[:-1]))[:, None]
    )


def dense(tr: Trajectory, n: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """Times and sampled positions on a uniform grid over the whole trajectory."""
    ts = np.linspace(0.0, tr.duration, n)
    return ts, np.array([tr.sample(t) for t in ts])


# --- trapezoid_times -----------------------------------------------------------------------------------


def test_trapezoid_with_cruise() -> None:
    assert trapezoid_times(3.0, 1.0, 2.0) == (3.0 / 1.0 + 1.0 / 2.0, 0.5)


def test_triangle_when_too_short_to_cruise() -> None:
    total, ta = trapezoid_times(0.5, 2.0, 2.0)
    assert ta == pytest.approx(0.5) and total == pytest.approx(1.0)


def test_zero_distance_and_sign() -> None:
    assert trapezoid_times(0.0, 1.0, 1.0) == (0.0, 0.0)
    assert trapezoid_times(-3.0, 1.0, 2.0) == trapezoid_times(3.0, 1.0, 2.0)


@given(
    st.floats(min_value=1e-6, max_value=20.0),
    st.floats(min_value=0.01, max_value=10.0),
    st.floats(min_value=0.01, max_value=10.0),
)
def test_trapezoid_covers_the_distance_within_limits(d: float, v: float, a: float) -> None:
    total, ta = trapezoid_times(d, v, a)
    peak = a * ta
    assert peak <= v * (1 + 1e-12)
    assert peak * (total - ta) == pytest.approx(d, rel=1e-9)


@pytest.mark.parametrize(
    "args, message",
    [
        ((1.0, 0.0, 1.0), "v_max must be positive and finite, got 0.0"),
        ((1.0, 1.0, -2.0), "a_max must be positive and finite, got -2.0"),
        ((math.inf, 1.0, 1.0), "distance must be finite, got inf"),
    ],
)
def test_trapezoid_validation(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as err:
        trapezoid_times(*args)
    assert str(err.value) == message


# --- Trajectory ----------------------------------------------------------------------------------------


def make(times: list, pos: list, vel: list | None = None) -> Trajectory:
    p = np.array(pos, dtype=float)
    return Trajectory(np.array(times, dtype=float), p, np.zeros_like(p) if vel is None else np.array(vel))


def test_sample_is_exact_at_knots_and_clamped() -> None:
    tr = make([0.0, 0.3, 1.0], [[0.0, 1.0], [0.1, 1.7], [2.0, -1.0]], [[0.0, 0.0], [1.0, -3.0], [0.0, 0.0]])
    for t, p in zip(tr.times, tr.positions):
        np.testing.assert_array_equal(tr.sample(t), p)
    np.testing.assert_array_equal(tr.sample(-1.0), [0.0, 1.0])
    np.testing.assert_array_equal(tr.sample(5.0), [2.0, -1.0])
    assert tr.duration == 1.0
    np.testing.assert_array_equal(tr.start, [0.0, 1.0])
    np.testing.assert_array_equal(tr.final, [2.0, -1.0])


def test_sample_is_cubic_hermite_between_knots() -> None:
    # p(t) = t^3 on [0, 2]: Hermite with exact end slopes reproduces any cubic.
    tr = make([0.0, 2.0], [[0.0], [8.0]], [[0.0], [12.0]])
    for t in np.linspace(0.0, 2.0, 17):
        assert tr.sample(t)[0] == pytest.approx(t**3, abs=1e-12)
        assert tr.sample_velocity(t)[0] == pytest.approx(3 * t**2, abs=1e-12)


def test_trajectory_is_read_only() -> None:
    tr = make([0.0, 1.0], [[0.0], [1.0]])
    with pytest.raises(ValueError):
        tr.positions[0, 0] = 5.0
    tr.final[0] = 7.0  # a copy
    assert tr.final[0] == 1.0


@pytest.mark.parametrize(
    "times, pos, vel, message",
    [
        ([0.1, 1.0], [[0.0], [1.0]], [[0.0], [0.0]], "times must start at 0.0, got 0.1"),
        ([0.0, 1.0, 1.0], [[0.0], [1.0], [2.0]], [[0.0], [0.0], [0.0]], "times must be strictly increasing"),
        ([0.0, 1.0], [[0.0], [1.0], [2.0]], [[0.0], [0.0], [0.0]], "positions must have shape (2, J), got (3, 1)"),
        (
            [0.0, 1.0],
            [[0.0], [1.0]],
            [[0.0, 1.0], [0.0, 1.0]],
            "velocities must have the shape of positions (2, 1), got (2, 2)",
        ),
        ([], [], [], "times must be a non-empty 1-D array, got shape (0,)"),
    ],
)
def test_trajectory_validation(times: list, pos: list, vel: list, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Trajectory(np.array(times, dtype=float), np.array(pos, dtype=float), np.array(vel, dtype=float))
    assert str(err.value) == message


# --- joint_move ----------------------------------------------------------------------------------------


def roundoff(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Per joint, a bound on the float error of a position joint_move or sample() computes (m or rad).

    Both evaluate a handful of products and sums no larger than max(|q0|, |q1|, |q1 - q0|); against the same
    profile evaluated in exact rational arithmetic the worst error seen in 300 random moves was 1.0 (knots)
    and 1.6 (sample) times eps times that magnitude. The bound takes 4, plus 4 smallest subnormals for
    positions so small that rounding is absolute rather than relative.
    """
    scale = np.maximum.reduce([np.abs(q0), np.abs(q1), np.abs(q1 - q0)])
    return 4.0 * (np.finfo(float).eps * scale + np.finfo(float).smallest_subnormal)


def fd_slack(h1: np.ndarray, h2: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Error bound of a second difference over steps h1, h2 when each position is off by at most eps:
    |(e2 - e1) / h2 - (e1 - e0) / h1| / ((h1 + h2) / 2) <= 4 eps / (h1 h2)."""
    return 4.0 * eps[None, :] / (h1 * h2)[:, None]


@settings(max_examples=100, deadline=None)
@given(positions, positions, limits, limits)
@example(
    q0=np.array([0.0, 0.0, -1.192092896e-07, 0.0, 0.0, 0.0]),
    q1=np.array([3.0, 0.0, 3.0, 0.0, 0.0, 0.0]),
    v=np.array([1.421875, 1.0, 2.0, 1.0, 1.0, 1.0]),
    a=np.ones(6),
)  # two switches 1.7e-7 s apart
@example(
    q0=np.array([0.0, 0.0, 0.0, 2.225073858507203e-309, 0.0, 0.0]),
    q1=np.array([0.0, 0.0, 0.0, 2.225073858507203e-309, 0.0, 1.0]),
    v=np.ones(6),
    a=np.ones(6),
)  # subnormal
def test_joint_move_is_minimal_synchronised_and_within_limits(
    q0: np.ndarray, q1: np.ndarray, v: np.ndarray, a: np.ndarray
) -> None:
    assume(np.max(np.abs(q1 - q0)) > 1e-3)
    tr = joint_move(q0, q1, v, a, sample_dt=0.01)
    expected = max(trapezoid_times(d, vi, ai)[0] for d, vi, ai in zip(q1 - q0, v, a))
    assert tr.duration == expected
    np.testing.assert_array_equal(tr.start, q0)
    np.testing.assert_array_equal(tr.final, q1)
    np.testing.assert_array_equal(tr.velocities[0], 0.0)
    np.testing.assert_array_equal(tr.velocities[-1], 0.0)
    assert np.all(np.abs(tr.velocities) <= v * (1 + LIMIT_RTOL))
    assert np.all(np.diff(tr.times) <= 0.01 + TOL)
    # Knots lie on the analytic profile, so finite differences bound the acceleration, up to the rounding of
    # the positions (which matters where two phase switches are close, e.g. 1.7e-7 s apart).
    eps = roundoff(q0, q1)
    h = np.diff(tr.times)
    assert np.all(second_differences(tr) <= a * (1 + LIMIT_RTOL) + fd_slack(h[:-1], h[1:], eps))
    # Between knots sample() follows the same piecewise-quadratic profile (no Hermite overshoot).
    ts, ps = dense(tr)
    dts = np.diff(ts)
    vel = np.diff(ps, axis=0) / dts[:, None]
    assert np.all(np.abs(vel) <= v * (1 + LIMIT_RTOL) + 2 * eps / dts[:, None])
    acc = np.abs(np.diff(vel, axis=0)) / (0.5 * (dts[1:] + dts[:-1]))[:, None]
    assert np.all(acc <= a * (1 + LIMIT_RTOL) + fd_slack(dts[:-1], dts[1:], eps))
    # Every joint moves monotonically from start to goal: it never overshoots.
    lo, hi = np.minimum(q0, q1), np.maximum(q0, q1)
    assert np.all(ps >= lo - eps) and np.all(ps <= hi + eps)


def test_joint_move_is_a_straight_line_when_the_profile_fits_every_joint() -> None:
    q0, q1 = HOME, HOME + np.array([1.0, 0.5, -0.3, 0.2, 0.1, 0.6])
    tr = joint_move(q0, q1, V_MAX, A_MAX)
    frac = (tr.positions - q0) / (q1 - q0)
    np.testing.assert_allclose(frac, frac[:, :1].repeat(6, axis=1), atol=1e-12)


def test_joint_move_stretches_a_joint_whose_limits_do_not_fit_the_slowest_shape() -> None:
    # Joint 0 is acceleration-bound (triangle, T = 2 s), joint 1 would need 0.9 rad/s > 0.5 on that shape.
    tr = joint_move([0.0, 0.0], [1.0, 0.9], [10.0, 0.5], [1.0, 100.0], sample_dt=0.001)
    assert tr.duration == pytest.approx(2.0)
    assert np.max(np.abs(tr.velocities[:, 1])) <= 0.5 + TOL
    assert np.all(second_differences(tr) <= np.array([1.0, 100.0]) * (1 + 1e-6) + 1e-6)
    np.testing.assert_array_equal(tr.final, [1.0, 0.9])


def test_joint_move_samples_every_dt_plus_switches_and_end() -> None:
    tr = joint_move([0.0], [3.0], 1.0, 2.0, sample_dt=0.1)  # T = 3.5, switches at 0.5 and 3.0
    assert tr.duration == 3.5
    np.testing.assert_allclose(tr.times, np.round(np.arange(36) * 0.1, 12), atol=1e-12)
    tr = joint_move([0.0], [3.0], 1.0, 2.0, sample_dt=0.3)
    expected = sorted(set(np.round(np.arange(12) * 0.3, 12)) | {0.5, 3.0, 3.5})
    np.testing.assert_allclose(tr.times, expected, atol=1e-12)


def test_zero_length_move_is_a_single_knot() -> None:
    tr = joint_move(HOME, HOME, V_MAX, A_MAX)
    assert tr.duration == 0.0 and tr.times.tolist() == [0.0]
    np.testing.assert_array_equal(tr.final, HOME)
    np.testing.assert_array_equal(tr.sample(0.5), HOME)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(q0=[0, 0], q1=[1, 1, 1], v_max=1, a_max=1), "q1 has 3 joint values but q0 has 2"),
        (dict(q0=[0, 0], q1=[1, 1], v_max=[1, 0], a_max=1), "v_max must be positive and finite, got [1.0, 0.0]"),
        (
            dict(q0=[0, 0], q1=[1, 1], v_max=1, a_max=[1, 1, 1]),
            "a_max must be a number or have 2 values (one per joint), got shape (3,)",
        ),
        (dict(q0=[0, 0], q1=[1, 1], v_max=1, a_max=-1), "a_max must be positive and finite, got [-1.0, -1.0]"),
        (dict(q0=[0, 0], q1=[1, 1], v_max=1, a_max=1, sample_dt=0), "sample_dt must be positive and finite, got 0"),
        (dict(q0=[0, math.nan], q1=[1, 1], v_max=1, a_max=1), "q0 must be finite, got [0.0, nan]"),
    ],
)
def test_joint_move_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        joint_move(**kwargs)
    assert str(err.value) == message


# --- joint_path and concatenate ----------------------------------------------------------------------


def test_joint_path_stops_at_every_waypoint() -> None:
    wp = np.array([HOME, HOME + 0.3, HOME + 0.3, HOME - 0.2])
    tr = joint_path(wp, V_MAX, A_MAX)
    moves = [joint_move(wp[i], wp[i + 1], V_MAX, A_MAX) for i in range(3)]
    assert tr.duration == pytest.approx(sum(m.duration for m in moves), abs=1e-12)
    t = 0.0
    for i, m in enumerate(moves):
        t += m.duration
        k = int(np.argmin(np.abs(tr.times - t)))
        assert tr.times[k] == pytest.approx(t, abs=1e-12)
        np.testing.assert_array_equal(tr.positions[k], wp[i + 1])
        np.testing.assert_array_equal(tr.velocities[k], 0.0)
    assert np.all(np.abs(tr.velocities) <= V_MAX * (1 + TOL))


def test_joint_path_of_one_waypoint_is_a_single_knot() -> None:
    tr = joint_path(HOME[None, :], V_MAX, A_MAX)
    assert tr.duration == 0.0
    np.testing.assert_array_equal(tr.final, HOME)


def test_joint_path_validation() -> None:
    with pytest.raises(ValueError, match=r"waypoints must be an \(M, J\) array with M >= 1, got shape \(6,\)"):
        joint_path(HOME, V_MAX, A_MAX)
    with pytest.raises(ValueError, match=r"v_max must be a number or have 6 values"):
        joint_path(np.array([HOME, HOME + 0.1]), V_MAX[:5], A_MAX)


def test_concatenate_offsets_times_and_drops_the_shared_knot() -> None:
    a = joint_move([0.0], [1.0], 1.0, 1.0)
    b = joint_move([1.0], [0.5], 1.0, 1.0)
    c = concatenate([a, joint_move([1.0], [1.0], 1.0, 1.0), b])
    assert c.duration == pytest.approx(a.duration + b.duration)
    assert c.times.size == a.times.size + b.times.size - 1
    np.testing.assert_array_equal(c.sample(a.duration), [1.0])
    assert c.sample(a.duration + 0.7)[0] == pytest.approx(b.sample(0.7)[0], abs=1e-12)
    np.testing.assert_array_equal(c.final, [0.5])


def test_concatenate_rejects_gaps_and_mismatches() -> None:
    a = joint_move([0.0], [1.0], 1.0, 1.0)
    with pytest.raises(ValueError) as err:
        concatenate([a, joint_move([1.5], [0.0], 1.0, 1.0)])
    assert str(err.value) == "trajs[1] starts 0.5 rad away from where trajs[0] ends"
    with pytest.raises(ValueError) as err:
        concatenate([a, joint_move([1.0, 0.0], [0.0, 0.0], 1.0, 1.0)])
    assert str(err.value) == "trajs[1] has 2 joints but trajs[0] has 1"
    with pytest.raises(ValueError, match="trajs must contain at least one trajectory"):
        concatenate([])


# --- linear_move ---------------------------------------------------------------------------------------


def line_deviation(tr: Trajectory, p0: np.ndarray, p1: np.ndarray, tcp: np.ndarray | None = None) -> float:
    """Largest distance of the flange (or TCP) at the knots from the segment p0-p1."""
    tool = np.eye(4) if tcp is None else tcp
    pts = np.array([(fk(UR5E, q) @ tool)[:3, 3] for q in tr.positions])
    u = (p1 - p0) / np.linalg.norm(p1 - p0)
    rel = pts - p0
    along = rel @ u
    assert np.all(along >= -1e-9) and np.all(along <= np.linalg.norm(p1 - p0) + 1e-9)
    return float(np.max(np.linalg.norm(rel - np.outer(along, u), axis=1)))


def check_limits(tr: Trajectory, speed: float, tcp: np.ndarray | None = None) -> None:
    tool = np.eye(4) if tcp is None else tcp
    assert np.all(np.abs(tr.velocities) <= V_MAX * (1 + TOL))
    acc = np.abs(np.diff(tr.velocities, axis=0)) / np.diff(tr.times)[:, None]
    assert np.all(acc <= A_MAX * 1.02)
    pts = np.array([(fk(UR5E, q) @ tool)[:3, 3] for q in tr.positions])
    tool_speed = np.linalg.norm(np.diff(pts, axis=0), axis=1) / np.diff(tr.times)
    assert np.all(tool_speed <= speed * (1 + 1e-9))


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(*[st.floats(min_value=-0.15, max_value=0.15)] * 3),
    st.tuples(*[st.floats(min_value=-0.4, max_value=0.4)] * 3),
    st.floats(min_value=0.02, max_value=1.0),
)
def test_linear_move_keeps_the_tool_on_the_line_within_limits(dxyz: tuple, drpy: tuple, speed: float) -> None:
    q0 = np.array([0.4, -1.7, 1.6, -1.5, -1.4, 0.3])
    T0 = fk(UR5E, q0)
    goal = translation(*dxyz) @ T0 @ pose_matrix([0, 0, 0], drpy)
    assume(np.linalg.norm(dxyz) > 1e-3)
    tr = linear_move(UR5E, q0, goal, speed, V_MAX, A_MAX)
    np.testing.assert_array_equal(tr.start, q0)
    assert np.max(np.abs(fk(UR5E, tr.final) - goal)) < 1e-9
    assert line_deviation(tr, T0[:3, 3], goal[:3, 3]) < 1e-9
    check_limits(tr, speed)
    # Between knots the cubic joint interpolation (what sample() and the controller do) stays close too.
    ts = np.linspace(0.0, tr.duration, 301)
    between = Trajectory(ts, np.array([tr.sample(t) for t in ts]), np.zeros((301, 6)))
    assert line_deviation(between, T0[:3, 3], goal[:3, 3]) < 1e-4
    # Orientation follows the slerp of the path parameter (position fraction along the line).
    length = np.linalg.norm(goal[:3, 3] - T0[:3, 3])
    for q in tr.positions:
        T = fk(UR5E, q)
        s = float(np.linalg.norm(T[:3, 3] - T0[:3, 3]) / length)
        assert rotation_angle(T[:3, :3], slerp(T0[:3, :3], goal[:3, :3], s)) < 1e-6


def tool_speeds(tr: Trajectory, n: int = 4001) -> np.ndarray:
    """Flange speed (m/s) as a controller interpolating the knots would move it, on a fine time grid."""
    ts = np.linspace(0.0, tr.duration, n)
    p = np.array([fk(UR5E, tr.sample(t))[:3, 3] for t in ts])
    return np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(ts)


def test_a_slow_line_has_knots_at_the_phase_switches_and_never_overshoots_its_speed() -> None:
    # 0.1 m at 0.02 m/s: the ramp (a few ms) ends long before the first 5 mm sample. Without a knot at the end
    # of the ramp the cubic between the first two knots overshot the tool speed by ~27 %.
    q0 = np.array([0.4, -1.7, 1.6, -1.5, -1.4, 0.3])
    T0 = fk(UR5E, q0)
    tr = linear_move(UR5E, q0, translation(0.1, 0.0, 0.0) @ T0, 0.02, V_MAX, A_MAX)
    ramp = tr.times[1]
    assert 0.0 < ramp < 0.05 and tr.times[-2] == pytest.approx(tr.duration - ramp, abs=1e-12)
    # the second knot is where the ramp ends: the flange is at the cruise speed there
    v_knot = np.linalg.norm(fk(UR5E, tr.positions[2])[:3, 3] - fk(UR5E, tr.positions[1])[:3, 3]) / (
        tr.times[2] - tr.times[1]
    )
    assert v_knot == pytest.approx(0.02, rel=1e-9)
    assert tool_speeds(tr).max() <= 0.02 * (1 + 1e-3)
    assert tr.duration == pytest.approx(0.1 / 0.02 + ramp, rel=1e-9)  # cruise at the speed, ramps at each end


def test_path_move_names_the_limit_and_cruises_at_it() -> None:
    q0 = np.array([0.4, -1.7, 1.6, -1.5, -1.4, 0.3])
    T0 = fk(UR5E, q0)
    goal = translation(0.3, 0.0, -0.1) @ T0
    length = float(np.linalg.norm(goal[:3, 3] - T0[:3, 3]))

    def line(s: float) -> np.ndarray:
        out = T0.copy()
        out[:3, 3] = (1 - s) * T0[:3, 3] + s * goal[:3, 3]
        return out

    slow = path_move(UR5E, q0, line, length, 0.05, V_MAX, A_MAX, 64)
    assert (slow.timing.limit, slow.timing.speed) == ("speed", pytest.approx(0.05, rel=1e-12))
    chords = np.linalg.norm(np.diff([fk(UR5E, q)[:3, 3] for q in slow.trajectory.positions], axis=0), axis=1) / np.diff(
        slow.trajectory.times
    )
    assert chords.max() == pytest.approx(0.05, rel=1e-9)  # cruising at the tool speed, never above
    # A turn of the flange by 3 rad about its axis moves wrist 3 only: its velocity limit sets the cruise, it
    # reaches it exactly, and the move takes the minimal time of that joint's own trapezoid.
    fast = path_move(UR5E, q0, lambda s: T0 @ pose_matrix([0, 0, 0], [0, 0, 3.0 * s]), 0.0, 1.0, V_MAX, A_MAX, 64)
    assert fast.timing.limit == "wrist_3_joint velocity"
    tr = fast.trajectory
    assert np.all(np.abs(tr.velocities) <= V_MAX * (1 + LIMIT_RTOL))
    chord = np.abs(np.diff(tr.positions, axis=0)) / np.diff(tr.times)[:, None] / V_MAX
    assert chord.max() <= 1 + LIMIT_RTOL and chord[:, 5].max() == pytest.approx(1.0, rel=1e-9)
    assert tr.duration == pytest.approx(trapezoid_times(3.0, V_MAX[5], A_MAX[5])[0], rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 5.0)), min_size=6, max_size=6),
    st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 50.0)), min_size=6, max_size=6),
    st.floats(0.0, 2.0),
    st.floats(0.001, 1.0),
    st.booleans(),
)
def test_the_path_rate_is_the_fastest_trapezoid_within_the_limits(
    g: list, h: list, length: float, speed: float, exact: bool
) -> None:
    g_, h_ = np.array(g), np.array(h)
    h_ = np.where(g_ > 0, h_, 0.0)  # a joint that does not move has no curvature
    rate, c, timing = _path_rate(UR5E.joint_names, g_, h_, V_MAX, A_MAX, length, speed, exact)
    if not np.any(g_ > 0):  # no joint moves: a single knot
        assert (rate, c, timing.limit) == (0.0, 0.0, "speed")
        return
    # within every limit
    assert np.all(g_ * rate <= V_MAX * (1 + LIMIT_RTOL)) and length * rate <= speed * (1 + LIMIT_RTOL)
    assert c > 0 and np.all(g_ * c + h_ * rate * rate <= A_MAX * (1 + LIMIT_RTOL))
    if exact and timing.limit == "speed":
        assert rate == pytest.approx(speed / length, rel=1e-12)
        return

    def duration(r: float) -> float:
        cr = float(np.min(np.where(g_ > 0, (A_MAX - h_ * r * r) / np.where(g_ > 0, g_, 1.0), np.inf)))
        return trapezoid_times(1.0, r, cr)[0] if cr > 0 else math.inf

    # no feasible rate is faster (brute force over the whole range)
    top = min(
        speed / length if length > 0 else math.inf,
        float(np.min(np.where(g_ > 0, V_MAX / np.where(g_ > 0, g_, 1), np.inf))),
        float(np.min(np.where(h_ > 0, np.sqrt(A_MAX / np.where(h_ > 0, h_, 1)), np.inf))),
    )
    best = trapezoid_times(1.0, rate, c)[0]
    assert all(best <= duration(float(r)) * (1 + 1e-9) for r in np.linspace(top / 500, top, 500))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(samples=0), "samples must be an integer >= 1, got 0"),
        (dict(length=-1.0), "length must be finite and >= 0, got -1.0"),
        (
            dict(path=lambda s: translation(0.01, 0, 0) @ fk(UR5E, HOME)),
            "path(0) is 0.01 m (rad) away from where q0 puts the tool",
        ),
    ],
)
def test_path_move_validation(kwargs: dict, message: str) -> None:
    args = dict(
        model=UR5E, q0=HOME, path=lambda s: fk(UR5E, HOME), length=0.1, speed=0.1, v_max=V_MAX, a_max=A_MAX, samples=10
    )
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        path_move(**args)
    assert str(err.value) == message


def test_linear_move_at_the_tool_speed_limit() -> None:
    T0 = fk(UR5E, HOME)
    goal = translation(0.3, 0.0, -0.1) @ T0
    tr = linear_move(UR5E, HOME, goal, 0.1, V_MAX, A_MAX)
    check_limits(tr, 0.1)
    assert line_deviation(tr, T0[:3, 3], goal[:3, 3]) < 1e-9
    length = math.hypot(0.3, 0.1)
    assert tr.duration > length / 0.1
    assert tr.duration < length / 0.1 + 1.0  # cruises at the tool speed, ramps are short
    pts = np.array([fk(UR5E, q)[:3, 3] for q in tr.positions])
    assert np.all(np.diff(pts, axis=0) @ (goal[:3, 3] - T0[:3, 3]) > 0)  # always forward along the line


def test_linear_move_of_a_tcp_keeps_the_tcp_on_the_line() -> None:
    tcp = translation(0.0, 0.0, 0.2)
    q0 = np.array([0.4, -1.7, 1.6, -1.5, -1.4, 0.3])
    P0 = fk(UR5E, q0) @ tcp
    goal = translation(0.1, -0.05, 0.05) @ P0 @ pose_matrix([0, 0, 0], [0.3, 0.0, 0.2])
    tr = linear_move(UR5E, q0, goal, 0.2, V_MAX, A_MAX, tcp=tcp)
    assert line_deviation(tr, P0[:3, 3], goal[:3, 3], tcp) < 1e-4
    assert np.max(np.abs(fk(UR5E, tr.final) @ tcp - goal)) < 1e-9
    check_limits(tr, 0.2, tcp)


def test_linear_move_of_zero_length_is_a_single_knot() -> None:
    tr = linear_move(UR5E, HOME, fk(UR5E, HOME), 0.1, V_MAX, A_MAX)
    assert tr.duration == 0.0
    np.testing.assert_array_equal(tr.final, HOME)


def test_linear_move_pure_rotation_is_timed_by_the_joints() -> None:
    T0 = fk(UR5E, HOME)
    goal = T0 @ pose_matrix([0, 0, 0], [0, 0, 1.0])
    tr = linear_move(UR5E, HOME, goal, 0.1, V_MAX, A_MAX)
    np.testing.assert_allclose(tr.final[:5], HOME[:5], atol=1e-9)
    assert tr.final[5] == pytest.approx(1.0, abs=1e-9)
    assert tr.duration == pytest.approx(trapezoid_times(1.0, V_MAX[5], A_MAX[5] / 1.0)[0], rel=1e-6)
    check_limits(tr, 0.1)


def test_linear_move_out_of_reach_names_the_fraction() -> None:
    T0 = fk(UR5E, HOME)
    goal = translation(-1.0, 0.0, 0.0) @ T0
    with pytest.raises(UnreachableError) as err:
        linear_move(UR5E, HOME, goal, 0.1, V_MAX, A_MAX)
    message = str(err.value)
    assert message.startswith("linear move blocked at ")
    fraction = float(message.split()[4].rstrip("%")) / 100
    assert 0.2 < fraction < 0.5
    assert "out of reach" in message


def test_linear_move_through_the_wrist_singularity_is_rejected() -> None:
    # Straight line whose midpoint puts q5 at 0: wrist axes 4 and 6 align.
    q_a = np.array([0.2, -1.5, 1.6, -1.0, 0.3, 0.7])
    q_b = np.array([0.2, -1.5, 1.6, -1.0, -0.3, 0.7])
    with pytest.raises(UnreachableError) as err:
        linear_move(UR5E, q_a, fk(UR5E, q_b), 0.1, V_MAX, A_MAX)
    message = str(err.value)
    assert message.startswith("linear move blocked at ")
    assert "wrist singularity" in message or f"(> {MAX_JOINT_STEP:g}; singularity" in message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(speed=0.0), "speed must be positive and finite, got 0.0"),
        (dict(v_max=V_MAX[:3]), "v_max must be a number or have 6 values (one per joint), got shape (3,)"),
        (dict(a_max=-A_MAX), "a_max must be positive and finite, got [-2.5, -2.5, -3.0, -4.0, -4.0, -4.0]"),
        (dict(q0=HOME[:5]), "q0 has 5 joint values but arm model 'ur5e' has 6"),
        (dict(T_goal=np.eye(3)), "T_goal must be a finite 4x4 homogeneous matrix, got shape (3, 3)"),
        (dict(base_step=-0.1), "base_step must be positive and finite, got -0.1"),
    ],
)
def test_linear_move_validation(kwargs: dict, message: str) -> None:
    args = dict(
        model=UR5E, q0=HOME, T_goal=translation(0.1, 0, 0) @ fk(UR5E, HOME), speed=0.1, v_max=V_MAX, a_max=A_MAX
    )
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        linear_move(**args)
    assert str(err.value) == message
