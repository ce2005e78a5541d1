"""Recovery motions: back to a step's safe start after a failure or a hold, and a slow reapproach after an
operator moved the arm. Both lift the tool first (a straight line up, when the arm can), then move in joint space.
"""

from __future__ import annotations

import numpy as np

from ..core.model import CellConfig, Step
from ..core.plan import Confirm, Move, Segment, SetIo
from ..motion.kinematics import fk
from ..motion.trajectory import joint_move, linear_move
from ..motion.transforms import pose_matrix
from .common import SkillContext

RETRACT = 0.05  # m straight up before any recovery move
RETRACT_SPEED = 0.05  # m/s
REAPPROACH_SCALE = 0.25  # fraction of the joint limits for a reapproach
PROCESS_OFF_TIMEOUT = 2.0  # s for a process tool's state to confirm it is off before a recovery move


def process_off(ctx: SkillContext) -> list[Segment]:
    """Switch the cobot's process tools (the arc) off and confirm it on their state topics: before any recovery
    motion."""
    segs: list[Segment] = []
    for name, tool in ctx.cobot.tools.items():
        if tool.is_process:
            segs += [
                SetIo(name, tool.io, False, f"{name} off before recovery", process=True, confirmed=True),
                Confirm(name, tool.io, False, PROCESS_OFF_TIMEOUT, "PROCESS_TOOL_ON", f"{name} confirmed off"),
            ]
    return segs


class SkillRecovery:
    """Implements cobot_cell.core.cell.Recovery for a cell."""

    def __init__(self, cfg: CellConfig):
        self.cfg = cfg

    def _lift(self, ctx: SkillContext, q: np.ndarray) -> list[Move]:
        base = pose_matrix(ctx.cobot.base.xyz, ctx.cobot.base.rpy)
        flange_world = base @ fk(ctx.model, q)
        flange_world[2, 3] += RETRACT
        goal = np.linalg.inv(base) @ flange_world
        try:
            return [Move(linear_move(ctx.model, q, goal, RETRACT_SPEED, ctx.v_max, ctx.a_max), "retract")]
        except ValueError:
            return []  # cannot lift straight from here: go in joint space only

    def _path(self, ctx: SkillContext, q_actual: np.ndarray, q_target: np.ndarray, scale: float) -> list[Segment]:
        moves = self._lift(ctx, np.asarray(q_actual, dtype=float))
        q = np.asarray(moves[-1].trajectory.final) if moves else np.asarray(q_actual, dtype=float)
        if float(np.max(np.abs(q - q_target))) > 1e-9:
            moves.append(
                Move(
                    joint_move(q, np.asarray(q_target, dtype=float), ctx.v_max * scale, ctx.a_max * scale),
                    "return to safe point",
                )
            )
        return process_off(ctx) + moves

    def retreat(self, step: Step, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """Retract, then a joint move back to where the step started."""
        return self._path(SkillContext(self.cfg, step.cobot), q_actual, q_target, 1.0)

    def reapproach(self, cobot: str, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """Retract, then a slow joint move (a quarter of the limits) to where the cell expects the arm."""
        return self._path(SkillContext(self.cfg, cobot), q_actual, q_target, REAPPROACH_SCALE)
