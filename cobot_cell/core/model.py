"""The cell file's data model: cobots, tools, stations, zones and jobs as frozen dataclasses that say how pydantic
checks them (`core.validation`); the pallet a station stacks on is `core.pallet_spec`.

Reading a file into these types, with every problem named by its YAML path and line, is `core.loader`; walks of
a job's step graph are `core.dag`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, MinLen

from .faults import FaultPolicy
from .pallet_spec import BoxSize, PalletSpec
from .validation import After, Checked, PositiveFloat, PositiveInt

ARM_DOF = {"ur3e": 6, "ur5e": 6, "ur7e": 6, "ur10e": 6, "ur12e": 6, "ur15": 6, "ur16e": 6, "ur20": 6, "ur30": 6}
"""Joints per known arm model; the models' data is cobot_cell.motion.arms.ARMS (the same names)."""
ArmModelName = Literal["ur3e", "ur5e", "ur7e", "ur10e", "ur12e", "ur15", "ur16e", "ur20", "ur30"]
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NAME_HINT = "a name of letters, digits and underscores starting with a letter"
_TOKEN = r"[A-Za-z][A-Za-z0-9_]*"
RELATIVE_NAME_RE = re.compile(rf"^{_TOKEN}(/{_TOKEN})*$")
RELATIVE_NAME_HINT = "names of letters, digits and underscores starting with a letter, separated by '/'"


def _relative_ros_name(v: str) -> str:
    if not RELATIVE_NAME_RE.match(v):
        raise ValueError(f"expected a relative ROS name ({RELATIVE_NAME_HINT}), got {v!r}")
    return v


def _namespace(v: str | None) -> str | None:
    if v is not None and not RELATIVE_NAME_RE.match(v.removeprefix("/")):
        raise ValueError(f"expected a ROS namespace ({RELATIVE_NAME_HINT}; may start with '/'), got {v!r}")
    return v


def _cell_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"expected {NAME_HINT}, got {v!r}")
    return v


@dataclass(frozen=True, kw_only=True)
class Pose(Checked):
    """Position (m) and fixed-axis roll/pitch/yaw (rad) in the parent frame."""

    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, kw_only=True)
class Limits(Checked):
    """Per-joint velocity (rad/s) and acceleration (rad/s^2) limits, and optional position ranges (rad) that
    narrow the arm model's own (e.g. to keep cables from winding up); a limit not given is the model's."""

    velocity: tuple[PositiveFloat, ...] | None = None
    acceleration: tuple[PositiveFloat, ...] | None = None
    position: tuple[tuple[float, float], ...] | None = None


def _one_shape(v: Any) -> Any:
    if v is not None and (v.box is None) == (v.cylinder is None):
        raise ValueError("expected one of box: [x, y, z] or cylinder: [radius, length] (m)")
    return v


def _increasing_offsets(v: Any) -> Any:
    if v is not None and (not v or any(b[0] <= a[0] for a, b in zip(v, v[1:]))):
        raise ValueError("expected [offset m, payload kg] points with increasing offsets")
    return v


@dataclass(frozen=True, kw_only=True)
class ToolShape(Checked):
    """A tool's collision shape in the flange frame: a box [x, y, z] or a cylinder [radius, length] along z (m),
    starting at the flange."""

    box: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    cylinder: tuple[PositiveFloat, PositiveFloat] | None = None


@dataclass(frozen=True, kw_only=True)
class Tool(Checked):
    """An end-of-arm tool switched through a std_srvs/SetBool service relative to the cobot's namespace."""

    kind: Literal["gripper", "torch"]
    io: Annotated[str, After(_relative_ros_name)]
    tcp: tuple[float, float, float] = (0.0, 0.0, 0.0)
    confirm: bool = False
    mass: Annotated[float, Ge(0.0)] | None = None
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape: Annotated[ToolShape | None, After(_one_shape)] = None
    process: bool | None = field(
        default=None,
        metadata={
            "description": (
                "a process tool (the welding arc): switched off and confirmed off on its state topic before any "
                "unplanned motion; default: true for a torch, false otherwise"
            )
        },
    )

    @property
    def is_process(self) -> bool:
        """The tool does process work that must stop whenever the cell stops moving (a torch by default)."""
        return self.kind == "torch" if self.process is None else self.process


@dataclass(frozen=True, kw_only=True)
class PartType(Checked):
    """What a job handles: the part's mass (kg) and its box (m); the payload check, the pallet and the sim use it."""

    mass: PositiveFloat
    box: BoxSize | None = None


@dataclass(frozen=True, kw_only=True)
class Cobot(Checked):
    """One collaborative arm driven through a ros2_control-style interface."""

    model: ArmModelName = "ur5e"
    joints: tuple[str, ...]
    base: Pose = Pose()
    home: tuple[float, ...]
    limits: Limits = Limits()
    tools: dict[str, Tool] = field(default_factory=dict)
    namespace: Annotated[str | None, After(_namespace)] = None
    controller: Annotated[str, After(_relative_ros_name)] = "joint_trajectory_controller"
    payload_curve: Annotated[
        tuple[tuple[Annotated[float, Ge(0.0)], Annotated[float, Ge(0.0)]], ...] | None, After(_increasing_offsets)
    ] = None


def _infeed_sensor(v: str | None, fields: dict[str, Any]) -> str | None:
    if v is None:
        return v
    if fields.get("kind", "infeed") != "infeed":
        raise ValueError(f"only an infeed has a part-present sensor; this station is a {fields['kind']}")
    return _relative_ros_name(v)


@dataclass(frozen=True, kw_only=True)
class Station(Checked):
    """A place in the cell: infeed, fixture or pallet, with its pose in the cell frame.

    A pallet station's pose is the centre of the pallet deck's top face, x along the pallet length.
    """

    kind: Literal["infeed", "fixture", "pallet"]
    pose: Pose
    pallet: PalletSpec | None = None
    capacity: PositiveInt | None = None
    sensor: Annotated[str | None, After(_infeed_sensor, fields=True)] = field(
        default=None,
        metadata={
            "description": (
                "an infeed's part-present sensor: a std_msgs/Bool topic relative to the cell's namespace, true while "
                "a part waits there; a new part starts only when the sensor shows one (EquipmentStarved otherwise)"
            )
        },
    )
    legacy_pattern: Any = field(default=None, metadata={"alias": "pattern"})  # the pre-PalletSpec key: an error

    @property
    def slots(self) -> int | None:
        """How many parts the station holds at once: a fixture its `capacity` (default 1); an infeed supplies
        parts and a pallet's places are its pattern's, so neither is a limited resource (None)."""
        if self.kind != "fixture":
            return None
        return 1 if self.capacity is None else self.capacity


@dataclass(frozen=True, kw_only=True)
class Box(Checked):
    """An axis-aligned box in the cell frame: its lower and upper corners (m)."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class Zone(Checked):
    """A shared workspace volume that at most one cobot may be inside at once: an axis-aligned `box` in the cell
    frame, or the `stations` it covers (each station's box: `margin` m around its origin in x and y, from
    `margin` m below it to `height` m above it)."""

    box: Box | None = None
    stations: tuple[str, ...] = ()
    margin: PositiveFloat = 0.2
    height: PositiveFloat = 0.45

    def boxes(
        self, stations: dict[str, Station]
    ) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
        """The zone's volume as (min corner, max corner) boxes in the cell frame."""
        if self.box is not None:
            return [(self.box.min, self.box.max)]
        out = []
        for name in self.stations:
            x, y, z = stations[name].pose.xyz
            m = self.margin
            out.append(((x - m, y - m, z - m), (x + m, y + m, z + self.height)))
        return out


@dataclass(frozen=True, kw_only=True)
class Step(Checked):
    """One skill of a job, run by one cobot once the steps it comes `after` are done."""

    name: str
    skill: str
    cobot: str
    params: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    fault_policy: FaultPolicy | None = None


@dataclass(frozen=True, kw_only=True)
class Job(Checked):
    """A job: a DAG of steps run once per part."""

    description: str = ""
    steps: Annotated[tuple[Step, ...], MinLen(1)]
    fault_policy: FaultPolicy | None = None
    part: PartType | None = None

    def step(self, name: str) -> Step:
        """The step called `name`."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True, kw_only=True)
class CellInfo(Checked):
    """Cell identity; the name is the ROS namespace of the cell's planner."""

    name: Annotated[str, After(_cell_name)]
    description: str = ""
    max_parts_in_flight: PositiveInt | None = field(
        default=None,
        metadata={
            "description": (
                "work-in-process limit: parts started and not yet finished (default: the fixtures' total capacity)"
            )
        },
    )
    resource_timeout: PositiveFloat = field(
        default=300.0,
        metadata={
            "description": ("clock seconds a step may wait for a station or zone before a RESOURCE_TIMEOUT fault")
        },
    )
    sim_backend: Literal["kinematic", "mujoco"] = field(
        default="kinematic",
        metadata={
            "description": (
                "the simulation `cobot-cell up`/`demo` and the launch file run unless told otherwise: kinematic "
                "(trajectories followed exactly) or mujoco (the physics twin)"
            )
        },
    )


@dataclass(frozen=True, kw_only=True)
class CellConfig(Checked):
    """A whole cell file."""

    cell: CellInfo
    cobots: Annotated[dict[str, Cobot], MinLen(1)]
    stations: dict[str, Station] = field(default_factory=dict)
    zones: dict[str, Zone] = field(default_factory=dict)
    jobs: Annotated[dict[str, Job], MinLen(1)]

    @property
    def max_parts_in_flight(self) -> int:
        """The work-in-process limit: `cell.max_parts_in_flight`, else the fixtures' total capacity (at least 1)."""
        if self.cell.max_parts_in_flight is not None:
            return self.cell.max_parts_in_flight
        return max(1, sum(st.slots or 0 for st in self.stations.values()))

    @property
    def infeed_sensors(self) -> dict[str, str]:
        """Each infeed with a part-present sensor -> the sensor's topic (relative to the cell's namespace)."""
        return {n: st.sensor for n, st in self.stations.items() if st.kind == "infeed" and st.sensor}

    def cobot_namespace(self, cobot: str) -> str:
        """Absolute ROS namespace of a cobot's driver (default `/<cobot name>`)."""
        ns = self.cobots[cobot].namespace or cobot
        return ns if ns.startswith("/") else "/" + ns
