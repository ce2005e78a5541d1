"""The UR family by model: published data, closed-form IK for every model, the URDF macro, limits from the model,
the payload check and the full-size palletising cells."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from test_urdf import joints_by_name, render, urdf_fk

from cobot_cell.cli import main as cli_main
from cobot_cell.core.config import ARM_DOF, CellFileError
from cobot_cell.motion.arms import ARMS, DEFAULT_ACCELERATION, arm_spec
from cobot_cell.motion.kinematics import arm_model, fk, ik, ik_all
from cobot_cell.skills import load_cell
from cobot_cell.skills.common import SkillContext
from cobot_cell.skills.payload import carried

REPO = Path(__file__).resolve().parents[2]
UR20_FILE = REPO / "config" / "ur20_us_pallet.yaml"
UR20 = UR20_FILE.read_text(encoding="utf-8")
EUR_FILE = REPO / "config" / "ur10e_eur_pallet.yaml"


def edit(text: str, *pairs: str) -> str:
    """`text` with each (old, new) pair replaced; every `old` must occur exactly once."""
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def issues(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    """(path, message) of every issue load_cell reports for the text (it must reject it)."""
    path = tmp_path / "cell.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CellFileError) as err:
        load_cell(path)
    return [(i.path, i.message) for i in err.value.issues]


# ------------------------------------------------------------------------------------------------ models


def test_the_nine_models_are_known_to_config_kinematics_and_urdf() -> None:
    assert list(ARMS) == ["ur3e", "ur5e", "ur7e", "ur10e", "ur12e", "ur15", "ur16e", "ur20", "ur30"]
    assert set(ARM_DOF) == set(ARMS)
    for name in ARMS:
        assert arm_model(name).name == name


def test_published_figures_of_the_palletising_arms() -> None:
    ur20, ur10e = arm_spec("ur20"), arm_spec("ur10e")
    assert (ur20.payload, ur20.reach, ur20.dh) == (20.0, 1.75, (0.2363, -0.862, -0.7287, 0.201, 0.1593, 0.1543))
    assert (ur10e.payload, ur10e.reach) == (10.0, 1.3)
    assert ur20.velocity == pytest.approx(tuple(math.radians(v) for v in (120, 120, 150, 210, 210, 210)))
    assert ur20.acceleration == (DEFAULT_ACCELERATION,) * 6


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        arm_spec("ur25")
    assert str(err.value) == (
        "unknown arm model 'ur25': expected one of ur3e, ur5e, ur7e, ur10e, ur12e, ur15, ur16e, ur20, ur30"
    )


@pytest.mark.parametrize("name", list(ARMS))
def test_ik_round_trip_for_every_model(name: str) -> None:
    model = arm_model(name)
    rng = np.random.default_rng(7)
    solved = 0
    for q in rng.uniform(model.q_min, model.q_max, size=(200, 6)):
        target = fk(model, q)
        wrist = target[:3, 3] - model.d[5] * target[:3, 2]
        shoulder = wrist[0] ** 2 + wrist[1] ** 2 - model.d[3] ** 2
        if abs(math.sin(q[4])) < 0.05 or abs(math.sin(q[2])) < 0.05 or shoulder < 1e-3:
            continue  # near a wrist, elbow or shoulder singularity: branches the IK refuses on purpose
        solutions = ik_all(model, target)
        for s in solutions:
            np.testing.assert_allclose(fk(model, s), target, atol=1e-9)
        near = ik(model, target, q)
        np.testing.assert_allclose(fk(model, near), target, atol=1e-9)
        assert np.max(np.abs(np.remainder(near - q + math.pi, 2 * math.pi) - math.pi)) < 1e-6  # the seed's branch
        solved += 1
    assert solved > 150


def test_derating_curve_interpolates_and_is_zero_beyond() -> None:
    spec = arm_spec("ur20")
    curve = ((0.0, 20.0), (0.2, 15.0), (0.4, 10.0))
    assert spec.payload_at(0.5) == 20.0  # no published curve: the rated payload at any offset
    assert spec.payload_at(0.1, curve) == pytest.approx(17.5)
    assert spec.payload_at(0.4, curve) == pytest.approx(10.0)
    assert spec.payload_at(0.41, curve) == 0.0


# ------------------------------------------------------------------------------------------------ URDF


@pytest.mark.parametrize("name", list(ARMS))
def test_urdf_macro_matches_the_model(name: str) -> None:
    robot = render("cobot.urdf.xacro", model=name)
    spec, model = arm_spec(name), arm_model(name)
    joints = joints_by_name(robot)
    for i, j in enumerate(model.joint_names):
        limit = joints[j].find("limit")
        assert float(limit.get("velocity")) == pytest.approx(spec.velocity[i])
        assert float(limit.get("effort")) == spec.effort[i]
        assert (float(limit.get("lower")), float(limit.get("upper"))) == pytest.approx(spec.position[i])
    masses = [
        float(robot.find(f"link[@name='{link}']/inertial/mass").get("value"))
        for link in ("shoulder_link", "upper_arm_link", "forearm_link", "wrist_1_link", "wrist_2_link", "wrist_3_link")
    ]
    assert masses == list(spec.link_masses)
    for q in ([0.3, -0.7, 1.1, -2.0, 0.9, 2.5], [-2.9, 1.2, -2.8, 0.4, -1.7, -5.0]):
        np.testing.assert_allclose(urdf_fk(robot, "tool0", dict(zip(model.joint_names, q))), fk(model, q), atol=1e-9)


def test_cell_urdf_renders_each_cobot_as_its_model() -> None:
    robot = render("cell.urdf.xacro", cell_file=str(UR20_FILE))
    shoulder = joints_by_name(robot)["palletiser_shoulder_pan_joint"]
    assert float(shoulder.find("origin").get("xyz").split()[2]) == pytest.approx(0.2363)


@pytest.mark.parametrize(
    "cell,geometry,size,mass,com",
    [
        (UR20_FILE, "box", {"size": "0.35 0.25 0.2"}, "3.2", "0.0 0.0 0.08"),
        (EUR_FILE, "cylinder", {"radius": "0.15", "length": "0.18"}, "2.2", "0.0 0.0 0.06"),
    ],
)
def test_cell_urdf_mounts_each_tool_shape_on_tool0(
    cell: Path, geometry: str, size: dict[str, str], mass: str, com: str
) -> None:
    robot = render("cell.urdf.xacro", cell_file=str(cell))
    joint = joints_by_name(robot)["palletiser_tool0-vacuum"]
    assert (joint.get("type"), joint.find("parent").get("link")) == ("fixed", "palletiser_tool0")
    link = robot.find("link[@name='palletiser_vacuum']")
    shape = link.find(f"collision/geometry/{geometry}")
    assert {k: shape.get(k) for k in size} == size
    assert link.find("inertial/mass").get("value") == mass
    assert link.find("inertial/origin").get("xyz") == com


# ------------------------------------------------------------------------------------------------ limits


def test_a_cobot_without_limits_gets_the_models_published_limits() -> None:
    cfg = load_cell(UR20_FILE)
    ctx = SkillContext(cfg, "palletiser")
    np.testing.assert_allclose(ctx.v_max, ARMS["ur20"].velocity)
    np.testing.assert_allclose(ctx.a_max, [DEFAULT_ACCELERATION] * 6)


def test_limits_may_narrow_but_not_widen_the_published_speeds(tmp_path: Path) -> None:
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(
        edit(UR20, "    tools:\n", "    limits: {velocity: [2.0, 1.0, 1.0, 1.0, 1.0, 1.0]}\n    tools:\n"),
        encoding="utf-8",
    )
    np.testing.assert_allclose(SkillContext(load_cell(narrowed), "palletiser").v_max, [2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    text = edit(UR20, "    tools:\n", "    limits: {velocity: [2.2, 1.0, 1.0, 1.0, 1.0, 1.0]}\n    tools:\n")
    assert issues(tmp_path, text) == [
        ("cobots.palletiser.limits.velocity[0]", "2.2 rad/s is above the ur20 shoulder_pan_joint maximum 2.094 rad/s")
    ]


# ------------------------------------------------------------------------------------------------ payload


def test_carried_payload_sums_tool_and_part_at_their_centres() -> None:
    cfg = load_cell(UR20_FILE)
    job = cfg.jobs["cartons"]
    load = carried(cfg, job, job.steps[0], grasp_height=0.15)
    assert load.mass == pytest.approx(15.2)
    # tool 3.2 kg at 0.08 m; the carton's centre 0.20 (TCP) + 0.15 (grasp height) - 0.075 (half its height)
    assert load.cog == pytest.approx((0.0, 0.0, (3.2 * 0.08 + 12.0 * 0.275) / 15.2))


def test_payload_over_the_rating_is_refused(tmp_path: Path) -> None:
    text = edit(UR20, "part: {mass: 12.0}", "part: {mass: 18.0}")
    assert issues(tmp_path, text) == [
        (
            "jobs.cartons.steps[0]",
            (
                "payload 21.2 kg (tool 'vacuum' 3.2 kg + part 18 kg) at 0.246 m from the flange "
                "exceeds the ur20's 20 kg rated payload"
            ),
        )
    ]


def test_payload_above_80_percent_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text(edit(UR20, "part: {mass: 12.0}", "part: {mass: 13.5}"), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="cobot_cell.skills.payload"):
        load_cell(path)
    assert [r.getMessage() for r in caplog.records if r.name == "cobot_cell.skills.payload"] == [
        (
            "cobot 'palletiser': payload 16.7 kg (tool 'vacuum' 3.2 kg + part 13.5 kg) at 0.238 m from the flange is "
            "84% of the ur20's 20 kg rated payload"
        )
    ]


def test_payload_curve_derates_by_centre_of_gravity_offset(tmp_path: Path) -> None:
    text = edit(UR20, "    tools:\n", "    payload_curve: [[0.0, 20.0], [0.2, 15.0], [0.4, 10.0]]\n    tools:\n")
    assert issues(tmp_path, text) == [
        (
            "jobs.cartons.steps[0]",
            (
                "payload 15.2 kg (tool 'vacuum' 3.2 kg + part 12 kg) at 0.234 m from the flange "
                "exceeds 14.2 kg allowed at that offset (cobots.palletiser.payload_curve)"
            ),
        )
    ]


@pytest.mark.parametrize(
    "old,new,path,message",
    [
        (
            "mass: 3.2,",
            "mass: -1.0,",
            "cobots.palletiser.tools.vacuum.mass",
            "input should be greater than or equal to 0, got -1.0",
        ),
        (
            "mass: 3.2, ",
            "",
            "cobots.palletiser.tools.vacuum.mass",
            "missing: the payload check of a 12 kg part needs the mass of 'vacuum' (jobs.cartons.steps[0])",
        ),
        (
            "model: ur20",
            "model: ur25",
            "cobots.palletiser.model",
            "got 'ur25': input should be 'ur3e', 'ur5e', 'ur7e', 'ur10e', 'ur12e', 'ur15', 'ur16e', 'ur20' or 'ur30'",
        ),
        (
            "shape: {box: [0.35, 0.25, 0.20]}",
            "shape: {box: [0.35, 0.25, 0.20], cylinder: [0.1, 0.2]}",
            "cobots.palletiser.tools.vacuum.shape",
            "expected one of box: [x, y, z] or cylinder: [radius, length] (m)",
        ),
        (
            "part: {mass: 12.0}",
            "part: {mass: 12.0, box: {length: 0.4, width: 0.3, height: 0.15}}",
            "jobs.cartons.part.box",
            "0.4 x 0.3 x 0.15 m differs from the box 0.3 x 0.2 x 0.15 m of stations.pallet.pallet (one part, one box)",
        ),
    ],
)
def test_bad_arm_and_payload_input_names_the_yaml_path(
    tmp_path: Path, old: str, new: str, path: str, message: str
) -> None:
    assert issues(tmp_path, edit(UR20, old, new)) == [(path, message)]


@pytest.mark.parametrize(
    "old,new,path",
    [
        ("part: {mass: 12.0}", "part: {mass: 18.0}", "jobs.cartons.steps[0]"),
        ("model: ur20", "model: ur25", "cobots.palletiser.model"),
        ("mass: 3.2,", "mass: -1.0,", "cobots.palletiser.tools.vacuum.mass"),
        ("max_height: 1.20", "max_height: 1.80", "jobs.cartons.steps[0].params.to"),
    ],
)
def test_validate_exits_2_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, path: str
) -> None:
    cell = tmp_path / "cell.yaml"
    cell.write_text(edit(UR20, old, new), encoding="utf-8")
    assert cli_main(["validate", str(cell)]) == 2
    assert f"{path} (line " in " ".join(capsys.readouterr().err.split())


# ------------------------------------------------------------------------------------------------ full-size pallets


def test_a_stack_taller_than_the_arm_reaches_says_so(tmp_path: Path) -> None:
    text = edit(EUR_FILE.read_text(encoding="utf-8"), "max_height: 0.80", "max_height: 1.20")
    assert issues(tmp_path, text) == [
        (
            "jobs.cases.steps[0].params.to",
            (
                "palletise place 32 (layer 4 of stations.pallet.pallet): approach to place at [-0.45, -0.95, 1.344] "
                "is not reachable by 'palletiser': out of reach: wrist is 1.2569 m from the shoulder, the arm reaches "
                "1.1843 m; the stack needs more height than 'palletiser' reaches: layers 0 to 3 (0.800 m) are within "
                "reach, so lower max_height to 0.800 m, or move the pallet or the arm (there is no lift axis)"
            ),
        )
    ]


@pytest.mark.parametrize("cell,places,height", [(UR20_FILE, 160, 1.2), (EUR_FILE, 32, 0.8)])
def test_full_size_pallet_cells_validate_every_place(cell: Path, places: int, height: float) -> None:
    from cobot_cell.skills import pallet_plan

    cfg = load_cell(cell)  # plans every place of the pallet from home
    plan = pallet_plan(cfg.stations["pallet"])
    assert len(plan) == places
    assert cfg.stations["pallet"].pallet.stack_height(plan.layers) == pytest.approx(height)
