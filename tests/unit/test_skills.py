"""Skills (cobot_cell.skills): parameter checks with YAML paths, and the motion plans pick, weld and palletise make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core.config import CellConfig, CellFileError, parse_cell
from cobot_cell.core.plan import Checkpoint, Confirm, Dwell, Move, SetIo, SkillPlan
from cobot_cell.core.validation import validate
from cobot_cell.motion.kinematics import arm_model, fk
from cobot_cell.motion.transforms import pose_matrix, translation
from cobot_cell.skills import check_skills, estimate, load_cell, make_planner, pallet_plan, weld
from cobot_cell.skills.common import SkillContext

REPO = Path(__file__).resolve().parents[2]
DEMO_FILE = REPO / "config" / "demo_cell.yaml"
DEMO = DEMO_FILE.read_text(encoding="utf-8")
CFG: CellConfig = load_cell(DEMO_FILE)
JOB = CFG.jobs["bracket"]
PLACES = 8  # the demo pallet: 2 rows x 2 columns x 2 layers


def edit(*pairs: str) -> str:
    """The demo text with each (old, new) pair replaced; every `old` must occur exactly once."""
    text = DEMO
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def line_of(text: str, needle: str, nth: int = 0) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line.split("#")[0]]
    return hits[nth]


def load_issues(tmp_path: Path, text: str) -> list[tuple[str, int | None, str]]:
    """(path, line, message) of every issue load_cell reports for the text (it must reject it)."""
    path = tmp_path / "cell.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CellFileError) as err:
        load_cell(path)
    assert str(err.value).startswith(f"{path}: ")
    return [(i.path, i.line, i.message) for i in err.value.issues]


def tcp_world(cobot: str, q: np.ndarray) -> np.ndarray:
    """4x4 pose of the cobot's (only) tool TCP in the cell frame, by forward kinematics."""
    c = CFG.cobots[cobot]
    (tool,) = c.tools.values()
    return pose_matrix(c.base.xyz, c.base.rpy) @ fk(arm_model(c.model), q) @ translation(*tool.tcp)


def moves(plan: SkillPlan) -> list[Move]:
    return [s for s in plan.segments if isinstance(s, Move)]


def home(cobot: str) -> np.ndarray:
    return np.asarray(CFG.cobots[cobot].home, dtype=float)


# ---------------------------------------------------------------------------------------------- load_cell


def test_demo_cell_passes_every_check() -> None:
    assert CFG == parse_cell(DEMO)[0]
    assert check_skills(CFG) == []


@pytest.mark.parametrize(
    "old, new, path, needle, message",
    [
        (
            "params: {from: infeed, to: fixture}",
            "params: {from: infeed, to: fixture, colour: red}",
            "jobs.bracket.steps[0].params.colour",
            "colour: red",
            "unknown key",
        ),
        (
            "params: {from: infeed, to: fixture}",
            "params: {to: fixture}",
            "jobs.bracket.steps[0].params.from",
            "params: {to: fixture}",
            "missing required key",
        ),
        (
            "params: {from: infeed, to: fixture}",
            "params: {from: infeedx, to: fixture}",
            "jobs.bracket.steps[0].params.from",
            "from: infeedx",
            "unknown station 'infeedx': expected one of infeed, fixture, pallet",
        ),
        (
            "params: {from: fixture, to: pallet}",
            "params: {from: fixture, to: infeed}",
            "jobs.bracket.steps[2].params.to",
            "to: infeed",
            "station 'infeed' is an infeed: expected a pallet",
        ),
        (
            "params: {from: fixture, to: pallet}",
            "params: {from: pallet, to: pallet}",
            "jobs.bracket.steps[2].params.from",
            "from: pallet, to: pallet",
            "station 'pallet' is a pallet: expected an infeed or a fixture",
        ),
        (
            "station: fixture\n",
            "station: pallet\n",
            "jobs.bracket.steps[1].params.station",
            "station: pallet",
            "station 'pallet' is a pallet: expected a fixture",
        ),
        (
            "            - [[-0.05, -0.03, 0.05], [0.05, -0.03, 0.05]]",
            "            - [[-0.05, -0.03, 0.05]]",
            "jobs.bracket.steps[1].params.seams",
            "seams:",
            "seam 1 needs at least 2 points, got 1",
        ),
        (
            "[[-0.05, 0.03, 0.05], [0.05, 0.03, 0.05]]",
            "[[-0.05, 0.03, 0.05], [0.05, 0.03]]",
            "jobs.bracket.steps[1].params.seams[0][1]",
            "[0.05, 0.03]]",
            "expected 3 values, got 2",
        ),
        (
            "speed: 0.02",
            "speed: 0.25",
            "jobs.bracket.steps[1].params.speed",
            "speed: 0.25",
            "input should be less than or equal to 0.2, got 0.25",
        ),
        (
            "speed: 0.02",
            "speed: 0",
            "jobs.bracket.steps[1].params.speed",
            "speed: 0",
            "input should be greater than 0, got 0",
        ),
        ("          speed: 0.02\n", "", "jobs.bracket.steps[1].params.speed", ("params:", 1), "missing required key"),
        (
            "cobot: welder",
            "cobot: welder_",
            "jobs.bracket.steps[1].cobot",
            "cobot: welder_",
            "unknown cobot 'welder_': expected one of picker, welder",
        ),
        (
            "cobot: welder",
            "cobot: picker",
            "jobs.bracket.steps[1].cobot",
            ("cobot: picker", 1),
            "cobot 'picker' has no torch tool (needed by skill 'weld')",
        ),
    ],
)
def test_bad_step_parameters_name_the_params_path(
    tmp_path: Path, old: str, new: str, path: str, needle: str | tuple[str, int], message: str
) -> None:
    text = edit(old, new)
    line = line_of(text, *needle) if isinstance(needle, tuple) else line_of(text, needle)
    assert load_issues(tmp_path, text) == [(path, line, message)]


def test_every_bad_step_is_reported_and_planning_is_skipped(tmp_path: Path) -> None:
    # A bad station must not reach the planner (it used to crash the check with a KeyError).
    text = edit(
        "params: {from: infeed, to: fixture}",
        "params: {from: infeed, to: fixture, colour: red}",
        "params: {from: fixture, to: pallet}",
        "params: {from: fixtur, to: pallet}",
    )
    assert load_issues(tmp_path, text) == [
        ("jobs.bracket.steps[0].params.colour", line_of(text, "colour: red"), "unknown key"),
        (
            "jobs.bracket.steps[2].params.from",
            line_of(text, "from: fixtur,"),
            "unknown station 'fixtur': expected one of infeed, fixture, pallet",
        ),
    ]


def test_target_out_of_reach_names_the_step(tmp_path: Path) -> None:
    text = edit("pose: {xyz: [0.05, 0.55, 0.05]", "pose: {xyz: [2.05, 0.55, 0.05]")
    [(path, line, message)] = load_issues(tmp_path, text)
    assert (path, line) == ("jobs.bracket.steps[0].params.from", line_of(text, "params: {from: infeed"))
    # above the grasp: infeed z 0.05 + grasp_height 0.03 + approach 0.10
    assert message.startswith(
        "pick: approach to grasp at [2.05, 0.55, 0.18] is not reachable by 'picker': out of reach"
    )


def test_every_pallet_place_is_checked_for_reach(tmp_path: Path) -> None:
    # Moved away from the picker, the first layer is still reachable but place 5 (second layer, far row, +x
    # column, 0.06 m higher) is not: the first unreachable place is reported, on the step's `to`.
    text = edit("pose: {xyz: [0.05, -0.60, 0.0]", "pose: {xyz: [0.05, -0.80, 0.0]")
    assert load_issues(tmp_path, text) == [
        (
            "jobs.bracket.steps[2].params.to",
            line_of(text, "params: {from: fixture, to: pallet}"),
            "palletise place 5 (layer 1 of stations.pallet.pallet): approach to place at [0.15, -0.875, 0.19] is not "
            "reachable by 'picker': out of reach: wrist is 0.8259 m from the shoulder, the arm reaches 0.8172 m; the "
            "stack needs more height than 'picker' reaches: layers 0 to 0 (0.060 m) are within reach, so lower "
            "max_height to 0.060 m, or move the pallet or the arm (there is no lift axis)",
        )
    ]


# ---------------------------------------------------------------------------------------------- estimate


def test_estimate_gives_a_positive_duration_per_step_in_dag_order() -> None:
    est = estimate(CFG, "bracket")
    assert [(e.step, e.skill, e.cobot) for e in est] == [
        ("load_blank", "pick", "picker"),
        ("weld_seams", "weld", "welder"),
        ("palletise", "palletise", "picker"),
    ]
    assert all(e.duration > 0 for e in est)
    # The weld alone: two 0.1 m seams at 0.02 m/s plus pre-flow 0.3 s and post-flow 0.5 s each.
    assert est[1].duration > 2 * 0.1 / 0.02 + 2 * (0.3 + 0.5)


def test_estimate_depends_on_the_part_only_through_the_pallet_place() -> None:
    by_part = {p: {e.step: e.duration for e in estimate(CFG, "bracket", part=p)} for p in range(1, PLACES + 2)}
    for p in by_part:
        assert by_part[p]["load_blank"] == by_part[1]["load_blank"]
        assert by_part[p]["weld_seams"] == by_part[1]["weld_seams"]
    assert by_part[PLACES + 1] == by_part[1]
    assert len({round(by_part[p]["palletise"], 9) for p in range(1, PLACES + 1)}) > 1


# ---------------------------------------------------------------------------------------------- plans

PLANNER = make_planner(CFG)
START_QS = {
    "home": None,
    "offset": np.array([0.3, -0.2, 0.25, -0.1, 0.2, -0.4]),
}
CASES = [
    (s.name, part, start)
    for s in JOB.steps
    for part in (range(1, PLACES + 2) if s.skill == "palletise" else [1])
    for start in START_QS
]


def plan_case(step: str, part: int, start: str) -> tuple[np.ndarray, SkillPlan]:
    s = JOB.step(step)
    q0 = home(s.cobot) if START_QS[start] is None else home(s.cobot) + START_QS[start]
    return q0, PLANNER(s, part, q0)


@pytest.mark.parametrize("step, part, start", CASES)
def test_moves_are_continuous(step: str, part: int, start: str) -> None:
    q0, plan = plan_case(step, part, start)
    ms = moves(plan)
    assert ms, "a plan without moves"
    np.testing.assert_allclose(ms[0].trajectory.start, q0, atol=1e-9)
    for prev, cur in zip(ms, ms[1:]):
        np.testing.assert_allclose(
            cur.trajectory.start,
            prev.trajectory.final,
            atol=1e-9,
            err_msg=f"{cur.label} does not start where {prev.label} ends",
        )
    np.testing.assert_allclose(plan.end_q, ms[-1].trajectory.final, atol=1e-12)
    # return_home is the default: every step ends at home, whatever it started from
    np.testing.assert_allclose(plan.end_q, home(JOB.step(step).cobot), atol=1e-9)
    assert plan.duration == pytest.approx(
        sum(m.trajectory.duration for m in ms) + sum(s.seconds for s in plan.segments if isinstance(s, Dwell))
    )


@pytest.mark.parametrize("step, part, start", CASES)
def test_no_trajectory_exceeds_the_joint_velocity_limits(step: str, part: int, start: str) -> None:
    _, plan = plan_case(step, part, start)
    v_max = np.asarray(CFG.cobots[JOB.step(step).cobot].limits.velocity)
    for m in moves(plan):
        tr = m.trajectory
        assert np.all(np.abs(tr.velocities) <= v_max * (1 + 1e-9)), m.label
        if tr.times.size > 1:
            # mean speed between knots (position differences, not the stated velocities)
            chord = np.abs(np.diff(tr.positions, axis=0)) / np.diff(tr.times)[:, None]
            assert np.all(chord <= v_max * (1 + 1e-9)), m.label
            # what a joint_trajectory_controller interpolating the knots would command
            for t in np.linspace(0.0, tr.duration, 400):
                assert np.all(np.abs(tr.sample_velocity(t)) <= v_max * (1 + 1e-6)), (m.label, t)


def io_events(plan: SkillPlan) -> list[tuple[str, bool]]:
    return [(s.io, s.value) for s in plan.segments if isinstance(s, SetIo)]


def test_pick_grips_at_the_infeed_and_releases_at_the_fixture() -> None:
    plan = PLANNER(JOB.step("load_blank"), 1, home("picker"))
    assert io_events(plan) == [("gripper/grip", True), ("gripper/grip", False)]
    where = {}
    for i, seg in enumerate(plan.segments):
        if isinstance(seg, SetIo):
            before = [s for s in plan.segments[:i] if isinstance(s, Move)][-1]
            where[seg.value] = tcp_world("picker", before.trajectory.final)
    infeed, fixture = np.array(CFG.stations["infeed"].pose.xyz), np.array(CFG.stations["fixture"].pose.xyz)
    np.testing.assert_allclose(where[True][:3, 3], infeed + [0, 0, 0.03], atol=1e-6)
    np.testing.assert_allclose(where[False][:3, 3], fixture + [0, 0, 0.03], atol=1e-6)
    for pose in where.values():  # tool pointing straight down
        np.testing.assert_allclose(pose[:3, 2], [0, 0, -1], atol=1e-6)


# ---------------------------------------------------------------------------------------------- weld


def check_weld_plan(
    plan: SkillPlan, seams: list[list[tuple[float, float, float]]], speed: float, preflow: float, postflow: float
) -> None:
    """Arc on/off around each seam with gas dwells, the arc on only on the seam, and the travel slow enough."""
    segs = plan.segments
    frame = pose_matrix(CFG.stations["fixture"].pose.xyz, CFG.stations["fixture"].pose.rpy)
    on = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and s.value]
    off = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and not s.value]
    assert len(on) == len(off) == len(seams)
    assert {s.io for s in segs if isinstance(s, SetIo)} == {"torch/arc"}
    last_off = -1
    for seam, i_on, i_off in zip(seams, on, off):
        assert last_off < i_on < i_off
        pre, post = segs[i_on - 1], segs[i_off + 1]
        assert isinstance(pre, Dwell) and pre.seconds == preflow
        assert isinstance(post, Dwell) and post.seconds == postflow
        assert isinstance(segs[i_on + 1], Checkpoint) and segs[i_on + 1].value["arc"]  # struck: journalled first
        travel = segs[i_on + 2 : i_off]
        assert travel and all(isinstance(s, Move) and s.process is not None for s in travel)
        # the torch is at the seam start when the arc strikes, at the seam end when it goes out
        points = [(frame @ np.array([*p, 1.0]))[:3] for p in seam]
        before = [s for s in segs[:i_on] if isinstance(s, Move)][-1]
        np.testing.assert_allclose(tcp_world("welder", before.trajectory.final)[:3, 3], points[0], atol=1e-6)
        ends = [tcp_world("welder", m.trajectory.final)[:3, 3] for m in travel]
        np.testing.assert_allclose(ends[-1], points[-1], atol=1e-6)
        length = sum(float(np.linalg.norm(b - a)) for a, b in zip(points, points[1:]))
        assert sum(m.trajectory.duration for m in travel) >= length / speed - 1e-9
        # on the seam polyline at every knot while the arc is on
        for m in travel:
            for q in m.trajectory.positions:
                p = tcp_world("welder", q)[:3, 3]
                dist = min(segment_distance(p, a, b) for a, b in zip(points, points[1:]))
                assert dist < 1e-6
        last_off = i_off


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    denom = float(ab @ ab)  # 0.0 also for a segment so short its squared length underflows
    t = 0.0 if denom == 0.0 else float(np.clip((p - a) @ ab / denom, 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def test_demo_weld_plan() -> None:
    step = JOB.step("weld_seams")
    plan = PLANNER(step, 1, home("welder"))
    check_weld_plan(plan, step.params["seams"], 0.02, 0.3, 0.5)


point = st.tuples(st.floats(-0.06, 0.06), st.floats(-0.06, 0.06), st.floats(0.02, 0.08))


@settings(max_examples=25, deadline=None)
@given(
    seams=st.lists(st.lists(point, min_size=2, max_size=3), min_size=1, max_size=2),
    speed=st.floats(0.005, 0.05),
    preflow=st.floats(0.0, 1.0),
    postflow=st.floats(0.0, 1.0),
)
def test_weld_plans_for_any_seams(
    seams: list[list[tuple[float, float, float]]], speed: float, preflow: float, postflow: float
) -> None:
    params = validate(
        weld.WeldParams,
        {"station": "fixture", "seams": seams, "speed": speed, "preflow": preflow, "postflow": postflow},
    )
    q0 = home("welder")
    plan = weld.plan(SkillContext(CFG, "welder"), params, 1, q0)
    check_weld_plan(plan, seams, speed, preflow, postflow)
    ms = moves(plan)
    np.testing.assert_allclose(ms[0].trajectory.start, q0, atol=1e-9)
    for prev, cur in zip(ms, ms[1:]):
        np.testing.assert_allclose(cur.trajectory.start, prev.trajectory.final, atol=1e-9)


def test_weld_torch_never_travels_faster_than_the_weld_speed() -> None:
    # Sampled as a controller interpolates the knots (a cubic between knots): with knots at the trapezoid's
    # phase switches the short ramp at each end of a seam no longer overshoots the weld speed.
    step = JOB.step("weld_seams")
    plan = PLANNER(step, 1, home("welder"))
    segs = plan.segments
    on = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and s.value]
    off = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and not s.value]
    for i_on, i_off in zip(on, off):
        for m in segs[i_on + 2 : i_off]:  # after the arc-struck checkpoint
            tr = m.trajectory
            ts = np.linspace(0.0, tr.duration, 2001)
            p = np.array([tcp_world("welder", tr.sample(t))[:3, 3] for t in ts])
            speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(ts)
            assert speed.max() <= 0.02 * 1.01


# ---------------------------------------------------------------------------------------------- palletise


def release_and_grasp(plan: SkillPlan) -> tuple[np.ndarray, np.ndarray]:
    """TCP poses (cell frame) where the gripper closes and where it opens."""
    out = {}
    for i, seg in enumerate(plan.segments):
        if isinstance(seg, SetIo):
            before = [s for s in plan.segments[:i] if isinstance(s, Move)][-1]
            out[seg.value] = tcp_world("picker", before.trajectory.final)
    return out[True], out[False]


def test_palletise_fills_the_pallet_place_by_place_and_wraps() -> None:
    step = JOB.step("palletise")
    q = home("picker")
    grasps, places = [], []
    for part in range(1, 2 * PLACES + 1):
        plan = PLANNER(step, part, q)
        q = plan.end_q
        assert io_events(plan) == [("gripper/grip", True), ("gripper/grip", False)]
        g, p = release_and_grasp(plan)
        grasps.append(g[:3, 3])
        places.append(p[:3, 3])
        np.testing.assert_allclose(p[:3, 2], [0, 0, -1], atol=1e-6)  # placing straight down
    fixture = np.array(CFG.stations["fixture"].pose.xyz)
    pallet = np.array(CFG.stations["pallet"].pose.xyz)
    grasp_height, layer_height = 0.03, 0.06
    for g in grasps:  # every part is taken from the fixture
        np.testing.assert_allclose(g, fixture + [0, 0, grasp_height], atol=1e-6)
    full = np.array(places[:PLACES])
    # eight different places, then the second pallet repeats the first
    gaps = np.linalg.norm(full[:, None] - full[None, :], axis=2) + np.eye(PLACES)
    assert gaps.min() > layer_height - 1e-6
    np.testing.assert_allclose(np.array(places[PLACES:]), full, atol=1e-6)
    # first layer: a 2 x 2 grid at the pitch, centred on the pallet, parts resting on the pallet
    layer0, layer1 = full[:4], full[4:]
    assert sorted({round(x, 6) for x in layer0[:, 0]}) == pytest.approx([pallet[0] - 0.10, pallet[0] + 0.10])
    assert sorted({round(y, 6) for y in layer0[:, 1]}) == pytest.approx([pallet[1] - 0.075, pallet[1] + 0.075])
    np.testing.assert_allclose(layer0[:, 2], pallet[2] + grasp_height, atol=1e-6)
    # second layer: on top of the first, in the same order
    np.testing.assert_allclose(layer1, layer0 + [0, 0, layer_height], atol=1e-6)


def release_index(plan: SkillPlan) -> int:
    """Index of the release SetIo in a plan's segments."""
    return next(i for i, seg in enumerate(plan.segments) if isinstance(seg, SetIo) and not seg.value)


def test_palletise_places_follow_the_pallet_plan() -> None:
    step = JOB.step("palletise")
    layout = pallet_plan(CFG.stations["pallet"])
    assert len(layout) == PLACES and layout.boxes_per_layer == 4 and layout.layers == 2
    frame = pose_matrix(CFG.stations["pallet"].pose.xyz, CFG.stations["pallet"].pose.rpy)
    for part in range(1, PLACES + 1):
        plan = PLANNER(step, part, home("picker"))
        _, release = release_and_grasp(plan)
        place = layout.place(part - 1)
        expected = frame @ np.array([place.position[0], place.position[1], place.position[2] - 0.06 + 0.03, 1.0])
        np.testing.assert_allclose(release[:3, 3], expected[:3], atol=1e-6)
    # the picker comes in from +y: the far (-y) row of each layer is filled first
    assert [p.position[1] for p in layout.places[:4]] == [-0.075, -0.075, 0.075, 0.075]


def test_palletise_takes_the_place_from_the_skill_state_and_checkpoints_the_next() -> None:
    step = JOB.step("palletise")
    planner = make_planner(CFG, {"pallet.pallet.next": 5})
    plan = planner(step, 1, home("picker"))  # the state, not the part number, picks the place
    _, release = release_and_grasp(plan)
    _, expected = release_and_grasp(PLANNER(step, 6, home("picker")))
    np.testing.assert_allclose(release, expected, atol=1e-9)
    i = release_index(plan)
    checkpoints = [(k, s) for k, s in enumerate(plan.segments) if isinstance(s, Checkpoint)]
    stage = "part.palletise.fixture.pallet.stage"
    assert [s.updates() for _, s in checkpoints] == [
        {stage: "gripped"},
        {stage: "releasing"},
        {stage: "released", "pallet.pallet.next": 6},
    ]
    assert checkpoints[0][0] < checkpoints[1][0] < i < checkpoints[2][0]  # the place is recorded after the release
    # the gripper's grip is confirmed right after closing
    grip = next(k for k, s in enumerate(plan.segments) if isinstance(s, SetIo) and s.value)
    assert isinstance(plan.segments[grip + 1], Dwell) and isinstance(plan.segments[grip + 2], Confirm)
    # the last place fills the pallet: it stays full (no wrap-around) until the operator confirms the change
    last = make_planner(CFG, {"pallet.pallet.next": PLACES - 1})(step, 1, home("picker"))
    assert [s.updates().get("pallet.pallet.next") for s in last.segments if isinstance(s, Checkpoint)] == [
        None,
        None,
        PLACES,
    ]
    with pytest.raises(ValueError, match=f"pallet 'pallet' is full \\({PLACES} places\\): change it, then confirm"):
        make_planner(CFG, {"pallet.pallet.next": PLACES})(step, 1, home("picker"))


ROTATED = edit(
    "pallet: {length: 0.40, width: 0.30}",
    "pallet: {length: 0.30, width: 0.40}",
    '      approach_side: "+y"\n',
    '      approach_side: "+y"\n      label_out: true\n',
)


def test_palletise_turns_the_tool_by_the_box_yaw(tmp_path: Path) -> None:
    # A 0.30 x 0.40 m pallet takes the 0.20 x 0.15 m boxes 2 x 2 only turned a quarter; label_out turns the
    # boxes on the -x side half a turn more so every label faces out.
    path = tmp_path / "cell.yaml"
    path.write_text(ROTATED, encoding="utf-8")
    cfg = load_cell(path)
    layout = pallet_plan(cfg.stations["pallet"])
    assert sorted({round(p.yaw, 6) for p in layout.places}) == [round(-np.pi / 2, 6), round(np.pi / 2, 6)]
    planner = make_planner(cfg)
    c = cfg.cobots["picker"]
    for part in range(1, len(layout) + 1):
        plan = planner(cfg.jobs["bracket"].step("palletise"), part, home("picker"))
        segs = plan.segments
        grasp_q = [
            s for s in segs[: next(i for i, s in enumerate(segs) if isinstance(s, SetIo))] if isinstance(s, Move)
        ][-1].trajectory.final
        release_q = [s for s in segs[: release_index(plan)] if isinstance(s, Move)][-1].trajectory.final
        tcp = pose_matrix(c.base.xyz, c.base.rpy)
        grasp = tcp @ fk(arm_model(c.model), grasp_q) @ translation(*c.tools["gripper"].tcp)
        release = tcp @ fk(arm_model(c.model), release_q) @ translation(*c.tools["gripper"].tcp)
        yaw = layout.place(part - 1).yaw
        # the box's x axis (the tool's x at the grasp, in the fixture frame) ends up turned by the place's yaw
        np.testing.assert_allclose(grasp[:3, 0], [1, 0, 0], atol=1e-9)
        np.testing.assert_allclose(release[:3, 0], [np.cos(yaw), np.sin(yaw), 0], atol=1e-9)
        np.testing.assert_allclose(release[:3, 2], [0, 0, -1], atol=1e-9)


def test_a_grasp_above_the_box_is_an_error(tmp_path: Path) -> None:
    text = edit("params: {from: fixture, to: pallet}", "params: {from: fixture, to: pallet, grasp_height: 0.08}")
    assert load_issues(tmp_path, text) == [
        (
            "jobs.bracket.steps[2].params.grasp_height",
            line_of(text, "grasp_height: 0.08"),
            "0.08 m is above the top of the 0.06 m box (stations.pallet.pallet.box.height)",
        )
    ]


def test_an_eur_pallet_at_the_demo_pose_is_out_of_reach(tmp_path: Path) -> None:
    # The 400 x 300 x 200 mm boxes on an EUR pallet: the far corners are beyond a UR5e's reach from the picker.
    text = edit(
        "      pallet: {length: 0.40, width: 0.30}\n      box: {length: 0.20, width: 0.15, height: 0.06}\n"
        "      pattern: column\n      max_height: 0.12\n",
        "      pallet: EUR\n      box: {length: 0.40, width: 0.30, height: 0.20}\n"
        "      pattern: column\n      max_height: 1.0\n",
    )
    # 8 boxes a layer, far (-y) row first from -x: places 0-2 are reachable, place 3 (x = +0.45 m) is not.
    assert load_issues(tmp_path, text) == [
        (
            "jobs.bracket.steps[2].params.to",
            line_of(text, "params: {from: fixture, to: pallet}"),
            "palletise place 3 (layer 0 of stations.pallet.pallet): approach to place at [0.5, -0.8, 0.13] is not "
            "reachable by 'picker': out of reach: wrist is 0.8620 m from the shoulder, the arm reaches 0.8172 m",
        )
    ]


# ---------------------------------------------------------------------------------------------- weld geometry

SEAM_1 = "            - [[-0.05, -0.03, 0.05], [0.05, -0.03, 0.05]]"
FIXTURE = pose_matrix(CFG.stations["fixture"].pose.xyz, CFG.stations["fixture"].pose.rpy)


def weld_plan(**params: object) -> tuple[weld.WeldParams, SkillPlan]:
    p = validate(weld.WeldParams, {"station": "fixture", "speed": 0.02} | params)
    return p, weld.plan(SkillContext(CFG, "welder"), p, 1, home("welder"))


def arc_on_moves(plan: SkillPlan) -> list[list[Move]]:
    """Per seam, the moves made with the arc on."""
    segs = plan.segments
    on = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and s.value]
    off = [i for i, s in enumerate(segs) if isinstance(s, SetIo) and not s.value]
    return [[s for s in segs[a + 1 : b] if isinstance(s, Move)] for a, b in zip(on, off)]


def in_fixture(cobot_q: np.ndarray) -> np.ndarray:
    """The welder's TCP pose in the fixture frame."""
    return np.linalg.inv(FIXTURE) @ tcp_world("welder", cobot_q)


def test_demo_weld_pushes_the_torch_at_its_travel_angle() -> None:
    plan = PLANNER(JOB.step("weld_seams"), 1, home("welder"))
    axis = np.array([np.sin(np.radians(10)), 0.0, -np.cos(np.radians(10))])  # seams run along +x
    for seam in arc_on_moves(plan):
        for m in seam:
            for q in m.trajectory.positions:
                np.testing.assert_allclose(in_fixture(q)[:3, 2], axis, atol=1e-9)


def test_torch_angles_and_standoff_along_a_polyline() -> None:
    # An L: along +x, then along +y. Work angle tilts the torch towards b = n x t (left of travel).
    seam = [(-0.05, -0.03, 0.05), (0.03, -0.03, 0.05), (0.03, 0.04, 0.05)]
    _, plan = weld_plan(seams=[seam], travel_angle=15.0, work_angle=-10.0, standoff=0.01)
    [moves_] = arc_on_moves(plan)
    assert [m.label for m in moves_] == ["seam 0 weld 1", "seam 0 corner 1", "seam 0 weld 2"]
    tt, tw = np.tan(np.radians(15.0)), np.tan(np.radians(-10.0))
    for m, (t, b) in zip([moves_[0], moves_[2]], [((1, 0, 0), (0, 1, 0)), ((0, 1, 0), (-1, 0, 0))]):
        axis = np.array([0, 0, -1]) + tt * np.array(t) + tw * np.array(b)
        axis /= np.linalg.norm(axis)
        for q in m.trajectory.positions:
            pose = in_fixture(q)
            np.testing.assert_allclose(pose[:3, 2], axis, atol=1e-9)
            tip = pose[:3, 3] + 0.01 * axis  # the stand-off is kept along the torch axis
            dist = min(segment_distance(tip, np.array(a), np.array(c)) for a, c in zip(seam, seam[1:]))
            assert dist < 1e-9
    # at the corner the torch turns on the spot, the tip staying on the corner
    corner = moves_[1].trajectory
    tips = [in_fixture(q)[:3, 3] + 0.01 * in_fixture(q)[:3, 2] for q in corner.positions]
    np.testing.assert_allclose(tips, [seam[1]] * len(tips), atol=1e-9)


def test_an_arc_seam_follows_the_circle_through_its_three_points() -> None:
    start, via, end = (-0.04, 0.0, 0.05), (0.0, 0.04, 0.05), (0.04, 0.0, 0.05)  # half circle, r = 0.04
    params, plan = weld_plan(seams=[{"arc": [start, via, end]}], speed=0.01)
    assert weld.seam_length(params.seams[0]) == pytest.approx(np.pi * 0.04, rel=1e-12)
    assert weld.weld_time(params) == pytest.approx(np.pi * 0.04 / 0.01, rel=1e-12)
    [[move]] = arc_on_moves(plan)
    tr = move.trajectory
    ts = np.linspace(0.0, tr.duration, 2001)
    p = np.array([in_fixture(tr.sample(t))[:3, 3] for t in ts])
    np.testing.assert_allclose(np.linalg.norm(p[:, :2], axis=1), 0.04, atol=1e-6)  # on the circle, between knots too
    np.testing.assert_allclose(p[:, 2], 0.05, atol=1e-6)
    np.testing.assert_allclose(p[0], start, atol=1e-9)
    np.testing.assert_allclose(p[-1], end, atol=1e-9)
    assert np.min(np.linalg.norm(p - via, axis=1)) < 1e-4  # through the via point, counter-clockwise
    assert np.all(np.diff(np.arctan2(p[:, 1], p[:, 0])) <= 1e-9)
    speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(ts)
    assert speed.max() <= 0.01 * 1.001
    # weld time: the arc at the speed plus the ramps (a few ms) at each end
    assert weld.weld_time(params) <= tr.duration <= weld.weld_time(params) + 0.02


def test_a_weave_is_a_sinusoid_across_the_seam_sampled_densely() -> None:
    # 0.1 m at 0.02 m/s weaving 2 mm at 1 Hz: a 20 mm wavelength, 5 whole waves.
    params, plan = weld_plan(
        seams=[[(-0.05, -0.03, 0.05), (0.05, -0.03, 0.05)]], weave={"amplitude": 0.002, "frequency": 1.0}
    )
    [[move]] = arc_on_moves(plan)
    tr = move.trajectory
    assert tr.times.size >= 24 * 5  # at least 24 knots per wave
    ts = np.linspace(0.0, tr.duration, 8001)
    p = np.array([in_fixture(tr.sample(t))[:3, 3] for t in ts])
    u = p[:, 0] + 0.05
    lateral = 0.002 * np.sin(2 * np.pi * u / 0.02)  # b = n x t = +y for travel along +x
    assert np.max(np.abs(p[:, 1] - (-0.03 + lateral))) < 0.02 * 0.002  # within 2 % of the amplitude
    np.testing.assert_allclose(p[:, 2], 0.05, atol=1e-6)
    np.testing.assert_allclose(p[-1], (0.05, -0.03, 0.05), atol=1e-9)  # ends on the seam line
    # travel along the seam at the weld speed once the ramp (longer with a weave) is over
    cruise = (ts > 0.1 * tr.duration) & (ts < 0.9 * tr.duration)
    along = np.diff(p[:, 0])[cruise[1:]] / np.diff(ts)[cruise[1:]]
    np.testing.assert_allclose(along, 0.02, rtol=1e-3)
    assert 0.1 / 0.02 < tr.duration < 0.1 / 0.02 + 0.1


def test_a_point_repeated_in_a_weaving_seam_changes_nothing() -> None:
    """A polyline point written twice is a piece of zero length: no weave on it, the same path (it used to crash
    the weave with a division by zero)."""
    weave = {"amplitude": 0.002, "frequency": 1.0}
    _, plain = weld_plan(seams=[[(-0.05, -0.03, 0.05), (0.05, -0.03, 0.05)]], weave=weave)
    _, doubled = weld_plan(seams=[[(-0.05, -0.03, 0.05), (-0.05, -0.03, 0.05), (0.05, -0.03, 0.05)]], weave=weave)
    [[a]], [[stay, b]] = arc_on_moves(plain), arc_on_moves(doubled)
    assert stay.trajectory.duration == 0.0  # the repeated point: the torch stays where it is
    assert b.trajectory.duration == pytest.approx(a.trajectory.duration, abs=1e-9)
    ts = np.linspace(0.0, a.trajectory.duration, 201)
    np.testing.assert_allclose([b.trajectory.sample(t) for t in ts], [a.trajectory.sample(t) for t in ts], atol=1e-9)


def test_resuming_a_part_welds_from_the_next_seam() -> None:
    key = "part.weld.fixture.progress"
    planner = make_planner(CFG, {"part.1.weld.fixture.progress": {"done": 1, "at": 0.0}})  # part 1's own key
    plan = planner(JOB.step("weld_seams"), 1, home("welder"))
    assert [s.label for s in plan.segments if isinstance(s, SetIo)] == ["seam 1 arc on", "seam 1 arc off"]
    assert [(s.key, s.value) for s in plan.segments if isinstance(s, Checkpoint)] == [
        (key, {"done": 1, "at": 0.0, "arc": True}),
        (key, {"done": 2, "at": 0.0}),
    ]
    full = PLANNER(JOB.step("weld_seams"), 1, home("welder"))
    assert [(s.key, s.value) for s in full.segments if isinstance(s, Checkpoint)] == [
        (key, {"done": 0, "at": 0.0, "arc": True}),
        (key, {"done": 1, "at": 0.0}),
        (key, {"done": 1, "at": 0.0, "arc": True}),
        (key, {"done": 2, "at": 0.0}),
    ]


def test_a_finished_weld_is_not_welded_again() -> None:
    """'All seams done' is not 'no seam done': a resumed step only goes home."""
    plan = make_planner(CFG, {"part.1.weld.fixture.progress": {"done": 2, "at": 0.0}})(
        JOB.step("weld_seams"), 1, home("welder")
    )
    assert [s.label for s in plan.segments] == ["home"]


def test_a_seam_stopped_part_way_is_struck_again_one_overlap_before_where_it_stopped() -> None:
    from cobot_cell.core.plan import Move

    plan = make_planner(CFG, {"part.1.weld.fixture.progress": {"done": 0, "at": 0.06}})(
        JOB.step("weld_seams"), 1, home("welder")
    )
    spans = [s.process for s in plan.segments if isinstance(s, Move) and s.process is not None]
    # seam 0 (0.1 m) from 0.06 - 0.010 m, then seam 1 whole
    assert [(p.item, round(p.start, 9), round(p.end, 9)) for p in spans] == [(0, 0.05, 0.1), (1, 0.0, 0.1)]
    labels = [s.label for s in plan.segments]
    assert labels[:5] == [
        "seam 0 restart approach",
        "seam 0 descend",
        "seam 0 gas pre-flow",
        "seam 0 arc on",
        "seam 0 arc struck",
    ]
    # the torch is on the seam where the restart begins: 50 mm along it
    first = spans[0]
    u, off = first.locate(np.asarray(plan.segments[5].trajectory.positions[0]))
    assert u == pytest.approx(0.05, abs=1e-6) and off < 1e-6


# near the welder's base axis: the pan joint is busy
FAST_SEAM = "            - [[0.35, -0.2, 0.05], [0.35, 0.2, 0.05]]"


@pytest.mark.parametrize(
    "edits, path, needle, message",
    [
        (
            (SEAM_1, FAST_SEAM, "speed: 0.02", "speed: 0.2"),
            "jobs.bracket.steps[1].params.speed",
            "speed: 0.2",
            "0.2 m/s is faster than 'welder' can weld seam 1 (at most 0.175 m/s there: shoulder_pan_joint velocity "
            "limit)",
        ),
        (
            (SEAM_1, "            - [[0.45, -0.1, 0.05], [0.45, 0.1, 0.05]]"),
            "jobs.bracket.steps[1].params.seams[1]",
            "- [[0.45",
            "seam 1 blocked at 32.5% of the path: out of reach: wrist centre is 0.1326 m from the base axis, "
            "0.00074 m inside the 0.1333 m shoulder offset (cobot 'welder')",
        ),
        (
            (SEAM_1, "            - [[-0.05, -0.93, 0.05], [0.05, -0.03, 0.05]]"),
            "jobs.bracket.steps[1].params.seams[1]",
            "- [[-0.05, -0.93",
            "weld seam 1 approach at [0.499, -0.939, 0.199] is not reachable by 'welder': out of reach: "
            "wrist is 1.1106 m from the shoulder, the arm reaches 0.8172 m",
        ),
        (
            ("speed: 0.02", "speed: 0.02\n          weave: {amplitude: 0.003, frequency: 8}"),
            "jobs.bracket.steps[1].params.weave",
            "weave:",
            "a 0.003 m weave at 8 Hz is more than 'welder' can do along seam 0 (shoulder_pan_joint acceleration limit; "
            "about 3.1 Hz at most at this amplitude)",
        ),
        (
            (SEAM_1, "            - {arc: [[-0.05, -0.03, 0.05], [0.0, -0.03, 0.05], [0.05, -0.03, 0.05]]}"),
            "jobs.bracket.steps[1].params.seams[1].arc",
            "- {arc:",
            "the three arc points are on one line: use a polyline for a straight seam",
        ),
        (
            (SEAM_1, "            - {arc: [[-0.05, -0.03, 0.05], [-0.05, -0.03, 0.05], [0.05, -0.03, 0.05]]}"),
            "jobs.bracket.steps[1].params.seams[1].arc",
            "- {arc:",
            "the three arc points must be distinct (start, a point on the arc, end)",
        ),
        (
            (SEAM_1, "            - {arc: [[-0.05, -0.03, 0.05], [0.05, -0.03, 0.05]]}"),
            "jobs.bracket.steps[1].params.seams[1].arc",
            "- {arc:",
            "expected 3 values, got 2",
        ),
        (
            (SEAM_1, "            - {arc: [[-0.05, -0.03, 0.05], [0.0, 0.0, 0.05], [0.05, -0.03, 0.05]], speed: 1}"),
            "jobs.bracket.steps[1].params.seams[1].speed",
            "- {arc:",
            "unknown key",
        ),
        (
            (SEAM_1, "            - 5"),
            "jobs.bracket.steps[1].params.seams[1]",
            "- 5",
            "expected a polyline [[x, y, z], ...] or {arc: [start, via, end]}, got 5",
        ),
        (
            (SEAM_1, "            - [[0.0, 0.0, 0.02], [0.0, 0.0, 0.08]]"),
            "jobs.bracket.steps[1].params.seams[1]",
            "- [[0.0, 0.0, 0.02]",
            "seam 1 piece 0 runs along the fixture's z axis: the torch angles and the weave need "
            "a travel direction across it",
        ),
        (
            ("speed: 0.02", "speed: 0.02\n          weave: {amplitude: 0, frequency: 2}"),
            "jobs.bracket.steps[1].params.weave.amplitude",
            "weave:",
            "input should be greater than 0, got 0",
        ),
        (
            ("travel_angle: 10", "travel_angle: 50"),
            "jobs.bracket.steps[1].params.travel_angle",
            "travel_angle: 50",
            "input should be less than or equal to 45, got 50",
        ),
        (
            ("speed: 0.02", "speed: 0.02\n          standoff: -0.01"),
            "jobs.bracket.steps[1].params.standoff",
            "standoff:",
            "input should be greater than or equal to 0, got -0.01",
        ),
    ],
)
def test_bad_weld_parameters_name_the_parameter(
    tmp_path: Path, edits: tuple[str, ...], path: str, needle: str, message: str
) -> None:
    text = edit(*edits)
    assert load_issues(tmp_path, text) == [(path, line_of(text, needle), message)]


def test_the_weave_limit_suggested_is_one_the_arm_can_do(tmp_path: Path) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text(edit("speed: 0.02", "speed: 0.02\n          weave: {amplitude: 0.003, frequency: 3.0}"))
    load_cell(path)  # below the 3.1 Hz the error suggests for 8 Hz


def test_the_speed_limit_suggested_is_one_the_arm_can_do(tmp_path: Path) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text(edit(SEAM_1, FAST_SEAM, "speed: 0.02", "speed: 0.17"))
    load_cell(path)  # below the 0.175 m/s the error reports for 0.2 m/s


# ---------------------------------------------------------------------------------------------- joint limits

PICKER_LIMITS = (
    "      position: [[-6.28, 6.28], [-3.14, 0.0], [-6.28, 6.28], [-6.28, 6.28], [-6.28, 6.28], [-6.28, 6.28]]\n"
)


def test_joint_position_limits_are_checked_at_every_target(tmp_path: Path) -> None:
    # The infeed is at +y, about +1.5 rad of pan from the picker's home: a pan range of +-1 rad cannot reach it.
    text = edit(
        PICKER_LIMITS,
        "      position: [[-1.0, 1.0], [-6.28, 6.28], [-3.14, 3.14], [-6.28, 6.28], [-6.28, 6.28], [-6.28, 6.28]]\n",
    )
    assert load_issues(tmp_path, text) == [
        (
            "jobs.bracket.steps[0].params.from",
            line_of(text, "params: {from: infeed"),
            "pick: approach to grasp at [0.05, 0.55, 0.18] is not reachable by 'picker': joint limits: a solution "
            "needs shoulder_pan_joint outside its range",
        )
    ]


def test_joint_position_limits_narrow_the_plans(tmp_path: Path) -> None:
    # Unlimited, the picker carries the blank to the fixture with its pan joint at -3.386 rad; with the pan kept
    # within [-3.2, 3.2] it takes another solution (the nearest allowed one), and no knot leaves the ranges.
    step = JOB.step("load_blank")
    carry = next(m for m in moves(PLANNER(step, 1, home("picker"))) if m.label == "carry")
    assert carry.trajectory.final[0] == pytest.approx(-3.386, abs=1e-3)
    path = tmp_path / "cell.yaml"
    ranges = [[-3.2, 3.2], [-3.8, 0.0], [-3.0, 3.0], [-3.2, 3.2], [-3.2, 0.0], [-3.2, 3.2]]
    path.write_text(edit(PICKER_LIMITS, f"      position: {ranges}\n"))
    cfg = load_cell(path)
    lo, hi = np.array(ranges).T
    planner = make_planner(cfg)
    limited = moves(planner(cfg.jobs["bracket"].step("load_blank"), 1, home("picker")))
    pan = next(m for m in limited if m.label == "carry").trajectory.final[0]
    assert -3.2 <= pan <= 3.2 and abs(pan - carry.trajectory.final[0]) > 0.1
    for name in ("load_blank", "palletise"):
        for part in range(1, PLACES + 1):
            for m in moves(planner(cfg.jobs["bracket"].step(name), part, home("picker"))):
                assert np.all(m.trajectory.positions >= lo) and np.all(m.trajectory.positions <= hi), m.label


def test_home_outside_the_arm_model_is_reported(tmp_path: Path) -> None:
    text = edit(
        "home: [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]\n    limits:\n      velocity: [1.2",
        "home: [0.0, -1.5708, 4.0, -1.5708, -1.5708, 0.0]\n    limits:\n      velocity: [1.2",
    )
    assert load_issues(tmp_path, text) == [
        (
            "cobots.picker.home[2]",
            line_of(text, "home: [0.0, -1.5708, 4.0"),
            "4 is outside the ur5e elbow_joint range [-3.142, 3.142]",
        )
    ]
