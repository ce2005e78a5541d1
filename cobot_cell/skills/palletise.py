"""Palletise: take a finished part and place it, as a box, on the next place of the pallet's pattern."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.dag import station_group
from ..core.model import CellConfig, Station
from ..core.pallet_spec import PalletSpec
from ..core.plan import Checkpoint, PartView, SkillPlan, pallet_key
from .common import SkillContext, check_group, destination, location, station_frame, tcp_down_at
from .pallet_pattern import PalletPlan, plan_pallet
from .pick import PickParams, pick_and_place
from .pick import state_key as stage_key
from .skill import Problems, Skill


@dataclass(frozen=True, kw_only=True)
class PalletiseParams(PickParams):
    """Parameters of a palletise step: those of a pick, `to` naming a pallet station."""


@functools.lru_cache(maxsize=32)
def _plan(spec: PalletSpec) -> PalletPlan:
    return plan_pallet(spec)


def pallet_plan(station: Station) -> PalletPlan:
    """Every place of a pallet station's pattern, in place order (planned once per spec)."""
    if station.pallet is None:
        raise ValueError(f"station is {station.kind}, not a pallet")
    return _plan(station.pallet)


def check(cfg: CellConfig, params: PalletiseParams) -> Problems:
    """Cross-check station references and the grasp against the box; returns {param: problem}."""
    problems: Problems = {}
    try:
        check_group(cfg, params.source, ("infeed", "fixture"))
    except ValueError as exc:
        problems["from"] = str(exc)
    try:
        pallets = check_group(cfg, params.to, ("pallet",))
    except ValueError as exc:
        problems["to"] = str(exc)
        pallets = ()
    for name in pallets:
        spec = cfg.stations[name].pallet
        if spec is not None and params.grasp_height > spec.box.height and "grasp_height" not in problems:
            problems["grasp_height"] = (
                f"{params.grasp_height:g} m is above the top of the {spec.box.height:g} m "
                f"box (stations.{name}.pallet.box.height)"
            )
    return problems


def state_key(pallet: str) -> str:
    """Skill-state key of a pallet's next place index (`core.plan.pallet_key`)."""
    return pallet_key(pallet)


def plan(
    ctx: SkillContext,
    params: PalletiseParams,
    part: int,
    q: np.ndarray,
    state: PartView | dict[str, Any] | None = None,
) -> SkillPlan:
    """Pick the part from `from` and place it on the pallet's next place (explicit state; without it, the place
    of part number `part`), the tool turned by the box's yaw; the next index is recorded once the part is released.
    `to` may be a group of pallets: the part goes to the one the sequencer chose (a pallet that is not full). A full
    pallet stays full until the operator confirms it was changed (the controller then sets its index back to 0);
    planning onto it is an error."""
    to = destination(params.to, state)
    station = ctx.station(to)
    layout = pallet_plan(station)
    if state is not None:
        index = int(state.get(state_key(to), 0))
        if index >= len(layout):
            raise ValueError(f"pallet '{to}' is full ({len(layout)} places): change it, then confirm")
    else:
        index = (part - 1) % len(layout)
    place = layout.place(index)
    spec = station.pallet
    assert spec is not None
    source = location(params.source, state)
    grasp = tcp_down_at(station_frame(ctx.station(source)), (0.0, 0.0, params.grasp_height))
    x, y, top = place.position
    # The box is held `grasp_height` above its bottom face; it is released resting on the layer below.
    target = tcp_down_at(station_frame(station), (x, y, top - spec.box.height + params.grasp_height), yaw=place.yaw)
    key = stage_key("palletise", source, to) if state is not None else ""
    return pick_and_place(
        ctx,
        q,
        grasp,
        target,
        params.approach,
        params.approach_speed,
        params.settle,
        params.return_home,
        f"palletise place {index} (layer {place.layer} of stations.{to}.pallet)",
        placed=Checkpoint(state_key(to), index + 1, "pallet place filled"),
        key=key,
        stage=state.get(key) if state is not None else None,
        source=source,
    )


def stack_hint(cfg: CellConfig, cobot: str, params: PalletiseParams, part: int) -> str:
    """For a pallet place out of reach above the first layer: the stack height the arm does reach."""
    station = cfg.stations[params.to] if isinstance(params.to, str) else None
    if station is None or station.pallet is None:
        return ""
    place = pallet_plan(station).place((part - 1) % len(pallet_plan(station)))
    if place.layer == 0:
        return ""
    reached = station.pallet.stack_height(place.layer)
    return (
        f"; the stack needs more height than '{cobot}' reaches: layers 0 to {place.layer - 1} "
        f"({reached:.3f} m) are within reach, so lower max_height to {reached:.3f} m, or move the pallet or the "
        "arm (there is no lift axis)"
    )


class Palletise(Skill[PalletiseParams]):
    """The palletise skill: a part from `from` onto the next place of the pallet (or group of pallets) `to`."""

    name = "palletise"
    tool = "gripper"
    params = PalletiseParams
    carries_part = True
    stacks = True

    check = staticmethod(check)
    plan = staticmethod(plan)

    def variants(self, cfg: CellConfig, params: PalletiseParams) -> list[PalletiseParams]:
        """One per pallet of a `to` group (one pallet: the parameters as they are)."""
        if isinstance(params.to, str):
            return [params]
        return [dataclasses.replace(params, to=name) for name in params.to]

    def places(self, cfg: CellConfig, params: PalletiseParams) -> int:
        """The places of the pallet's pattern (the most of a group's pallets)."""
        return max(len(pallet_plan(cfg.stations[name])) for name in station_group(params.to))

    def explain(
        self, cfg: CellConfig, cobot: str, params: PalletiseParams, part: int, loc: tuple[str | int, ...]
    ) -> str:
        """For a place out of reach (`to`) above the first layer: the stack height the arm does reach."""
        return stack_hint(cfg, cobot, params, part) if loc == ("to",) else ""


SKILL = Palletise()
