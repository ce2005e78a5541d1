"""Rigid transforms as 4x4 homogeneous numpy matrices.

Poses are given as ``xyz`` (metres) plus ``rpy``: fixed-axis roll, pitch, yaw in radians, the URDF
convention ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``. Besides building and decomposing poses this module
holds the small rotation toolkit the motion layer needs for Cartesian lines: unit quaternions
``(w, x, y, z)``, the angle between two rotations, and pose interpolation (linear in position, slerp in
orientation). Everything is pure numpy; inputs are validated and bad shapes raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A vector of numbers as the motion functions take it: a sequence or a 1-D array.
Vector = Sequence[float] | np.ndarray

__all__ = [
    "pose_matrix",
    "matrix_to_pose",
    "invert",
    "translation",
    "rpy_matrix",
    "quaternion_from_matrix",
    "matrix_from_quaternion",
    "rotation_angle",
    "slerp",
    "interpolate_pose",
]


def _vector3(value: Sequence[float], name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if v.shape != (3,):
        raise ValueError(f"{name} must have 3 elements, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v.tolist()}")
    return v


def _check_matrix(T: np.ndarray, name: str = "T") -> np.ndarray:
    M = np.asarray(T, dtype=float)
    if M.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 homogeneous matrix, got shape {M.shape}")
    return M


def rpy_matrix(rpy: Sequence[float]) -> np.ndarray:
    """3x3 rotation of fixed-axis roll, pitch, yaw: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = _vector3(rpy, "rpy")
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def pose_matrix(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """4x4 homogeneous transform from a position and fixed-axis roll, pitch, yaw (URDF convention)."""
    T = np.eye(4)
    T[:3, :3] = rpy_matrix(rpy)
    T[:3, 3] = _vector3(xyz, "xyz")
    return T


def matrix_to_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xyz, rpy) of a 4x4 transform; at pitch = ±pi/2 (gimbal lock) roll is reported as 0."""
    M = _check_matrix(T)
    R = M[:3, :3]
    cp = math.hypot(R[0, 0], R[1, 0])
    pitch = math.atan2(-R[2, 0], cp)
    if cp > 1e-9:
        roll = math.atan2(R[2, 1], R[2, 2])
        yaw = math.atan2(R[1, 0], R[0, 0])
    else:
        # Only yaw -/+ roll is defined; put it all in yaw.
        roll = 0.0
        yaw = math.atan2(-R[0, 1], R[1, 1])
    return M[:3, 3].copy(), np.array([roll, pitch, yaw])


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (transpose of the rotation, no general matrix inverse)."""
    M = _check_matrix(T)
    out = np.eye(4)
    Rt = M[:3, :3].T
    out[:3, :3] = Rt
    out[:3, 3] = -Rt @ M[:3, 3]
    return out


def translation(x: float, y: float, z: float) -> np.ndarray:
    """4x4 pure translation."""
    T = np.eye(4)
    T[:3, 3] = _vector3((x, y, z), "translation")
    return T


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation (or the rotation of a 4x4 transform)."""
    M = np.asarray(R, dtype=float)
    if M.shape == (4, 4):
        M = M[:3, :3]
    if M.shape != (3, 3):
        raise ValueError(f"R must be a 3x3 rotation or 4x4 transform, got shape {M.shape}")
    tr = M[0, 0] + M[1, 1] + M[2, 2]
    # Shepperd: divide by the largest of the four candidates for numerical stability.
    if tr >= max(M[0, 0], M[1, 1], M[2, 2]):
        s = 2.0 * math.sqrt(1.0 + tr)
        q = np.array([0.25 * s, (M[2, 1] - M[1, 2]) / s, (M[0, 2] - M[2, 0]) / s, (M[1, 0] - M[0, 1]) / s])
    elif M[0, 0] >= M[1, 1] and M[0, 0] >= M[2, 2]:
        s = 2.0 * math.sqrt(1.0 + M[0, 0] - M[1, 1] - M[2, 2])
        q = np.array([(M[2, 1] - M[1, 2]) / s, 0.25 * s, (M[0, 1] + M[1, 0]) / s, (M[0, 2] + M[2, 0]) / s])
    elif M[1, 1] >= M[2, 2]:
        s = 2.0 * math.sqrt(1.0 + M[1, 1] - M[0, 0] - M[2, 2])
        q = np.array([(M[0, 2] - M[2, 0]) / s, (M[0, 1] + M[1, 0]) / s, 0.25 * s, (M[1, 2] + M[2, 1]) / s])
    else:
        s = 2.0 * math.sqrt(1.0 + M[2, 2] - M[0, 0] - M[1, 1])
        q = np.array([(M[1, 0] - M[0, 1]) / s, (M[0, 2] + M[2, 0]) / s, (M[1, 2] + M[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def matrix_from_quaternion(q: Vector) -> np.ndarray:
    """3x3 rotation of a quaternion (w, x, y, z); it is normalised first."""
    v = np.asarray(q, dtype=float)
    if v.shape != (4,):
        raise ValueError(f"q must have 4 elements (w, x, y, z), got shape {v.shape}")
    n = np.linalg.norm(v)
    if not n > 1e-12:
        raise ValueError("q must be a non-zero quaternion")
    w, x, y, z = v / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_angle(R0: np.ndarray, R1: np.ndarray) -> float:
    """Angle in [0, pi] of the rotation taking R0 to R1 (3x3 rotations or 4x4 transforms)."""
    A, B = np.asarray(R0, dtype=float), np.asarray(R1, dtype=float)
    q = quaternion_from_matrix(A[:3, :3].T @ B[:3, :3])
    return 2.0 * math.atan2(float(np.linalg.norm(q[1:])), abs(float(q[0])))


def slerp(R0: np.ndarray, R1: np.ndarray, s: float) -> np.ndarray:
    """3x3 rotation a fraction s of the way from R0 to R1 along the shortest arc."""
    q0, q1 = quaternion_from_matrix(R0), quaternion_from_matrix(R1)
    dot = float(q0 @ q1)
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 1.0 - 1e-12:
        return matrix_from_quaternion(q0 + s * (q1 - q0))
    theta = math.acos(dot)
    q = (math.sin((1.0 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)
    return matrix_from_quaternion(q)


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, s: float) -> np.ndarray:
    """Pose a fraction s from T0 to T1: position interpolated linearly, orientation by slerp."""
    A, B = _check_matrix(T0, "T0"), _check_matrix(T1, "T1")
    out = np.eye(4)
    out[:3, :3] = slerp(A[:3, :3], B[:3, :3], s)
    out[:3, 3] = (1.0 - s) * A[:3, 3] + s * B[:3, 3]
    return out
