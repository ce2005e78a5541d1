"""Cell file model: the YAML that describes cobots, stations and jobs, validated into frozen models.

Every problem is reported as a `ConfigIssue` naming the YAML path (`jobs.bracket.steps[2].cobot`), the line
where the file has it, and what was expected. `load_cell_file` raises `CellFileError` carrying all of them.
Skill parameters are checked by the skills layer (`cobot_cell.skills.load_cell`), which builds on this module.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator

from .faults import FaultPolicy

log = logging.getLogger(__name__)

KNOWN_SKILLS = ("pick", "weld", "palletise")
ARM_DOF = {"ur5e": 6}
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


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pose(_Frozen):
    """Position (m) and fixed-axis roll/pitch/yaw (rad) in the parent frame."""

    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


class Limits(_Frozen):
    """Per-joint velocity (rad/s) and acceleration (rad/s^2) limits."""

    velocity: tuple[PositiveFloat, ...]
    acceleration: tuple[PositiveFloat, ...]


class Tool(_Frozen):
    """An end-of-arm tool switched through a std_srvs/SetBool service relative to the cobot's namespace."""

    kind: Literal["gripper", "torch"]
    io: str
    tcp: tuple[float, float, float] = (0.0, 0.0, 0.0)
    confirm: bool = False

    @field_validator("io")
    @classmethod
    def _io_name(cls, v: str) -> str:
        return _relative_ros_name(v)


class Cobot(_Frozen):
    """One collaborative arm driven through a ros2_control-style interface."""

    model: Literal["ur5e"] = "ur5e"
    joints: tuple[str, ...]
    base: Pose = Pose()
    home: tuple[float, ...]
    limits: Limits
    tools: dict[str, Tool] = Field(default_factory=dict)
    namespace: str | None = None
    controller: str = "joint_trajectory_controller"

    @field_validator("controller")
    @classmethod
    def _controller_name(cls, v: str) -> str:
        return _relative_ros_name(v)

    @field_validator("namespace")
    @classmethod
    def _ros_namespace(cls, v: str | None) -> str | None:
        if v is not None and not RELATIVE_NAME_RE.match(v.removeprefix("/")):
            raise ValueError(f"expected a ROS namespace ({RELATIVE_NAME_HINT}; may start with '/'), got {v!r}")
        return v


class PalletPattern(_Frozen):
    """A column pattern: rows x columns places per layer at a pitch (m), stacked in layers."""

    rows: PositiveInt
    columns: PositiveInt
    pitch: tuple[PositiveFloat, PositiveFloat]
    layers: PositiveInt = 1
    layer_height: PositiveFloat

    @property
    def places(self) -> int:
        """Number of place positions on a full pallet."""
        return self.rows * self.columns * self.layers


class Station(_Frozen):
    """A place in the cell: infeed, fixture or pallet, with its pose in the cell frame."""

    kind: Literal["infeed", "fixture", "pallet"]
    pose: Pose
    pattern: PalletPattern | None = None


class Step(_Frozen):
    """One skill of a job, run by one cobot once the steps it comes `after` are done."""

    name: str
    skill: str
    cobot: str
    params: dict[str, Any] = Field(default_factory=dict)
    after: tuple[str, ...] = ()
    fault_policy: FaultPolicy | None = None


class Job(_Frozen):
    """A job: a DAG of steps run once per part."""

    description: str = ""
    steps: tuple[Step, ...] = Field(min_length=1)
    fault_policy: FaultPolicy | None = None

    def step(self, name: str) -> Step:
        """The step called `name`."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


class CellInfo(_Frozen):
    """Cell identity; the name is the ROS namespace of the cell's planner."""

    name: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _ros_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"expected {NAME_HINT}, got {v!r}")
        return v


class CellConfig(_Frozen):
    """A whole cell file."""

    cell: CellInfo
    cobots: dict[str, Cobot] = Field(min_length=1)
    stations: dict[str, Station] = Field(default_factory=dict)
    jobs: dict[str, Job] = Field(min_length=1)

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


_PYDANTIC_MESSAGES = {
    "extra_forbidden": lambda e: "unknown key",
    "missing": lambda e: "missing required key",
    "literal_error": lambda e: f"got {e['input']!r}: {e['msg'].lower()}",
}


def _issues_from_pydantic(errors: list[dict[str, Any]], lines: "_LineIndex") -> list[ConfigIssue]:
    """Issues for pydantic errors; a fixed-length list that is too short or too long is one issue."""

    def missing_item(err: dict[str, Any]) -> bool:
        loc = err["loc"]
        return err["type"] == "missing" and bool(loc) and isinstance(loc[-1], int) and isinstance(err["input"], list)

    expected: dict[tuple[Any, ...], int] = {}
    for err in filter(missing_item, errors):
        parent = tuple(err["loc"][:-1])
        expected[parent] = max(expected.get(parent, 0), err["loc"][-1] + 1)
    issues: list[ConfigIssue] = []
    for err in errors:
        loc = tuple(err["loc"])
        if missing_item(err):
            if loc[:-1] in expected:
                n = expected.pop(loc[:-1])
                issues.append(ConfigIssue(format_path(loc[:-1]), f"expected {n} values, got {len(err['input'])}",
                                          lines.line(loc[:-1])))
        elif err["type"] == "too_long" and err.get("ctx", {}).get("field_type") == "Tuple":
            n, got = err["ctx"]["max_length"], err["ctx"]["actual_length"]
            issues.append(ConfigIssue(format_path(loc), f"expected {n} values, got {got}", lines.line(loc)))
        elif err["type"] == "too_short":
            n, got = err["ctx"]["min_length"], err["ctx"]["actual_length"]
            issues.append(ConfigIssue(format_path(loc), f"expected at least {n} entr{'y' if n == 1 else 'ies'}, "
                                      f"got {got}", lines.line(loc)))
        else:
            issues.append(_issue_from_pydantic(err, lines))
    return issues


def _issue_from_pydantic(err: dict[str, Any], lines: "_LineIndex") -> ConfigIssue:
    loc = tuple(err["loc"])
    conv = _PYDANTIC_MESSAGES.get(err["type"])
    msg = conv(err) if conv else err["msg"]
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if err["type"] not in ("missing", "extra_forbidden", "value_error", "literal_error") and "input" in err:
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


def _duplicate_keys(node: yaml.Node | None, loc: tuple[Any, ...] = (),
                    seen: set[int] | None = None) -> list[ConfigIssue]:
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
                issues.append(ConfigIssue(format_path((*loc, k.value)),
                                          f"duplicate key (first on line {first[k.value]})", line))
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
            source, [ConfigIssue("", f"expected a mapping with keys cell, cobots, stations, jobs; got {type(data).__name__}")]
        )
    try:
        cfg = CellConfig.model_validate(data)
    except ValidationError as exc:
        raise CellFileError(source, duplicates + _issues_from_pydantic(exc.errors(), lines)) from None
    issues = duplicates + check_references(cfg, lines)
    if issues:
        raise CellFileError(source, issues)
    return cfg, lines


def load_cell_file(path: str | Path) -> CellConfig:
    """Read and validate a cell file (structure and references; skill parameters are checked by skills)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CellFileError(str(path), [ConfigIssue("", f"cannot read file: {exc.strerror}")]) from None
    return parse_cell(text, str(path))[0]


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
        for key, values in (("joints", cobot.joints), ("home", cobot.home),
                            ("limits.velocity", cobot.limits.velocity),
                            ("limits.acceleration", cobot.limits.acceleration)):
            if len(values) != dof:
                add(("cobots", name, *key.split(".")), f"expected {dof} values for a {cobot.model}, got {len(values)}")
        if len(set(cobot.joints)) != len(cobot.joints):
            add(("cobots", name, "joints"), "joint names must be unique")
    all_joints: dict[str, str] = {}
    for name, cobot in cfg.cobots.items():
        for j in cobot.joints:
            if j in all_joints and all_joints[j] != name:
                add(("cobots", name, "joints"), f"joint '{j}' is also a joint of cobot '{all_joints[j]}'")
            all_joints[j] = name
    for name, st in cfg.stations.items():
        if st.kind == "pallet" and st.pattern is None:
            add(("stations", name, "pattern"), "a pallet station needs a pattern")
        if st.kind != "pallet" and st.pattern is not None:
            add(("stations", name, "pattern"), f"only a pallet station has a pattern (this one is {st.kind})")
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
                    add(("jobs", jname, "steps", i, "after", k),
                        f"unknown step '{dep}': expected one of {', '.join(seen)}")
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
                cyc = stack[stack.index(d):] + [d]
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
