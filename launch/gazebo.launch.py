"""Bring a cobot cell up in Gazebo (Harmonic) from its cell file: the cell's URDF with gz_ros2_control, one
controller manager with a joint_trajectory_controller and a joint state broadcaster per cobot (configured from the
cell file), the /clock bridge, a tool IO stand-in per cobot, and the task planner and supervisor on simulated time.
See docs/simulation.md.

    ros2 launch cobot_cell gazebo.launch.py cell:=/path/to/cell.yaml headless:=true parts:=5
"""

import os
import tempfile

import xacro
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cobot_cell.core.config import CellFileError
from cobot_cell.ros.bringup import DDS_PROFILE_VAR, PACKAGE, BringupOptions, dds_env
from cobot_cell.ros.gazebo import cell_nodes, controllers, tool_io_nodes, write_controllers_yaml
from cobot_cell.skills import load_cell

SHARE = get_package_share_directory(PACKAGE)
ARGUMENTS = [
    ("cell", os.path.join(SHARE, "config", "demo_cell.yaml"), "cell file (YAML): cobots, stations, jobs", None),
    ("headless", "false", "true: run the Gazebo server only (no GUI)", ["true", "false"]),
    ("world", "empty.sdf", "Gazebo world file (SDF) the cell is spawned into", None),
    ("job", "", "job to select at start (default: the first job of the cell file)", None),
    ("parts", "1", "parts per run (>= 1)", None),
    ("db", "production.db", "SQLite production log written by the supervisor", None),
    ("journal", "", "planner's SQLite job journal for resuming after a restart (default: <cell>.journal.db)", None),
    ("supervisor", "true", "start the supervisor (production log, KPIs)", ["true", "false"]),
    (
        "tool_io",
        "true",
        "serve each cobot's tool IO services with a sim_cobot stand-in (false: real IO)",
        ["true", "false"],
    ),
    ("work_dir", "", "where the controllers YAML is written (default: a new temporary directory)", None),
]


def _actions(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    cell = os.path.abspath(arg("cell"))
    try:
        cfg = load_cell(cell)
    except CellFileError as exc:
        raise RuntimeError(f"invalid cell file {exc}") from None
    opts = BringupOptions(
        sim=False,
        job=arg("job"),
        parts=int(arg("parts")),
        db=arg("db"),
        journal=arg("journal"),
        supervisor=arg("supervisor") == "true",
    )
    work = arg("work_dir") or tempfile.mkdtemp(prefix=f"cobot_cell_gazebo_{cfg.cell.name}_")
    controllers_file = write_controllers_yaml(cfg, work)
    description = xacro.process_file(
        os.path.join(SHARE, "urdf", "cell.urdf.xacro"),
        mappings={"cell_file": cell, "sim_hardware": "gz", "controllers_file": str(controllers_file)},
    ).toxml()
    env = dds_env({DDS_PROFILE_VAR: os.environ.get(DDS_PROFILE_VAR, "")})

    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")
        ),
        launch_arguments={
            "gz_args": f"{'-s ' if arg('headless') == 'true' else ''}-r -v 1 {arg('world')}",
            "on_exit_shutdown": "true",
        }.items(),
    )
    state_publisher = Node(
        package="robot_state_publisher",
        executable="robot_state_publisher",
        output="screen",
        parameters=[{"robot_description": description, "use_sim_time": True}],
    )
    spawn = Node(
        package="ros_gz_sim",
        executable="create",
        output="screen",
        arguments=["-topic", "robot_description", "-name", cfg.cell.name],
    )
    clock_bridge = Node(
        package="ros_gz_bridge",
        executable="parameter_bridge",
        output="screen",
        arguments=["/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"],
    )
    spawners = [
        Node(
            package="controller_manager",
            executable="spawner",
            output="screen",
            arguments=c.spawner_arguments(controllers_file),
            parameters=[{"use_sim_time": True}],
        )
        for c in controllers(cfg)
    ]
    cell_set = [
        Node(
            package=PACKAGE,
            executable=s.executable,
            name=s.name,
            namespace=s.namespace,
            parameters=[s.parameters],
            additional_env=env,
            output="screen",
            emulate_tty=True,
        )
        for s in cell_nodes(cfg, cell, opts)
    ]
    io_set = (
        [
            Node(
                package=PACKAGE,
                executable=s.executable,
                name=s.name,
                namespace=s.namespace,
                parameters=[s.parameters],
                remappings=remaps,
                additional_env=env,
                output="screen",
            )
            for s, remaps in tool_io_nodes(cfg, opts.job)
        ]
        if arg("tool_io") == "true"
        else []
    )
    # the controllers are spawned once the cell is in Gazebo (its plugin has started the controller manager)
    return [
        gazebo,
        state_publisher,
        spawn,
        clock_bridge,
        RegisterEventHandler(OnProcessExit(target_action=spawn, on_exit=spawners)),
        *io_set,
        *cell_set,
    ]


def generate_launch_description() -> LaunchDescription:
    """Launch arguments (each with a description) and the Gazebo cell."""
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description, choices=choices)
        if choices
        else DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_actions)])
