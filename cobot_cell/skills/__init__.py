"""Skills: pick, weld and palletise turn cell geometry and step parameters into timed motion plans.

`load_cell` is the full check of a cell file: structure and references (core), each step's parameters
(the skill's parameter dataclass, validated by pydantic), then every target of every job planned from home for
reachability. `make_planner` gives the sequencer its step planner. pydantic is imported by the functions that
validate, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import numpy as np

from ..core.config import (CellConfig, CellFileError, ConfigIssue, KNOWN_SKILLS, Step, _issues_from_pydantic,
                           _LineIndex, format_path, parse_cell, topological_order)
from ..core.plan import SkillPlan
from ..core.validation import validate
from ..motion.kinematics import arm_model
from . import palletise, pick, weld
from .common import ParamError, SkillContext, SkillParams
from .palletise import pallet_plan

SKILLS: dict[str, ModuleType] = {"pick": pick, "weld": weld, "palletise": palletise}
PARAMS: dict[str, type[SkillParams]] = {
    "pick": pick.PickParams, "weld": weld.WeldParams, "palletise": palletise.PalletiseParams,
}
assert tuple(SKILLS) == KNOWN_SKILLS


@dataclass(frozen=True)
class StepEstimate:
    """Planned duration of one step for one part."""

    step: str
    skill: str
    cobot: str
    duration: float


def step_params(step: Step) -> SkillParams:
    """The step's parameters validated by its skill's dataclass (pydantic ValidationError if bad)."""
    return validate(PARAMS[step.skill], step.params)


def plan_step(cfg: CellConfig, step: Step, part: int, q: np.ndarray, params: SkillParams | None = None,
              state: dict | None = None) -> SkillPlan:
    """Plan one step of one part for its cobot, starting from joint positions q (skill state: see make_planner)."""
    params = params or step_params(step)
    return SKILLS[step.skill].plan(SkillContext(cfg, step.cobot), params, part, np.asarray(q, dtype=float), state)


def make_planner(cfg: CellConfig, state: dict | None = None,
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

    return planner


def check_skills(cfg: CellConfig, lines: _LineIndex | None = None) -> list[ConfigIssue]:
    """Validate every step's parameters and plan every job from home; list the problems with YAML paths."""
    from pydantic import ValidationError

    lines = lines or _LineIndex(None)
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
                add(("cobots", cname, "home", i), f"{h:g} is outside the {model.name} {model.joint_names[i]} range "
                    f"[{model.q_min[i]:.4g}, {model.q_max[i]:.4g}]")
    if issues:
        return issues
    for jname, job in cfg.jobs.items():
        index = {s.name: i for i, s in enumerate(job.steps)}
        params: dict[str, SkillParams] = {}
        for i, step in enumerate(job.steps):
            at = ("jobs", jname, "steps", i, "params")
            try:
                p = step_params(step)
            except ValidationError as exc:
                issues += _issues_from_pydantic(
                    [{**e, "loc": (*at, *(k for k in e["loc"] if k not in weld.LOC_TAGS))} for e in exc.errors()],
                    lines)
                continue
            problems = SKILLS[step.skill].check(cfg, p)
            for key, problem in problems.items():
                add((*at, *(key if isinstance(key, tuple) else (key,))), problem)
            try:
                SkillContext(cfg, step.cobot).tool("torch" if step.skill == "weld" else "gripper")
            except ValueError as exc:
                add(("jobs", jname, "steps", i, "cobot"), f"{exc} (needed by skill '{step.skill}')")
                continue
            if not problems:
                params[step.name] = p
        if len(params) != len(job.steps):
            continue
        # Reachability: plan the job from home, chaining each cobot's end position; every pallet place.
        places = max((len(pallet_plan(cfg.stations[p.to])) for s, p in params.items()
                      if job.step(s).skill == "palletise"), default=1)
        q = {name: np.asarray(c.home, dtype=float) for name, c in cfg.cobots.items()}
        for part in range(1, places + 1):
            failed = False
            for name in topological_order(job):
                step = job.step(name)
                if part > 1 and step.skill != "palletise":
                    continue
                try:
                    plan = plan_step(cfg, step, part, q[step.cobot], params[name])
                except ParamError as exc:
                    add(("jobs", jname, "steps", index[name], "params", *exc.loc), str(exc))
                    failed = True
                    break
                except ValueError as exc:
                    add(("jobs", jname, "steps", index[name], "params"), str(exc))
                    failed = True
                    break
                q[step.cobot] = plan.end_q
            if failed:
                break
    return issues


def validated_params(cfg: CellConfig) -> dict[tuple[str, str], SkillParams]:
    """Every step's parameters validated by its skill, by (job, step name), for `make_planner`."""
    return {(jname, step.name): step_params(step) for jname, job in cfg.jobs.items() for step in job.steps}


def load_cell(path: str | Path) -> CellConfig:
    """Read a cell file and check everything a run needs; CellFileError lists every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CellFileError(str(path), [ConfigIssue("", f"cannot read file: {exc.strerror}")]) from None
    cfg, lines = parse_cell(text, str(path))
    issues = check_skills(cfg, lines)
    if issues:
        raise CellFileError(str(path), issues)
    return cfg


def estimate(cfg: CellConfig, job: str, part: int = 1) -> list[StepEstimate]:
    """Planned duration of each step of a job for one part, every cobot starting from home."""
    q = {name: np.asarray(c.home, dtype=float) for name, c in cfg.cobots.items()}
    out = []
    for name in topological_order(cfg.jobs[job]):
        step = cfg.jobs[job].step(name)
        plan = plan_step(cfg, step, part, q[step.cobot])
        q[step.cobot] = plan.end_q
        out.append(StepEstimate(step.name, step.skill, step.cobot, plan.duration))
    return out
