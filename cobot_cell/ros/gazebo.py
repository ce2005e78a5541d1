"""Gazebo bringup from a cell file: the controllers YAML, the spawner arguments and the node set around Gazebo.

Imports no rclpy (like `bringup`), so launch/gazebo.launch.py and the tests share it.

One controller manager for the whole cell: the cell's URDF is one Gazebo model holding one ros2_control block
per cobot, and one gz_ros2_control plugin loads all of them into one controller manager (`/controller_manager`).
One plugin per cobot would need one model per cobot and a namespaced plugin each, and several gz_ros2_control
plugins in one world are fragile (each starts its own controller manager and executor in the Gazebo process,
all fighting over `/clock` and the parameter files). Per cobot the manager runs

- `<cobot>_joint_trajectory_controller` (joint_trajectory_controller/JointTrajectoryController) on the cobot's
  joints, its `~/joint_trajectory` remapped to `<namespace>/<controller>/joint_trajectory`, the topic the
  planner publishes to (the cell file's `namespace` and `controller`);
- `<cobot>_joint_state_broadcaster` on the cobot's joints, its `joint_states` remapped to
  `<namespace>/joint_states`, where the planner listens;

plus one `joint_state_broadcaster` on every joint, on `/joint_states` for robot_state_publisher.
Tool IO has no Gazebo counterpart here: per cobot with tools, a sim_cobot node named `tool_io` serves the
cobot's IO services (`<namespace>/<io>`, `<io>/state`) and reports the carried payload; its own joint states and
trajectory topic are remapped under `<namespace>/tool_io/` so that it never competes with Gazebo's controllers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.config import CellConfig
from .bringup import BringupOptions, NodeSpec, node_specs, payload_params

CONTROLLER_MANAGER = "/controller_manager"
UPDATE_RATE = 500  # Hz of the controller manager inside Gazebo
JTC_TYPE = "joint_trajectory_controller/JointTrajectoryController"
JSB_TYPE = "joint_state_broadcaster/JointStateBroadcaster"
STATE_BROADCASTER = "joint_state_broadcaster"
TOOL_IO_NODE = "tool_io"


@dataclass(frozen=True)
class ControllerSpec:
    """One controller of the cell's controller manager: name, type, parameters and topic remappings."""

    name: str
    type: str
    parameters: dict[str, Any]
    remaps: tuple[tuple[str, str], ...] = ()

    def spawner_arguments(self, params_file: str | os.PathLike[str]) -> list[str]:
        """Arguments of `ros2 run controller_manager spawner` for this controller."""
        args = [
            self.name,
            "--controller-manager",
            CONTROLLER_MANAGER,
            "--param-file",
            str(params_file),
            "--controller-manager-timeout",
            "60",
        ]
        if self.remaps:
            args += ["--controller-ros-args", " ".join(f"-r {a}:={b}" for a, b in self.remaps)]
        return args


def trajectory_topic(cfg: CellConfig, cobot: str) -> str:
    """The joint trajectory topic the planner publishes a cobot's moves on."""
    return f"{cfg.cobot_namespace(cobot).rstrip('/')}/{cfg.cobots[cobot].controller}/joint_trajectory"


def controllers(cfg: CellConfig) -> list[ControllerSpec]:
    """The cell's controllers: the joint state broadcaster, then per cobot its state broadcaster and trajectory
    controller, on the cell file's joints and topics."""
    out = [ControllerSpec(STATE_BROADCASTER, JSB_TYPE, {})]
    for name, cobot in cfg.cobots.items():
        ns = cfg.cobot_namespace(name).rstrip("/")
        joints = list(cobot.joints)
        jsb, jtc = f"{name}_joint_state_broadcaster", f"{name}_joint_trajectory_controller"
        out.append(
            ControllerSpec(
                jsb,
                JSB_TYPE,
                {"joints": joints, "interfaces": ["position", "velocity"]},
                (("/joint_states", f"{ns}/joint_states"),),
            )
        )
        out.append(
            ControllerSpec(
                jtc,
                JTC_TYPE,
                {
                    "joints": joints,
                    "command_interfaces": ["position"],
                    "state_interfaces": ["position", "velocity"],
                },
                ((f"/{jtc}/joint_trajectory", trajectory_topic(cfg, name)),),
            )
        )
    return out


def controllers_yaml(cfg: CellConfig) -> dict[str, Any]:
    """The controller manager's parameters file (as data): update rate, each controller's type and parameters."""
    specs = controllers(cfg)
    manager: dict[str, Any] = {"update_rate": UPDATE_RATE, "use_sim_time": True}
    manager.update({c.name: {"type": c.type} for c in specs})
    doc: dict[str, Any] = {CONTROLLER_MANAGER.strip("/"): {"ros__parameters": manager}}
    for c in specs:
        if c.parameters:
            doc[c.name] = {"ros__parameters": {**c.parameters, "use_sim_time": True}}
    return doc


def write_controllers_yaml(cfg: CellConfig, directory: str | os.PathLike[str]) -> Path:
    """Write the controllers YAML for a cell into `directory`; its path."""
    import yaml

    path = Path(directory) / f"{cfg.cell.name}.controllers.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(controllers_yaml(cfg), sort_keys=False))
    return path


def cell_nodes(cfg: CellConfig, cell_file: str | os.PathLike[str], opts: BringupOptions) -> list[NodeSpec]:
    """Planner (and pendant bridge, supervisor) as for real arms, on Gazebo's simulated time."""
    specs = node_specs(cfg, cell_file, replace(opts, sim=False))
    return [
        replace(s, parameters={**s.parameters, "use_sim_time": True})
        if s.executable in ("task_planner", "pendant_bridge")
        else s
        for s in specs
    ]


def tool_io_nodes(cfg: CellConfig, job: str = "") -> list[tuple[NodeSpec, list[tuple[str, str]]]]:
    """Per cobot with tools: the sim driver serving only its IO (and payload report), with its remappings."""
    out = []
    for name, cobot in cfg.cobots.items():
        if not cobot.tools:
            continue
        ns = cfg.cobot_namespace(name).rstrip("/")
        spec = NodeSpec(
            executable="sim_cobot",
            module="cobot_cell.ros.sim_cobot_node",
            name=TOOL_IO_NODE,
            namespace=ns or "/",
            parameters={
                "joint_names": list(cobot.joints),
                "initial_positions": [float(v) for v in cobot.home],
                "io_names": [t.io for t in cobot.tools.values()],
                "controller": cobot.controller,
                "publish_clock": False,
                "use_sim_time": True,
                **payload_params(cfg, name, job),
            },
        )
        remaps = [
            (f"{ns}/joint_states", f"{ns}/{TOOL_IO_NODE}/joint_states"),
            (trajectory_topic(cfg, name), f"{ns}/{TOOL_IO_NODE}/joint_trajectory"),
        ]
        out.append((spec, remaps))
    return out
