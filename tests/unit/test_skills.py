"""Skills (cobot_cell.skills): parameter checks with YAML paths, and the motion plans pick, weld and palletise make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core.config import CellConfig, CellFileError, parse_cell
from cobot_cell.core.plan import Dwell, Move, SetIo, SkillPlan
from cobot_cell.motion.kinematics import arm_model, fk
from cobot_cell.motion.transforms import pose_matrix, translation
from cobot_cell.skills import check_skills, estimate, load_cell, make_planner, weld
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


@pytest.mark.parametrize("old, new, path, needle, message", [
    ("params: {from: infeed, to: fixture}", "params: {from: infeed, to: fixture, colour: red}",
     "jobs.bracket.steps[0].params.colour", "colour: red", "unknown key"),
    ("params: {from: infeed, to: fixture}", "params: {to: fixture}",
     "jobs.bracket.steps[0].params.from", "params: {to: fixture}", "missing required key"),
    ("params: {from: infeed, to: fixture}", "params: {from: infeedx, to: fixture}",
     "jobs.bracket.steps[0].params.from", "from: infeedx",
     "unknown station 'infeedx': expected one of infeed, fixture, pallet"),
    ("params: {from: fixture, to: pallet}", "params: {from: fixture, to: infeed}",
     "jobs.bracket.steps[2].params.to", "to: infeed", "station 'infeed' is an infeed: expected a pallet"),
    ("params: {from: fixture, to: pallet}", "params: {from: pallet, to: pallet}",
     "jobs.bracket.steps[2].params.from", "from: pallet, to: pallet",
     "station 'pallet' is a pallet: expected an infeed or a fixture"),
    ("station: fixture\n", "station: pallet\n",
     "jobs.bracket.steps[1].params.station", "station: pallet", "station 'pallet' is a pallet: expected a fixture"),
    ("            - [[-0.05, -0.03, 0.05], [0.05, -0.03, 0.05]]", "            - [[-0.05, -0.03, 0.05]]",
     "jobs.bracket.steps[1].params.seams", "seams:", "seam 1 needs at least 2 points, got 1"),
    ("[[-0.05, 0.03, 0.05], [0.05, 0.03, 0.05]]", "[[-0.05, 0.03, 0.05], [0.05, 0.03]]",
     "jobs.bracket.steps[1].params.seams[0][1]", "[0.05, 0.03]]", "expected 3 values, got 2"),
    ("speed: 0.02", "speed: 0.25",
     "jobs.bracket.steps[1].params.speed", "speed: 0.25", "input should be less than or equal to 0.2, got 0.25"),
    ("speed: 0.02", "speed: 0",
     "jobs.bracket.steps[1].params.speed", "speed: 0", "input should be greater than 0, got 0"),
    ("          speed: 0.02\n", "",
     "jobs.bracket.steps[1].params.speed", ("params:", 1), "missing required key"),
    ("cobot: welder", "cobot: welder_",
     "jobs.bracket.steps[1].cobot", "cobot: welder_", "unknown cobot 'welder_': expected one of picker, welder"),
    ("cobot: welder", "cobot: picker",
     "jobs.bracket.steps[1].cobot", ("cobot: picker", 1), "cobot 'picker' has no torch tool (needed by skill 'weld')"),
])
def test_bad_step_parameters_name_the_params_path(tmp_path: Path, old: str, new: str, path: str,
                                                   needle: str | tuple[str, int], message: str) -> None:
    text = edit(old, new)
    line = line_of(text, *needle) if isinstance(needle, tuple) else line_of(text, needle)
    assert load_issues(tmp_path, text) == [(path, line, message)]


def test_every_bad_step_is_reported_and_planning_is_skipped(tmp_path: Path) -> None:
    # A bad station must not reach the planner (it used to crash the check with a KeyError).
    text = edit("params: {from: infeed, to: fixture}", "params: {from: infeed, to: fixture, colour: red}",
                "params: {from: fixture, to: pallet}", "params: {from: fixtur, to: pallet}")
    assert load_issues(tmp_path, text) == [
        ("jobs.bracket.steps[0].params.colour", line_of(text, "colour: red"), "unknown key"),
        ("jobs.bracket.steps[2].params.from", line_of(text, "from: fixtur,"),
         "unknown station 'fixtur': expected one of infeed, fixture, pallet"),
    ]


def test_target_out_of_reach_names_the_step(tmp_path: Path) -> None:
    text = edit("pose: {xyz: [0.05, 0.55, 0.05]", "pose: {xyz: [2.05, 0.55, 0.05]")
    [(path, line, message)] = load_issues(tmp_path, text)
    assert (path, line) == ("jobs.bracket.steps[0].params", line_of(text, "params: {from: infeed"))
    # above the grasp: infeed z 0.05 + grasp_height 0.03 + approach 0.10
    assert message.startswith(
        "pick: approach to grasp at [2.05, 0.55, 0.18] is not reachable by 'picker': out of reach")


def test_every_pallet_place_is_checked_for_reach(tmp_path: Path) -> None:
    # Moved away from the picker, the first layer is still reachable but place 5 (second layer, row 0, column 1,
    # 0.06 m higher) is not.
    text = edit("pose: {xyz: [0.05, -0.60, 0.0]", "pose: {xyz: [0.05, -0.80, 0.0]")
    [(path, line, message)] = load_issues(tmp_path, text)
    assert (path, line) == ("jobs.bracket.steps[2].params", line_of(text, "params: {from: fixture, to: pallet}"))
    assert message.startswith(
        "palletise place 5: approach to place at [0.15, -0.875, 0.19] is not reachable by 'picker': out of reach")


# ---------------------------------------------------------------------------------------------- estimate

def test_estimate_gives_a_positive_duration_per_step_in_dag_order() -> None:
    est = estimate(CFG, "bracket")
    assert [(e.step, e.skill, e.cobot) for e in est] == [
        ("load_blank", "pick", "picker"), ("weld_seams", "weld", "welder"), ("palletise", "palletise", "picker")]
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
CASES = [(s.name, part, start) for s in JOB.steps for part in (range(1, PLACES + 2) if s.skill == "palletise" else [1])
         for start in START_QS]


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
        np.testing.assert_allclose(cur.trajectory.start, prev.trajectory.final, atol=1e-9,
                                   err_msg=f"{cur.label} does not start where {prev.label} ends")
    np.testing.assert_allclose(plan.end_q, ms[-1].trajectory.final, atol=1e-12)
    # return_home is the default: every step ends at home, whatever it started from
    np.testing.assert_allclose(plan.end_q, home(JOB.step(step).cobot), atol=1e-9)
    assert plan.duration == pytest.approx(sum(m.trajectory.duration for m in ms)
                                          + sum(s.seconds for s in plan.segments if isinstance(s, Dwell)))


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

def check_weld_plan(plan: SkillPlan, seams: list[list[tuple[float, float, float]]], speed: float, preflow: float,
                    postflow: float) -> None:
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
        travel = segs[i_on + 1:i_off]
        assert travel and all(isinstance(s, Move) for s in travel)
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
    t = 0.0 if not ab.any() else float(np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def test_demo_weld_plan() -> None:
    step = JOB.step("weld_seams")
    plan = PLANNER(step, 1, home("welder"))
    check_weld_plan(plan, step.params["seams"], 0.02, 0.3, 0.5)


point = st.tuples(st.floats(-0.06, 0.06), st.floats(-0.06, 0.06), st.floats(0.02, 0.08))


@settings(max_examples=25, deadline=None)
@given(seams=st.lists(st.lists(point, min_size=2, max_size=3), min_size=1, max_size=2),
       speed=st.floats(0.01, 0.2), preflow=st.floats(0.0, 1.0), postflow=st.floats(0.0, 1.0))
def test_weld_plans_for_any_seams(seams: list[list[tuple[float, float, float]]], speed: float, preflow: float,
                                  postflow: float) -> None:
    params = weld.WeldParams.model_validate({"station": "fixture", "seams": seams, "speed": speed,
                                             "preflow": preflow, "postflow": postflow})
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
        for m in segs[i_on + 1:i_off]:
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
