"""Benchmark: closed-form IK against FK of the same arm model, side by side in one run, plus its accuracy.

Run: .venv/bin/python bench/ik_speed.py [--poses 2000] [--runs 7]
Prints the machine, then per call: FK, IK nearest a seed (what the skills call), IK of all solutions, and for
reference a numerical IK (damped least squares on the same FK, in numpy, the way a generic solver such as
Pinocchio's CLIK iterates) from a nearby and from a random seed. Each is timed over the same random reachable
poses, alternating with FK in the same run (median of --runs), and reported as calls/s and the ratio to FK.
Accuracy: FK of each IK solution against its target (position m, rotation rad).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import cpu_model, paired_medians

from cobot_cell.motion.kinematics import UnreachableError, arm_model, fk, ik, ik_all
from cobot_cell.motion.transforms import rotation_angle

UR5E = arm_model("ur5e")


def regular_configurations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n joint vectors well away from the wrist, elbow and shoulder singularities."""
    out = []
    while len(out) < n:
        q = rng.uniform(-math.pi, math.pi, 6)
        T = fk(UR5E, q)
        p05 = T[:3, 3] - UR5E.d[5] * T[:3, 2]
        shoulder = math.sqrt(max(p05[0] ** 2 + p05[1] ** 2 - UR5E.d[3] ** 2, 0.0))
        if abs(math.sin(q[4])) > 0.05 and abs(math.sin(q[2])) > 0.05 and shoulder > 0.01:
            out.append(q)
    return np.array(out)


def jacobian(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flange pose and geometric Jacobian (6 x 6, linear over angular) from the DH chain."""
    T = np.eye(4)
    origins, axes = [], []
    for th, d, a, al in zip(q, UR5E.d, UR5E.a, UR5E.alpha):
        origins.append(T[:3, 3].copy())
        axes.append(T[:3, 2].copy())
        ct, st, ca, sa = math.cos(th), math.sin(th), math.cos(al), math.sin(al)
        T = T @ np.array(
            [[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]]
        )
    J = np.empty((6, 6))
    for i, (o, z) in enumerate(zip(origins, axes)):
        J[:3, i] = np.cross(z, T[:3, 3] - o)
        J[3:, i] = z
    return T, J


def numeric_ik(
    target: np.ndarray, seed: np.ndarray, tol: float = 1e-10, max_iter: int = 200, damping: float = 1e-3
) -> tuple[np.ndarray | None, int]:
    """Damped least-squares IK: one solution near the seed, or None if it does not converge."""
    q = seed.copy()
    for k in range(1, max_iter + 1):
        T, J = jacobian(q)
        dp = target[:3, 3] - T[:3, 3]
        R = target[:3, :3] @ T[:3, :3].T
        dw = 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
        err = np.concatenate([dp, dw])
        if np.linalg.norm(err) < tol:
            return q, k
        q = q + J.T @ np.linalg.solve(J @ J.T + damping**2 * np.eye(6), err)
    return None, max_iter


def main() -> None:
    """Print the machine, the timings side by side and the accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=2000, help="random reachable poses per timed loop")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (median reported)")
    args = parser.parse_args()

    print(f"python {platform.python_version()} ({platform.python_implementation()}), numpy {np.__version__}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    rng = np.random.default_rng(7)
    qs = regular_configurations(args.poses, rng)
    targets = [fk(UR5E, q) for q in qs]
    near = qs + rng.uniform(-0.05, 0.05, qs.shape)  # a seed as a skill has it: the previous sample
    far = rng.uniform(-math.pi, math.pi, qs.shape)
    n = len(qs)

    def fk_all() -> None:
        for q in qs:
            fk(UR5E, q)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("ik (nearest a seed)", lambda: [ik(UR5E, T, s) for T, s in zip(targets, near)]),
        ("ik_all (every solution)", lambda: [ik_all(UR5E, T) for T in targets]),
    ]
    few = max(1, n // 10)  # the numerical solver is slow: time it on a tenth of the poses
    cases_numeric: list[tuple[str, Callable[[], object]]] = [
        ("numeric DLS, near seed", lambda: [numeric_ik(T, s) for T, s in zip(targets[:few], near[:few])]),
        ("numeric DLS, random seed", lambda: [numeric_ik(T, s) for T, s in zip(targets[:few], far[:few])]),
    ]
    print()
    print(
        f"{n} random reachable poses of the ur5e model (away from singularities), median of {args.runs} runs,"
        " each timed alternately with FK of the same poses"
    )
    print(f"  {'':<26} {'us/call':>9} {'calls/s':>10} {'FK us/call':>11} {'FK calls/s':>11} {'ratio':>7}")
    for name, fn in cases + cases_numeric:
        count = n if (name, fn) in cases else few
        t_case, t_fk = paired_medians(fn, fk_all, args.runs)
        per, per_fk = t_case / count, t_fk / n
        print(
            f"  {name:<26} {per * 1e6:>9.1f} {1 / per:>10.0f} {per_fk * 1e6:>11.1f} {1 / per_fk:>11.0f} "
            f"{per / per_fk:>6.1f}x"
        )

    print()
    print("accuracy: FK of the solution against the target")
    dp, dr, counts = [], [], []
    for T, s in zip(targets, near):
        q = ik(UR5E, T, s)
        F = fk(UR5E, q)
        dp.append(float(np.linalg.norm(F[:3, 3] - T[:3, 3])))
        dr.append(rotation_angle(F, T))
    for T in targets:
        sols = ik_all(UR5E, T)
        counts.append(len(sols))
        for q in sols:
            F = fk(UR5E, q)
            dp.append(float(np.linalg.norm(F[:3, 3] - T[:3, 3])))
            dr.append(rotation_angle(F, T))
    print(
        f"  closed form: max position error {max(dp):.1e} m, max rotation error {max(dr):.1e} rad "
        f"over {len(dp)} solutions; solutions per pose: mean {np.mean(counts):.2f}, "
        f"{np.mean(np.array(counts) == 8):.0%} of poses have all 8"
    )
    for label, seeds in (("near", near), ("random", far)):
        iters, fails, errs, other_branch = [], 0, [], 0
        for T, s, q0 in zip(targets[:few], seeds[:few], qs[:few]):
            q, k = numeric_ik(T, s)
            iters.append(k)
            if q is None:
                fails += 1
                continue
            F = fk(UR5E, q)
            errs.append(float(np.linalg.norm(F[:3, 3] - T[:3, 3])))
            d = np.remainder(q - q0 + math.pi, 2 * math.pi) - math.pi
            other_branch += int(np.max(np.abs(d)) > 1e-6)
        print(
            f"  numeric DLS, {label} seed: median {statistics.median(iters):.0f} iterations, "
            f"{fails}/{few} did not converge in 200, max position error {max(errs, default=math.nan):.1e} m, "
            f"{other_branch}/{few - fails} landed on another branch than the pose's own"
        )
    try:
        ik(UR5E, fk(UR5E, np.array([0.2, -1.3, 1.5, -1.0, 0.0, 0.7])), np.array([0.2, -1.3, 1.5, -1.0, 0.0, 0.7]))
    except UnreachableError as exc:
        print(f"  at a wrist singularity the closed form refuses with a reason: {exc}")
    print()
    print("ratio = time per call / time per FK call of the same poses, timed alternately in this run")


if __name__ == "__main__":
    main()
