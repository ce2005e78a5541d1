"""Recovery motions: back to a step's safe start after a failure or a hold, and a slow reapproach after an
operator moved the arm. Both lift the tool first (a straight line up, when the arm can), then move in joint space.
"""

from __future__ import annotations

import numpy as np

from ..core.config import CellConfig, Step
from ..core.plan import Move, Segment
from ..motion.kinematics import fk
from ..motion.trajectory import joint_move, linear_move
from ..motion.transforms import pose_matrix
from .common import SkillContext

RETRACT = 0.05            # m straight up before any recovery move
RETRACT_SPEED = 0.05      # m/s
REAPPROACH_SCALE = 0.25   # fraction of the joint limits for a reapproach


class SkillRecovery:
    """Implements cobot_cell.core.cell.Recovery for a cell."""

    def __init__(self, cfg: CellConfig):
        self.cfg = cfg

    def _lift(self, ctx: SkillContext, q: np.ndarray) -> list[Segment]:
        base = pose_matrix(ctx.cobot.base.xyz, ctx.cobot.base.rpy)
        flange_world = base @ fk(ctx.model, q)
        flange_world[2, 3] += RETRACT
        goal = np.linalg.inv(base) @ flange_world
        try:
            return [Move(linear_move(ctx.model, q, goal, RETRACT_SPEED, ctx.v_max, ctx.a_max), "retract")]
        except ValueError:
            return []  # cannot lift straight from here: go in joint space only

    def _path(self, ctx: SkillContext, q_actual: np.ndarray, q_target: np.ndarray, scale: float) -> list[Segment]:
        segs = self._lift(ctx, np.asarray(q_actual, dtype=float))
        q = np.asarray(segs[-1].trajectory.final) if segs else np.asarray(q_actual, dtype=float)
        if float(np.max(np.abs(q - q_target))) > 1e-9:
            segs.append(Move(joint_move(q, np.asarray(q_target, dtype=float), ctx.v_max * scale, ctx.a_max * scale),
                             "return to safe point"))
        return segs

    def retreat(self, step: Step, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """Retract, then a joint move back to where the step started."""
        return self._path(SkillContext(self.cfg, step.cobot), q_actual, q_target, 1.0)

    def reapproach(self, cobot: str, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """Retract, then a slow joint move (a quarter of the limits) to where the cell expects the arm."""
        return self._path(SkillContext(self.cfg, cobot), q_actual, q_target, REAPPROACH_SCALE)
