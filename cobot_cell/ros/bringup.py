"""Bringup: one function turns a cell file into the node set; launch files and `cobot-cell up` both use it.

Imports no rclpy, so `ros2 launch` (which imports it from the launch file) and the CLI share it cheaply.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..core.config import CellConfig
from ..core.limits import MAX_PARTS

if TYPE_CHECKING:
    from ..plant.config import PlantConfig

PACKAGE = "cobot_cell"
DDS_PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
RESPAWN_DELAY = 3.0
"""Wall seconds before a crashed node is started again: longer than the planner's stale_timeout (2 s), so a
driver's crash is always seen (STALE fault) before its replacement, at its initial position, reports."""
RESPAWN_MAX_RETRIES = 5
"""Restarts per node (as launch's respawn_max_retries: 0 never, -1 without limit)."""


def package_file(*parts: str) -> Path:
    """A file shipped with the package (config/, urdf/, launch/): from the source tree, else the share directory."""
    source = Path(__file__).resolve().parents[2].joinpath(*parts)
    if source.exists():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)).joinpath(*parts)
    except Exception:  # noqa: BLE001 - no ament index: the source path, whose absence the caller reports
        return source


def dds_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the package's Fast DDS profile (config/fastdds.xml: 50 ms heartbeat) unless one is already set."""
    profile = package_file("config", "fastdds.xml")
    if not env.get(DDS_PROFILE_VAR) and profile.exists():
        env[DDS_PROFILE_VAR] = str(profile)
    return env


@dataclass(frozen=True)
class RespawnPolicy:
    """When a node that exited is started again: after `delay` wall seconds, at most `max_retries` times in all
    (-1: no limit, 0: never), as launch's respawn_delay and respawn_max_retries."""

    delay: float = 0.0
    max_retries: int = 0

    def __post_init__(self) -> None:
        if not self.delay >= 0:
            raise ValueError(f"respawn delay must be >= 0 s, got {self.delay}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < -1:
            raise ValueError(
                f"respawn max retries must be a whole number >= -1 (-1: no limit), got {self.max_retries!r}"
            )

    @property
    def enabled(self) -> bool:
        """Nodes are started again at all."""
        return self.max_retries != 0

    def restart_at(self, retries: int, exited_at: float) -> float | None:
        """When to start again a node that exited at `exited_at` after `retries` restarts; None: not again."""
        if self.max_retries >= 0 and retries >= self.max_retries:
            return None
        return exited_at + self.delay


@dataclass(frozen=True)
class NodeSpec:
    """One node of the cell: what to run, under which name and namespace, with which parameters."""

    executable: str
    module: str
    name: str
    namespace: str
    parameters: dict[str, Any] = field(default_factory=dict)
    respawn: RespawnPolicy = RespawnPolicy()

    @property
    def fqn(self) -> str:
        """Fully qualified node name."""
        return f"{self.namespace.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class BringupOptions:
    """What the integrator chooses at bringup."""

    sim: bool = True
    rate: float = 1.0
    job: str = ""
    parts: int = 1
    max_parts_in_flight: int = 0  # 0: the cell file's; 1: one part at a time
    db: str = "production.db"
    journal: str = ""
    supervisor: bool = True
    pendant_port: str = ""
    enabling_device: bool = False
    respawn_delay: float = RESPAWN_DELAY
    respawn_max_retries: int = RESPAWN_MAX_RETRIES
    hmi: str = ""  # HOST:PORT of the web HMI; empty: no HMI
    hmi_insecure: bool = False
    hmi_cert: str = ""
    hmi_key: str = ""
    opcua: str = ""  # OPC UA endpoint of an opcua_bridge for the cell ("" = none)
    users: str = ""  # user file of the plant servers ("" = the default)
    allow_none: bool = False  # the OPC UA server also offers the None security policy
    mqtt: str = ""  # MQTT broker URL of an mqtt_bridge for the cell ("" = none)
    mqtt_prefix: str = "plant/area"  # <site>/<area> of the MQTT topic tree
    owns_clock: bool = True  # the cell's first sim driver publishes /clock (one cell per plant does)
    backend: str = ""  # sim drivers: kinematic (one per cobot) or mujoco (one twin per cell); "": the cell file's
    foxglove: int = -1  # port of the Foxglove live server on 127.0.0.1 (-1 = none, 0 = any free port)
    record: str = ""  # MCAP file the foxglove node records the cell's channels to ("" = none)
    feed_interval: float = 2.0  # sim s from a part taken off a sensed infeed to the next (sim_infeed)


def heartbeat_topic(cfg: CellConfig) -> str:
    """The planner's heartbeat topic, which the drivers watch to switch their process tools off on silence."""
    return f"/{cfg.cell.name}/heartbeat"


def node_specs(cfg: CellConfig, cell_file: str | os.PathLike, opts: BringupOptions | None = None) -> list[NodeSpec]:
    """The cell's node set: a sim driver per cobot (first one owns /clock), the simulated infeed sensors (a cell
    with sensed infeeds), the planner, the supervisor, and the pendant bridge and web HMI when asked for."""
    opts = opts or BringupOptions()
    if opts.rate <= 0:
        raise ValueError(f"rate must be > 0, got {opts.rate}")
    if not 1 <= opts.parts <= MAX_PARTS:
        raise ValueError(f"parts must be a whole number from 1 to {MAX_PARTS}, got {opts.parts}")
    if opts.job and opts.job not in cfg.jobs:
        raise ValueError(f"unknown job '{opts.job}': expected one of {', '.join(cfg.jobs)}")
    respawn = _respawn(opts)
    journal = Path(opts.journal or f"{cfg.cell.name}.journal.db").resolve()  # the planner's default, made absolute
    specs: list[NodeSpec] = []
    sim_time = opts.sim
    if opts.backend not in ("", "kinematic", "mujoco"):
        raise ValueError(f"backend must be kinematic or mujoco, got {opts.backend!r}")
    opts = replace(opts, backend=opts.backend or cfg.cell.sim_backend)
    if opts.sim and opts.backend == "mujoco":
        specs.append(twin_spec(cfg, cell_file, opts, journal, respawn))
    elif opts.sim:
        for i, (name, cobot) in enumerate(cfg.cobots.items()):
            owner = i == 0 and opts.owns_clock
            specs.append(
                NodeSpec(
                    executable="sim_cobot",
                    module="cobot_cell.ros.sim_cobot_node",
                    name="sim_cobot",
                    namespace=cfg.cobot_namespace(name),
                    parameters={
                        "joint_names": list(cobot.joints),
                        "initial_positions": [float(v) for v in cobot.home],
                        "io_names": [t.io for t in cobot.tools.values()] or [""],
                        "process_io": [t.io for t in cobot.tools.values() if t.is_process] or [""],
                        "heartbeat_topic": heartbeat_topic(cfg),
                        "controller": cobot.controller,
                        "publish_clock": owner,
                        "rate": float(opts.rate),
                        "use_sim_time": not owner,
                        # a respawned clock owner goes on from the last time it sent (docs/faults.md)
                        **({"clock_file": str(journal.with_suffix(".clock"))} if owner else {}),
                        **payload_params(cfg, name, opts.job),
                    },
                    respawn=respawn,
                )
            )
    if opts.sim and cfg.infeed_sensors:
        specs.append(
            NodeSpec(
                executable="sim_infeed",
                module="cobot_cell.ros.sim_infeed_node",
                name="sim_infeed",
                namespace="/" + cfg.cell.name,
                parameters={
                    "cell_file": str(Path(cell_file).resolve()),
                    "interval": float(opts.feed_interval),
                    "use_sim_time": True,
                },
                respawn=respawn,
            )
        )
    specs.append(
        NodeSpec(
            executable="task_planner",
            module="cobot_cell.ros.planner_node",
            name="task_planner",
            namespace="/" + cfg.cell.name,
            parameters={
                "cell_file": str(Path(cell_file).resolve()),
                "job": opts.job,
                "parts": int(opts.parts),
                "use_sim_time": sim_time,
                # the physics twin starts a move when it arrives and the planner waits for the arm's arrival
                "stamp_trajectories": opts.sim and opts.backend != "mujoco",
                # two wall seconds of planner lag keep event time at any rate
                "max_backdate": max(30.0, 2.0 * float(opts.rate)) if opts.sim else 30.0,
                "journal": str(Path(opts.journal).resolve()) if opts.journal else "",
                "max_parts_in_flight": int(opts.max_parts_in_flight),
            },
            respawn=respawn,
        )
    )
    if opts.pendant_port:
        specs.append(
            NodeSpec(
                executable="pendant_bridge",
                module="cobot_cell.ros.pendant_node",
                name="pendant_bridge",
                namespace="/" + cfg.cell.name,
                parameters={
                    "port": opts.pendant_port,
                    "enabling_device": bool(opts.enabling_device),
                    "use_sim_time": sim_time,
                },
                respawn=respawn,
            )
        )
    if opts.hmi:
        from ..hmi.tls import parse_address

        host, port = parse_address(opts.hmi)
        specs.append(
            NodeSpec(
                executable="hmi",
                module="cobot_cell.ros.hmi_node",
                name="hmi",
                namespace="/" + cfg.cell.name,
                parameters={
                    "cell_file": str(Path(cell_file).resolve()),
                    "host": host,
                    "port": port,
                    "db": str(Path(opts.db).resolve()) if opts.supervisor else "",
                    "insecure": bool(opts.hmi_insecure),
                    "cert": opts.hmi_cert,
                    "key": opts.hmi_key,
                    "users": str(Path(opts.users).resolve()) if opts.users else "",
                    "use_sim_time": sim_time,
                },
                respawn=respawn,
            )
        )
    if opts.foxglove >= 0 or opts.record:
        specs.append(
            NodeSpec(
                executable="foxglove",
                module="cobot_cell.ros.foxglove_node",
                name="foxglove",
                namespace="/" + cfg.cell.name,
                parameters={
                    "cell_file": str(Path(cell_file).resolve()),
                    "port": int(opts.foxglove),
                    "record": str(Path(opts.record).resolve()) if opts.record else "",
                    "use_sim_time": sim_time,
                },
                respawn=respawn,
            )
        )
    if opts.supervisor:
        specs.append(supervisor_spec(opts.db, [cfg.cell.name], respawn))
    specs += plant_specs([cfg.cell.name], [str(Path(cell_file).resolve())], opts)
    return specs


def twin_spec(
    cfg: CellConfig,
    cell_file: str | os.PathLike,
    opts: BringupOptions,
    journal: Path,
    respawn: RespawnPolicy = RespawnPolicy(),
) -> NodeSpec:
    """The physics sim driver of a whole cell (sim_cobot with backend mujoco), serving every cobot's topics."""
    return NodeSpec(
        executable="sim_cobot",
        module="cobot_cell.ros.sim_cobot_node",
        name="sim_twin",
        namespace="/" + cfg.cell.name,
        parameters={
            "backend": "mujoco",
            "cell_file": str(Path(cell_file).resolve()),
            "heartbeat_topic": heartbeat_topic(cfg),
            "publish_clock": opts.owns_clock,
            "rate": float(opts.rate),
            "use_sim_time": not opts.owns_clock,
            **({"clock_file": str(journal.with_suffix(".clock"))} if opts.owns_clock else {}),
        },
        respawn=respawn,
    )


def _respawn(opts: BringupOptions) -> RespawnPolicy:
    return RespawnPolicy(opts.respawn_delay, opts.respawn_max_retries)


def supervisor_spec(db: str | os.PathLike, cells: list[str], respawn: RespawnPolicy = RespawnPolicy()) -> NodeSpec:
    """The supervisor of some cells (it also finds cells that appear later)."""
    # wall time: the supervisor times nothing itself (reports carry their clock times), and following /clock
    # would wake it on every tick for nothing
    return NodeSpec(
        executable="supervisor",
        module="cobot_cell.ros.supervisor_node",
        name="supervisor",
        namespace="/",
        parameters={"db": str(Path(db).resolve()), "cells": list(cells), "use_sim_time": False},
        respawn=respawn,
    )


def plant_node_specs(plant: PlantConfig, opts: BringupOptions, work: str | os.PathLike) -> list[NodeSpec]:
    """A plant's node set on this computer: its local cells (the first owns /clock when simulated), one
    supervisor and the plant bridges for every cell; `opts` gives sim, rate, job and parts."""
    from ..skills import load_cell

    specs: list[NodeSpec] = []
    local = [c for c in plant.cells if c.local]
    for i, c in enumerate(local):
        cell_opts = replace(
            opts,
            supervisor=False,
            owns_clock=i == 0,
            opcua="",
            mqtt="",
            db=str(plant.db),
            job=opts.job if opts.job in c.jobs else "",
            journal=str(Path(work) / f"{c.name}.journal.db"),
        )
        specs += node_specs(load_cell(c.file), c.file, cell_opts)
    specs.append(supervisor_spec(plant.db, [c.name for c in plant.cells], _respawn(opts)))
    bridges = replace(
        opts,
        opcua=opts.opcua or plant.opcua,
        mqtt=opts.mqtt or plant.mqtt,
        users=opts.users or plant.users,
        mqtt_prefix=plant.prefix,
    )
    specs += plant_specs([c.name for c in plant.cells], [str(c.file) for c in plant.cells], bridges)
    return specs


def plant_specs(cells: list[str], cell_files: list[str], opts: BringupOptions) -> list[NodeSpec]:
    """The plant bridges for some cells: an opcua_bridge if opts.opcua, an mqtt_bridge if opts.mqtt."""
    specs = []
    if opts.opcua:
        specs.append(
            NodeSpec(
                executable="opcua_bridge",
                module="cobot_cell.ros.opcua_bridge",
                name="opcua_bridge",
                namespace="/",
                parameters={
                    "cells": list(cells),
                    "cell_files": list(cell_files) or [""],
                    "endpoint": opts.opcua,
                    "users": opts.users,
                    "allow_none": bool(opts.allow_none),
                    "use_sim_time": False,
                },
                respawn=_respawn(opts),
            )
        )
    if opts.mqtt:
        specs.append(
            NodeSpec(
                executable="mqtt_bridge",
                module="cobot_cell.ros.mqtt_bridge",
                name="mqtt_bridge",
                namespace="/",
                parameters={
                    "cells": list(cells),
                    "broker": opts.mqtt,
                    "prefix": opts.mqtt_prefix,
                    "use_sim_time": False,
                },
                respawn=_respawn(opts),
            )
        )
    return specs


def payload_params(cfg: CellConfig, cobot: str, job: str = "") -> dict[str, Any]:
    """The sim driver's payload report parameters: its gripper's mass and the part of the job it runs."""
    grippers = [t for t in cfg.cobots[cobot].tools.values() if t.kind == "gripper"]
    part = cfg.jobs[job or next(iter(cfg.jobs))].part
    if not grippers:
        return {}
    return {
        "tool_mass": float(grippers[0].mass or 0.0),
        "part_mass": float(part.mass) if part else 0.0,
        "part_io": grippers[0].io,
    }


def params_file(spec: NodeSpec, directory: str | os.PathLike) -> Path:
    """Write a ROS 2 parameters file for a node spec and return its path."""
    path = Path(directory) / f"{spec.fqn.strip('/').replace('/', '__')}.params.yaml"
    path.write_text(yaml.safe_dump({spec.fqn: {"ros__parameters": spec.parameters}}, sort_keys=False))
    return path


def command(spec: NodeSpec, params_path: str | os.PathLike, python: str = sys.executable) -> list[str]:
    """The process command that runs a node spec without `ros2 run` (this interpreter, module entry point)."""
    return [
        python,
        "-m",
        spec.module,
        "--ros-args",
        "-r",
        f"__node:={spec.name}",
        "-r",
        f"__ns:={spec.namespace}",
        "--params-file",
        str(params_path),
    ]
