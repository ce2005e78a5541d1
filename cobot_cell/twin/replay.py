"""Collision check of a planned schedule: every cobot's joint trajectories replayed kinematically in the twin.

`Timeline` is the schedule as the check needs it: per cobot, the moves in time order, each with the step and
part it belongs to and its joint trajectory on the cell clock. `plan_timeline` produces it by running the cell
controller on a virtual clock with fake cobots (moves take exactly their planned time), the way
`cobot-cell estimate` predicts cycle times; `first_collision` sweeps the timeline through the twin's geometry.

The replay moves the arms and tools only: parts are not in it (the physics backend checks them while running).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..core.config import CellConfig, Step
from ..core.plan import SkillPlan, TrajectoryLike
from ..core.ports import Pending
from .model import TwinModel, contacts, home_state

log = logging.getLogger(__name__)

REPLAY_STEP = 0.005
"""Time step (s) of the collision sweep: at the cells' joint speeds (<= 3 rad/s) a link moves a few mm."""
REPLAY_TOLERANCE = 0.0005
"""Penetration (m) that counts as a collision in the replay."""


@dataclass(frozen=True)
class TimedMove:
    """One planned move of one cobot: when, for which step and part, along which joint trajectory."""

    t_start: float
    t_end: float
    step: str
    part: int
    times: np.ndarray
    """Knot times (s) from t_start."""
    positions: np.ndarray
    """Joint positions (rad) at the knots, one row per knot."""
    velocities: np.ndarray | None = None
    """Joint velocities (rad/s) at the knots, when the trajectory has them."""

    def at(self, t: float) -> np.ndarray:
        """Joint positions at cell time t (linear between knots, clamped to the ends)."""
        rel = t - self.t_start
        return np.array([np.interp(rel, self.times, self.positions[:, j]) for j in range(self.positions.shape[1])])


@dataclass
class Timeline:
    """The planned moves of every cobot of a cell, each list in time order."""

    moves: dict[str, list[TimedMove]]
    home: dict[str, np.ndarray]

    @property
    def end(self) -> float:
        """When the last move ends (s)."""
        return max((m[-1].t_end for m in self.moves.values() if m), default=0.0)

    def position(self, cobot: str, t: float) -> tuple[np.ndarray, TimedMove | None]:
        """A cobot's joint positions at time t and the move under way (None between moves)."""
        moves = self.moves[cobot]
        starts = [m.t_start for m in moves]
        k = int(np.searchsorted(starts, t, side="right")) - 1
        if k < 0:
            return self.home[cobot], None
        m = moves[k]
        if t <= m.t_end:
            return m.at(t), m
        return np.asarray(m.positions[-1]), None


def plan_timeline(cfg: CellConfig, job: str | None = None, parts: int = 1, max_dt: float = 0.05) -> Timeline:
    """The schedule the cell controller runs for `parts` parts of a job, on a virtual clock with fake cobots: the
    steady-state model of `cobot-cell estimate` (`skills.schedule.simulate`: the same controller, resources and
    event loop), with every move it dispatches recorded with the step and part that planned it. (`max_dt` is
    kept for callers; the model advances from event to event.)"""
    from ..core.plan import Move
    from ..core.ports import FakeCobot
    from ..skills.schedule import simulate

    owner: dict[int, deque[tuple[str, int]]] = {}  # a trajectory object may be planned again (cached, next part)
    moves: dict[str, list[TimedMove]] = {name: [] for name in cfg.cobots}

    def planned(step: Step, part: int, plan: SkillPlan) -> None:
        for seg in plan.segments:
            if isinstance(seg, Move):
                owner.setdefault(id(seg.trajectory), deque()).append((step.name, part))

    class Recording(FakeCobot):
        def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
            pending = super().move(trajectory, start)
            queue = owner.get(id(trajectory))
            step, part = queue.popleft() if queue else ("", 0)
            times = np.asarray(getattr(trajectory, "times", [0.0, trajectory.duration]), dtype=float)
            positions = getattr(trajectory, "positions", None)
            if positions is None:
                positions = np.vstack([self.joint_positions(), np.asarray(trajectory.final, dtype=float)])
            vel = getattr(trajectory, "velocities", None)
            moves[self.name].append(
                TimedMove(
                    pending.started,
                    pending.started + float(trajectory.duration),
                    step,
                    part,
                    times,
                    np.asarray(positions, dtype=float),
                    None if vel is None else np.asarray(vel, dtype=float),
                )
            )
            return pending

    try:
        simulate(cfg, job or next(iter(cfg.jobs)), parts, port_class=Recording, on_plan=planned)
    except RuntimeError as exc:
        raise RuntimeError(f"the planned run did not complete: {exc}") from None
    return Timeline(moves, {n: np.asarray(c.home, dtype=float) for n, c in cfg.cobots.items()})


@dataclass(frozen=True)
class ReplayCollision:
    """The first collision of a replayed schedule."""

    time: float
    body1: str
    body2: str
    depth: float
    moves: tuple[tuple[str, str, int], ...]
    """(cobot, step, part) of each cobot involved that was moving."""

    @property
    def message(self) -> str:
        """One line for the integrator."""
        what = "; ".join(f"{c} in step '{s}' of part {p}" for c, s, p in self.moves) or "cobots at rest"
        return f"collision at t={self.time:.3f} s: {self.body1} and {self.body2} ({self.depth * 1000:.1f} mm): {what}"


def first_collision(
    twin: TwinModel, timeline: Timeline, dt: float = REPLAY_STEP, tolerance: float = REPLAY_TOLERANCE
) -> ReplayCollision | None:
    """Sweep the timeline through the twin's geometry (arms, tools, stations, floor); the first collision or None."""
    import mujoco

    m = twin.model
    d = mujoco.MjData(m)
    home_state(twin, d)
    n = int(np.ceil(timeline.end / dt)) + 1
    for k in range(n):
        t = min(k * dt, timeline.end)
        under_way = {}
        for name, c in twin.cobots.items():
            q, move = timeline.position(name, t)
            d.qpos[c.qpos] = q
            if move is not None:
                under_way[name] = move
        mujoco.mj_fwdPosition(m, d)
        for b1, b2, depth in contacts(twin, d, tolerance):
            o1, o2 = twin.body_owner.get(b1, ("floor", "")), twin.body_owner.get(b2, ("floor", ""))
            if "part" in (o1[0], o2[0]):
                continue
            cobots = [o[1] for o in (o1, o2) if o[0] in ("cobot", "tool")]
            involved = tuple((c, under_way[c].step, under_way[c].part) for c in dict.fromkeys(cobots) if c in under_way)
            return ReplayCollision(t, twin.body_name(b1), twin.body_name(b2), depth, involved)
    return None
