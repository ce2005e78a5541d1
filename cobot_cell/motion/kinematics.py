"""Forward and inverse kinematics of the UR family of 6-axis arms (every model of `cobot_cell.motion.arms`).

An ``ArmModel`` holds standard Denavit-Hartenberg parameters and joint limits; ``fk`` maps joint positions
to the flange pose (``tool0``) in the arm's DH base frame, which is UR's ``base`` frame (``base_link``
rotated by pi about z). ``ik_all`` is the closed-form UR inverse kinematics (shoulder offset, three
parallel axes, offset wrist; up to 8 branches) and returns every non-singular solution within the joint
limits, each checked against ``fk``; ``ik`` picks the one nearest a seed, choosing the 2*pi
equivalent of each joint angle nearest the seed so the arm never spins a full turn needlessly. Targets out
of reach, at a shoulder, elbow or wrist singularity, or outside the joint limits raise ``UnreachableError``
(a ``ValueError``) saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arms import ARMS, JOINT_NAMES, arm_spec
from .transforms import Vector

__all__ = [
    "UnreachableError",
    "ArmModel",
    "arm_model",
    "fk",
    "ik_all",
    "ik",
    "WRIST_TOL",
    "ELBOW_TOL",
    "SHOULDER_TOL",
]

TWO_PI = 2.0 * math.pi
WRIST_TOL = 1e-3
"""|sin q5| below this is a wrist singularity (joint 4 and 6 axes aligned)."""
ELBOW_TOL = 1e-3
"""|sin q3| below this is an elbow singularity (arm fully stretched or folded)."""
SHOULDER_TOL = 1e-3
"""Wrist centre closer than this (m) to the plane of the joint 1 and 2 axes is a shoulder singularity."""
_FK_CHECK = 1e-6  # each IK solution must reproduce the target to this (m, and rotation-matrix entries)


class UnreachableError(ValueError):
    """No joint solution for a target; the message says why (out of reach, singularity, joint limits)."""


@dataclass(frozen=True)
class ArmModel:
    """Standard DH parameters and joint limits of a 6-joint arm."""

    name: str
    d: tuple[float, ...]
    a: tuple[float, ...]
    alpha: tuple[float, ...]
    q_min: tuple[float, ...]
    q_max: tuple[float, ...]
    joint_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for field_name in ("d", "a", "alpha", "q_min", "q_max"):
            values = tuple(float(v) for v in getattr(self, field_name))
            if len(values) != 6:
                raise ValueError(f"ArmModel '{self.name}': {field_name} must have 6 values, got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"ArmModel '{self.name}': {field_name} must be finite, got {list(values)}")
            object.__setattr__(self, field_name, values)
        names = tuple(str(n) for n in self.joint_names)
        if len(names) != 6:
            raise ValueError(f"ArmModel '{self.name}': joint_names must have 6 values, got {len(names)}")
        object.__setattr__(self, "joint_names", names)
        for i, (lo, hi) in enumerate(zip(self.q_min, self.q_max)):
            if not lo < hi:
                raise ValueError(f"ArmModel '{self.name}': q_min[{i}] = {lo} must be below q_max[{i}] = {hi}")

    @property
    def dof(self) -> int:
        """Number of joints."""
        return len(self.d)


_UR_JOINTS = JOINT_NAMES
_UR_ALPHA = (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)

_MODELS: dict[str, ArmModel] = {
    name: ArmModel(
        name=name,
        d=spec.d,
        a=spec.a,
        alpha=_UR_ALPHA,
        q_min=tuple(lo for lo, _ in spec.position),
        q_max=tuple(hi for _, hi in spec.position),
        joint_names=_UR_JOINTS,
    )
    for name, spec in ARMS.items()
}


def arm_model(name: str) -> ArmModel:
    """The kinematic model of a named arm (a key of `cobot_cell.motion.arms.ARMS`, e.g. 'ur5e')."""
    arm_spec(name)  # ValueError listing the known models
    return _MODELS[name]


def _dh(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    ct, st, ca, sa = math.cos(theta), math.sin(theta), math.cos(alpha), math.sin(alpha)
    return np.array(
        [
            [ct, -st * ca, st * sa, a * ct],
            [st, ct * ca, -ct * sa, a * st],
            [0.0, sa, ca, d],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def _rigid_inverse(T: np.ndarray) -> np.ndarray:
    out = np.empty((4, 4))
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -out[:3, :3] @ T[:3, 3]
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


def _joints(model: ArmModel, q: Vector, name: str) -> np.ndarray:
    v = np.asarray(q, dtype=float)
    if v.shape != (model.dof,):
        raise ValueError(f"{name} must have {model.dof} joint values for '{model.name}', got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v.tolist()}")
    return v


def _target(target: np.ndarray) -> np.ndarray:
    T = np.asarray(target, dtype=float)
    if T.shape != (4, 4):
        raise ValueError(f"target must be a 4x4 homogeneous matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("target must be finite")
    return T


def _fk(model: ArmModel, q: np.ndarray) -> np.ndarray:
    T = _dh(float(q[0]), model.d[0], model.a[0], model.alpha[0])
    for i in range(1, len(model.d)):
        T = T @ _dh(float(q[i]), model.d[i], model.a[i], model.alpha[i])
    return T


def joint_origins(model: ArmModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origins of the base and every DH frame up to the flange for many joint vectors at once: q (N, 6) gives
    (N, 7, 3) points in the arm's base frame, consecutive points joined by the arm's links, and the flange poses
    (N, 4, 4)."""
    q = np.atleast_2d(np.asarray(q, dtype=float))
    n = q.shape[0]
    T = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    out = np.zeros((n, model.dof + 1, 3))
    for i in range(model.dof):
        ct, st = np.cos(q[:, i]), np.sin(q[:, i])
        ca, sa = math.cos(model.alpha[i]), math.sin(model.alpha[i])
        A = np.zeros((n, 4, 4))
        A[:, 0, 0], A[:, 0, 1], A[:, 0, 2], A[:, 0, 3] = ct, -st * ca, st * sa, model.a[i] * ct
        A[:, 1, 0], A[:, 1, 1], A[:, 1, 2], A[:, 1, 3] = st, ct * ca, -ct * sa, model.a[i] * st
        A[:, 2, 1], A[:, 2, 2], A[:, 2, 3], A[:, 3, 3] = sa, ca, model.d[i], 1.0
        T = T @ A
        out[:, i + 1] = T[:, :3, 3]
    return out, T


def fk(model: ArmModel, q: Vector) -> np.ndarray:
    """4x4 pose of the flange (tool0) in the arm's base frame for joint positions q."""
    return _fk(model, _joints(model, q, "q"))


def _is_ur_family(model: ArmModel) -> bool:
    d, a, al = model.d, model.a, model.alpha
    return (
        d[1] == 0.0
        and d[2] == 0.0
        and a[0] == 0.0
        and a[3] == 0.0
        and a[4] == 0.0
        and a[5] == 0.0
        and a[1] != 0.0
        and a[2] != 0.0
        and all(abs(x - y) < 1e-12 for x, y in zip(al, _UR_ALPHA))
    )


def _wrap(angle: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    w = math.remainder(angle, TWO_PI)
    return math.pi if w == -math.pi else w


@dataclass
class _Candidate:
    q: np.ndarray  # each angle in (-pi, pi]
    singular: str | None  # reason when the branch is singular (q is then one of infinitely many)


_Reason = tuple[str, float, str]  # (kind, how far off, message): one message per kind, the least far off


def _solve(model: ArmModel, T06: np.ndarray, q6_hint: float) -> tuple[list[_Candidate], list[_Reason]]:
    """All closed-form branches (principal angles) plus reasons for the branches that do not exist."""
    if not _is_ur_family(model):
        raise ValueError(f"ik: arm model '{model.name}' does not have the UR joint structure")
    d1, _, _, d4, d5, d6 = model.d
    a2, a3 = model.a[1], model.a[2]
    al = model.alpha
    reasons: list[_Reason] = []
    cands: list[_Candidate] = []

    # Shoulder: the wrist centre p05 sits d4 along the joint 2 axis z1 = (sin q1, -cos q1, 0).
    p05 = T06[:3, 3] - d6 * T06[:3, 2]
    r = math.hypot(p05[0], p05[1])
    if r < abs(d4) - 1e-9:
        reasons.append(
            (
                "axis",
                abs(d4) - r,
                f"out of reach: wrist centre is {r:.4f} m from the base axis, "
                f"{abs(d4) - r:.2g} m inside the {abs(d4):.4f} m shoulder offset",
            )
        )
        return cands, reasons
    perp = math.sqrt(max(r * r - d4 * d4, 0.0))
    shoulder = None
    if perp < SHOULDER_TOL:
        shoulder = (
            f"shoulder singularity: wrist centre {perp:.2e} m from the plane of the joint 1 and 2 axes "
            f"(< {SHOULDER_TOL:g} m)"
        )
    phi = math.atan2(p05[1], p05[0])
    for sign1 in (1.0, -1.0):
        q1 = _wrap(phi + math.atan2(d4, sign1 * perp))
        s1, c1 = math.sin(q1), math.cos(q1)
        # z1 expressed in the flange frame is (sin q5 cos q6, -sin q5 sin q6, cos q5).
        vx = T06[0, 0] * s1 - T06[1, 0] * c1
        vy = T06[0, 1] * s1 - T06[1, 1] * c1
        vz = T06[0, 2] * s1 - T06[1, 2] * c1
        s5_abs = math.hypot(vx, vy)
        T10 = _rigid_inverse(_dh(q1, d1, 0.0, al[0]))
        for sign5 in (1.0, -1.0):
            q5 = math.atan2(sign5 * s5_abs, vz)
            wrist = None
            if s5_abs < WRIST_TOL:
                wrist = f"wrist singularity: |sin q5| = {s5_abs:.2e} (< {WRIST_TOL:g})"
                q6 = _wrap(q6_hint)
            else:
                q6 = math.atan2(-sign5 * vy, sign5 * vx)
            T45 = _dh(q5, d5, 0.0, al[4])
            T56 = _dh(q6, d6, 0.0, al[5])
            T14 = T10 @ T06 @ _rigid_inverse(T45 @ T56)
            px, py = T14[0, 3], T14[1, 3]
            c3 = (px * px + py * py - a2 * a2 - a3 * a3) / (2.0 * a2 * a3)
            if abs(c3) > 1.0 + 1e-9:
                reach = math.hypot(px, py)
                if c3 > 0:
                    reasons.append(
                        (
                            "far",
                            reach,
                            f"out of reach: wrist is {reach:.4f} m from the shoulder, "
                            f"the arm reaches {abs(a2) + abs(a3):.4f} m",
                        )
                    )
                else:
                    reasons.append(
                        (
                            "near",
                            -reach,
                            f"out of reach: wrist is {reach:.4f} m from the shoulder, "
                            f"closer than the {abs(abs(a2) - abs(a3)):.4f} m the elbow folds to",
                        )
                    )
                continue
            c3 = max(-1.0, min(1.0, c3))
            s3_abs = math.sqrt(1.0 - c3 * c3)
            elbow = None
            if s3_abs < ELBOW_TOL:
                elbow = f"elbow singularity: |sin q3| = {s3_abs:.2e} (< {ELBOW_TOL:g}), arm fully stretched or folded"
            q234 = math.atan2(T14[1, 0], T14[0, 0])
            for sign3 in (1.0, -1.0):
                s3 = sign3 * s3_abs
                q3 = math.atan2(s3, c3)
                q2 = math.atan2(py, px) - math.atan2(a3 * s3, a2 + a3 * c3)
                q4 = q234 - q2 - q3
                q = np.array([q1, _wrap(q2), q3, _wrap(q4), q5, q6])
                cands.append(_Candidate(q, shoulder or wrist or elbow))
    return cands, reasons


def _in_limits(model: ArmModel, Q: np.ndarray, near: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of Q, the 2*pi equivalents within the joint limits nearest `near`, and which rows can be."""
    lo, hi = np.asarray(model.q_min), np.asarray(model.q_max)
    k_lo = np.ceil((lo - Q) / TWO_PI - 1e-12)
    k_hi = np.floor((hi - Q) / TWO_PI + 1e-12)
    ok = np.all(k_lo <= k_hi, axis=1)
    k = np.clip(np.round((near - Q) / TWO_PI), k_lo, k_hi)
    return np.clip(Q + TWO_PI * k, lo, hi), ok


def _limit_reason(model: ArmModel, q: np.ndarray) -> _Reason:
    lo, hi = np.asarray(model.q_min), np.asarray(model.q_max)
    k_lo = np.ceil((lo - q) / TWO_PI - 1e-12)
    k_hi = np.floor((hi - q) / TWO_PI + 1e-12)
    bad = [model.joint_names[i] for i in range(model.dof) if k_lo[i] > k_hi[i]]
    return ("limits", float(len(bad)), f"joint limits: a solution needs {', '.join(bad)} outside its range")


def _verified(model: ArmModel, q: np.ndarray, T06: np.ndarray) -> bool:
    return bool(np.max(np.abs(_fk(model, q) - T06)) < _FK_CHECK)


def _no_solution(reasons: list[_Reason]) -> UnreachableError:
    best: dict[str, _Reason] = {}
    for reason in reasons:
        if reason[0] not in best or reason[1] < best[reason[0]][1]:
            best[reason[0]] = reason
    return UnreachableError("; ".join(r[2] for r in best.values()) or "no solution")


def _singular(c: _Candidate) -> _Reason:
    return (c.singular.split(":")[0] if c.singular else "", 0.0, c.singular or "")


def ik_all(model: ArmModel, target: np.ndarray) -> list[np.ndarray]:
    """All non-singular closed-form solutions within the joint limits (up to 8), each angle taken nearest 0.

    Raises UnreachableError with the reasons when there is none (never returns an empty list).
    """
    T06 = _target(target)
    cands, reasons = _solve(model, T06, 0.0)
    regular = [c.q for c in cands if c.singular is None]
    reasons += [_singular(c) for c in cands if c.singular is not None]
    out: list[np.ndarray] = []
    if regular:
        Q, ok = _in_limits(model, np.array(regular), np.zeros(model.dof))
        for q, raw, inside in zip(Q, regular, ok):
            if not inside:
                reasons.append(_limit_reason(model, raw))
            elif _verified(model, q, T06):
                out.append(q)
    if not out:
        raise _no_solution(reasons)
    return out


def ik(model: ArmModel, target: np.ndarray, seed: Vector) -> np.ndarray:
    """The solution nearest the seed (Euclidean joint distance over 2*pi equivalents within limits).

    Raises UnreachableError if there is none, or if the configuration nearest the seed is singular.
    """
    T06 = _target(target)
    s = _joints(model, seed, "seed")
    cands, reasons = _solve(model, T06, float(s[5]))
    if cands:
        Q, ok = _in_limits(model, np.array([c.q for c in cands]), s)
        reasons += [_limit_reason(model, c.q) for c, inside in zip(cands, ok) if not inside]
        dist = np.where(ok, np.linalg.norm(Q - s, axis=1), np.inf)
        for i in np.argsort(dist, kind="stable"):
            if not ok[i]:
                break
            if cands[i].singular is not None:
                raise UnreachableError(cands[i].singular)
            if _verified(model, Q[i], T06):
                best: np.ndarray = Q[i]
                return best
    raise _no_solution(reasons)
