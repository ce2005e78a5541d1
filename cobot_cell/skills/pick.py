"""Pick: take a part from one station and put it down at another (infeed -> fixture)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Le

from ..core.model import CellConfig
from ..core.plan import (
    PART_STATE_PREFIX,
    Checkpoint,
    Claim,
    Confirm,
    Dwell,
    PartView,
    Segment,
    SetIo,
    SkillPlan,
    Vacate,
)
from ..core.validation import PositiveFloat
from .common import (
    SkillContext,
    SkillParams,
    StationRef,
    blame,
    check_group,
    destination,
    end_of,
    location,
    station_frame,
    tcp_down_at,
)
from .skill import Problems, Skill


@dataclass(frozen=True, kw_only=True)
class PickParams(SkillParams):
    """Parameters of a pick step."""

    source: StationRef = field(metadata={"alias": "from"})
    to: StationRef
    grasp_height: Annotated[float, Ge(0.0), Le(0.5)] = 0.03
    approach: PositiveFloat = 0.10
    approach_speed: PositiveFloat = 0.25
    settle: Annotated[float, Ge(0.0)] = 0.2
    return_home: bool = True


def check(cfg: CellConfig, params: PickParams) -> Problems:
    """Cross-check station references; returns {param: problem}."""
    problems: Problems = {}
    for key, name, kinds in (
        ("from", params.source, ("infeed", "fixture", "pallet")),
        ("to", params.to, ("fixture", "pallet")),
    ):
        try:
            check_group(cfg, name, kinds)
        except ValueError as exc:
            problems[key] = str(exc)
            if key == "to" and "is an infeed" in str(exc):
                problems[key] += " (an infeed only supplies parts: a part put down there would never be taken away)"
    return problems


GRIPPED, RELEASING, RELEASED = "gripped", "releasing", "released"


def state_key(skill: str, source: str, to: str) -> str:
    """Skill-state key of a part's handling stage from `source` to `to` (none, gripped, released)."""
    return f"{PART_STATE_PREFIX}{skill}.{source}.{to}.stage"


def pick_and_place(
    ctx: SkillContext,
    q: np.ndarray,
    grasp: np.ndarray,
    place: np.ndarray,
    approach: float,
    speed: float,
    settle: float,
    return_home: bool,
    what: str,
    placed: Checkpoint | None = None,
    key: str = "",
    stage: Any = None,
    source: str = "",
    to: str = "",
) -> SkillPlan:
    """Approach, grasp (confirmed if the tool senses parts), retreat, carry, place, release, retreat, home.

    With a state `key`, the part's stage is recorded as it changes: `gripped` once the grip is confirmed,
    `releasing` at the place just before the gripper opens (opening twice is harmless), `released` once the part
    is let go (together with `placed`, e.g. the next pallet place index, in one record). The part leaves station
    `source` once lifted (Vacate) and takes its place on station `to` before the descent to it (Claim: the arm
    waits there, holding the part, while the station is full). A step resumed at a
    recorded stage does not grip again: gripped, it carries the part it holds (confirmed first, if the tool
    senses parts) from q to the place; releasing, it goes back to the place and opens; released, it goes home.
    A target out of reach raises ParamError naming `from` (grasp side) or `to` (place side).
    """
    tool_name, tool = ctx.tool("gripper")
    up = np.eye(4)
    up[2, 3] = approach
    above_grasp = up @ grasp
    above_place = up @ place
    segs: list[Segment] = []
    if stage == RELEASED:
        if return_home:
            segs.append(ctx.joint_to(q, ctx.home, "home"))
        return SkillPlan(tuple(segs), end_of(segs, q))
    with blame("from"):
        q_above_grasp = ctx.solve(above_grasp, tool, q, f"{what}: approach to grasp")
        if stage in (GRIPPED, RELEASING):
            q_lift = q_above_grasp
            if tool.confirm and stage == GRIPPED:
                segs.append(Confirm(tool_name, tool.io, True, label="part still held"))
            if source:
                segs.append(Vacate(source))
        else:
            segs.append(ctx.joint_to(q, q_above_grasp, "approach grasp"))
            segs.append(ctx.line_to(q_above_grasp, grasp, tool, speed, "descend to grasp"))
            segs += [SetIo(tool_name, tool.io, True, "grip"), Dwell(settle, "grip settle")]
            if tool.confirm:
                segs.append(Confirm(tool_name, tool.io, True, label="grip confirmed"))
            if key:
                segs.append(Checkpoint(key, GRIPPED, "part gripped"))
            segs.append(ctx.line_to(end_of(segs, q), above_grasp, tool, speed, "lift"))
            if source:
                segs.append(Vacate(source))
            q_lift = end_of(segs, q)
    start = q if stage in (GRIPPED, RELEASING) else q_lift
    with blame("to"):
        q_above_place = ctx.solve(above_place, tool, q_lift, f"{what}: approach to place")
        segs.append(ctx.joint_to(start, q_above_place, "carry"))
        if to:
            segs.append(Claim(to))
        segs.append(ctx.line_to(q_above_place, place, tool, speed, "descend to place"))
        if key:
            segs.append(Checkpoint(key, RELEASING, "part at its place"))
        segs += [SetIo(tool_name, tool.io, False, "release"), Dwell(settle, "release settle")]
        if key:
            more = () if placed is None else tuple(placed.updates().items())
            segs.append(Checkpoint(key, RELEASED, "part released", more))
        elif placed is not None:
            segs.append(placed)
        segs.append(ctx.line_to(end_of(segs, q), above_place, tool, speed, "retreat"))
    if return_home:
        segs.append(ctx.joint_to(end_of(segs, q), ctx.home, "home"))
    return SkillPlan(tuple(segs), end_of(segs, q))


def plan(
    ctx: SkillContext, params: PickParams, part: int, q: np.ndarray, state: PartView | dict[str, Any] | None = None
) -> SkillPlan:
    """Pick from `from` and place onto `to`, gripping at `grasp_height` above each station's origin (with state,
    resumed at the part's recorded stage)."""
    h = (0.0, 0.0, params.grasp_height)
    source, to = location(params.source, state), destination(params.to, state)
    grasp = tcp_down_at(station_frame(ctx.station(source)), h)
    place = tcp_down_at(station_frame(ctx.station(to)), h)
    key = state_key("pick", source, to) if state is not None else ""
    return pick_and_place(
        ctx,
        q,
        grasp,
        place,
        params.approach,
        params.approach_speed,
        params.settle,
        params.return_home,
        "pick",
        key=key,
        stage=state.get(key) if state is not None else None,
        source=source,
        to=to,
    )


class Pick(Skill[PickParams]):
    """The pick skill: a part from `from` to `to` with the gripper."""

    name = "pick"
    tool = "gripper"
    params = PickParams
    carries_part = True

    check = staticmethod(check)
    plan = staticmethod(plan)


SKILL = Pick()
