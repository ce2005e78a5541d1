"""Transforms, forward and inverse kinematics of the UR5e model (pure numpy, no rclpy)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cobot_cell.motion.kinematics import (
    ELBOW_TOL,
    ArmModel,
    UnreachableError,
    arm_model,
    fk,
    ik,
    ik_all,
)
from cobot_cell.motion.transforms import (
    interpolate_pose,
    invert,
    matrix_to_pose,
    pose_matrix,
    quaternion_from_matrix,
    rotation_angle,
    translation,
)

UR5E = arm_model("ur5e")
HOME = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])

angles = st.floats(min_value=-2 * math.pi, max_value=2 * math.pi, allow_nan=False)
elbow = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)
joint_vectors = st.tuples(angles, angles, elbow, angles, angles, angles).map(np.array)
small = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)
rpys = st.tuples(small, st.floats(min_value=-1.5, max_value=1.5), small)
xyzs = st.tuples(*[st.floats(min_value=-2, max_value=2, allow_nan=False)] * 3)


def wrapped(d: np.ndarray) -> np.ndarray:
    """Angle differences wrapped to [-pi, pi)."""
    return np.remainder(np.asarray(d) + math.pi, 2 * math.pi) - math.pi


def shoulder_distance(q: np.ndarray) -> float:
    """Distance of the wrist centre from the plane of the joint 1 and 2 axes."""
    T = fk(UR5E, q)
    p05 = T[:3, 3] - UR5E.d[5] * T[:3, 2]
    return math.sqrt(max(p05[0] ** 2 + p05[1] ** 2 - UR5E.d[3] ** 2, 0.0))


def regular(q: np.ndarray) -> bool:
    """Well away from the wrist, elbow and shoulder singularities."""
    return abs(math.sin(q[4])) > 0.05 and abs(math.sin(q[2])) > 0.05 and shoulder_distance(q) > 0.01


def pose_error(A: np.ndarray, B: np.ndarray) -> tuple[float, float]:
    """(position error m, rotation error rad) between two poses."""
    return float(np.linalg.norm(A[:3, 3] - B[:3, 3])), rotation_angle(A, B)


def test_motion_layer_imports_without_rclpy() -> None:
    code = (
        "import sys; sys.modules['rclpy'] = None; "
        "import cobot_cell.motion.transforms, cobot_cell.motion.kinematics, cobot_cell.motion.trajectory"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- transforms ---------------------------------------------------------------------------------------


def test_pose_matrix_uses_fixed_axis_rpy_yaw_pitch_roll_order() -> None:
    r, p, y = 0.3, -0.4, 1.1
    Rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    Ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    T = pose_matrix([1, 2, 3], [r, p, y])
    np.testing.assert_allclose(T[:3, :3], Rz @ Ry @ Rx, atol=1e-15)
    np.testing.assert_array_equal(T[:3, 3], [1, 2, 3])
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_yaw_quarter_turn_maps_x_to_y() -> None:
    T = pose_matrix([0, 0, 0], [0, 0, math.pi / 2])
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-15)


@given(xyzs, rpys)
def test_matrix_to_pose_round_trips(xyz: tuple, rpy: tuple) -> None:
    out_xyz, out_rpy = matrix_to_pose(pose_matrix(xyz, rpy))
    np.testing.assert_allclose(out_xyz, xyz, atol=1e-12)
    np.testing.assert_allclose(wrapped(out_rpy - np.array(rpy)), 0.0, atol=1e-9)


def test_matrix_to_pose_at_gimbal_lock_keeps_the_rotation() -> None:
    T = pose_matrix([0, 0, 0], [0.4, math.pi / 2, 0.1])
    _, rpy = matrix_to_pose(T)
    assert rpy[0] == 0.0
    np.testing.assert_allclose(pose_matrix([0, 0, 0], rpy), T, atol=1e-12)


@given(xyzs, rpys)
def test_invert_is_the_inverse(xyz: tuple, rpy: tuple) -> None:
    T = pose_matrix(xyz, rpy)
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(invert(T), np.linalg.inv(T), atol=1e-12)


def test_translation() -> None:
    T = translation(0.1, -0.2, 0.3)
    np.testing.assert_array_equal(T, [[1, 0, 0, 0.1], [0, 1, 0, -0.2], [0, 0, 1, 0.3], [0, 0, 0, 1]])


def test_quaternion_of_half_turn_is_unit_and_recovers_angle() -> None:
    T = pose_matrix([0, 0, 0], [math.pi, 0, 0])
    q = quaternion_from_matrix(T)
    np.testing.assert_allclose(np.abs(q), [0, 1, 0, 0], atol=1e-15)
    assert rotation_angle(np.eye(4), T) == pytest.approx(math.pi)


def test_interpolate_pose_halfway() -> None:
    A = pose_matrix([0, 0, 0], [0, 0, 0])
    B = pose_matrix([1, 2, 3], [0, 0, 1.0])
    M = interpolate_pose(A, B, 0.5)
    np.testing.assert_allclose(M, pose_matrix([0.5, 1, 1.5], [0, 0, 0.5]), atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(A, B, 1.0), B, atol=1e-12)


@pytest.mark.parametrize(
    "xyz, rpy, message",
    [
        ([0, 0], [0, 0, 0], "xyz must have 3 elements, got shape (2,)"),
        ([0, 0, 0], [0, 0, 0, 0], "rpy must have 3 elements, got shape (4,)"),
        ([0, 0, math.nan], [0, 0, 0], "xyz must be finite, got [0.0, 0.0, nan]"),
    ],
)
def test_pose_matrix_rejects_bad_vectors(xyz: list, rpy: list, message: str) -> None:
    with pytest.raises(ValueError) as err:
        pose_matrix(xyz, rpy)
    assert str(err.value) == message


def test_matrix_to_pose_rejects_non_4x4() -> None:
    with pytest.raises(ValueError, match=r"T must be a 4x4 homogeneous matrix, got shape \(3, 3\)"):
        matrix_to_pose(np.eye(3))


# --- model and forward kinematics ---------------------------------------------------------------------


def test_ur5e_model_parameters() -> None:
    assert UR5E.d == (0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996)
    assert UR5E.a == (0.0, -0.425, -0.3922, 0.0, 0.0, 0.0)
    assert UR5E.alpha == (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)
    assert UR5E.joint_names == (
        "shoulder_pan_joint",
        "shoulder_lift_joint",
        "elbow_joint",
        "wrist_1_joint",
        "wrist_2_joint",
        "wrist_3_joint",
    )
    assert UR5E.q_max == (2 * math.pi, 2 * math.pi, math.pi, 2 * math.pi, 2 * math.pi, 2 * math.pi)
    assert UR5E.q_min == tuple(-x for x in UR5E.q_max)


def test_unknown_arm_model() -> None:
    with pytest.raises(ValueError) as err:
        arm_model("ur99")
    assert str(err.value) == (
        "unknown arm model 'ur99': expected one of ur3e, ur5e, ur7e, ur10e, ur12e, ur15, ur16e, ur20, ur30"
    )


def test_arm_model_validates_lengths_and_limits() -> None:
    with pytest.raises(ValueError, match=r"ArmModel 'x': d must have 6 values, got 5"):
        ArmModel("x", (0.0,) * 5, (0.0,) * 6, (0.0,) * 6, (-1.0,) * 6, (1.0,) * 6, ("j",) * 6)
    with pytest.raises(ValueError, match=r"ArmModel 'x': q_min\[2\] = 1.0 must be below q_max\[2\] = 1.0"):
        ArmModel("x", (0.0,) * 6, (0.0,) * 6, (0.0,) * 6, (-1.0, -1.0, 1.0, -1.0, -1.0, -1.0), (1.0,) * 6, ("j",) * 6)


def test_fk_at_zero_is_the_stretched_arm() -> None:
    # All joints at zero: arm stretched along -x, flange offset by d4 + d6 along -y, d1 - d5 up.
    T = fk(UR5E, np.zeros(6))
    np.testing.assert_allclose(T[:3, 3], [-0.8172, -0.2329, 0.0628], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)


def test_fk_at_home_points_the_flange_down() -> None:
    T = fk(UR5E, HOME)
    np.testing.assert_allclose(T[:3, 3], [-0.3922 - 0.0997, -0.1333, 0.1625 + 0.425 - 0.0996], atol=1e-12)
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-12)


@given(joint_vectors)
def test_fk_matches_an_independent_chain_of_elementary_transforms(q: np.ndarray) -> None:
    T = np.eye(4)
    for th, d, a, al in zip(q, UR5E.d, UR5E.a, UR5E.alpha):
        T = (
            T
            @ pose_matrix([0, 0, 0], [0, 0, th])
            @ translation(0, 0, d)
            @ translation(a, 0, 0)
            @ pose_matrix([0, 0, 0], [al, 0, 0])
        )
    np.testing.assert_allclose(fk(UR5E, q), T, atol=1e-12)


def test_fk_rejects_wrong_joint_count() -> None:
    with pytest.raises(ValueError, match=r"q must have 6 joint values for 'ur5e', got shape \(5,\)"):
        fk(UR5E, np.zeros(5))


# --- inverse kinematics -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(joint_vectors)
def test_ik_all_contains_the_generating_configuration(q: np.ndarray) -> None:
    assume(regular(q))
    T = fk(UR5E, q)
    sols = ik_all(UR5E, T)
    assert 1 <= len(sols) <= 8
    assert min(float(np.max(np.abs(wrapped(s - q)))) for s in sols) < 1e-9
    for s in sols:
        assert np.max(np.abs(fk(UR5E, s) - T)) < 1e-9
        assert np.all(s >= UR5E.q_min) and np.all(s <= UR5E.q_max)


@settings(max_examples=300, deadline=None)
@given(joint_vectors)
def test_ik_seeded_with_the_configuration_returns_it_exactly(q: np.ndarray) -> None:
    assume(regular(q))
    np.testing.assert_allclose(ik(UR5E, fk(UR5E, q), q), q, rtol=0, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(joint_vectors, joint_vectors)
def test_ik_round_trips_through_fk(q: np.ndarray, seed: np.ndarray) -> None:
    assume(regular(q))
    T = fk(UR5E, q)
    try:
        sol = ik(UR5E, T, seed)
    except UnreachableError as exc:
        # Only allowed when the branch nearest the seed is singular, which regular(q) rules out for q's.
        pytest.fail(f"regular target refused: {exc}")
    dp, dr = pose_error(fk(UR5E, sol), T)
    assert dp < 1e-6 and dr < 1e-6


@settings(max_examples=200, deadline=None)
@given(joint_vectors, joint_vectors)
def test_ik_picks_the_solution_nearest_the_seed_over_all_wraps(q: np.ndarray, seed: np.ndarray) -> None:
    assume(regular(q))
    T = fk(UR5E, q)
    sol = ik(UR5E, T, seed)
    # Brute force: every solution, every in-limit 2*pi equivalent of every joint. An equivalent landing
    # exactly on a limit may be in or out by rounding, so bound with strict and with loose limits.
    lo, hi = np.array(UR5E.q_min), np.array(UR5E.q_max)

    def nearest(slack: float) -> float:
        best = math.inf
        for s in ik_all(UR5E, T):
            total = 0.0
            for j in range(6):
                options = [x for x in s[j] + 2 * math.pi * np.arange(-3, 4) if lo[j] - slack <= x <= hi[j] + slack]
                total += min(((x - seed[j]) ** 2 for x in options), default=math.inf)
            best = min(best, total)
        return best

    got = float(np.sum((sol - seed) ** 2))
    assert nearest(1e-6) - 1e-9 <= got <= nearest(0.0) + 1e-9


def test_ik_takes_the_wrap_nearest_the_seed_instead_of_spinning() -> None:
    q = np.array([5.5, -1.2, 1.4, -1.8, -1.5, -5.9])
    sol = ik(UR5E, fk(UR5E, q), q + 0.01)
    np.testing.assert_allclose(sol, q, atol=1e-9)
    principal = ik(UR5E, fk(UR5E, q), wrapped(q))
    np.testing.assert_allclose(principal, wrapped(q), atol=1e-9)


def test_ik_near_seed_returns_the_neighbouring_branch_member() -> None:
    q = np.array([0.3, -1.8, 1.9, -1.6, -1.4, 0.4])
    T = fk(UR5E, q)
    for sol in ik_all(UR5E, T):
        np.testing.assert_allclose(ik(UR5E, T, sol + 0.05), sol, atol=1e-9)


def test_ik_all_finds_eight_solutions_for_a_generic_pose() -> None:
    q = np.array([0.3, -1.8, 1.9, -1.6, -1.4, 0.4])
    sols = ik_all(UR5E, fk(UR5E, q))
    assert len(sols) == 8
    assert len({tuple(np.round(s, 6)) for s in sols}) == 8


@pytest.mark.parametrize(
    "target, reason",
    [
        (translation(2.0, 0.0, 0.3) @ pose_matrix([0, 0, 0], [math.pi, 0, 0]), "out of reach: wrist is "),
        (
            translation(0.0, 0.0, 0.5) @ pose_matrix([0, 0, 0], [math.pi, 0, 0]),
            "out of reach: wrist centre is 0.0000 m from the base axis, 0.13 m inside the 0.1333 m shoulder offset",
        ),
    ],
)
def test_out_of_reach_raises_with_a_reason(target: np.ndarray, reason: str) -> None:
    with pytest.raises(UnreachableError) as err:
        ik(UR5E, target, HOME)
    assert str(err.value).startswith(reason)
    with pytest.raises(UnreachableError):
        ik_all(UR5E, target)
    assert isinstance(err.value, ValueError)


def test_far_target_message_names_the_reach() -> None:
    target = translation(2.0, 0.0, 0.3) @ pose_matrix([0, 0, 0], [math.pi, 0, 0])
    with pytest.raises(UnreachableError) as err:
        ik_all(UR5E, target)
    # One message per kind of failure: the branch nearest to reaching it.
    assert str(err.value) == "out of reach: wrist is 1.9106 m from the shoulder, the arm reaches 0.8172 m"


def test_wrist_singularity_nearest_the_seed_raises() -> None:
    q = np.array([0.2, -1.3, 1.5, -1.0, 0.0, 0.7])
    with pytest.raises(UnreachableError) as err:
        ik(UR5E, fk(UR5E, q), q)
    assert str(err.value).startswith("wrist singularity: |sin q5| = ")


def test_wrist_singular_branches_are_left_out_of_ik_all() -> None:
    q = np.array([0.2, -1.3, 1.5, -1.0, 0.0, 0.7])
    T = fk(UR5E, q)
    sols = ik_all(UR5E, T)
    assert len(sols) == 4
    assert all(abs(math.sin(s[4])) > 0.1 for s in sols)


def test_shoulder_singularity_raises() -> None:
    # Wrist centre in the plane of axes 1 and 2: a3 sin q3 - d5 cos(q3 + q4) = 0 with q2 = -pi/2.
    q3 = 0.2
    q4 = math.acos(UR5E.a[2] * math.sin(q3) / UR5E.d[4]) - q3
    q = np.array([0.3, -math.pi / 2, q3, q4, -1.2, 0.5])
    assert shoulder_distance(q) < 1e-9
    with pytest.raises(UnreachableError) as err:
        ik(UR5E, fk(UR5E, q), q)
    assert str(err.value).startswith("shoulder singularity: wrist centre ")
    with pytest.raises(UnreachableError, match="^shoulder singularity"):
        ik_all(UR5E, fk(UR5E, q))


def test_elbow_singularity_raises() -> None:
    q = np.array([0.3, -1.0, 0.0, -1.0, -1.2, 0.5])
    with pytest.raises(UnreachableError) as err:
        ik(UR5E, fk(UR5E, q), q)
    assert str(err.value).startswith("elbow singularity: |sin q3| = ")
    assert f"(< {ELBOW_TOL:g}), arm fully stretched or folded" in str(err.value)


def test_joint_limits_exclude_solutions() -> None:
    narrow = ArmModel(
        "narrow",
        UR5E.d,
        UR5E.a,
        UR5E.alpha,
        (-0.1, -math.pi, -math.pi, -math.pi, -math.pi, -math.pi),
        (0.1, math.pi, math.pi, math.pi, math.pi, math.pi),
        UR5E.joint_names,
    )
    q = np.array([0.0, -1.8, 1.9, -1.6, -1.4, 0.4])
    T = fk(narrow, q)
    sols = ik_all(narrow, T)
    assert len(sols) == 4 and all(abs(s[0]) <= 0.1 for s in sols)
    far = fk(narrow, np.array([1.0, -1.8, 1.9, -1.6, -1.4, 0.4]))
    with pytest.raises(UnreachableError) as err:
        ik(narrow, far, q)
    assert str(err.value) == "joint limits: a solution needs shoulder_pan_joint outside its range"


def test_ik_validates_arguments() -> None:
    with pytest.raises(ValueError, match=r"target must be a 4x4 homogeneous matrix, got shape \(3, 4\)"):
        ik(UR5E, np.eye(4)[:3], HOME)
    with pytest.raises(ValueError, match=r"seed must have 6 joint values for 'ur5e', got shape \(7,\)"):
        ik(UR5E, fk(UR5E, HOME), np.zeros(7))
