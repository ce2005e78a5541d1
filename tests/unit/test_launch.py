"""Static checks of launch/cell.launch.py: no ROS 2 launch here, so launch and launch_ros are stood in for by
recorders, and the launch description is generated and inspected (arguments, node set, executables)."""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "cell.launch.py"
DEMO = ROOT / "config" / "demo_cell.yaml"


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _ExecuteProcess:
    """launch's ExecuteProcess signature as of ROS 2 Iron (respawn, respawn_delay, respawn_max_retries)."""

    def __init__(
        self, *, cmd, respawn: bool = False, respawn_delay: float | None = None, respawn_max_retries: int = -1, **kwargs
    ):
        pass


class _LaunchConfiguration:
    values: dict[str, str] = {}

    def __init__(self, name: str):
        self.name = name

    def perform(self, context) -> str:
        return context[self.name]


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file imported with recording stand-ins for launch, launch_ros and the ament index."""
    stubs = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    stubs["launch"].LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    stubs["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorder,), {})
    stubs["launch.actions"].OpaqueFunction = type("OpaqueFunction", (_Recorder,), {})
    stubs["launch.actions"].ExecuteProcess = _ExecuteProcess
    stubs["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    stubs["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    stubs["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(ROOT)
    for name, mod in stubs.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("cell_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    entries = [e.value for e in v.elts]
                    return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py declares no console_scripts")


def _arguments(desc) -> dict[str, _Recorder]:
    return {a.args[0]: a for a in desc.args[0] if type(a).__name__ == "DeclareLaunchArgument"}


def _nodes(desc, **overrides):
    args = _arguments(desc)
    context = {name: a.kwargs["default_value"] for name, a in args.items()}
    context.update(overrides)
    opaque = [a for a in desc.args[0] if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](context)


def test_every_argument_has_a_description_and_default(launch_module):
    args = _arguments(launch_module.generate_launch_description())
    assert set(args) == {
        "cell",
        "sim",
        "rate",
        "job",
        "parts",
        "max_parts_in_flight",
        "db",
        "journal",
        "supervisor",
        "pendant_port",
        "enabling_device",
        "respawn_delay",
        "respawn_max_retries",
        "hmi",
        "hmi_insecure",
        "hmi_cert",
        "hmi_key",
        "opcua",
        "users",
        "allow_none",
        "mqtt",
        "mqtt_prefix",
        "backend",
        "foxglove",
        "record",
    }
    for name, a in args.items():
        assert a.kwargs["description"].strip(), name
        assert "default_value" in a.kwargs, name
    assert args["sim"].kwargs["choices"] == ["true", "false"]
    assert args["supervisor"].kwargs["choices"] == ["true", "false"]
    assert args["enabling_device"].kwargs["choices"] == ["true", "false"]
    assert args["hmi_insecure"].kwargs["choices"] == ["true", "false"]
    assert args["cell"].kwargs["default_value"] == str(DEMO)


def test_sim_node_set_uses_installed_executables(launch_module):
    nodes = _nodes(launch_module.generate_launch_description())
    scripts = _console_scripts()
    executables = [n.kwargs["executable"] for n in nodes]
    assert executables == ["sim_cobot", "sim_cobot", "task_planner", "supervisor"]
    for n in nodes:
        assert n.kwargs["package"] == "cobot_cell"
        module = scripts[n.kwargs["executable"]].split(":")[0]
        assert importlib.util.find_spec(module) is not None, module
    namespaces = [n.kwargs["namespace"] for n in nodes]
    assert namespaces == ["/picker", "/welder", "/demo", "/"]
    sims = [n.kwargs["parameters"][0] for n in nodes[:2]]
    assert [s["publish_clock"] for s in sims] == [True, False]
    assert [s["use_sim_time"] for s in sims] == [False, True]
    planner = nodes[2].kwargs["parameters"][0]
    assert planner["cell_file"] == str(DEMO) and planner["use_sim_time"] is True


def test_nodes_respawn_as_cobot_cell_up_restarts_them(launch_module):
    from cobot_cell.ros.bringup import RESPAWN_DELAY, RESPAWN_MAX_RETRIES

    assert RESPAWN_DELAY > 2.0  # above the planner's stale_timeout: a driver crash is seen before its restart
    nodes = _nodes(launch_module.generate_launch_description())
    for n in nodes:
        assert n.kwargs["respawn"] is True
        assert n.kwargs["respawn_delay"] == RESPAWN_DELAY
        assert n.kwargs["respawn_max_retries"] == RESPAWN_MAX_RETRIES
    nodes = _nodes(launch_module.generate_launch_description(), respawn_delay="4.5", respawn_max_retries="0")
    assert {(n.kwargs["respawn"], n.kwargs["respawn_delay"], n.kwargs["respawn_max_retries"]) for n in nodes} == {
        (False, 4.5, 0)
    }
    with pytest.raises(ValueError, match="respawn max retries must be a whole number >= -1"):
        _nodes(launch_module.generate_launch_description(), respawn_max_retries="-2")


def test_launch_without_respawn_max_retries_respawns_without_limit(launch_module, monkeypatch):
    monkeypatch.setattr(launch_module, "HAS_MAX_RETRIES", False)  # ROS 2 Humble's launch
    nodes = _nodes(launch_module.generate_launch_description())
    assert all(n.kwargs["respawn"] is True and "respawn_max_retries" not in n.kwargs for n in nodes)


def test_the_clock_owner_keeps_its_time_beside_the_journal(launch_module, tmp_path):
    nodes = _nodes(launch_module.generate_launch_description(), journal=str(tmp_path / "cell.journal.db"))
    sims = [n.kwargs["parameters"][0] for n in nodes if n.kwargs["executable"] == "sim_cobot"]
    assert sims[0]["clock_file"] == str(tmp_path / "cell.journal.clock")
    assert "clock_file" not in sims[1]


def test_real_arms_start_no_sim_and_no_sim_time(launch_module):
    nodes = _nodes(launch_module.generate_launch_description(), sim="false", supervisor="false")
    assert [n.kwargs["executable"] for n in nodes] == ["task_planner"]
    params = nodes[0].kwargs["parameters"][0]
    assert params["use_sim_time"] is False and params["stamp_trajectories"] is False


def test_pendant_bridge_only_with_a_port(launch_module):
    nodes = _nodes(launch_module.generate_launch_description(), pendant_port="/dev/ttyUSB0", enabling_device="true")
    bridge = [n for n in nodes if n.kwargs["executable"] == "pendant_bridge"]
    assert len(bridge) == 1 and bridge[0].kwargs["namespace"] == "/demo"
    assert bridge[0].kwargs["parameters"][0]["port"] == "/dev/ttyUSB0"
    assert bridge[0].kwargs["parameters"][0]["enabling_device"] is True


def test_hmi_only_when_asked(launch_module):
    nodes = _nodes(launch_module.generate_launch_description(), hmi="0.0.0.0:8443", hmi_insecure="true")
    (hmi,) = [n for n in nodes if n.kwargs["executable"] == "hmi"]
    params = hmi.kwargs["parameters"][0]
    assert hmi.kwargs["namespace"] == "/demo" and (params["host"], params["port"]) == ("0.0.0.0", 8443)
    assert params["insecure"] is True and params["use_sim_time"] is True
    assert "hmi" in _console_scripts()


def test_the_physics_twin_is_one_driver_for_the_cell_and_foxglove_only_when_asked(launch_module, tmp_path):
    nodes = _nodes(launch_module.generate_launch_description(), backend="mujoco")
    assert [n.kwargs["executable"] for n in nodes] == ["sim_cobot", "task_planner", "supervisor"]
    twin = nodes[0].kwargs
    assert (twin["name"], twin["namespace"]) == ("sim_twin", "/demo")
    params = twin["parameters"][0]
    assert (params["backend"], params["cell_file"], params["publish_clock"]) == ("mujoco", str(DEMO), True)
    assert nodes[1].kwargs["parameters"][0]["stamp_trajectories"] is False  # moves end when the arm arrives
    nodes = _nodes(launch_module.generate_launch_description(), foxglove="8765", record=str(tmp_path / "r.mcap"))
    (fox,) = [n for n in nodes if n.kwargs["executable"] == "foxglove"]
    assert fox.kwargs["parameters"][0] == {
        "cell_file": str(DEMO),
        "port": 8765,
        "record": str(tmp_path / "r.mcap"),
        "use_sim_time": True,
    }
    assert "foxglove" in _console_scripts()
    assert launch_module.ARGUMENTS[-3][3] == ["", "kinematic", "mujoco"]


def test_the_cell_file_names_the_default_backend_and_the_launch_argument_overrides_it(launch_module, tmp_path):
    cell = tmp_path / "cell.yaml"
    cell.write_text(DEMO.read_text().replace("  name: demo\n", "  name: demo\n  sim_backend: mujoco\n", 1))
    nodes = _nodes(launch_module.generate_launch_description(), cell=str(cell))
    assert [n.kwargs["executable"] for n in nodes] == ["sim_cobot", "task_planner", "supervisor"]
    assert nodes[0].kwargs["parameters"][0]["backend"] == "mujoco"
    nodes = _nodes(launch_module.generate_launch_description(), cell=str(cell), backend="kinematic")
    assert [n.kwargs["executable"] for n in nodes] == ["sim_cobot", "sim_cobot", "task_planner", "supervisor"]
    assert nodes[0].kwargs["namespace"] == "/picker"
    # the default cell file says nothing: kinematic
    assert [n.kwargs["executable"] for n in _nodes(launch_module.generate_launch_description())][:2] == [
        "sim_cobot",
        "sim_cobot",
    ]


def test_plant_bridges_only_when_asked(launch_module):
    nodes = _nodes(
        launch_module.generate_launch_description(),
        opcua="opc.tcp://127.0.0.1:4841/x/",
        mqtt="mqtt://127.0.0.1:1883",
        allow_none="true",
    )
    scripts = _console_scripts()
    bridges = {
        n.kwargs["executable"]: n.kwargs["parameters"][0]
        for n in nodes
        if n.kwargs["executable"] in ("opcua_bridge", "mqtt_bridge")
    }
    assert set(bridges) == {"opcua_bridge", "mqtt_bridge"}
    for name in bridges:
        assert importlib.util.find_spec(scripts[name].split(":")[0]) is not None
    assert bridges["opcua_bridge"]["endpoint"] == "opc.tcp://127.0.0.1:4841/x/"
    assert bridges["opcua_bridge"]["cells"] == ["demo"] and bridges["opcua_bridge"]["allow_none"] is True
    assert bridges["mqtt_bridge"]["broker"] == "mqtt://127.0.0.1:1883"
    plain = _nodes(launch_module.generate_launch_description())
    assert not [n for n in plain if n.kwargs["executable"] in ("opcua_bridge", "mqtt_bridge")]


def test_bad_cell_file_fails_with_the_reason(launch_module, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("cobot: welder", "cobot: welda"))
    with pytest.raises(RuntimeError, match=r"jobs\.bracket\.steps\[1\]\.cobot .*unknown cobot 'welda'"):
        _nodes(launch_module.generate_launch_description(), cell=str(bad))


def test_setup_installs_launch_urdf_and_config():
    text = (ROOT / "setup.py").read_text()
    for folder in ("launch", "urdf", "config"):
        assert f"share/{{PACKAGE}}/{folder}" in text
    assert (ROOT / "resource" / "cobot_cell").exists()


def test_nodes_get_the_fastdds_profile_unless_one_is_set(launch_module, monkeypatch):
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    nodes = _nodes(launch_module.generate_launch_description())
    profile = ROOT / "config" / "fastdds.xml"
    assert [n.kwargs["additional_env"] for n in nodes] == [{"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}] * 4
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/site_dds.xml")
    nodes = _nodes(launch_module.generate_launch_description())
    assert {n.kwargs["additional_env"]["FASTDDS_DEFAULT_PROFILES_FILE"] for n in nodes} == {"/etc/site_dds.xml"}


def test_fastdds_profile_sets_a_short_writer_heartbeat():
    ns = {"d": "http://www.eprosima.com"}
    root = ElementTree.parse(ROOT / "config" / "fastdds.xml").getroot()
    writers = root.findall("d:profiles/d:data_writer", ns)
    assert [w.get("is_default_profile") for w in writers] == ["true"]
    hb = writers[0].find("d:times/d:heartbeat_period", ns)
    period = int(hb.find("d:sec", ns).text) + int(hb.find("d:nanosec", ns).text) * 1e-9
    assert period == pytest.approx(0.05)
    assert 'glob("config/*.xml")' in (ROOT / "setup.py").read_text()


def test_ros_env_points_child_nodes_at_the_profile(monkeypatch):
    from cobot_cell.ros.processes import ros_env

    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    env = ros_env(7)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(ROOT / "config" / "fastdds.xml")
    assert env["ROS_DOMAIN_ID"] == "7" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/site_dds.xml")
    assert ros_env(7)["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/site_dds.xml"
