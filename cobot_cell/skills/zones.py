"""Shared zones seen through forward kinematics: which zones a cobot's links are in at a pose, or enter along a move.

A zone (cell file `zones:`) is a set of axis-aligned boxes in the cell frame. An arm is modelled as the chain of
its DH frame origins from the base to the flange, then the flange to each tool's TCP, every link a capsule of
`LINK_RADIUS`: the arm is in a zone when a point along any link is within the radius of one of its boxes. A move
is sampled at its knots and in between, so that no joint turns more than `MAX_STEP` rad between two samples.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..core.model import CellConfig
from ..core.plan import Move, TrajectoryLike
from ..motion.kinematics import arm_model, joint_origins
from ..motion.transforms import pose_matrix

LINK_RADIUS = 0.06  # m: a UR link's radius, about
MAX_STEP = 0.05  # rad between samples along a move
POINTS_PER_LINK = 4  # points along each link, ends included
CACHE = 4096  # moves remembered (a plan made ahead is checked again when dispatched)


class CellZones:
    """The cell's zones as the sequencer asks about them (`core.sequencer.ZoneMap`)."""

    def __init__(self, cfg: CellConfig, radius: float = LINK_RADIUS):
        self.names = list(cfg.zones)
        boxes = [(name, lo, hi) for name, zone in cfg.zones.items() for lo, hi in zone.boxes(cfg.stations)]
        self._box_zone = np.array([self.names.index(n) for n, _, _ in boxes], dtype=int)
        self._lo = np.array([lo for _, lo, _ in boxes], dtype=float).reshape(-1, 3) - radius
        self._hi = np.array([hi for _, _, hi in boxes], dtype=float).reshape(-1, 3) + radius
        self._arms = {}
        for name, cobot in cfg.cobots.items():
            base = pose_matrix(cobot.base.xyz, cobot.base.rpy)
            tcps = [np.array([*t.tcp, 1.0]) for t in cobot.tools.values()] or [np.array([0.0, 0.0, 0.0, 1.0])]
            self._arms[name] = (arm_model(cobot.model), base, np.stack(tcps))
        self._cache: OrderedDict[int, tuple[object, frozenset[str]]] = OrderedDict()

    def points(self, cobot: str, q: np.ndarray) -> np.ndarray:
        """Points along the arm's links (N, P, 3) in the cell frame for joint vectors q (N, 6)."""
        model, base, tcps = self._arms[cobot]
        q = np.atleast_2d(np.asarray(q, dtype=float))
        origins, flange = joint_origins(model, q)  # (N, 7, 3), (N, 4, 4) in the base frame
        n = q.shape[0]
        tips = np.einsum("nij,tj->nti", flange, tcps)[..., :3]  # (N, T, 3)
        chain = [origins[:, i : i + 2] for i in range(origins.shape[1] - 1)]
        chain += [np.stack([origins[:, -1], tips[:, t]], axis=1) for t in range(tips.shape[1])]
        u = np.linspace(0.0, 1.0, POINTS_PER_LINK)[None, :, None]
        pts = np.concatenate([seg[:, :1] + (seg[:, 1:2] - seg[:, :1]) * u for seg in chain], axis=1)
        homo = np.concatenate([pts, np.ones((n, pts.shape[1], 1))], axis=2)
        out: np.ndarray = np.einsum("ij,npj->npi", base, homo)[..., :3]
        return out

    def _zones(self, cobot: str, q: np.ndarray) -> frozenset[str]:
        if not self.names:
            return frozenset()
        pts = self.points(cobot, q).reshape(-1, 3)  # (M, 3)
        inside = np.all((pts[:, None, :] >= self._lo[None]) & (pts[:, None, :] <= self._hi[None]), axis=2)
        hit = np.unique(self._box_zone[np.any(inside, axis=0)])
        return frozenset(self.names[i] for i in hit)

    def at(self, cobot: str, q: np.ndarray) -> frozenset[str]:
        """Zones any link of the arm is in at joint positions q."""
        return self._zones(cobot, np.asarray(q, dtype=float)[None])

    def during(self, cobot: str, move: Move) -> frozenset[str]:
        """Zones any link of the arm enters along the move."""
        traj = move.trajectory
        key = id(traj)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is traj:
            self._cache.move_to_end(key)
            return hit[1]
        zones = self._zones(cobot, samples(traj))
        self._cache[key] = (traj, zones)
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return zones


def samples(traj: TrajectoryLike) -> np.ndarray:
    """Joint vectors along a trajectory: its knots, and between them so no joint turns more than MAX_STEP."""
    positions = getattr(traj, "positions", None)
    if positions is None:
        final: np.ndarray = np.asarray(traj.final, dtype=float)
        return np.atleast_2d(final)
    pos = np.asarray(positions, dtype=float)
    out = [pos[:1]]
    for a, b in zip(pos[:-1], pos[1:]):
        k = max(1, int(np.ceil(np.max(np.abs(b - a)) / MAX_STEP)))
        out.append(a + (b - a) * (np.arange(1, k + 1)[:, None] / k))
    return np.concatenate(out)
