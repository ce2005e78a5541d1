"""Pick: take a part from one station and put it down at another (infeed -> fixture)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from annotated_types import Ge, Le

from ..core.config import CellConfig
from ..core.plan import Checkpoint, Confirm, Dwell, Segment, SetIo, SkillPlan
from ..core.validation import PositiveFloat
from .common import SkillContext, SkillParams, blame, check_station, end_of, station_frame, tcp_down_at


@dataclass(frozen=True, kw_only=True)
class PickParams(SkillParams):
    """Parameters of a pick step."""

    source: str = field(metadata={"alias": "from"})
    to: str
    grasp_height: Annotated[float, Ge(0.0), Le(0.5)] = 0.03
    approach: PositiveFloat = 0.10
    approach_speed: PositiveFloat = 0.25
    settle: Annotated[float, Ge(0.0)] = 0.2
    return_home: bool = True


def check(cfg: CellConfig, params: PickParams) -> dict[str, str]:
    """Cross-check station references; returns {param: problem}."""
    problems = {}
    for key, name in (("from", params.source), ("to", params.to)):
        try:
            check_station(cfg, name, ("infeed", "fixture", "pallet"))
        except ValueError as exc:
            problems[key] = str(exc)
    return problems


def pick_and_place(ctx: SkillContext, q: np.ndarray, grasp: np.ndarray, place: np.ndarray, approach: float,
                   speed: float, settle: float, return_home: bool, what: str,
                   placed: Checkpoint | None = None) -> SkillPlan:
    """Approach, grasp (confirmed if the tool senses parts), retreat, carry, place, release, retreat, home.

    `placed` is recorded once the part is released at its place (e.g. the next pallet place index). A target
    out of reach raises ParamError naming `from` (grasp side) or `to` (place side).
    """
    tool_name, tool = ctx.tool("gripper")
    up = np.eye(4)
    up[2, 3] = approach
    above_grasp = up @ grasp
    above_place = up @ place
    segs: list[Segment] = []
    with blame("from"):
        q_above_grasp = ctx.solve(above_grasp, tool, q, f"{what}: approach to grasp")
        segs.append(ctx.joint_to(q, q_above_grasp, "approach grasp"))
        segs.append(ctx.line_to(q_above_grasp, grasp, tool, speed, "descend to grasp"))
        segs += [SetIo(tool_name, tool.io, True, "grip"), Dwell(settle, "grip settle")]
        if tool.confirm:
            segs.append(Confirm(tool_name, tool.io, True, label="grip confirmed"))
        segs.append(ctx.line_to(end_of(segs, q), above_grasp, tool, speed, "lift"))
    q_lift = end_of(segs, q)
    with blame("to"):
        q_above_place = ctx.solve(above_place, tool, q_lift, f"{what}: approach to place")
        segs.append(ctx.joint_to(q_lift, q_above_place, "carry"))
        segs.append(ctx.line_to(q_above_place, place, tool, speed, "descend to place"))
        segs += [SetIo(tool_name, tool.io, False, "release"), Dwell(settle, "release settle")]
        if placed is not None:
            segs.append(placed)
        segs.append(ctx.line_to(end_of(segs, q), above_place, tool, speed, "retreat"))
    if return_home:
        segs.append(ctx.joint_to(end_of(segs, q), ctx.home, "home"))
    return SkillPlan(tuple(segs), end_of(segs, q))


def plan(ctx: SkillContext, params: PickParams, part: int, q: np.ndarray, state: dict | None = None) -> SkillPlan:
    """Pick from `from` and place onto `to`, gripping at `grasp_height` above each station's origin."""
    h = (0.0, 0.0, params.grasp_height)
    grasp = tcp_down_at(station_frame(ctx.station(params.source)), h)
    place = tcp_down_at(station_frame(ctx.station(params.to)), h)
    return pick_and_place(ctx, q, grasp, place, params.approach, params.approach_speed, params.settle,
                          params.return_home, "pick")
