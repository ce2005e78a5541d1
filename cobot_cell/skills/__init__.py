"""Skills: pick, weld and palletise turn cell geometry and step parameters into timed motion plans.

Each skill is a `Skill` (`skills.skill`) in the registry `SKILLS`; the built-in ones are registered here.
`load_cell` is the full check of a cell file: structure and references (core, given the registered skill names),
each step's parameters (the skill's parameter dataclass, validated by pydantic, then the skill's own check), then
every target of every job planned from home for reachability. `make_planner` gives the sequencer its step
planner. pydantic is imported by the functions that validate, on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.dag import topological_order
from ..core.loader import CellFileError, ConfigIssue, LineIndex, format_path, issues_from_pydantic, read_cell_text
from ..core.loader import parse_cell as parse_structure
from ..core.model import CellConfig, Job, Step
from ..core.plan import PartView, SkillPlan
from ..core.validation import validate
from ..motion.arms import arm_spec
from ..motion.kinematics import arm_model
from . import palletise, pick, weld
from .common import ParamError, SkillContext, SkillParams
from .palletise import pallet_plan
from .payload import carried, part_box, payload_problem, reach_problem
from .skill import SKILLS, Problems, Skill, SkillRegistry

log = logging.getLogger(__name__)

BUILT_IN: tuple[Skill[Any], ...] = (pick.SKILL, weld.SKILL, palletise.SKILL)
for _skill in BUILT_IN:
    SKILLS.register(_skill)


@dataclass(frozen=True)
class StepEstimate:
    """Planned duration of one step for one part."""

    step: str
    skill: str
    cobot: str
    duration: float


def step_params(step: Step) -> SkillParams:
    """The step's parameters validated by its skill's dataclass (pydantic ValidationError if bad)."""
    params: SkillParams = validate(SKILLS[step.skill].params, step.params)
    return params


def plan_step(
    cfg: CellConfig,
    step: Step,
    part: int,
    q: np.ndarray,
    params: SkillParams | None = None,
    state: dict[str, Any] | None = None,
) -> SkillPlan:
    """Plan one step of one part for its cobot, starting from joint positions q (skill state: see make_planner)."""
    params = params or step_params(step)
    view = PartView(state, part) if state is not None else None
    return SKILLS[step.skill].plan(SkillContext(cfg, step.cobot), params, part, np.asarray(q, dtype=float), view)


def make_planner(
    cfg: CellConfig,
    state: dict[str, Any] | None = None,
    params: Mapping[tuple[str, str], SkillParams] | None = None,
) -> Callable[[Step, int, np.ndarray], SkillPlan]:
    """A step planner for the sequencer, with each step's parameters validated once.

    `state` is the skills' explicit state (next pallet place, next weld seam), shared with the sequencer that
    records checkpoints into it; without it, pallet places follow the part number. `params` are the steps'
    parameters already validated (see `validated_params`), by (job, step name); they are then not validated
    again.
    """
    cache: dict[int, SkillParams] = {}
    if params is not None:
        cache = {id(step): params[(jname, step.name)] for jname, job in cfg.jobs.items() for step in job.steps}

    def planner(step: Step, part: int, q: np.ndarray) -> SkillPlan:
        key = id(step)
        if key not in cache:
            cache[key] = step_params(step)
        return plan_step(cfg, step, part, q, cache[key], state)

    planner.pallets = pallet_places(cfg)  # type: ignore[attr-defined]  # for the controller: places per pallet
    return planner


def pallet_places(cfg: CellConfig) -> dict[str, int]:
    """Places of each pallet station's pattern."""
    return {name: len(pallet_plan(st)) for name, st in cfg.stations.items() if st.pallet is not None}


def check_skills(cfg: CellConfig, lines: LineIndex | None = None) -> list[ConfigIssue]:
    """Validate every step's parameters and plan every job from home; list the problems with YAML paths."""
    from pydantic import ValidationError

    lines = lines or LineIndex(None)
    issues: list[ConfigIssue] = []

    def add(loc: tuple[Any, ...], msg: str) -> None:
        issues.append(ConfigIssue(format_path(loc), msg, lines.line(loc)))

    for cname, cobot in cfg.cobots.items():
        position = cobot.limits.position
        if len(cobot.home) != len(cobot.joints) or (position is not None and len(position) != len(cobot.joints)):
            continue  # reported by check_references
        model = arm_model(cobot.model)
        for i, h in enumerate(cobot.home):
            lo, hi = position[i] if position is not None else (model.q_min[i], model.q_max[i])
            if not max(lo, model.q_min[i]) <= h <= min(hi, model.q_max[i]):
                add(
                    ("cobots", cname, "home", i),
                    f"{h:g} is outside the {model.name} {model.joint_names[i]} range "
                    f"[{model.q_min[i]:.4g}, {model.q_max[i]:.4g}]",
                )
        published = arm_spec(cobot.model).velocity
        for i, v in enumerate(cobot.limits.velocity or ()):
            if i < len(published) and v > published[i] + 1e-9:
                add(
                    ("cobots", cname, "limits", "velocity", i),
                    f"{v:g} rad/s is above the {cobot.model} {model.joint_names[i]} maximum {published[i]:.4g} rad/s",
                )
    if issues:
        return issues
    for jname, job in cfg.jobs.items():
        index = {s.name: i for i, s in enumerate(job.steps)}
        params: dict[str, SkillParams] = {}
        for i, step in enumerate(job.steps):
            at = ("jobs", jname, "steps", i, "params")
            skill = SKILLS[step.skill]
            try:
                p = step_params(step)
            except ValidationError as exc:
                issues += issues_from_pydantic(
                    [{**e, "loc": (*at, *(k for k in e["loc"] if k not in skill.loc_tags))} for e in exc.errors()],
                    lines,
                )
                continue
            problems = skill.check(cfg, p)
            for key, problem in problems.items():
                add((*at, *(key if isinstance(key, tuple) else (key,))), problem)
            try:
                SkillContext(cfg, step.cobot).tool(skill.tool)
            except ValueError as exc:
                add(("jobs", jname, "steps", i, "cobot"), f"{exc} (needed by skill '{step.skill}')")
                continue
            if (
                not problems
                and skill.carries_part
                and any([_handling_problems(cfg, jname, i, step, v, add) for v in skill.variants(cfg, p)])
            ):
                continue
            if not problems:
                params[step.name] = p
        if len(params) != len(job.steps):
            continue
        # Reachability: plan the job from home, chaining each cobot's end position; every variant of a step's
        # parameters (each pallet of a group), every place it uses (each pallet place).
        skills = {name: SKILLS[job.step(name).skill] for name in params}
        variants = {name: skills[name].variants(cfg, p) for name, p in params.items()}
        places = max(skills[name].places(cfg, v) for name, vs in variants.items() for v in vs)
        q = {name: np.asarray(c.home, dtype=float) for name, c in cfg.cobots.items()}
        rounds = [(part, k) for k in range(max(len(v) for v in variants.values())) for part in range(1, places + 1)]
        for part, k in rounds:
            failed = False
            for name in topological_order(job):
                step = job.step(name)
                if k >= len(variants[name]) or part > skills[name].places(cfg, variants[name][k]):
                    continue
                p = variants[name][k]
                try:
                    plan = plan_step(cfg, step, part, q[step.cobot], p)
                except ParamError as exc:
                    add(
                        ("jobs", jname, "steps", index[name], "params", *exc.loc),
                        str(exc) + skills[name].explain(cfg, step.cobot, p, part, exc.loc),
                    )
                    failed = True
                    break
                except ValueError as exc:
                    add(("jobs", jname, "steps", index[name], "params"), str(exc))
                    failed = True
                    break
                q[step.cobot] = plan.end_q
            if failed:
                break
        if not issues:
            _check_resources(cfg, jname, job, params, add)
    return issues


def _check_resources(
    cfg: CellConfig, jname: str, job: Any, params: dict[str, SkillParams], add: Callable[..., None]
) -> None:
    """Places that never come free, and stations and zones that could deadlock (skills.resources)."""
    from .resources import check_places, check_zones

    check_places(cfg, jname, job, add)
    if not cfg.zones:
        return
    from .zones import CellZones

    check_zones(cfg, jname, job, plan_job(cfg, job, 1, params), CellZones(cfg), add)


def _handling_problems(cfg: CellConfig, jname: str, i: int, step: Step, p: Any, add: Callable[..., None]) -> bool:
    """Payload (tool + part against the arm's rating) and pallet reach of a step that carries the part; True if any."""
    job = cfg.jobs[jname]
    found = False
    box = part_box(cfg, job)
    pallet = cfg.stations[p.to].pallet if SKILLS[step.skill].stacks else None
    if job.part is not None and job.part.box is not None and pallet is not None and pallet.box != job.part.box:
        b, q = job.part.box, pallet.box
        add(
            ("jobs", jname, "part", "box"),
            f"{b.length:g} x {b.width:g} x {b.height:g} m differs from the box "
            f"{q.length:g} x {q.width:g} x {q.height:g} m of stations.{p.to}.pallet (one part, one box)",
        )
        found = True
    if box is not None and p.grasp_height > box.height:
        add(
            ("jobs", jname, "steps", i, "params", "grasp_height"),
            f"{p.grasp_height:g} m is above the top of the {box.height:g} m part",
        )
        found = True
    try:
        load = carried(cfg, job, step, p.grasp_height)
    except ValueError as exc:
        gripper = next(n for n, t in cfg.cobots[step.cobot].tools.items() if t.kind == "gripper")
        add(("cobots", step.cobot, "tools", gripper, "mass"), f"{exc} (jobs.{jname}.steps[{i}])")
        return True
    problem = payload_problem(cfg, step.cobot, load) if load is not None else None
    if problem:
        add(("jobs", jname, "steps", i), problem)
        found = True
    if pallet is not None:
        beyond = reach_problem(cfg, step.cobot, p.to, p.grasp_height)
        if beyond:  # a place beyond the published reach that the arm can still reach is a warning
            log.warning("jobs.%s.steps[%d].params.to: %s", jname, i, beyond)
    return found


def validated_params(cfg: CellConfig) -> dict[tuple[str, str], SkillParams]:
    """Every step's parameters validated by its skill, by (job, step name), for `make_planner`."""
    return {(jname, step.name): step_params(step) for jname, job in cfg.jobs.items() for step in job.steps}


def parse_cell(text: str, source: str = "<cell file>") -> tuple[CellConfig, LineIndex]:
    """`core.loader.parse_cell` with the skill names steps may use: those of the registered skills."""
    return parse_structure(text, source, SKILLS.names())


def load_cell(path: str | Path) -> CellConfig:
    """Read a cell file and check everything a run needs; CellFileError lists every problem."""
    cfg, lines = parse_cell(read_cell_text(path), str(path))
    issues = check_skills(cfg, lines)
    if issues:
        raise CellFileError(str(path), issues)
    return cfg


def plan_job(
    cfg: CellConfig, job: Job, part: int = 1, params: Mapping[str, SkillParams] | None = None
) -> dict[str, SkillPlan]:
    """Every step's plan for one part, by step name in an order that respects `after`, every cobot starting from
    home and each step from where its cobot's previous step ended (`params`: validated parameters by step name)."""
    q = {name: np.asarray(c.home, dtype=float) for name, c in cfg.cobots.items()}
    plans = {}
    for name in topological_order(job):
        step = job.step(name)
        plans[name] = plan_step(cfg, step, part, q[step.cobot], params[name] if params is not None else None)
        q[step.cobot] = plans[name].end_q
    return plans


def estimate(cfg: CellConfig, job: str, part: int = 1) -> list[StepEstimate]:
    """Planned duration of each step of a job for one part, every cobot starting from home."""
    steps = cfg.jobs[job]
    return [
        StepEstimate(name, steps.step(name).skill, steps.step(name).cobot, plan.duration)
        for name, plan in plan_job(cfg, steps, part).items()
    ]


__all__ = [
    "SKILLS",
    "BUILT_IN",
    "Problems",
    "Skill",
    "SkillRegistry",
    "SkillParams",
    "StepEstimate",
    "check_skills",
    "estimate",
    "load_cell",
    "make_planner",
    "pallet_places",
    "pallet_plan",
    "parse_cell",
    "plan_job",
    "plan_step",
    "step_params",
    "validated_params",
]
