"""Static checks of the Gazebo bringup (no Gazebo here): launch/gazebo.launch.py imported against recording
stand-ins for launch and launch_ros, the rendered URDF, and the controllers YAML against the cell file."""

from __future__ import annotations

import importlib.util
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from test_launch import _arguments, _console_scripts, _Recorder, launch_module  # noqa: F401 (a fixture)

from cobot_cell.core.config import parse_cell
from cobot_cell.ros.gazebo import CONTROLLER_MANAGER, controllers, controllers_yaml, trajectory_topic
from cobot_cell.skills import load_cell

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "gazebo.launch.py"
DEMO = ROOT / "config" / "demo_cell.yaml"
UR20 = ROOT / "config" / "ur20_us_pallet.yaml"


@pytest.fixture
def gazebo_launch(launch_module, monkeypatch):  # noqa: F811 (the fixture imported above)
    """launch/gazebo.launch.py imported with the recording stand-ins of test_launch, plus the actions it also uses."""
    actions = sys.modules["launch.actions"]
    for action in ("IncludeLaunchDescription", "RegisterEventHandler"):
        monkeypatch.setattr(actions, action, type(action, (_Recorder,), {}), raising=False)
    handlers, sources = types.ModuleType("launch.event_handlers"), types.ModuleType("launch.launch_description_sources")
    handlers.OnProcessExit = type("OnProcessExit", (_Recorder,), {})
    sources.PythonLaunchDescriptionSource = type("PythonLaunchDescriptionSource", (_Recorder,), {})
    monkeypatch.setitem(sys.modules, "launch.event_handlers", handlers)
    monkeypatch.setitem(sys.modules, "launch.launch_description_sources", sources)
    monkeypatch.setattr(
        sys.modules["ament_index_python.packages"],
        "get_package_share_directory",
        lambda pkg: str(ROOT) if pkg == "cobot_cell" else f"/opt/ros/jazzy/share/{pkg}",
    )
    spec = importlib.util.spec_from_file_location("gazebo_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _actions(module, **overrides) -> list:
    desc = module.generate_launch_description()
    args = _arguments(desc)
    context = {name: a.kwargs["default_value"] for name, a in args.items()}
    context.update(overrides)
    opaque = [a for a in desc.args[0] if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](context)


def _nodes(actions: list, package: str | None = None) -> list:
    return [a for a in actions if type(a).__name__ == "Node" and package in (None, a.kwargs["package"])]


def test_every_argument_has_a_description_and_default(gazebo_launch):
    args = _arguments(gazebo_launch.generate_launch_description())
    assert set(args) == {
        "cell",
        "headless",
        "world",
        "job",
        "parts",
        "db",
        "journal",
        "supervisor",
        "tool_io",
        "work_dir",
    }
    for name, a in args.items():
        assert a.kwargs["description"].strip() and "default_value" in a.kwargs, name
    assert args["headless"].kwargs["choices"] == ["true", "false"]


def test_gazebo_cell_set(gazebo_launch, tmp_path):
    actions = _actions(gazebo_launch, cell=str(UR20), headless="true", work_dir=str(tmp_path))
    gazebo = [a for a in actions if type(a).__name__ == "IncludeLaunchDescription"]
    assert len(gazebo) == 1
    assert gazebo[0].args[0].args[0] == "/opt/ros/jazzy/share/ros_gz_sim/launch/gz_sim.launch.py"
    assert dict(gazebo[0].kwargs["launch_arguments"])["gz_args"] == "-s -r -v 1 empty.sdf"
    by_exe = {(n.kwargs["package"], n.kwargs["executable"]): n for n in _nodes(actions)}
    assert by_exe[("ros_gz_bridge", "parameter_bridge")].kwargs["arguments"] == [
        "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"
    ]
    assert by_exe[("ros_gz_sim", "create")].kwargs["arguments"] == ["-topic", "robot_description", "-name", "ur20_us"]
    # the cell's own nodes: installed executables; planner on simulated time, not stamping (real-arm mode)
    scripts = _console_scripts()
    ours = _nodes(actions, "cobot_cell")
    assert [(n.kwargs["executable"], n.kwargs["namespace"], n.kwargs["name"]) for n in ours] == [
        ("sim_cobot", "/palletiser", "tool_io"),
        ("task_planner", "/ur20_us", "task_planner"),
        ("supervisor", "/", "supervisor"),
    ]
    assert all(n.kwargs["executable"] in scripts for n in ours)
    planner = ours[1].kwargs["parameters"][0]
    assert planner["use_sim_time"] is True and planner["stamp_trajectories"] is False
    assert ours[2].kwargs["parameters"][0]["use_sim_time"] is False
    io = ours[0].kwargs
    assert io["parameters"][0]["io_names"] == ["vacuum/grip"] and io["parameters"][0]["publish_clock"] is False
    assert io["parameters"][0]["use_sim_time"] is True and io["parameters"][0]["part_mass"] == 12.0
    assert io["remappings"] == [
        ("/palletiser/joint_states", "/palletiser/tool_io/joint_states"),
        ("/palletiser/joint_trajectory_controller/joint_trajectory", "/palletiser/tool_io/joint_trajectory"),
    ]
    # spawners run once the cell is spawned, one per controller, with the generated parameters file
    handler = next(a for a in actions if type(a).__name__ == "RegisterEventHandler").args[0]
    assert handler.kwargs["target_action"] is by_exe[("ros_gz_sim", "create")]
    spawned = [n.kwargs["arguments"] for n in handler.kwargs["on_exit"]]
    params_file = str(tmp_path / "ur20_us.controllers.yaml")
    assert [a[0] for a in spawned] == [
        "joint_state_broadcaster",
        "palletiser_joint_state_broadcaster",
        "palletiser_joint_trajectory_controller",
    ]
    assert spawned[2] == [
        "palletiser_joint_trajectory_controller",
        "--controller-manager",
        "/controller_manager",
        "--param-file",
        params_file,
        "--controller-manager-timeout",
        "60",
        "--controller-ros-args",
        (
            "-r /palletiser_joint_trajectory_controller/joint_trajectory:="
            "/palletiser/joint_trajectory_controller/joint_trajectory"
        ),
    ]
    assert spawned[1][-1] == "-r /joint_states:=/palletiser/joint_states"
    assert "--controller-ros-args" not in spawned[0]


def test_rendered_urdf_has_the_plugin_and_the_controllers_joints(gazebo_launch, tmp_path):
    actions = _actions(gazebo_launch, cell=str(DEMO), work_dir=str(tmp_path))
    rsp = next(n for n in _nodes(actions) if n.kwargs["executable"] == "robot_state_publisher")
    robot = ET.fromstring(rsp.kwargs["parameters"][0]["robot_description"])
    plugin = robot.find("gazebo/plugin")
    assert plugin.get("filename") == "gz_ros2_control-system"
    assert plugin.get("name") == "gz_ros2_control::GazeboSimROS2ControlPlugin"
    params_file = tmp_path / "demo.controllers.yaml"
    assert plugin.find("parameters").text == str(params_file)
    assert len(robot.findall("gazebo/plugin")) == 1  # one controller manager for the whole cell
    blocks = {b.get("name"): b for b in robot.findall("ros2_control")}
    assert {b.find("hardware/plugin").text for b in blocks.values()} == {"gz_ros2_control/GazeboSimSystem"}
    written = yaml.safe_load(params_file.read_text())
    cfg = load_cell(DEMO)
    for cobot in cfg.cobots:
        jtc = written[f"{cobot}_joint_trajectory_controller"]["ros__parameters"]
        urdf_joints = [j.get("name") for j in blocks[cobot].findall("joint")]
        assert jtc["joints"] == urdf_joints == list(cfg.cobots[cobot].joints)
        assert jtc["command_interfaces"] == [
            c.get("name") for c in blocks[cobot].find("joint").findall("command_interface")
        ]
        assert jtc["state_interfaces"] == [
            s.get("name") for s in blocks[cobot].find("joint").findall("state_interface")
        ]
        manager = written["controller_manager"]["ros__parameters"]
        assert manager[f"{cobot}_joint_trajectory_controller"] == {
            "type": "joint_trajectory_controller/JointTrajectoryController"
        }
    # the demo's two cobots have tools: a tool IO stand-in each
    assert [n.kwargs["namespace"] for n in _nodes(actions, "cobot_cell") if n.kwargs["name"] == "tool_io"] == [
        "/picker",
        "/welder",
    ]


def test_controller_topics_follow_the_cell_files_namespace_and_controller():
    text = DEMO.read_text().replace(
        "    tools:\n      gripper:",
        "    namespace: /left\n    controller: arm/trajectory\n    tools:\n      gripper:",
        1,
    )
    cfg, _ = parse_cell(text)
    assert trajectory_topic(cfg, "picker") == "/left/arm/trajectory/joint_trajectory"
    remaps = {c.name: c.remaps for c in controllers(cfg)}
    assert remaps["picker_joint_trajectory_controller"] == (
        ("/picker_joint_trajectory_controller/joint_trajectory", "/left/arm/trajectory/joint_trajectory"),
    )
    assert remaps["picker_joint_state_broadcaster"] == (("/joint_states", "/left/joint_states"),)
    assert remaps["welder_joint_state_broadcaster"] == (("/joint_states", "/welder/joint_states"),)
    assert set(controllers_yaml(cfg)) == {
        CONTROLLER_MANAGER.strip("/"),
        "picker_joint_state_broadcaster",
        "picker_joint_trajectory_controller",
        "welder_joint_state_broadcaster",
        "welder_joint_trajectory_controller",
    }


def test_bad_cell_file_fails_with_the_reason(gazebo_launch, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(UR20.read_text().replace("model: ur20", "model: ur25"))
    with pytest.raises(RuntimeError, match=r"cobots\.palletiser\.model .*got 'ur25'"):
        _actions(gazebo_launch, cell=str(bad), work_dir=str(tmp_path))
