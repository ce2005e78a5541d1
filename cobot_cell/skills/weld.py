"""Weld: lay seams (polylines in a station frame) with the torch: approach, arc on, travel, arc off, retract."""

from __future__ import annotations

import numpy as np
from pydantic import Field, PositiveFloat, field_validator

from ..core.config import CellConfig
from ..core.plan import Checkpoint, Dwell, Segment, SetIo, SkillPlan
from .common import SkillContext, SkillParams, check_station, end_of, station_frame, tcp_down_at

Point = tuple[float, float, float]


class WeldParams(SkillParams):
    """Parameters of a weld step."""

    station: str
    seams: tuple[tuple[Point, ...], ...] = Field(min_length=1)
    speed: PositiveFloat = Field(le=0.2)
    approach: PositiveFloat = 0.05
    approach_speed: PositiveFloat = 0.25
    preflow: float = Field(0.3, ge=0.0)
    postflow: float = Field(0.5, ge=0.0)
    return_home: bool = True

    @field_validator("seams")
    @classmethod
    def _two_points(cls, v: tuple[tuple[Point, ...], ...]) -> tuple[tuple[Point, ...], ...]:
        for i, seam in enumerate(v):
            if len(seam) < 2:
                raise ValueError(f"seam {i} needs at least 2 points, got {len(seam)}")
        return v


def check(cfg: CellConfig, params: WeldParams) -> dict[str, str]:
    """Cross-check the station reference; returns {param: problem}."""
    try:
        check_station(cfg, params.station, ("fixture",))
    except ValueError as exc:
        return {"station": str(exc)}
    return {}


def seam_length(seam: tuple[Point, ...]) -> float:
    """Length of a polyline seam in metres."""
    pts = np.asarray(seam, dtype=float)
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def state_key(station: str) -> str:
    """Skill-state key of the next seam to weld at a station (for resuming a part mid-weld)."""
    return f"weld.{station}.next_seam"


def plan(ctx: SkillContext, params: WeldParams, part: int, q: np.ndarray, state: dict | None = None) -> SkillPlan:
    """Weld every seam in order at `speed`, with gas pre-/post-flow dwells around the arc; with state, start at
    the next seam not yet welded (a resumed part) and record each finished seam."""
    tool_name, tool = ctx.tool("torch")
    frame = station_frame(ctx.station(params.station))
    segs: list[Segment] = []
    cur = q
    key = state_key(params.station)
    first = int(state.get(key, 0)) if state is not None else 0
    if first >= len(params.seams):
        first = 0
    for i, seam in enumerate(params.seams):
        if i < first:
            continue
        start_above = tcp_down_at(frame, seam[0], up=params.approach)
        q_above = ctx.solve(start_above, tool, cur, f"weld seam {i} approach")
        segs.append(ctx.joint_to(cur, q_above, f"seam {i} approach"))
        segs.append(ctx.line_to(q_above, tcp_down_at(frame, seam[0]), tool, params.approach_speed,
                                f"seam {i} descend"))
        segs += [Dwell(params.preflow, f"seam {i} gas pre-flow"), SetIo(tool_name, tool.io, True, f"seam {i} arc on")]
        for k, point in enumerate(seam[1:], start=1):
            segs.append(ctx.line_to(end_of(segs, q), tcp_down_at(frame, point), tool, params.speed,
                                    f"seam {i} weld {k}"))
        segs += [SetIo(tool_name, tool.io, False, f"seam {i} arc off"), Dwell(params.postflow, f"seam {i} gas post-flow")]
        segs.append(ctx.line_to(end_of(segs, q), tcp_down_at(frame, seam[-1], up=params.approach), tool,
                                params.approach_speed, f"seam {i} retract"))
        segs.append(Checkpoint(key, i + 1 if i + 1 < len(params.seams) else 0, f"seam {i} done"))
        cur = end_of(segs, q)
    if params.return_home:
        segs.append(ctx.joint_to(cur, ctx.home, "home"))
    return SkillPlan(tuple(segs), end_of(segs, q))
