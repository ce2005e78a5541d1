"""Palletise: take a finished part and place it on the next free place of a pallet pattern."""

from __future__ import annotations

import numpy as np
from pydantic import Field, PositiveFloat

from ..core.config import CellConfig, PalletPattern
from ..core.plan import Checkpoint, SkillPlan
from .common import SkillContext, SkillParams, check_station, station_frame, tcp_down_at
from .pick import pick_and_place


class PalletiseParams(SkillParams):
    """Parameters of a palletise step."""

    source: str = Field(alias="from")
    to: str
    grasp_height: float = Field(0.03, ge=0.0, le=0.5)
    approach: PositiveFloat = 0.10
    approach_speed: PositiveFloat = 0.25
    settle: float = Field(0.2, ge=0.0)
    return_home: bool = True


def check(cfg: CellConfig, params: PalletiseParams) -> dict[str, str]:
    """Cross-check station references; returns {param: problem}."""
    problems = {}
    for key, name, kinds in (("from", params.source, ("infeed", "fixture")), ("to", params.to, ("pallet",))):
        try:
            check_station(cfg, name, kinds)
        except ValueError as exc:
            problems[key] = str(exc)
    return problems


def place_offset(pattern: PalletPattern, index: int) -> tuple[float, float, float]:
    """Top-centre of place `index` (0-based, layer by layer, row by row) in the pallet frame."""
    per_layer = pattern.rows * pattern.columns
    layer, rest = divmod(index % pattern.places, per_layer)
    row, col = divmod(rest, pattern.columns)
    x = (col - (pattern.columns - 1) / 2.0) * pattern.pitch[0]
    y = (row - (pattern.rows - 1) / 2.0) * pattern.pitch[1]
    z = (layer + 1) * pattern.layer_height
    return (x, y, z)


def state_key(pallet: str) -> str:
    """Skill-state key of a pallet's next place index."""
    return f"pallet.{pallet}.next"


def plan(ctx: SkillContext, params: PalletiseParams, part: int, q: np.ndarray,
         state: dict | None = None) -> SkillPlan:
    """Pick the part from `from` and place it on the pallet's next place (explicit state; without it, the place
    of part number `part`); the next index is recorded once the part is released."""
    pallet = ctx.station(params.to)
    assert pallet.pattern is not None
    index = (state.get(state_key(params.to), 0) if state is not None else part - 1) % pallet.pattern.places
    grasp = tcp_down_at(station_frame(ctx.station(params.source)), (0.0, 0.0, params.grasp_height))
    x, y, z = place_offset(pallet.pattern, index)
    place = tcp_down_at(station_frame(pallet), (x, y, z - pallet.pattern.layer_height + params.grasp_height))
    return pick_and_place(ctx, q, grasp, place, params.approach, params.approach_speed, params.settle,
                          params.return_home, f"palletise place {index}",
                          placed=Checkpoint(state_key(params.to), (index + 1) % pallet.pattern.places,
                                            "pallet place filled"))
