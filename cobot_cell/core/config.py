"""Cell file model: the YAML that describes cobots, stations and jobs, validated into frozen dataclasses.

Every problem is reported as a `ConfigIssue` naming the YAML path (`jobs.bracket.steps[2].cobot`), the line
where the file has it, and what was expected. `load_cell_file` raises `CellFileError` carrying all of them.
Skill parameters are checked by the skills layer (`cobot_cell.skills.load_cell`), which builds on this module.
Validation is pydantic's (`core.validation`), imported by `parse_cell` on first use: the types alone do not need it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, MinLen

from .faults import FaultPolicy
from .validation import After, Checked, Plain, PositiveFloat, PositiveInt, validate

log = logging.getLogger(__name__)

KNOWN_SKILLS = ("pick", "weld", "palletise")
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


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a cell file: where it is and what was expected."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "<top>"
        if self.line:
            where = f"{self.path} (line {self.line})" if self.path else f"line {self.line}"
        return f"{where}: {self.message}"


class CellFileError(ValueError):
    """A cell file that cannot be used; `issues` lists every problem found."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]):
        self.source = source
        self.issues = list(issues)
        n = len(self.issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"{source}: {n} error{'s' if n != 1 else ''}\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (CellFileError, (self.source, self.issues))


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


# ---------------------------------------------------------------------------------------------- pallets
# The pallet a station stacks boxes on. The layout algorithm (places, order, figures) is
# cobot_cell.skills.pallet_pattern; the conventions (frames, label end, approach side) are described there.

STANDARD_PALLETS: dict[str, tuple[float, float, float]] = {
    "EUR": (1.200, 0.800, 0.144),  # EN 13698-1
    "US": (1.219, 1.016, 0.140),  # GMA 48 x 40 in, about 5.5 in high
}
CUSTOM_PALLET_HEIGHT = 0.144
_PALLET_EPS = 1e-9  # relative slack when a box fits a span, absolute slack for heights (m)

PatternName = Literal["column", "interlock", "pinwheel"]
ApproachSide = Literal["-y", "+y", "-x", "+x"]


@dataclass(frozen=True, kw_only=True)
class PalletSize(Checked):
    """A custom pallet deck, length (along x) by width (along y), in m."""

    length: PositiveFloat
    width: PositiveFloat


@dataclass(frozen=True, kw_only=True)
class BoxSize(Checked):
    """A box, length by width by height, in m; the label is on the face at the end of its length."""

    length: PositiveFloat
    width: PositiveFloat
    height: PositiveFloat


def pallet_dims(pallet: str | PalletSize) -> tuple[str, float, float]:
    """('EUR' | 'US' | 'custom', length, width) of a pallet (m)."""
    if isinstance(pallet, str):
        length, width, _ = STANDARD_PALLETS[pallet]
        return (pallet, length, width)
    return ("custom", pallet.length, pallet.width)


def _pallet(v: Any) -> str | PalletSize:
    if isinstance(v, str):
        if v not in STANDARD_PALLETS:
            raise ValueError(f"expected 'EUR', 'US' or {{length, width}} in m, got {v!r}")
        return v
    if isinstance(v, (dict, PalletSize)):
        return validate(PalletSize, v)
    raise ValueError(f"expected 'EUR', 'US' or {{length, width}} in m, got {v!r}")


def _box_fits(box: BoxSize, d: dict[str, Any]) -> BoxSize:
    if "pallet" not in d or "overhang" not in d:
        return box
    name, length, width = pallet_dims(d["pallet"])
    o, e = d["overhang"], _PALLET_EPS
    fits = [
        box.length <= length + 2 * o + e and box.width <= width + 2 * o + e,
        box.width <= length + 2 * o + e and box.length <= width + 2 * o + e,
    ]
    if not any(fits):
        with_overhang = f" with {o:.3f} m overhang" if o > 0 else ""
        raise ValueError(
            f"box {box.length:.3f} x {box.width:.3f} m does not fit on the {name} pallet "
            f"{length:.3f} x {width:.3f} m in either orientation{with_overhang}"
        )
    return box


def _one_layer(max_height: float, d: dict[str, Any]) -> float:
    box = d.get("box")
    if box is not None and box.height > max_height + _PALLET_EPS:
        raise ValueError(f"{max_height:.3f} m is below the box height {box.height:.3f} m: not even one layer fits")
    return max_height


def _layers_fit(layers: int | None, d: dict[str, Any]) -> int | None:
    if layers is None or not all(k in d for k in ("box", "max_height", "slip_sheets", "slip_sheet_thickness")):
        return layers
    sheet = d["slip_sheet_thickness"] if d["slip_sheets"] else 0.0
    reach = layers * d["box"].height + (layers - 1) * sheet
    if reach > d["max_height"] + _PALLET_EPS:
        sheets = " (+ slip sheets)" if d["slip_sheets"] else ""
        raise ValueError(
            f"{layers} layers of {d['box'].height:.3f} m{sheets} reach {reach:.3f} m, "
            f"above max_height {d['max_height']:.3f} m"
        )
    return layers


def _doc(text: str) -> dict[str, str]:
    return {"description": text}


@dataclass(frozen=True, kw_only=True)
class PalletSpec(Checked):
    """A pallet, the box stacked on it and the pattern, as written under `stations.<name>.pallet`."""

    # Field order matters: the cross-field checks read only fields declared before them.
    pallet: Annotated[Literal["EUR", "US"] | PalletSize, Plain(_pallet)] = field(
        default="EUR", metadata=_doc("'EUR' (1.200 x 0.800 m), 'US' (1.219 x 1.016 m) or a custom {length, width} in m")
    )
    pallet_height: PositiveFloat | None = field(
        default=None, metadata=_doc("deck height above the floor (m); default EUR 0.144, US 0.140, custom 0.144")
    )
    overhang: Annotated[float, Ge(0.0)] = field(
        default=0.0, metadata=_doc("how far a box may reach past each pallet edge (m)")
    )
    gap: Annotated[float, Ge(0.0)] = field(default=0.0, metadata=_doc("space kept between neighbouring boxes (m)"))
    box: Annotated[BoxSize, After(_box_fits, fields=True)] = field(
        metadata=_doc("box length, width, height (m); the label is on the +x (length) end")
    )
    pattern: PatternName = field(default="column", metadata=_doc("column, interlock or pinwheel"))
    max_height: Annotated[PositiveFloat, After(_one_layer, fields=True)] = field(
        metadata=_doc("stack height limit above the pallet deck (m)")
    )
    slip_sheets: bool = field(default=False, metadata=_doc("lay a slip sheet between layers"))
    slip_sheet_thickness: PositiveFloat = field(default=0.002, metadata=_doc("slip sheet thickness (m)"))
    layers: Annotated[PositiveInt | None, After(_layers_fit, fields=True)] = field(
        default=None, metadata=_doc("number of layers; default: as many as fit max_height")
    )
    label_out: bool = field(default=False, metadata=_doc("turn boxes so labels face the nearer pallet edge"))
    mirror: bool = field(
        default=False, metadata=_doc("mirror the pattern about the pallet's y axis (right-hand pallet)")
    )
    approach_side: ApproachSide = field(default="-y", metadata=_doc("side of the pallet the gripper comes in from"))

    @property
    def pallet_name(self) -> str:
        """'EUR', 'US' or 'custom'."""
        return pallet_dims(self.pallet)[0]

    @property
    def pallet_size(self) -> tuple[float, float]:
        """Pallet deck length and width (m)."""
        _, length, width = pallet_dims(self.pallet)
        return (length, width)

    @property
    def deck_height(self) -> float:
        """Height of the pallet deck above the floor (m): `pallet_height` or the pallet's standard height."""
        if self.pallet_height is not None:
            return self.pallet_height
        return STANDARD_PALLETS[self.pallet][2] if isinstance(self.pallet, str) else CUSTOM_PALLET_HEIGHT

    @property
    def sheet(self) -> float:
        """Thickness of the slip sheet laid between layers (m), 0 without slip sheets."""
        return self.slip_sheet_thickness if self.slip_sheets else 0.0

    def stack_height(self, layers: int) -> float:
        """Height of `layers` layers with their slip sheets above the deck (m)."""
        return layers * self.box.height + max(layers - 1, 0) * self.sheet

    @property
    def layer_count(self) -> int:
        """`layers` if given, else as many layers as fit under `max_height`."""
        if self.layers is not None:
            return self.layers
        return max(1, math.floor((self.max_height + self.sheet + _PALLET_EPS) / (self.box.height + self.sheet)))


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

    def cobot_namespace(self, cobot: str) -> str:
        """Absolute ROS namespace of a cobot's driver (default `/<cobot name>`)."""
        ns = self.cobots[cobot].namespace or cobot
        return ns if ns.startswith("/") else "/" + ns


# ---------------------------------------------------------------------------------------------- loading


def format_path(loc: Sequence[Any]) -> str:
    """`('jobs', 'bracket', 'steps', 2, 'cobot')` -> `jobs.bracket.steps[2].cobot`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_PYDANTIC_MESSAGES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "extra_forbidden": lambda e: "unknown key",
    "unexpected_keyword_argument": lambda e: "unknown key",  # a key that is not a field of a dataclass
    "dataclass_type": lambda e: f"input should be a valid dictionary or instance of {e['ctx']['class_name']}",
    "missing": lambda e: "missing required key",
    "literal_error": lambda e: f"got {e['input']!r}: {e['msg'].lower()}",
    "finite_number": lambda e: "must be a finite number",  # nan or inf: not "should be <= 0.2, got nan"
}
_NO_INPUT = ("missing", "extra_forbidden", "unexpected_keyword_argument", "value_error", "literal_error")
"""Error types whose message is not followed by the input (`, got ...`)."""


def _issues_from_pydantic(errors: Sequence[Mapping[str, Any]], lines: _LineIndex) -> list[ConfigIssue]:
    """Issues for pydantic errors; a fixed-length list that is too short or too long is one issue."""

    def missing_item(err: Mapping[str, Any]) -> bool:
        loc = err["loc"]
        return err["type"] == "missing" and bool(loc) and isinstance(loc[-1], int) and isinstance(err["input"], list)

    expected: dict[tuple[Any, ...], int] = {}
    for err in [e for e in errors if missing_item(e)]:
        parent = tuple(err["loc"][:-1])
        expected[parent] = max(expected.get(parent, 0), err["loc"][-1] + 1)
    # A list whose items failed is reported by those items, not also as "too short" (pydantic counts only the
    # items that validated).
    item_errors = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
    errors = [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in item_errors)]
    issues: list[ConfigIssue] = []
    for err in errors:
        loc = tuple(err["loc"])
        if missing_item(err):
            if loc[:-1] in expected:
                n = expected.pop(loc[:-1])
                issues.append(
                    ConfigIssue(
                        format_path(loc[:-1]), f"expected {n} values, got {len(err['input'])}", lines.line(loc[:-1])
                    )
                )
        elif err["type"] == "too_long" and err.get("ctx", {}).get("field_type") == "Tuple":
            n, got = err["ctx"]["max_length"], err["ctx"]["actual_length"]
            issues.append(ConfigIssue(format_path(loc), f"expected {n} values, got {got}", lines.line(loc)))
        elif err["type"] == "too_short":
            n, got = err["ctx"]["min_length"], err["ctx"]["actual_length"]
            issues.append(
                ConfigIssue(
                    format_path(loc),
                    f"expected at least {n} entr{'y' if n == 1 else 'ies'}, got {got}",
                    lines.line(loc),
                )
            )
        else:
            issues.append(_issue_from_pydantic(err, lines))
    return issues


def _issue_from_pydantic(err: Mapping[str, Any], lines: _LineIndex) -> ConfigIssue:
    loc = tuple(err["loc"])
    conv = _PYDANTIC_MESSAGES.get(err["type"])
    msg = conv(err) if conv else err["msg"]
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if err["type"] not in _NO_INPUT and "input" in err:
        msg = f"{msg}, got {err['input']!r}"
    return ConfigIssue(format_path(loc), msg, lines.line(loc))


class _LineIndex:
    """Maps YAML paths to line numbers using the composed node tree."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, loc: Sequence[Any]) -> int | None:
        node = self.root
        found = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for k, v in node.value:
                    if k.value == str(part):
                        found, nxt = k.start_mark.line + 1, v
                        break
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                found = node.start_mark.line + 1
            else:
                break
            if node is None:
                break
        return found


def _duplicate_keys(
    node: yaml.Node | None, loc: tuple[Any, ...] = (), seen: set[int] | None = None
) -> list[ConfigIssue]:
    """Keys given twice in one mapping (YAML loaders silently keep the last one)."""
    issues: list[ConfigIssue] = []
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked
        return issues
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
                continue
            line = k.start_mark.line + 1
            if k.value in first:
                issues.append(
                    ConfigIssue(format_path((*loc, k.value)), f"duplicate key (first on line {first[k.value]})", line)
                )
            else:
                first[k.value] = line
            issues += _duplicate_keys(v, (*loc, k.value), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            issues += _duplicate_keys(item, (*loc, i), seen)
    return issues


def parse_cell(text: str, source: str = "<cell file>") -> tuple[CellConfig, _LineIndex]:
    """Parse and validate YAML text; raise CellFileError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            raise CellFileError(
                source, [ConfigIssue("", f"malformed YAML: {problem} (column {mark.column + 1})", mark.line + 1)]
            ) from None
        raise CellFileError(source, [ConfigIssue("", f"malformed YAML: {problem}")]) from None
    lines = _LineIndex(root)
    duplicates = _duplicate_keys(root)
    if not isinstance(data, dict):
        raise CellFileError(
            source,
            [ConfigIssue("", f"expected a mapping with keys cell, cobots, stations, jobs; got {type(data).__name__}")],
        )
    from pydantic import ValidationError

    try:
        cfg = validate(CellConfig, data)
    except ValidationError as exc:
        raise CellFileError(source, duplicates + _issues_from_pydantic(exc.errors(), lines)) from None
    issues = duplicates + check_references(cfg, lines)
    if issues:
        raise CellFileError(source, issues)
    return cfg, lines


def read_cell_text(path: str | Path) -> str:
    """The text of a cell file (UTF-8); CellFileError if it cannot be read or is not UTF-8 text."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CellFileError(str(path), [ConfigIssue("", f"cannot read file: {exc.strerror}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CellFileError(
            str(path),
            [
                ConfigIssue(
                    "",
                    f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (save the file as UTF-8)",
                    line,
                )
            ],
        ) from None


def load_cell_file(path: str | Path) -> CellConfig:
    """Read and validate a cell file (structure and references; skill parameters are checked by skills)."""
    return parse_cell(read_cell_text(path), str(path))[0]


def check_references(cfg: CellConfig, lines: _LineIndex | None = None) -> list[ConfigIssue]:
    """Cross-checks pydantic cannot do alone: names, lengths, references between sections, cycles."""
    lines = lines or _LineIndex(None)
    issues: list[ConfigIssue] = []

    def add(loc: tuple[Any, ...], msg: str) -> None:
        issues.append(ConfigIssue(format_path(loc), msg, lines.line(loc)))

    for name, cobot in cfg.cobots.items():
        if not NAME_RE.match(name):
            add(("cobots", name), f"bad cobot name: expected {NAME_HINT}")
        dof = ARM_DOF[cobot.model]
        for key, values in (
            ("joints", cobot.joints),
            ("home", cobot.home),
            ("limits.velocity", cobot.limits.velocity),
            ("limits.acceleration", cobot.limits.acceleration),
        ):
            if values is not None and len(values) != dof:
                add(("cobots", name, *key.split(".")), f"expected {dof} values for a {cobot.model}, got {len(values)}")
        if len(set(cobot.joints)) != len(cobot.joints):
            add(("cobots", name, "joints"), "joint names must be unique")
        position = cobot.limits.position
        if position is not None and len(position) != dof:
            add(
                ("cobots", name, "limits", "position"),
                f"expected {dof} [min, max] pairs for a {cobot.model}, got {len(position)}",
            )
        elif position is not None:
            for i, (lo, hi) in enumerate(position):
                if not lo < hi:
                    add(("cobots", name, "limits", "position", i), f"expected min < max, got [{lo:g}, {hi:g}]")
                elif i < len(cobot.home) and not lo <= cobot.home[i] <= hi:
                    add(
                        ("cobots", name, "home", i),
                        f"{cobot.home[i]:g} is outside limits.position[{i}] [{lo:g}, {hi:g}]",
                    )
    all_joints: dict[str, str] = {}
    for name, cobot in cfg.cobots.items():
        for j in cobot.joints:
            if j in all_joints and all_joints[j] != name:
                add(("cobots", name, "joints"), f"joint '{j}' is also a joint of cobot '{all_joints[j]}'")
            all_joints[j] = name
    for name, st in cfg.stations.items():
        if st.legacy_pattern is not None:
            add(
                ("stations", name, "pattern"),
                "replaced by 'pallet': a pallet, a box and a pattern name "
                "(column, interlock or pinwheel), see docs/cell-file.md",
            )
        elif st.kind == "pallet" and st.pallet is None:
            add(("stations", name, "pallet"), "a pallet station needs a pallet (pallet, box, max_height)")
        if st.kind != "pallet" and st.pallet is not None:
            add(("stations", name, "pallet"), f"only a pallet station has a pallet (this one is {st.kind})")
        if st.kind != "fixture" and st.capacity is not None:
            add(
                ("stations", name, "capacity"),
                f"only a fixture has a capacity (this one is {st.kind}: "
                + ("it supplies parts)" if st.kind == "infeed" else "its places are its pattern's)"),
            )
    for name, zone in cfg.zones.items():
        if not NAME_RE.match(name):
            add(("zones", name), f"bad zone name: expected {NAME_HINT}")
        if (zone.box is None) == (not zone.stations):
            add(("zones", name), "expected either a box (min, max) or the stations the zone covers")
        if zone.box is not None:
            corner_lo, corner_hi = zone.box.min, zone.box.max
            flat = [axis for axis, a, b in zip("xyz", corner_lo, corner_hi, strict=True) if not a < b]
            if flat:
                add(
                    ("zones", name, "box"),
                    f"the box has no volume: min must be below max in {', '.join(flat)} "
                    f"(min {list(corner_lo)}, max {list(corner_hi)})",
                )
        for k, covered in enumerate(zone.stations):
            if covered not in cfg.stations:
                add(
                    ("zones", name, "stations", k),
                    f"unknown station '{covered}': expected one of {', '.join(cfg.stations) or '(no stations)'}",
                )
        if len(set(zone.stations)) != len(zone.stations):
            add(("zones", name, "stations"), "a station is named twice")
    cobot_names = ", ".join(cfg.cobots)
    for jname, job in cfg.jobs.items():
        if not NAME_RE.match(jname):
            add(("jobs", jname), f"bad job name: expected {NAME_HINT}")
        seen: dict[str, int] = {}
        for i, step in enumerate(job.steps):
            at = ("jobs", jname, "steps", i)
            if step.name in seen:
                add((*at, "name"), f"duplicate step name '{step.name}' (also steps[{seen[step.name]}])")
            seen.setdefault(step.name, i)
            if step.skill not in KNOWN_SKILLS:
                add((*at, "skill"), f"unknown skill '{step.skill}': expected one of {', '.join(KNOWN_SKILLS)}")
            if step.cobot not in cfg.cobots:
                add((*at, "cobot"), f"unknown cobot '{step.cobot}': expected one of {cobot_names}")
        for i, step in enumerate(job.steps):
            for k, dep in enumerate(step.after):
                if dep not in seen:
                    add(
                        ("jobs", jname, "steps", i, "after", k),
                        f"unknown step '{dep}': expected one of {', '.join(seen)}",
                    )
                elif dep == step.name:
                    add(("jobs", jname, "steps", i, "after", k), f"step '{dep}' cannot come after itself")
        cycle = find_cycle(job) if len(seen) == len(job.steps) else None  # names must be unique first
        if cycle:
            add(("jobs", jname, "steps"), f"cycle in 'after': {' -> '.join(cycle)}")
    return issues


def find_cycle(job: Job) -> list[str] | None:
    """A cycle of step names in the `after` graph (first name repeated at the end), or None."""
    deps = {s.name: [d for d in s.after if d != s.name] for s in job.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in deps.get(n, []):
            if d not in deps:
                continue
            if state.get(d) == 1:
                cyc = stack[stack.index(d) :] + [d]
                return list(reversed(cyc))
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for name in deps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def station_group(value: Any) -> tuple[str, ...]:
    """A station parameter as a group: one name, or a list of names (any one of them)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


def routes_of(job: Job) -> dict[str, Any]:
    """Each step's route: the stations its `from` and `to` parameters name (a step that moves a part)."""
    from .sequencer import Route

    return {
        s.name: Route(source=station_group(s.params.get("from")), dest=station_group(s.params.get("to")))
        for s in job.steps
        if "to" in s.params or "from" in s.params
    }


def occupancy_windows(job: Job) -> dict[str, set[str]]:
    """For each station parts are put on and taken off: the steps that run while a part is on it (after the step
    that put it there, up to and including the step that takes it off). A cobot that waits for a place there waits
    for the cobots of these steps."""
    routes = routes_of(job)
    ancestors: dict[str, set[str]] = {}

    def up(name: str) -> set[str]:
        if name not in ancestors:
            ancestors[name] = set()
            for dep in job.step(name).after:
                ancestors[name] |= {dep} | up(dep)
        return ancestors[name]

    out: dict[str, set[str]] = {}
    for take, r in routes.items():
        for station in r.source:
            for put, r2 in routes.items():
                if station in r2.dest and put in up(take):
                    out.setdefault(station, set()).update({n for n in up(take) if put in up(n)} | {take})
    return out


def topological_order(job: Job) -> list[str]:
    """Step names in an order where every step follows its `after` steps (file order among equals)."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(job.steps)
    while pending:
        ready = [s for s in pending if all(d in done for d in s.after)]
        if not ready:
            raise ValueError(f"cycle in 'after': {' -> '.join(find_cycle(job) or [])}")
        for s in ready:
            order.append(s.name)
            done.add(s.name)
        pending = [s for s in pending if s.name not in done]
    return order
