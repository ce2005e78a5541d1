"""Payload and reach of a handling step: what the arm carries (tool + part) against what its model allows.

The part a job handles is `jobs.<job>.part` (mass, box); a pallet stacking it uses the same box, so a part
without a box takes the pallet's. The carried centre of gravity is in the flange frame (z out of the flange,
pointing down at the part): the tool's `com`, and the part's box centre hanging below the TCP with the TCP
`grasp_height` above the box's bottom face.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..core.model import CellConfig, Job, Step
from ..core.pallet_spec import BoxSize
from ..motion.arms import arm_spec
from ..motion.transforms import pose_matrix
from .common import station_frame
from .palletise import pallet_plan
from .skill import SKILLS

log = logging.getLogger(__name__)

WARN_RATIO = 0.8
"""A payload above this share of the allowed one is reported as a warning."""


@dataclass(frozen=True)
class Carried:
    """What a handling step carries: total mass (kg), centre of gravity in the flange frame (m), what it is."""

    mass: float
    cog: tuple[float, float, float]
    what: str

    @property
    def offset(self) -> float:
        """Distance of the centre of gravity from the flange centre (m): the maker's derating axis."""
        return math.hypot(*self.cog)


def part_box(cfg: CellConfig, job: Job) -> BoxSize | None:
    """The box of the job's part: its own, else the box of the pallet the job stacks on, else None."""
    if job.part is not None and job.part.box is not None:
        return job.part.box
    for step in job.steps:
        to = step.params.get("to") if step.skill in SKILLS and SKILLS[step.skill].stacks else None
        station = cfg.stations.get(to) if isinstance(to, str) else None
        if station is not None and station.pallet is not None:
            return station.pallet.box
    return None


def carried(cfg: CellConfig, job: Job, step: Step, grasp_height: float) -> Carried | None:
    """Tool + part of a handling step (None when the gripper's mass is not given); ValueError if the job has a
    part whose payload cannot be checked because the gripper has no mass."""
    tools = [(n, t) for n, t in cfg.cobots[step.cobot].tools.items() if t.kind == "gripper"]
    if not tools:
        return None
    name, tool = tools[0]
    if tool.mass is None:
        if job.part is not None:
            raise ValueError(f"missing: the payload check of a {job.part.mass:g} kg part needs the mass of '{name}'")
        return None
    mass = tool.mass
    moment = np.asarray(tool.com, dtype=float) * tool.mass
    what = f"tool '{name}' {tool.mass:g} kg"
    if job.part is not None:
        box = part_box(cfg, job)
        centre = np.asarray(tool.tcp, dtype=float)
        if box is not None:
            centre = centre + np.array([0.0, 0.0, grasp_height - box.height / 2])
        moment = moment + job.part.mass * centre
        mass += job.part.mass
        what += f" + part {job.part.mass:g} kg"
    cog = moment / mass if mass > 0 else np.zeros(3)
    return Carried(mass, (float(cog[0]), float(cog[1]), float(cog[2])), what)


def payload_problem(cfg: CellConfig, cobot: str, load: Carried) -> str | None:
    """The error for a load over the arm's allowed payload at its offset (None if within; a warning is logged above
    80%)."""
    c = cfg.cobots[cobot]
    spec = arm_spec(c.model)
    allowed = spec.payload_at(load.offset, c.payload_curve)
    rule = (
        f"{allowed:.3g} kg allowed at that offset (cobots.{cobot}.payload_curve)"
        if c.payload_curve
        else f"the {spec.name}'s {allowed:.3g} kg derated payload at that offset"
        if spec.derating
        else f"the {spec.name}'s {spec.payload:g} kg rated payload"
    )
    text = f"payload {load.mass:.3g} kg ({load.what}) at {load.offset:.3f} m from the flange"
    if load.mass > allowed + 1e-9:
        return f"{text} exceeds {rule}"
    if load.mass > WARN_RATIO * allowed:
        log.warning("cobot '%s': %s is %.0f%% of %s", cobot, text, 100 * load.mass / allowed, rule)
    return None


def reach_problem(cfg: CellConfig, cobot: str, pallet: str, grasp_height: float) -> str | None:
    """The first pallet place whose flange is beyond the arm's published reach (distance from the shoulder), with
    how many more are; None if every place is within it. Whether a place can be reached at all is the IK's call."""
    c = cfg.cobots[cobot]
    spec = arm_spec(c.model)
    station = cfg.stations[pallet]
    spec_p = station.pallet
    if spec_p is None:
        return None
    tools = [t for t in c.tools.values() if t.kind == "gripper"]
    length = tools[0].tcp[2] if tools else 0.0
    base = pose_matrix(c.base.xyz, c.base.rpy)
    shoulder = base @ np.array([0.0, 0.0, spec.dh[0], 1.0])
    frame = station_frame(station)
    plan = pallet_plan(station)
    far = []
    for place in plan.places:
        x, y, top = place.position
        p = frame @ np.array([x, y, top - spec_p.box.height + grasp_height, 1.0])
        flange = p[:3] + np.array([0.0, 0.0, length])  # the tool points down: the flange is above the TCP
        dist = float(np.linalg.norm(flange - shoulder[:3]))
        if dist > spec.reach:
            far.append((place, dist))
    if not far:
        return None
    place, dist = far[0]
    more = f" ({len(far) - 1} more places too)" if len(far) > 1 else ""
    top = spec_p.stack_height(plan.layers)
    return (
        f"place {place.index} (layer {place.layer}) of stations.{pallet}.pallet is {dist:.3f} m from the "
        f"{spec.name}'s shoulder, beyond its {spec.reach:g} m published reach{more}; the stack is {top:.3f} m "
        "high: the arm may slow down there (lower max_height, move the pallet closer or choose a longer arm)"
    )
