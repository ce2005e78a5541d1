"""Skills as plugins: the registry, and the worked example of docs/skills.md ("How to add a skill") run as written:
registered, validated from a cell file (errors with YAML paths and lines), planned, and simulated in a job."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cobot_cell.core.loader import CellFileError
from cobot_cell.core.loader import parse_cell as parse_structure
from cobot_cell.core.plan import Dwell, Move
from cobot_cell.motion.transforms import translation
from cobot_cell.skills import BUILT_IN, SKILLS, Skill, check_skills, estimate, make_planner, parse_cell
from cobot_cell.skills.common import SkillContext, SkillParams, fk
from cobot_cell.skills.schedule import simulate
from cobot_cell.skills.skill import SkillRegistry

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "skills.md").read_text(encoding="utf-8")
DEMO = (REPO / "config" / "demo_cell.yaml").read_text(encoding="utf-8")


def doc_block(after: str, lang: str) -> str:
    """The first fenced `lang` block of docs/skills.md after the line `after`."""
    rest = DOC[DOC.index(after) :]
    found = re.search(rf"```{lang}\n(.*?)```", rest, re.S)
    assert found, f"no {lang} block after {after!r}"
    return found.group(1)


EXAMPLE = doc_block("## How to add a skill", "python")
STEP_YAML = doc_block("A step then names it like any other", "yaml")
PALLETISE_STEP = (
    "      - name: palletise\n        skill: palletise\n        cobot: picker\n        after: [weld_seams]\n"
)


def with_inspect(step: str = STEP_YAML) -> str:
    """The demo cell with the doc's inspect step between the weld and the palletising (which then waits for it)."""
    assert DEMO.count(PALLETISE_STEP) == 1
    return DEMO.replace(PALLETISE_STEP, step + PALLETISE_STEP.replace("[weld_seams]", "[inspect_welds]"))


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.fixture
def inspect(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The doc's module, imported as `inspect_skill` (it registers its skill); unregistered afterwards."""
    module = types.ModuleType("inspect_skill")
    monkeypatch.setitem(sys.modules, "inspect_skill", module)
    try:
        exec(compile(EXAMPLE, "docs/skills.md", "exec"), module.__dict__)
        yield module
    finally:
        if "inspect" in SKILLS:
            SKILLS.unregister("inspect")


def test_the_built_in_skills_are_registered_in_order() -> None:
    assert SKILLS.names() == ("pick", "weld", "palletise")
    assert tuple(SKILLS[n] for n in SKILLS) == BUILT_IN
    assert [(s.tool, s.carries_part, s.stacks) for s in BUILT_IN] == [
        ("gripper", True, False),
        ("torch", False, False),
        ("gripper", True, True),
    ]


class Unplanned(Skill[SkillParams]):
    """A skill with a check and no planner."""

    name = "unplanned"
    tool = "gripper"
    params = SkillParams

    def check(self, cfg, params):  # type: ignore[no-untyped-def]
        return {}


class Other(Unplanned):
    """Another skill called 'pick'."""

    name = "pick"

    def plan(self, ctx, params, part, q, state=None):  # type: ignore[no-untyped-def]
        raise AssertionError("not planned")


def test_the_registry_refuses_a_taken_or_bad_name_and_names_the_known_ones() -> None:
    registry = SkillRegistry()
    registry.register(Other())
    with pytest.raises(ValueError, match="^a skill named 'pick' is already registered$"):
        registry.register(Other())
    bad = Other()
    bad.name = "2d"
    with pytest.raises(ValueError, match="^skill name '2d': expected a name of letters"):
        registry.register(bad)
    with pytest.raises(KeyError, match="unknown skill 'glue': expected one of pick"):
        registry["glue"]

    class Glue(Other):
        name = "glue"

    with registry.registered(Glue()):
        assert registry.names() == ("pick", "glue")
    assert registry.names() == ("pick",)


def test_a_skill_without_a_planner_cannot_be_made() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Unplanned()  # type: ignore[abstract]


def test_the_loader_checks_skill_names_the_registry_hands_down(inspect: types.ModuleType) -> None:
    text = with_inspect()
    # core alone knows no skill: given no names, it leaves `skill:` to its caller
    parse_structure(text)
    assert parse_structure(text, skills=("pick", "weld", "palletise", "inspect"))[0].jobs["bracket"].steps[2].skill == (
        "inspect"
    )
    cfg, _ = parse_cell(text)  # the skills layer hands down the registered names
    assert [s.skill for s in cfg.jobs["bracket"].steps] == ["pick", "weld", "inspect", "palletise"]
    SKILLS.unregister("inspect")
    with pytest.raises(CellFileError) as err:
        parse_cell(text, "cell.yaml")
    assert [str(i) for i in err.value.issues] == [
        f"jobs.bracket.steps[2].skill (line {line_of(text, 'skill: inspect')}): unknown skill 'inspect': "
        "expected one of pick, weld, palletise"
    ]


def test_the_doc_example_is_validated_planned_and_simulated(inspect: types.ModuleType) -> None:
    cfg, lines = parse_cell(with_inspect())
    assert check_skills(cfg, lines) == []
    step = cfg.jobs["bracket"].step("inspect_welds")
    params = inspect.InspectParams(at="fixture", height=0.2)
    planner = make_planner(cfg)
    plan = planner(step, 1, np.asarray(cfg.cobots["picker"].home))
    assert [s.label for s in plan.segments] == ["approach", "take the picture", "home"]
    assert isinstance(plan.segments[1], Dwell) and plan.segments[1].seconds == params.exposure
    approach = plan.segments[0]
    assert isinstance(approach, Move)
    # the TCP is 0.2 m above the fixture's origin, pointing down
    ctx = SkillContext(cfg, "picker")
    _, gripper = ctx.tool("gripper")
    tcp = ctx.base_frame @ fk(ctx.model, approach.trajectory.final) @ translation(*gripper.tcp)
    assert np.allclose(tcp[:3, 3], np.asarray(cfg.stations["fixture"].pose.xyz) + [0.0, 0.0, 0.2], atol=1e-6)
    assert np.allclose(tcp[:3, 2], [0.0, 0.0, -1.0], atol=1e-6)
    # the estimate times it, and the sequencer runs it for every part between the weld and the palletising
    durations = {e.step: e.duration for e in estimate(cfg, "bracket")}
    assert durations["inspect_welds"] == pytest.approx(plan.duration)
    tl = simulate(cfg, "bracket", 3, 1)
    steps = sorted((p, s0, st) for _, p, st, s0, _ in tl.steps())
    assert [st for p, _, st in steps if p == 2] == ["load_blank", "weld_seams", "inspect_welds", "palletise"]
    assert all(r.status == "done" for r in tl.reports) and len(tl.reports) == 3


def test_the_doc_example_s_errors_name_the_yaml_path_and_line(inspect: types.ModuleType) -> None:
    bad = STEP_YAML.replace("{at: fixture, height: 0.2}", "{at: fixtur, exposure: -1}")
    text = with_inspect(bad)
    cfg, lines = parse_cell(text)
    line = line_of(text, "at: fixtur")
    assert [str(i) for i in check_skills(cfg, lines)] == [
        f"jobs.bracket.steps[2].params.exposure (line {line}): input should be greater than 0, got -1"
    ]
    text = with_inspect(STEP_YAML.replace("at: fixture,", "at: fixtur,"))
    cfg, lines = parse_cell(text)
    assert [str(i) for i in check_skills(cfg, lines)] == [
        f"jobs.bracket.steps[2].params.at (line {line_of(text, 'at: fixtur')}): unknown station 'fixtur': "
        "expected one of infeed, fixture, pallet"
    ]
    text = with_inspect(STEP_YAML.replace("cobot: picker", "cobot: welder"))
    cfg, lines = parse_cell(text)
    assert [str(i) for i in check_skills(cfg, lines)] == [
        f"jobs.bracket.steps[2].cobot (line {line_of(text, 'skill: inspect') + 1}): cobot 'welder' has no gripper "
        "tool (needed by skill 'inspect')"
    ]
