"""Render the xacro robot descriptions and check the URDF against the cell file and the UR5e DH model."""

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import xacro
import yaml

ROOT = Path(__file__).resolve().parents[2]
URDF_DIR = ROOT / "urdf"
CELL_FILE = ROOT / "config" / "demo_cell.yaml"

UR5E_JOINTS = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]
# Published UR5e DH parameters (standard convention): d, a, alpha per joint.
UR5E_DH = [
    (0.1625, 0.0, math.pi / 2),
    (0.0, -0.425, 0.0),
    (0.0, -0.3922, 0.0),
    (0.1333, 0.0, math.pi / 2),
    (0.0997, 0.0, -math.pi / 2),
    (0.0996, 0.0, 0.0),
]

JOINT_VECTORS = [
    [0.0] * 6,
    [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0],
    [0.3, -0.7, 1.1, -2.0, 0.9, 2.5],
    [-2.9, 1.2, -2.8, 0.4, -1.7, -5.0],
    [6.0, -6.0, 3.0, 6.0, -6.0, 6.0],
]


def render(file: str, /, **mappings: str) -> ET.Element:
    """Render urdf/<file> with xacro and return the parsed <robot> element."""
    doc = xacro.process_file(str(URDF_DIR / file), mappings=dict(mappings))
    return ET.fromstring(doc.toprettyxml())


def load_cell(path: Path = CELL_FILE) -> dict:
    """Load a cell file as plain YAML."""
    with open(path) as f:
        return yaml.safe_load(f)


def joints_by_name(robot: ET.Element) -> dict[str, ET.Element]:
    """Map joint name to <joint> element (robot-level joints only, not ros2_control ones)."""
    return {j.get("name"): j for j in robot.findall("joint")}


def floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def transform(xyz: np.ndarray, rpy: np.ndarray) -> np.ndarray:
    """Homogeneous transform of a URDF <origin> (fixed-axis roll, pitch, yaw)."""
    r, p, y = rpy
    t = np.eye(4)
    t[:3, :3] = rot(np.array([0, 0, 1.0]), y) @ rot(np.array([0, 1.0, 0]), p) @ rot(np.array([1.0, 0, 0]), r)
    t[:3, 3] = xyz
    return t


def origin_transform(joint: ET.Element) -> np.ndarray:
    origin = joint.find("origin")
    return transform(floats(origin.get("xyz", "0 0 0")), floats(origin.get("rpy", "0 0 0")))


def urdf_fk(robot: ET.Element, tip: str, q: dict[str, float]) -> np.ndarray:
    """Root-to-tip transform by chaining joint origins and axis rotations."""
    by_child = {j.find("child").get("link"): j for j in robot.findall("joint")}
    t = np.eye(4)
    link = tip
    while link in by_child:
        joint = by_child[link]
        local = origin_transform(joint)
        if joint.get("type") == "revolute":
            motion = np.eye(4)
            motion[:3, :3] = rot(floats(joint.find("axis").get("xyz")), q[joint.get("name")])
            local = local @ motion
        t = local @ t
        link = joint.find("parent").get("link")
    return t


def dh_fk(q: list[float]) -> np.ndarray:
    """UR5e base-to-flange transform from the standard DH parameters."""
    t = np.eye(4)
    for theta, (d, a, alpha) in zip(q, UR5E_DH):
        ct, st, ca, sa = math.cos(theta), math.sin(theta), math.cos(alpha), math.sin(alpha)
        t = t @ np.array(
            [[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]]
        )
    return t


def test_cell_revolute_joints_are_the_cobot_joints():
    cell = load_cell()
    robot = render("cell.urdf.xacro")
    revolute = {j.get("name") for j in robot.findall("joint") if j.get("type") == "revolute"}
    assert revolute == {name for cobot in cell["cobots"].values() for name in cobot["joints"]}


def test_cell_arms_sit_at_their_base_poses():
    cell = load_cell()
    joints = joints_by_name(render("cell.urdf.xacro"))
    for name, cobot in cell["cobots"].items():
        base = joints[f"{name}_base_joint"]
        assert base.find("parent").get("link") == "world"
        assert base.find("child").get("link") == f"{name}_base_link"
        np.testing.assert_allclose(floats(base.find("origin").get("xyz")), cobot["base"]["xyz"], atol=1e-12)
        np.testing.assert_allclose(floats(base.find("origin").get("rpy")), cobot["base"]["rpy"], atol=1e-12)


def test_cell_stations_sit_at_their_poses():
    cell = load_cell()
    robot = render("cell.urdf.xacro")
    joints = joints_by_name(robot)
    for name, station in cell["stations"].items():
        joint = joints[f"world-{name}"]
        assert joint.find("parent").get("link") == "world"
        np.testing.assert_allclose(floats(joint.find("origin").get("xyz")), station["pose"]["xyz"], atol=1e-12)
        np.testing.assert_allclose(floats(joint.find("origin").get("rpy")), station["pose"]["rpy"], atol=1e-12)
        link = robot.find(f"link[@name='{name}']")
        assert link.find("collision/geometry/box") is not None


def test_cell_has_one_ros2_control_block_per_cobot_with_home_as_initial_values():
    cell = load_cell()
    blocks = {b.get("name"): b for b in render("cell.urdf.xacro").findall("ros2_control")}
    assert set(blocks) == set(cell["cobots"])
    for name, cobot in cell["cobots"].items():
        joints = blocks[name].findall("joint")
        assert [j.get("name") for j in joints] == cobot["joints"]
        for joint, home in zip(joints, cobot["home"]):
            assert [c.get("name") for c in joint.findall("command_interface")] == ["position"]
            assert [s.get("name") for s in joint.findall("state_interface")] == ["position", "velocity"]
            assert float(joint.find("state_interface[@name='position']/param[@name='initial_value']").text) == home


def test_joint_limits_are_present_and_cover_the_cell_limits():
    cell = load_cell()
    joints = joints_by_name(render("cell.urdf.xacro"))
    for cobot in cell["cobots"].values():
        for name, velocity in zip(cobot["joints"], cobot["limits"]["velocity"]):
            limit = joints[name].find("limit")
            span = math.pi if name.endswith("_elbow_joint") else 2 * math.pi
            assert float(limit.get("lower")) == pytest.approx(-span)
            assert float(limit.get("upper")) == pytest.approx(span)
            assert float(limit.get("velocity")) == pytest.approx(math.pi)
            assert float(limit.get("effort")) == (28.0 if "_wrist_" in name else 150.0)
            assert velocity <= float(limit.get("velocity"))


def test_arm_mass_matches_the_datasheet():
    robot = render("cobot.urdf.xacro")
    assert sum(float(m.get("value")) for m in robot.iter("mass")) == pytest.approx(20.6)


@pytest.mark.parametrize(
    "sim_hardware, plugin", [("mock", "mock_components/GenericSystem"), ("gz", "gz_ros2_control/GazeboSimSystem")]
)
def test_sim_hardware_selects_the_plugin(sim_hardware, plugin):
    for name in ("cobot.urdf.xacro", "cell.urdf.xacro"):
        robot = render(name, sim_hardware=sim_hardware)
        plugins = [p.text for p in robot.findall("ros2_control/hardware/plugin")]
        assert plugins and set(plugins) == {plugin}


@pytest.mark.parametrize("name", ["cobot.urdf.xacro", "cell.urdf.xacro"])
def test_unknown_sim_hardware_fails(name):
    with pytest.raises(xacro.XacroException) as error:
        render(name, sim_hardware="isaac")
    assert str(error.value).startswith("sim_hardware must be one of mock, gz, got 'isaac'")


def test_cobot_arguments():
    robot = render("cobot.urdf.xacro", name="left", prefix="left_", home="0.1 0.2 0.3 0.4 0.5 0.6")
    assert robot.get("name") == "left"
    joints = joints_by_name(robot)
    assert joints["left_base_joint"].find("parent").get("link") == "world"
    assert sorted(n for n, j in joints.items() if j.get("type") == "revolute") == sorted(
        f"left_{j}" for j in UR5E_JOINTS
    )
    (block,) = robot.findall("ros2_control")
    assert block.get("name") == "left"
    initial = [float(p.text) for p in block.iter("param")]
    assert initial == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_cobot_home_with_wrong_length_fails():
    with pytest.raises(xacro.XacroException) as error:
        render("cobot.urdf.xacro", home="0 0 0")
    assert str(error.value).startswith("home of ur5e must have 6 values, got 3")


def test_cobot_defaults_have_no_prefix():
    joints = joints_by_name(render("cobot.urdf.xacro"))
    assert {n for n, j in joints.items() if j.get("type") == "revolute"} == set(UR5E_JOINTS)


@pytest.mark.parametrize("q", JOINT_VECTORS)
def test_cobot_fk_matches_dh(q):
    robot = render("cobot.urdf.xacro")
    fk = urdf_fk(robot, "tool0", dict(zip(UR5E_JOINTS, q)))
    expected = dh_fk(q)
    np.testing.assert_allclose(fk[:3, 3], expected[:3, 3], atol=1e-6)
    np.testing.assert_allclose(fk[:3, :3], expected[:3, :3], atol=1e-9)


@pytest.mark.parametrize("q", JOINT_VECTORS)
def test_cell_fk_matches_base_pose_times_dh(q):
    cell = load_cell()
    robot = render("cell.urdf.xacro")
    for name, cobot in cell["cobots"].items():
        fk = urdf_fk(robot, f"{name}_tool0", dict(zip(cobot["joints"], q)))
        expected = transform(np.array(cobot["base"]["xyz"]), np.array(cobot["base"]["rpy"])) @ dh_fk(q)
        np.testing.assert_allclose(fk[:3, 3], expected[:3, 3], atol=1e-6)
        np.testing.assert_allclose(fk[:3, :3], expected[:3, :3], atol=1e-9)


def test_cell_iterates_over_any_cobots_and_stations(tmp_path):
    cell = load_cell()
    third = dict(cell["cobots"]["picker"])
    third["joints"] = [f"third_{j}" for j in UR5E_JOINTS]
    third["base"] = {"xyz": [0.5, 1.0, 0.2], "rpy": [0.0, 0.0, 1.0]}
    cell["cobots"]["third"] = third
    cell["stations"]["conveyor"] = {"kind": "conveyor", "pose": {"xyz": [1.0, 1.0, 0.3], "rpy": [0, 0, 0]}}
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(cell))

    robot = render("cell.urdf.xacro", cell_file=str(path))
    assert {b.get("name") for b in robot.findall("ros2_control")} == {"picker", "welder", "third"}
    joints = joints_by_name(robot)
    np.testing.assert_allclose(floats(joints["third_base_joint"].find("origin").get("xyz")), [0.5, 1.0, 0.2])
    assert "world-conveyor" in joints


def test_cell_rejects_joint_names_that_do_not_match_the_model(tmp_path):
    cell = load_cell()
    cell["cobots"]["welder"]["joints"][2] = "welder_elbow"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cell))
    with pytest.raises(xacro.XacroException) as error:
        render("cell.urdf.xacro", cell_file=str(path))
    assert str(error.value).startswith("cobots.welder.joints: expected ")


def test_cell_rejects_unknown_models(tmp_path):
    cell = load_cell()
    cell["cobots"]["picker"]["model"] = "ur10"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cell))
    with pytest.raises(xacro.XacroException) as error:
        render("cell.urdf.xacro", cell_file=str(path))
    assert str(error.value).startswith(
        "cobots.picker.model: urdf/cell.urdf.xacro supports ur3e, ur5e, ur7e, ur10e, "
        "ur12e, ur15, ur16e, ur20, ur30, got 'ur10'"
    )


def test_cell_renders_from_an_install_layout(tmp_path):
    share = tmp_path / "share" / "cobot_cell"
    (share / "urdf").mkdir(parents=True)
    (share / "config").mkdir()
    for xacro_file in URDF_DIR.glob("*.xacro"):
        (share / "urdf" / xacro_file.name).write_text(xacro_file.read_text())
    (share / "config" / CELL_FILE.name).write_text(CELL_FILE.read_text())

    doc = xacro.process_file(str(share / "urdf" / "cell.urdf.xacro"))
    robot = ET.fromstring(doc.toprettyxml())
    assert {b.get("name") for b in robot.findall("ros2_control")} == set(load_cell()["cobots"])
