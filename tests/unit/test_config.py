"""Cell file model (cobot_cell.core.config): the demo cell with small edits, exact errors with YAML paths and lines."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core.dag import find_cycle, topological_order
from cobot_cell.core.loader import CellFileError, ConfigIssue, load_cell_file
from cobot_cell.core.model import Job
from cobot_cell.core.validation import validate
from cobot_cell.skills import parse_cell

REPO = Path(__file__).resolve().parents[2]
DEMO_FILE = REPO / "config" / "demo_cell.yaml"
DEMO = DEMO_FILE.read_text(encoding="utf-8")
SRC = "cell.yaml"


def edit(*pairs: str, text: str = DEMO) -> str:
    """The demo text with each (old, new) pair replaced; every `old` must occur exactly once."""
    assert len(pairs) % 2 == 0
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based line of the nth line containing `needle` (outside comments)."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line.split("#")[0]]
    assert len(hits) > nth, f"{needle!r} found on {len(hits)} lines"
    return hits[nth]


def issues(text: str) -> list[tuple[str, int | None, str]]:
    """(path, line, message) of every issue parse_cell reports for the text (it must reject it)."""
    with pytest.raises(CellFileError) as err:
        parse_cell(text, SRC)
    assert err.value.source == SRC
    return [(i.path, i.line, i.message) for i in err.value.issues]


def one_issue(text: str) -> tuple[str, int | None, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------- valid


def test_demo_cell_loads_with_every_section() -> None:
    cfg, _ = parse_cell(DEMO, SRC)
    assert cfg.cell.name == "demo"
    assert list(cfg.cobots) == ["picker", "welder"]
    assert cfg.cobots["welder"].base.xyz == (1.1, 0.0, 0.0)
    assert cfg.cobots["picker"].tools["gripper"].io == "gripper/grip"
    assert cfg.cobots["welder"].tools["torch"].tcp == (0.0, 0.0, 0.2)
    assert cfg.cobots["picker"].limits.velocity == (1.2, 1.2, 1.5, 2.0, 2.0, 2.0)
    assert cfg.cobot_namespace("picker") == "/picker"
    assert {n: s.kind for n, s in cfg.stations.items()} == {
        "infeed": "infeed",
        "fixture": "fixture",
        "pallet": "pallet",
    }
    pallet = cfg.stations["pallet"].pallet
    assert pallet is not None and pallet.pallet_size == (0.40, 0.30) and pallet.pattern == "column"
    assert (pallet.box.length, pallet.box.width, pallet.box.height, pallet.max_height) == (0.20, 0.15, 0.06, 0.12)
    assert pallet.approach_side == "+y" and pallet.layer_count == 2
    from cobot_cell.skills.palletise import pallet_plan

    assert cfg.stations["pallet"].pallet is not None and len(pallet_plan(cfg.stations["pallet"])) == 8
    assert cfg.stations["fixture"].pallet is None
    job = cfg.jobs["bracket"]
    assert [(s.name, s.skill, s.cobot, s.after) for s in job.steps] == [
        ("load_blank", "pick", "picker", ()),
        ("weld_seams", "weld", "welder", ("load_blank",)),
        ("palletise", "palletise", "picker", ("weld_seams",)),
    ]
    assert job.step("weld_seams").params["speed"] == 0.02
    with pytest.raises(KeyError):
        job.step("nope")


def test_load_cell_file_reads_the_demo_and_reports_an_unreadable_file(tmp_path: Path) -> None:
    assert load_cell_file(DEMO_FILE) == parse_cell(DEMO)[0]
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CellFileError) as err:
        load_cell_file(missing)
    assert str(err.value) == f"{missing}: 1 error\n  <top>: cannot read file: No such file or directory"


def test_models_are_frozen() -> None:
    cfg, _ = parse_cell(DEMO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cell.name = "other"  # type: ignore[misc]


def test_namespace_override_and_absolute_namespace() -> None:
    text = edit(
        "  picker:\n    model: ur5e",
        "  picker:\n    namespace: /line1/picker\n    model: ur5e",
        "  welder:\n    model: ur5e",
        "  welder:\n    namespace: line1/welder\n    model: ur5e",
    )
    cfg, _ = parse_cell(text)
    assert cfg.cobot_namespace("picker") == "/line1/picker"
    assert cfg.cobot_namespace("welder") == "/line1/welder"


# ---------------------------------------------------------------------------------------------- YAML level


def test_malformed_yaml_reports_line_and_column() -> None:
    text = edit("cobot: welder", "cobot: welder: x")
    assert one_issue(text) == (
        "",
        line_of(text, "cobot: welder: x"),
        "malformed YAML: mapping values are not allowed here (column 22)",
    )


def test_malformed_yaml_bad_indentation() -> None:
    text = edit("        skill: weld\n", "       skill: weld\n")
    with pytest.raises(CellFileError) as err:
        parse_cell(text, SRC)
    assert str(err.value) == (
        f"{SRC}: 1 error\n  line {line_of(text, 'skill: weld')}: malformed YAML: expected <block end>, "
        "but found '<block mapping start>' (column 8)"
    )


@pytest.mark.parametrize(
    "text, kind", [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str"), ("", "NoneType")]
)
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    with pytest.raises(CellFileError) as err:
        parse_cell(text, SRC)
    assert str(err.value) == (
        f"{SRC}: 1 error\n  <top>: expected a mapping with keys cell, cobots, stations, jobs; got {kind}"
    )


def test_duplicate_yaml_keys_are_errors_not_silently_dropped() -> None:
    # A YAML loader keeps the last of two equal keys; a second `picker:` would silently replace the first.
    text = edit(
        "  name: demo\n",
        "  name: demo\n  name: demo2\n",
        "      - name: palletise\n",
        "      - name: palletise\n        cobot: welder\n",
    )
    assert issues(text) == [
        ("cell.name", line_of(text, "name: demo2"), f"duplicate key (first on line {line_of(text, 'name: demo')})"),
        (
            "jobs.bracket.steps[2].cobot",
            line_of(text, "cobot: picker", 1),
            f"duplicate key (first on line {line_of(text, 'cobot: welder', 1)})",
        ),
    ]


# ---------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "old, new, path, needle",
    [
        ("jobs:\n", "colour: red\njobs:\n", "colour", "colour: red"),
        ("  name: demo\n", "  name: demo\n  colour: red\n", "cell.colour", "colour: red"),
        (
            "rpy: [0.0, 0.0, 3.14159265]}",
            "rpy: [0.0, 0.0, 3.14159265], scale: 2}",
            "cobots.welder.base.scale",
            "scale: 2",
        ),
        ("io: gripper/grip,", "io: gripper/grip, colour: red,", "cobots.picker.tools.gripper.colour", "colour: red"),
        ("height: 0.06}", "height: 0.06, colour: red}", "stations.pallet.pallet.box.colour", "colour: red"),
        ("max_height: 0.12\n", "max_height: 0.12\n      colour: red\n", "stations.pallet.pallet.colour", "colour: red"),
        ("    steps:\n", "    colour: red\n    steps:\n", "jobs.bracket.colour", "colour: red"),
        (
            "        cobot: welder\n",
            "        cobot: welder\n        colour: red\n",
            "jobs.bracket.steps[1].colour",
            "colour: red",
        ),
    ],
)
def test_unknown_key_at_any_depth_names_its_path_and_line(old: str, new: str, path: str, needle: str) -> None:
    text = edit(old, new)
    assert one_issue(text) == (path, line_of(text, needle), "unknown key")


def test_missing_required_keys_point_at_the_parent_line() -> None:
    text = edit("  name: demo\n", "", "        cobot: welder\n", "")
    assert issues(text) == [
        ("cell.name", line_of(text, "cell:"), "missing required key"),
        ("jobs.bracket.steps[1].cobot", line_of(text, "- name: weld_seams"), "missing required key"),
    ]


def test_missing_section_has_no_line() -> None:
    text = DEMO[: DEMO.index("jobs:")]
    with pytest.raises(CellFileError) as err:
        parse_cell(text, SRC)
    assert str(err.value) == f"{SRC}: 1 error\n  jobs: missing required key"


@pytest.mark.parametrize(
    "old, new, path, needle, message",
    [
        (
            "max_height: 0.12",
            "max_height: high",
            "stations.pallet.pallet.max_height",
            "max_height: high",
            "input should be a valid number, unable to parse string as a number, got 'high'",
        ),
        ("cobots:\n", "cobots: 5\nxcobots:\n", "cobots", "cobots: 5", "input should be a valid dictionary, got 5"),
        (
            "after: [load_blank]",
            "after: load_blank",
            "jobs.bracket.steps[1].after",
            "after: load_blank",
            "input should be a valid tuple, got 'load_blank'",
        ),
        (
            "params: {from: fixture, to: pallet}",
            "params: 5",
            "jobs.bracket.steps[2].params",
            "params: 5",
            "input should be a valid dictionary, got 5",
        ),
        (
            "kind: fixture\n",
            "kind: fixtures\n",
            "stations.fixture.kind",
            "kind: fixtures",
            "got 'fixtures': input should be 'infeed', 'fixture' or 'pallet'",
        ),
        (
            "model: ur5e\n    joints: [welder",
            "model: ur10\n    joints: [welder",
            "cobots.welder.model",
            "model: ur10",
            "got 'ur10': input should be 'ur3e', 'ur5e', 'ur7e', 'ur10e', 'ur12e', 'ur15', 'ur16e', 'ur20' or 'ur30'",
        ),
        (
            "kind: torch,",
            "kind: laser,",
            "cobots.welder.tools.torch.kind",
            "kind: laser",
            "got 'laser': input should be 'gripper' or 'torch'",
        ),
        (
            "pattern: column",
            "pattern: spiral",
            "stations.pallet.pallet.pattern",
            "pattern: spiral",
            "got 'spiral': input should be 'column', 'interlock' or 'pinwheel'",
        ),
        (
            "box: {length: 0.20, width: 0.15, height: 0.06}",
            "box: 5",
            "stations.pallet.pallet.box",
            "box: 5",
            "input should be a valid dictionary or instance of BoxSize, got 5",
        ),
    ],
)
def test_wrong_types(old: str, new: str, path: str, needle: str, message: str) -> None:
    text = edit(old, new)
    found = issues(text)
    assert found[0] == (path, line_of(text, needle), message)
    if path == "cobots":  # the renamed section is also reported, once
        assert found[1:] == [("xcobots", line_of(text, "xcobots:"), "unknown key")]
    else:
        assert len(found) == 1


# ---------------------------------------------------------------------------------------------- references


def test_step_naming_an_unknown_cobot_lists_the_cobots() -> None:
    text = edit("cobot: welder\n", "cobot: welda\n")
    assert one_issue(text) == (
        "jobs.bracket.steps[1].cobot",
        line_of(text, "cobot: welda"),
        "unknown cobot 'welda': expected one of picker, welder",
    )


def test_step_naming_an_unknown_skill_lists_the_skills() -> None:
    text = edit("skill: weld\n", "skill: glue\n")
    assert one_issue(text) == (
        "jobs.bracket.steps[1].skill",
        line_of(text, "skill: glue"),
        "unknown skill 'glue': expected one of pick, weld, palletise",
    )


def test_every_problem_is_reported_at_once() -> None:
    text = edit(
        "skill: pick\n",
        "skill: pik\n",
        "cobot: welder\n",
        "cobot: welda\n",
        "after: [weld_seams]",
        "after: [weld_seam]",
    )
    assert issues(text) == [
        (
            "jobs.bracket.steps[0].skill",
            line_of(text, "skill: pik"),
            "unknown skill 'pik': expected one of pick, weld, palletise",
        ),
        (
            "jobs.bracket.steps[1].cobot",
            line_of(text, "cobot: welda"),
            "unknown cobot 'welda': expected one of picker, welder",
        ),
        (
            "jobs.bracket.steps[2].after[0]",
            line_of(text, "after: [weld_seam]"),
            "unknown step 'weld_seam': expected one of load_blank, weld_seams, palletise",
        ),
    ]


def test_after_naming_an_unknown_step() -> None:
    text = edit("after: [load_blank]", "after: [load_blnk]")
    assert one_issue(text) == (
        "jobs.bracket.steps[1].after[0]",
        line_of(text, "after: [load_blnk]"),
        "unknown step 'load_blnk': expected one of load_blank, weld_seams, palletise",
    )


def test_step_after_itself() -> None:
    text = edit("after: [load_blank]", "after: [load_blank, weld_seams]")
    assert one_issue(text) == (
        "jobs.bracket.steps[1].after[1]",
        line_of(text, "after: [load_blank, weld_seams]"),
        "step 'weld_seams' cannot come after itself",
    )


def test_cycle_in_after_shows_the_cycle() -> None:
    text = edit("      - name: load_blank\n", "      - name: load_blank\n        after: [palletise]\n")
    assert one_issue(text) == (
        "jobs.bracket.steps",
        line_of(text, "steps:"),
        "cycle in 'after': load_blank -> weld_seams -> palletise -> load_blank",
    )


def test_two_step_cycle() -> None:
    text = edit("after: [load_blank]", "after: [palletise]")
    assert one_issue(text) == (
        "jobs.bracket.steps",
        line_of(text, "steps:"),
        "cycle in 'after': weld_seams -> palletise -> weld_seams",
    )


def test_duplicate_step_names_are_reported_without_a_bogus_cycle() -> None:
    # steps[2] is renamed load_blank; its `after: [weld_seams]` must not be read as a cycle with steps[0].
    text = edit("- name: palletise", "- name: load_blank")
    assert one_issue(text) == (
        "jobs.bracket.steps[2].name",
        line_of(text, "name: load_blank", 1),
        "duplicate step name 'load_blank' (also steps[0])",
    )


def test_job_needs_at_least_one_step() -> None:
    text = DEMO[: DEMO.index("    steps:")] + "    steps: []\n"
    assert one_issue(text) == ("jobs.bracket.steps", line_of(text, "steps: []"), "expected at least 1 entry, got 0")


def test_cell_needs_a_cobot_and_a_job() -> None:
    text = "cell: {name: empty}\ncobots: {}\njobs: {}\n"
    assert issues(text) == [
        ("cobots", 2, "expected at least 1 entry, got 0"),
        ("jobs", 3, "expected at least 1 entry, got 0"),
    ]


# ---------------------------------------------------------------------------------------------- cobots


@pytest.mark.parametrize(
    "old, new, path, needle, got",
    [
        (
            "joints: [picker_shoulder_pan_joint, ",
            "joints: [",
            "cobots.picker.joints",
            "joints: [picker_shoulder_lift",
            5,
        ),
        (
            "home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]\n    limits:\n      velocity: [1.2",
            "home: [0.0, -1.5708, 1.5708]\n    limits:\n      velocity: [1.2",
            "cobots.picker.home",
            "home: [0.0, -1.5708, 1.5708]",
            3,
        ),
        (
            "velocity: [1.2, 1.2, 1.5, 2.0, 2.0, 2.0]",
            "velocity: [1.2, 1.5, 2.0, 2.0, 2.0]",
            "cobots.picker.limits.velocity",
            "velocity: [1.2, 1.5, 2.0, 2.0, 2.0]",
            5,
        ),
        (
            "acceleration: [2.0, 2.0, 2.5, 3.5, 3.5, 3.5]",
            "acceleration: [2.0, 2.0, 2.5, 3.5, 3.5, 3.5, 1.0]",
            "cobots.welder.limits.acceleration",
            "3.5, 1.0]",
            7,
        ),
    ],
)
def test_joint_vectors_need_one_value_per_joint(old: str, new: str, path: str, needle: str, got: int) -> None:
    text = edit(old, new)
    assert one_issue(text) == (path, line_of(text, needle), f"expected 6 values for a ur5e, got {got}")


@pytest.mark.parametrize("new, got", [("[0.0, 0.0]", 2), ("[0.0, 0.0, 0.0, 1.0]", 4), ("[]", 0)])
def test_fixed_length_vectors_say_how_many_values(new: str, got: int) -> None:
    text = edit("base: {xyz: [0.0, 0.0, 0.0]", f"base: {{xyz: {new}")
    assert one_issue(text) == ("cobots.picker.base.xyz", line_of(text, f"xyz: {new}"), f"expected 3 values, got {got}")


def test_non_positive_limits_name_each_joint() -> None:
    text = edit("velocity: [1.2, 1.2, 1.5, 2.0, 2.0, 2.0]", "velocity: [1.2, 0.0, 1.5, 2.0, -1, 2.0]")
    line = line_of(text, "velocity: [1.2, 0.0")
    assert issues(text) == [
        ("cobots.picker.limits.velocity[1]", line, "input should be greater than 0, got 0.0"),
        ("cobots.picker.limits.velocity[4]", line, "input should be greater than 0, got -1"),
    ]


@pytest.mark.parametrize(
    "position, path, needle, message",
    [
        (
            "[[-1.0, 1.0]]",
            "cobots.picker.limits.position",
            "position:",
            "expected 6 [min, max] pairs for a ur5e, got 1",
        ),
        (
            "[[-1.0, 1.0], [0.5, 0.5], [-3, 3], [-6, 6], [-6, 6], [-6, 6]]",
            "cobots.picker.limits.position[1]",
            "position:",
            "expected min < max, got [0.5, 0.5]",
        ),
        (
            "[[-1.0, 1.0], [-1.0, 1.0], [-3, 3], [-6, 6], [-6, 6], [-6, 6]]",
            "cobots.picker.home[1]",
            "home: [0.0, -1.5708",
            "-1.5708 is outside limits.position[1] [-1, 1]",
        ),
        (
            "[[-1.0, 1.0], [-6, 6], [-3, 3], [-6, 6], [-6, 6], [-6]]",
            "cobots.picker.limits.position[5]",
            "position:",
            "expected 2 values, got 1",
        ),
    ],
)
def test_joint_position_limits(position: str, path: str, needle: str, message: str) -> None:
    limits = "      position: [[-6.28, 6.28], [-3.14, 0.0]" + ", [-6.28, 6.28]" * 4 + "]\n"
    text = edit(limits, f"      position: {position}\n")
    assert one_issue(text) == (path, line_of(text, needle), message)


def test_joint_names_unique_within_and_across_cobots() -> None:
    text = edit("picker_elbow_joint,", "picker_shoulder_pan_joint,", "welder_wrist_3_joint]", "picker_wrist_3_joint]")
    assert issues(text) == [
        ("cobots.picker.joints", line_of(text, "joints: [picker"), "joint names must be unique"),
        (
            "cobots.welder.joints",
            line_of(text, "joints: [welder"),
            "joint 'picker_wrist_3_joint' is also a joint of cobot 'picker'",
        ),
    ]


# ---------------------------------------------------------------------------------------------- stations

PALLET_BLOCK = """    pallet:
      pallet: {length: 0.40, width: 0.30}
      box: {length: 0.20, width: 0.15, height: 0.06}
      pattern: column
      max_height: 0.12
      approach_side: "+y"
"""


def test_pallet_station_needs_a_pallet() -> None:
    text = edit(PALLET_BLOCK, "")
    assert one_issue(text) == (
        "stations.pallet.pallet",
        line_of(text, "kind: pallet") - 1,
        "a pallet station needs a pallet (pallet, box, max_height)",
    )


def test_only_a_pallet_station_has_a_pallet() -> None:
    text = edit(
        "    kind: infeed\n",
        "    kind: infeed\n    pallet: {box: {length: 0.1, width: 0.1, height: 0.1}, max_height: 0.2}\n",
    )
    assert one_issue(text) == (
        "stations.infeed.pallet",
        line_of(text, "pallet: {box:"),
        "only a pallet station has a pallet (this one is infeed)",
    )


def test_the_old_pattern_key_says_what_replaced_it() -> None:
    text = edit(
        PALLET_BLOCK, "    pattern: {rows: 2, columns: 2, pitch: [0.20, 0.15], layers: 2, layer_height: 0.06}\n"
    )
    assert one_issue(text) == (
        "stations.pallet.pattern",
        line_of(text, "pattern: {rows"),
        "replaced by 'pallet': a pallet, a box and a pattern name (column, interlock or "
        "pinwheel), see docs/cell-file.md",
    )


@pytest.mark.parametrize(
    "old, new, path, needle, message",
    [
        # zero and negative dimensions name the dimension
        (
            "box: {length: 0.20,",
            "box: {length: 0,",
            "stations.pallet.pallet.box.length",
            "box:",
            "input should be greater than 0, got 0",
        ),
        (
            "height: 0.06}",
            "height: -0.06}",
            "stations.pallet.pallet.box.height",
            "box:",
            "input should be greater than 0, got -0.06",
        ),
        (
            "pallet: {length: 0.40, width: 0.30}",
            "pallet: {length: 0.40, width: 0.0}",
            "stations.pallet.pallet.pallet.width",
            "pallet: {length",
            "input should be greater than 0, got 0.0",
        ),
        (
            "max_height: 0.12",
            "max_height: -1",
            "stations.pallet.pallet.max_height",
            "max_height:",
            "input should be greater than 0, got -1",
        ),
        (
            "max_height: 0.12",
            "max_height: 0.12\n      gap: -0.01",
            "stations.pallet.pallet.gap",
            "gap:",
            "input should be greater than or equal to 0, got -0.01",
        ),
        # a box larger than the pallet
        (
            "box: {length: 0.20, width: 0.15,",
            "box: {length: 0.50, width: 0.35,",
            "stations.pallet.pallet.box",
            "box:",
            "box 0.500 x 0.350 m does not fit on the custom pallet 0.400 x 0.300 m in either orientation",
        ),
        (
            "pallet: {length: 0.40, width: 0.30}",
            "pallet: ISO",
            "stations.pallet.pallet.pallet",
            "pallet: ISO",
            "expected 'EUR', 'US' or {length, width} in m, got 'ISO'",
        ),
        # a stack that cannot fit the height limit
        (
            "max_height: 0.12",
            "max_height: 0.05",
            "stations.pallet.pallet.max_height",
            "max_height:",
            "0.050 m is below the box height 0.060 m: not even one layer fits",
        ),
        (
            "max_height: 0.12",
            "max_height: 0.12\n      layers: 3",
            "stations.pallet.pallet.layers",
            "layers: 3",
            "3 layers of 0.060 m reach 0.180 m, above max_height 0.120 m",
        ),
        (
            "max_height: 0.12",
            "max_height: 0.12\n      layers: 2\n      slip_sheets: true",
            "stations.pallet.pallet.layers",
            "layers: 2",
            "2 layers of 0.060 m (+ slip sheets) reach 0.122 m, above max_height 0.120 m",
        ),
        (
            'approach_side: "+y"',
            'approach_side: "y"',
            "stations.pallet.pallet.approach_side",
            "approach_side",
            "got 'y': input should be '-y', '+y', '-x' or '+x'",
        ),
    ],
)
def test_bad_pallets_name_the_parameter(old: str, new: str, path: str, needle: str, message: str) -> None:
    text = edit(old, new)
    assert one_issue(text) == (path, line_of(text, needle), message)


# ---------------------------------------------------------------------------------------------- names

NAME = "expected a name of letters, digits and underscores starting with a letter"
ROS_NAME = "names of letters, digits and underscores starting with a letter, separated by '/'"


@pytest.mark.parametrize("bad", ["3demo", "demo cell", "demo/cell", "", "démo"])
def test_cell_name_must_be_a_ros_name(bad: str) -> None:
    text = edit("  name: demo\n", f"  name: '{bad}'\n")
    assert one_issue(text) == ("cell.name", line_of(text, f"name: '{bad}'"), f"{NAME}, got {bad!r}")


def test_cobot_name_must_be_a_ros_name_and_steps_list_the_real_names() -> None:
    text = edit("  picker:\n", "  pick-er:\n")
    assert issues(text) == [
        ("cobots.pick-er", line_of(text, "pick-er:"), f"bad cobot name: {NAME}"),
        (
            "jobs.bracket.steps[0].cobot",
            line_of(text, "cobot: picker"),
            "unknown cobot 'picker': expected one of pick-er, welder",
        ),
        (
            "jobs.bracket.steps[2].cobot",
            line_of(text, "cobot: picker", 1),
            "unknown cobot 'picker': expected one of pick-er, welder",
        ),
    ]


def test_job_name_must_be_a_ros_name() -> None:
    text = edit("  bracket:\n", "  2bracket:\n")
    assert one_issue(text) == ("jobs.2bracket", line_of(text, "2bracket:"), f"bad job name: {NAME}")


@pytest.mark.parametrize("bad", ["bad ns!", "a//b", "a/", "/", "1line/picker"])
def test_cobot_namespace_must_be_a_ros_namespace(bad: str) -> None:
    text = edit("  picker:\n    model: ur5e", f"  picker:\n    namespace: '{bad}'\n    model: ur5e")
    assert one_issue(text) == (
        "cobots.picker.namespace",
        line_of(text, "namespace:"),
        f"expected a ROS namespace ({ROS_NAME}; may start with '/'), got {bad!r}",
    )


@pytest.mark.parametrize(
    "old, new, path, needle, bad",
    [
        (
            "io: gripper/grip",
            "io: /gripper/grip",
            "cobots.picker.tools.gripper.io",
            "io: /gripper/grip",
            "/gripper/grip",
        ),
        ("io: torch/arc", "io: 'torch arc'", "cobots.welder.tools.torch.io", "io: 'torch arc'", "torch arc"),
        (
            "  welder:\n    model: ur5e",
            "  welder:\n    controller: jtc/\n    model: ur5e",
            "cobots.welder.controller",
            "controller: jtc/",
            "jtc/",
        ),
    ],
)
def test_io_and_controller_must_be_relative_ros_names(old: str, new: str, path: str, needle: str, bad: str) -> None:
    text = edit(old, new)
    assert one_issue(text) == (path, line_of(text, needle), f"expected a relative ROS name ({ROS_NAME}), got {bad!r}")


# ---------------------------------------------------------------------------------------------- formatting


def test_cell_file_error_format() -> None:
    err = CellFileError(
        "cells/a.yaml",
        [
            ConfigIssue("cell.name", "missing required key", 4),
            ConfigIssue("jobs", "missing required key"),
            ConfigIssue("", "malformed YAML: oops", 7),
            ConfigIssue("", "expected a mapping"),
        ],
    )
    assert str(err) == (
        "cells/a.yaml: 4 errors\n"
        "  cell.name (line 4): missing required key\n"
        "  jobs: missing required key\n"
        "  line 7: malformed YAML: oops\n"
        "  <top>: expected a mapping"
    )
    assert isinstance(err, ValueError)
    assert err.source == "cells/a.yaml" and len(err.issues) == 4
    assert str(CellFileError("b.yaml", [ConfigIssue("x", "y", 1)])) == "b.yaml: 1 error\n  x (line 1): y"


def test_default_source_name() -> None:
    with pytest.raises(CellFileError) as err:
        parse_cell("[")
    assert str(err.value).startswith("<cell file>: 1 error\n  line 1: malformed YAML: ")


# ---------------------------------------------------------------------------------------------- DAG helpers


def make_job(n: int, edges: set[tuple[int, int]], order: list[int]) -> Job:
    """Steps s0..s{n-1} in file order `order`; (a, b) in edges means s{b} comes after s{a}."""
    return validate(
        Job,
        {
            "steps": [
                {"name": f"s{i}", "skill": "pick", "cobot": "c", "after": [f"s{a}" for a, b in sorted(edges) if b == i]}
                for i in order
            ]
        },
    )


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], list[int]]:
    """A random DAG (edges only from a lower to a higher index) in a random file order."""
    n = draw(st.integers(min_value=1, max_value=12))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    order = draw(st.permutations(range(n)))
    return n, {p for p, k in zip(pairs, keep) if k}, list(order)


@settings(max_examples=200, deadline=None)
@given(dags())
def test_topological_order_respects_every_edge(dag: tuple[int, set[tuple[int, int]], list[int]]) -> None:
    n, edges, order = dag
    job = make_job(n, edges, order)
    result = topological_order(job)
    assert sorted(result) == sorted(f"s{i}" for i in range(n))
    pos = {name: k for k, name in enumerate(result)}
    for a, b in edges:
        assert pos[f"s{a}"] < pos[f"s{b}"]
    assert find_cycle(job) is None


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(6)))
def test_topological_order_keeps_file_order_without_edges(order: list[int]) -> None:
    assert topological_order(make_job(6, set(), list(order))) == [f"s{i}" for i in order]


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_find_cycle_returns_a_real_cycle(dag: tuple[int, set[tuple[int, int]], list[int]], data: st.DataObject) -> None:
    n, edges, order = dag
    if n < 2:
        n, order = 2, [1, 0]
    # Close a cycle through k distinct steps: c0 -> c1 -> ... -> c(k-1) -> c0.
    ring = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=n, unique=True))
    edges = edges | {(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))}
    job = make_job(n, edges, order)
    cycle = find_cycle(job)
    assert cycle is not None
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for x, y in zip(cycle, cycle[1:]):
        assert x in job.step(y).after, f"{y} does not come after {x}"
    with pytest.raises(ValueError) as err:
        topological_order(job)
    assert str(err.value) == f"cycle in 'after': {' -> '.join(cycle)}"


def test_self_dependency_is_not_a_cycle_for_find_cycle() -> None:
    # check_references reports it as "cannot come after itself"; find_cycle ignores it.
    assert find_cycle(make_job(2, {(0, 1), (1, 1)}, [0, 1])) is None


def test_find_cycle_ignores_unknown_dependencies() -> None:
    job = validate(Job, {"steps": [{"name": "a", "skill": "pick", "cobot": "c", "after": ["ghost"]}]})
    assert find_cycle(job) is None


def test_a_list_with_a_bad_item_is_not_also_called_too_short():
    text = (
        "cell: {name: demo}\ncobots: {}\njobs:\n  j:\n    steps:\n"
        "      - {name: s, skill: weld, cobot: c, colour: red}\n"
    )
    with pytest.raises(CellFileError) as exc:
        parse_cell(text, "x.yaml")
    assert [str(i) for i in exc.value.issues] == [
        "cobots (line 2): expected at least 1 entry, got 0",
        "jobs.j.steps[0].colour (line 6): unknown key",
    ]


# ---------------------------------------------------------------------------------------------- encoding, NaN

NOT_UTF8 = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, "byte 0x89 at offset 0"),
    "utf-16": (DEMO.encode("utf-16"), 1, "byte 0xff at offset 0"),
    "latin-1": (
        "cell:\n  name: demo\n  description: Schwei\u00dfzelle\n".encode("latin-1"),
        3,
        "byte 0xdf at offset 40",
    ),
}


@pytest.mark.parametrize("case", NOT_UTF8)
def test_a_cell_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path, capsys, case: str) -> None:
    from cobot_cell.cli import main as cli_main
    from cobot_cell.skills import load_cell

    data, line, where = NOT_UTF8[case]
    path = tmp_path / "cell.yaml"
    path.write_bytes(data)
    expected = f"{path}: 1 error\n  line {line}: not UTF-8 text: {where} (save the file as UTF-8)"
    for load in (load_cell_file, load_cell):
        with pytest.raises(CellFileError) as err:
            load(path)
        assert str(err.value) == expected
    assert cli_main(["validate", str(path)]) == 2
    assert f"not UTF-8 text: {where}" in capsys.readouterr().err


def test_the_planner_load_path_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    from cobot_cell.skills.checked_cell import load_checked

    path = tmp_path / "cell.yaml"
    path.write_bytes(DEMO.encode("utf-16"))
    with pytest.raises(CellFileError) as err:
        load_checked(path)
    assert str(err.value) == (
        f"{path}: 1 error\n  line 1: not UTF-8 text: byte 0xff at offset 0 (save the file as UTF-8)"
    )


@pytest.mark.parametrize("value, shown", [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf")])
def test_a_non_finite_number_is_named_as_such(value: str, shown: str) -> None:
    from cobot_cell.skills import check_skills

    with pytest.raises(CellFileError) as err:
        parse_cell(edit("box: {length: 0.20,", f"box: {{length: {value},"))
    assert [str(i) for i in err.value.issues] == [
        f"stations.pallet.pallet.box.length (line 50): must be a finite number, got {shown}"
    ]
    cfg, lines = parse_cell(edit("speed: 0.02", f"speed: {value}"))
    assert [str(i) for i in check_skills(cfg, lines)] == [
        f"jobs.bracket.steps[1].params.speed (line 69): must be a finite number, got {shown}"
    ]
