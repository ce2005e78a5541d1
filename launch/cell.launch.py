"""Bring up a cobot cell from its cell file: sim drivers (or none, for real ros2_control arms), the task
planner and the supervisor. The node set comes from cobot_cell.ros.bringup.node_specs, the same function
`cobot-cell up` uses, so both start exactly the same nodes and restart a crashed one the same way (respawn
after respawn_delay, at most respawn_max_retries times; respawn_max_retries needs ROS 2 Iron or newer).

    ros2 launch cobot_cell cell.launch.py cell:=/path/to/cell.yaml rate:=10 parts:=5
"""

import inspect
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cobot_cell.core.config import CellFileError
from cobot_cell.ros.bringup import (
    DDS_PROFILE_VAR,
    PACKAGE,
    RESPAWN_DELAY,
    RESPAWN_MAX_RETRIES,
    BringupOptions,
    dds_env,
    node_specs,
)
from cobot_cell.skills import load_cell

ARGUMENTS = [
    (
        "cell",
        os.path.join(get_package_share_directory(PACKAGE), "config", "demo_cell.yaml"),
        "cell file (YAML): cobots, stations, jobs",
        None,
    ),
    (
        "sim",
        "true",
        "true: simulated drivers (sim_cobot) owning /clock; false: real ros2_control arms "
        "(started separately, same topics)",
        ["true", "false"],
    ),
    ("rate", "1.0", "simulated seconds per wall second (sim:=true only)", None),
    ("job", "", "job to select at start (default: the first job of the cell file)", None),
    ("parts", "1", "parts per run (>= 1)", None),
    ("max_parts_in_flight", "0", "parts in flight at most (0: the cell file's; 1: one part at a time)", None),
    ("db", "production.db", "SQLite production log written by the supervisor", None),
    ("journal", "", "planner's SQLite job journal for resuming after a restart (default: <cell>.journal.db)", None),
    ("supervisor", "true", "start the supervisor (production log, KPIs)", ["true", "false"]),
    ("pendant_port", "", "serial device of the teach pendant (empty: no pendant bridge)", None),
    (
        "enabling_device",
        "false",
        "the pendant is an enabling device: losing its heartbeat holds the cell",
        ["true", "false"],
    ),
    (
        "respawn_delay",
        str(RESPAWN_DELAY),
        "wall seconds before a crashed node is started again (keep it above the "
        "planner's stale_timeout, 2 s, so a driver crash is always seen)",
        None,
    ),
    ("respawn_max_retries", str(RESPAWN_MAX_RETRIES), "restarts per node (0: never, -1: no limit)", None),
    (
        "hmi",
        "",
        "HOST:PORT of the web HMI, e.g. 127.0.0.1:8080 (empty: no HMI); a non-loopback address serves TLS",
        None,
    ),
    ("hmi_insecure", "false", "serve the HMI as plain HTTP on a non-loopback address (logged)", ["true", "false"]),
    ("hmi_cert", "", "TLS certificate of the HMI (PEM; default: a self-signed one generated and kept)", None),
    ("hmi_key", "", "TLS private key of the HMI (PEM), with hmi_cert", None),
    ("opcua", "", "OPC UA endpoint of the plant server, e.g. opc.tcp://127.0.0.1:4840/cobot_cell/ (empty: none)", None),
    ("users", "", "user file of the plant servers (empty: ~/.config/cobot_cell/users.json)", None),
    ("allow_none", "false", "the OPC UA server also offers the None security policy", ["true", "false"]),
    ("mqtt", "", "MQTT broker URL, e.g. mqtt://127.0.0.1:1883 (empty: no MQTT publishing)", None),
    ("mqtt_prefix", "plant/area", "<site>/<area> of the MQTT topic tree", None),
    (
        "backend",
        "",
        "sim drivers (sim:=true): kinematic (one per cobot) or mujoco (the cell's physics twin); "
        "empty: the cell file's cell.sim_backend (default kinematic)",
        ["", "kinematic", "mujoco"],
    ),
    ("foxglove", "-1", "port of the Foxglove live server on 127.0.0.1 (-1: none, 0: any free port)", None),
    ("record", "", "MCAP file recording the cell's channels (empty: none)", None),
]


# respawn_max_retries came with ROS 2 Iron's launch; on older launch a node is respawned without limit
HAS_MAX_RETRIES = "respawn_max_retries" in inspect.signature(ExecuteProcess.__init__).parameters


def _nodes(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    cell = arg("cell")
    try:
        cfg = load_cell(cell)
    except CellFileError as exc:
        raise RuntimeError(f"invalid cell file {exc}") from None
    opts = BringupOptions(
        sim=arg("sim") == "true",
        rate=float(arg("rate")),
        job=arg("job"),
        parts=int(arg("parts")),
        max_parts_in_flight=int(arg("max_parts_in_flight")),
        db=arg("db"),
        journal=arg("journal"),
        supervisor=arg("supervisor") == "true",
        pendant_port=arg("pendant_port"),
        enabling_device=arg("enabling_device") == "true",
        hmi=arg("hmi"),
        hmi_insecure=arg("hmi_insecure") == "true",
        hmi_cert=arg("hmi_cert"),
        hmi_key=arg("hmi_key"),
        opcua=arg("opcua"),
        users=arg("users"),
        allow_none=arg("allow_none") == "true",
        mqtt=arg("mqtt"),
        mqtt_prefix=arg("mqtt_prefix"),
        respawn_delay=float(arg("respawn_delay")),
        respawn_max_retries=int(arg("respawn_max_retries")),
        backend=arg("backend"),
        foxglove=int(arg("foxglove")),
        record=arg("record"),
    )
    # the package's Fast DDS profile (config/fastdds.xml) unless FASTDDS_DEFAULT_PROFILES_FILE is already set
    env = dds_env({DDS_PROFILE_VAR: os.environ.get(DDS_PROFILE_VAR, "")})
    return [
        Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[spec.parameters],
            additional_env=env,
            output="screen",
            emulate_tty=True,
            respawn=spec.respawn.enabled,
            respawn_delay=spec.respawn.delay,
            **({"respawn_max_retries": spec.respawn.max_retries} if HAS_MAX_RETRIES else {}),
        )
        for spec in node_specs(cfg, cell, opts)
    ]


def generate_launch_description() -> LaunchDescription:
    """Launch arguments (each with a description) and the cell's node set."""
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description, choices=choices)
        if choices
        else DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
