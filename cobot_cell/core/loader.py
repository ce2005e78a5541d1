"""Reading a cell file: YAML text to a validated `CellConfig`, every problem a `ConfigIssue` naming the YAML path
(`jobs.bracket.steps[2].cobot`), the line where the file has it, and what was expected; `CellFileError` carries
them all.

The loader checks structure (pydantic, imported on first use) and references between sections. Which skills a
step may name is data the caller hands down (`skills`): the skills layer passes its registry's names
(`cobot_cell.skills.load_cell`), so this layer never imports it. Skill parameters are checked by the skills layer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .dag import find_cycle
from .model import ARM_DOF, NAME_HINT, NAME_RE, CellConfig
from .validation import validate


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


def issues_from_pydantic(errors: Sequence[Mapping[str, Any]], lines: LineIndex) -> list[ConfigIssue]:
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


def _issue_from_pydantic(err: Mapping[str, Any], lines: LineIndex) -> ConfigIssue:
    loc = tuple(err["loc"])
    conv = _PYDANTIC_MESSAGES.get(err["type"])
    msg = conv(err) if conv else err["msg"]
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if err["type"] not in _NO_INPUT and "input" in err:
        msg = f"{msg}, got {err['input']!r}"
    return ConfigIssue(format_path(loc), msg, lines.line(loc))


class LineIndex:
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


def parse_cell(
    text: str, source: str = "<cell file>", skills: Collection[str] | None = None
) -> tuple[CellConfig, LineIndex]:
    """Parse and validate YAML text; raise CellFileError listing every problem. `skills`: the skill names a step
    may name (None: not checked here)."""
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
    lines = LineIndex(root)
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
        raise CellFileError(source, duplicates + issues_from_pydantic(exc.errors(), lines)) from None
    issues = duplicates + check_references(cfg, lines, skills)
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


def load_cell_file(path: str | Path, skills: Collection[str] | None = None) -> CellConfig:
    """Read and validate a cell file (structure and references; the skill names if `skills` lists them; skill
    parameters are checked by the skills layer)."""
    return parse_cell(read_cell_text(path), str(path), skills)[0]


def check_references(
    cfg: CellConfig, lines: LineIndex | None = None, skills: Collection[str] | None = None
) -> list[ConfigIssue]:
    """Cross-checks pydantic cannot do alone: names, lengths, references between sections, cycles; each step's skill
    is one of `skills` (None: skill names are not checked)."""
    lines = lines or LineIndex(None)
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
            if skills is not None and step.skill not in skills:
                add((*at, "skill"), f"unknown skill '{step.skill}': expected one of {', '.join(skills)}")
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
