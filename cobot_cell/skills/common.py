"""What every skill needs: the cobot's arm model and frames, tool lookup and the standard move builders."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.dag import station_group
from ..core.model import CellConfig, Cobot, Station, Tool
from ..core.plan import AT_KEY, Move, Segment, route_key
from ..core.validation import Checked
from ..motion.arms import arm_spec
from ..motion.kinematics import ArmModel, arm_model, fk, ik
from ..motion.trajectory import Trajectory, joint_move, linear_move
from ..motion.transforms import invert, pose_matrix, translation

# Tool pointing straight down in the cell frame (tool z = -world z).
DOWN = pose_matrix((0.0, 0.0, 0.0), (math.pi, 0.0, 0.0))


class ParamError(ValueError):
    """A step parameter that cannot work (a target out of reach, a speed the arm cannot do); `loc` is its path
    under the step's `params`, e.g. ('seams', 1)."""

    def __init__(self, loc: str | int | tuple[str | int, ...], message: str):
        self.loc: tuple[str | int, ...] = loc if isinstance(loc, tuple) else (loc,)
        super().__init__(message)


@contextlib.contextmanager
def blame(*loc: str | int) -> Iterator[None]:
    """Turn a ValueError raised inside into a ParamError naming the parameter at `loc` (kept if already one)."""
    try:
        yield
    except ParamError:
        raise
    except ValueError as exc:
        raise ParamError(loc, str(exc)) from None


class SkillParams(Checked):
    """Base of every skill's parameters (frozen dataclasses): unknown keys rejected, a field given by its alias
    or its name."""

    __pydantic_config__ = {"extra": "forbid", "populate_by_name": True, "allow_inf_nan": False}


@dataclass(frozen=True)
class SkillContext:
    """One cobot of one cell, as a skill plans for it."""

    cfg: CellConfig
    cobot_name: str

    @property
    def cobot(self) -> Cobot:
        """The cobot's configuration."""
        return self.cfg.cobots[self.cobot_name]

    @property
    def model(self) -> ArmModel:
        """Kinematic model of the arm, its joint ranges narrowed by the cell file's `limits.position`."""
        return limited_model(self.cobot.model, self.cobot.limits.position)

    @property
    def base_frame(self) -> np.ndarray:
        """The cobot's base pose in the cell frame (4x4)."""
        return pose_matrix(self.cobot.base.xyz, self.cobot.base.rpy)

    @property
    def v_max(self) -> np.ndarray:
        """Joint velocity limits (rad/s): the cell file's, else the model's published ones."""
        return np.asarray(self.cobot.limits.velocity or arm_spec(self.cobot.model).velocity, dtype=float)

    @property
    def a_max(self) -> np.ndarray:
        """Joint acceleration limits (rad/s^2): the cell file's, else the model's default."""
        return np.asarray(self.cobot.limits.acceleration or arm_spec(self.cobot.model).acceleration, dtype=float)

    @property
    def home(self) -> np.ndarray:
        """Home joint positions."""
        return np.asarray(self.cobot.home, dtype=float)

    def station(self, name: str) -> Station:
        """A station by name (KeyError if unknown; params validation checks names first)."""
        return self.cfg.stations[name]

    def tool(self, kind: str) -> tuple[str, Tool]:
        """The cobot's first tool of a kind; ValueError naming the cobot otherwise."""
        for name, tool in self.cobot.tools.items():
            if tool.kind == kind:
                return name, tool
        raise ValueError(f"cobot '{self.cobot_name}' has no {kind} tool")

    def flange_target(self, tcp_world: np.ndarray, tool: Tool) -> np.ndarray:
        """Flange pose in the cobot's base frame that puts the tool's TCP at a cell-frame pose."""
        target: np.ndarray = invert(self.base_frame) @ tcp_world @ invert(translation(*tool.tcp))
        return target

    def solve(self, tcp_world: np.ndarray, tool: Tool, seed: np.ndarray, what: str) -> np.ndarray:
        """Joint positions for a TCP pose; ValueError saying which target is out of reach."""
        try:
            return ik(self.model, self.flange_target(tcp_world, tool), seed)
        except ValueError as exc:
            xyz = np.round(tcp_world[:3, 3], 3).tolist()
            raise ValueError(f"{what} at {xyz} is not reachable by '{self.cobot_name}': {exc}") from None

    def joint_to(self, q0: np.ndarray, q1: np.ndarray, label: str) -> Move:
        """Synchronised joint move."""
        return Move(joint_move(q0, q1, self.v_max, self.a_max), label)

    def line_to(self, q0: np.ndarray, tcp_world: np.ndarray, tool: Tool, speed: float, label: str) -> Move:
        """Straight-line TCP move at a speed (m/s); the TCP stays on the line while the tool turns."""
        goal = invert(self.base_frame) @ tcp_world
        try:
            traj = linear_move(self.model, q0, goal, speed, self.v_max, self.a_max, tcp=translation(*tool.tcp))
        except ValueError as exc:
            raise ValueError(f"{label}: straight line not feasible for '{self.cobot_name}': {exc}") from None
        return Move(traj, label)


@functools.lru_cache(maxsize=64)
def limited_model(name: str, position: tuple[tuple[float, float], ...] | None) -> ArmModel:
    """The named arm model with each joint range intersected with [min, max] of `position` (None: unchanged)."""
    model = arm_model(name)
    if position is None:
        return model
    lo = tuple(max(a, p[0]) for a, p in zip(model.q_min, position))
    hi = tuple(min(b, p[1]) for b, p in zip(model.q_max, position))
    return dataclasses.replace(model, q_min=lo, q_max=hi)


def station_frame(station: Station) -> np.ndarray:
    """A station's pose in the cell frame as a 4x4 matrix."""
    return pose_matrix(station.pose.xyz, station.pose.rpy)


def tcp_down_at(frame: np.ndarray, offset: tuple[float, float, float], up: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """TCP pose pointing down at a point given in a station frame, lifted `up` metres along cell z."""
    p = frame @ np.array([offset[0], offset[1], offset[2], 1.0])
    rot = pose_matrix((0.0, 0.0, 0.0), (0.0, 0.0, yaw + math.atan2(frame[1, 0], frame[0, 0]))) @ DOWN
    out: np.ndarray = rot.copy()
    out[:3, 3] = p[:3] + np.array([0.0, 0.0, up])
    return out


def end_of(segments: list[Segment], q: np.ndarray) -> np.ndarray:
    """Joint positions after the last move of a segment list (q if there is none)."""
    for seg in reversed(segments):
        if isinstance(seg, Move):
            return np.asarray(seg.trajectory.final, dtype=float)
    return q


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


StationRef = str | tuple[str, ...]
"""A station parameter: one station, or a group of fixtures (the part goes to whichever is free)."""


def check_group(cfg: CellConfig, value: Any, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """Validate a station parameter (a name or a group of names); ValueError naming the problem."""
    names = station_group(value)
    if not names:
        raise ValueError("expected a station name or a list of station names")
    if len(set(names)) != len(names):
        raise ValueError(f"a station is named twice in the group {list(names)}")
    for name in names:
        check_station(cfg, name, kinds)
    if len(names) > 1:
        found = {n: cfg.stations[n].kind for n in names}
        if len(set(found.values())) > 1:
            raise ValueError("a station group mixes kinds: " + ", ".join(f"{n} is {_a(k)}" for n, k in found.items()))
        if next(iter(found.values())) not in ("fixture", "pallet"):
            raise ValueError(f"only fixtures or pallets can be grouped (these are {next(iter(found.values()))}s)")
    return names


def destination(value: StationRef, state: Any) -> str:
    """The station a part is put down on: the one named, or the one of a group the sequencer chose for it."""
    group = station_group(value)
    if len(group) == 1 or state is None:
        return group[0]
    chosen = state.get(route_key(group))
    return chosen if chosen in group else group[0]


def location(value: StationRef, state: Any) -> str:
    """The station a part is on: the one named, or the one of a group the part went to."""
    group = station_group(value)
    if len(group) == 1 or state is None:
        return group[0]
    at = state.get(AT_KEY)
    return at if at in group else destination(group, state)


def check_station(cfg: CellConfig, name: Any, kinds: tuple[str, ...]) -> str:
    """Validate a station reference; ValueError naming what was expected."""
    if name not in cfg.stations:
        raise ValueError(f"unknown station '{name}': expected one of {', '.join(cfg.stations) or '(none)'}")
    kind = cfg.stations[name].kind
    if kind not in kinds:
        raise ValueError(f"station '{name}' is {_a(kind)}: expected {' or '.join(_a(k) for k in kinds)}")
    return str(name)


__all__ = [
    "ParamError",
    "blame",
    "SkillParams",
    "SkillContext",
    "station_frame",
    "tcp_down_at",
    "end_of",
    "check_station",
    "fk",
    "Trajectory",
    "StationRef",
    "check_group",
    "destination",
    "location",
]
