"""Motion plans as the planner dispatches them: moves, IO switches and dwells, in order, for one cobot."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class TrajectoryLike(Protocol):
    """What the core needs of a trajectory (cobot_cell.motion.trajectory.Trajectory fits)."""

    @property
    def duration(self) -> float: ...

    @property
    def final(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ProcessSpan:
    """Process work done along a move (the arc on along a weld seam): which item, which stretch of it.

    When the move is interrupted, `locate(q)` tells how far along the item the work got at the arm's measured
    joint positions q (and how far the tool is from the item's path), and `record(done)` the skill-state value
    that resumes it there.
    """

    key: str
    item: int
    start: float
    end: float
    locate: Callable[[np.ndarray], tuple[float, float]]
    record: Callable[[float], Any]
    tolerance: float = 0.003  # m: a tool farther than this from the item's path is not on it

    def reached(self, q: np.ndarray | None) -> float:
        """Distance along the item reached at joint positions q, within this span (its start when unknown)."""
        if q is None:
            return self.start
        return min(max(float(self.locate(np.asarray(q, dtype=float))[0]), self.start), self.end)


@dataclass(frozen=True)
class Move:
    """Follow a joint trajectory; done when the cobot has arrived at its final point."""

    trajectory: TrajectoryLike
    label: str = "move"
    process: ProcessSpan | None = None


@dataclass(frozen=True)
class SetIo:
    """Switch a tool output (std_srvs/SetBool service of the cobot), e.g. close the gripper.

    `process`: the output is a process tool's (the arc), so the segments between switching it on and off are
    process work that an interruption must stop and record. `confirmed`: a refused call is not a failure, the
    Confirm that follows decides (a driver in e-stop refuses IO calls but has switched the arc off itself).
    """

    tool: str
    io: str
    value: bool
    label: str = "io"
    process: bool = False
    confirmed: bool = False


@dataclass(frozen=True)
class Dwell:
    """Wait a fixed time (gas pre-flow, gripper settle) in clock seconds."""

    seconds: float
    label: str = "dwell"


@dataclass(frozen=True)
class Confirm:
    """Wait until a tool's sensed state equals `expected` (e.g. part present after gripping), else fail."""

    tool: str
    io: str
    expected: bool
    timeout: float = 0.5
    code: str = "GRIP_MISSED"
    label: str = "confirm"


MISSING = object()


class SkillState(dict[str, Any]):
    """The skills' explicit state (next pallet place, next weld seam), shared by the skills and the sequencer.

    While `recording()`, it notes every key read and the value seen, so a plan made ahead of time can be
    checked for staleness before it is used. Recordings nest: a read is noted by every recording under way.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._reads: list[dict[str, Any]] = []

    def _note(self, key: Any) -> None:
        if self._reads and isinstance(key, str):
            value = dict.get(self, key, MISSING)
            for reads in self._reads:
                reads.setdefault(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return dict.get(self, key, default)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return dict.__contains__(self, key)

    @contextmanager
    def recording(self) -> Iterator[dict[str, Any]]:
        """Record the keys read (and their values) inside the block."""
        reads: dict[str, Any] = {}
        self._reads.append(reads)
        try:
            yield reads
        finally:
            self._reads.remove(reads)

    def unchanged(self, reads: dict[str, Any]) -> bool:
        """Every recorded key still has the value that was read."""
        return all(dict.get(self, k, MISSING) == v for k, v in reads.items())


# Skill-state keys with this prefix belong to one part (e.g. the next weld seam); other keys belong to the cell
# (e.g. the next pallet place) and carry over across parts and runs. A skill reads and writes its part's keys as
# `part.<key>`; the sequencer stores them as `part.<n>.<key>` (`part_key`), so parts in flight never share them.
PART_STATE_PREFIX = "part."


def part_key(key: str, part: int) -> str:
    """Where a skill's `part.<key>` of part `part` is stored (other keys are the cell's and stay as they are)."""
    return f"{PART_STATE_PREFIX}{part}.{key[len(PART_STATE_PREFIX) :]}" if key.startswith(PART_STATE_PREFIX) else key


def pallet_key(station: str) -> str:
    """Skill-state key of a pallet station's fill: how many of its places are filled (its next place index); the
    cell's, kept across parts and runs until the operator confirms the pallet was changed."""
    return f"pallet.{station}.next"


def pallet_fill(state: Mapping[str, Any], station: str) -> int:
    """How many places of a pallet station are filled (its next place index), from the skill state."""
    return int(state.get(pallet_key(station), 0) or 0)


AT_KEY = PART_STATE_PREFIX + "at"
"""A part's skill-state key naming the limited station it is on ('' once lifted off)."""


def route_key(group: Sequence[str]) -> str:
    """A part's skill-state key naming which station of a group (`to: [a, b]`) it goes to."""
    return f"{PART_STATE_PREFIX}to.{'+'.join(group)}"


def part_prefix(part: int) -> str:
    """The stored skill-state keys of one part start with this."""
    return f"{PART_STATE_PREFIX}{part}."


class PartView:
    """One part's view of the skill state: `part.<key>` reads that part's own key, other keys the cell's."""

    def __init__(self, state: dict[str, Any], part: int):
        self.state = state
        self.part = part

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(part_key(key, self.part), default)

    def __getitem__(self, key: str) -> Any:
        return self.state[part_key(key, self.part)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and part_key(key, self.part) in self.state

    def __setitem__(self, key: str, value: Any) -> None:
        self.state[part_key(key, self.part)] = value


@dataclass(frozen=True)
class Checkpoint:
    """Record skill state when reached (pallet place filled, weld seam done); journalled at once, before the next
    segment is dispatched. `more` holds further (key, value) pairs recorded in the same transaction."""

    key: str
    value: object
    label: str = "checkpoint"
    more: tuple[tuple[str, object], ...] = ()

    def updates(self) -> dict[str, object]:
        """Every (key, value) this checkpoint records."""
        return {self.key: self.value, **dict(self.more)}


@dataclass(frozen=True)
class Claim:
    """Take a place on a station for the part before putting it down there: waits (the arm holding the part where
    it is, a pose outside shared zones) until the station has a free slot. The part occupies the station from here
    until a `Vacate` of it."""

    station: str
    label: str = "claim station"


@dataclass(frozen=True)
class Vacate:
    """The part has been lifted off a station: its slot there is free for the next part."""

    station: str
    label: str = "vacate station"


Segment = Move | SetIo | Dwell | Confirm | Checkpoint | Claim | Vacate


@dataclass(frozen=True)
class SkillPlan:
    """What one step does on its cobot: the segments, and where the arm ends up."""

    segments: tuple[Segment, ...]
    end_q: np.ndarray

    @property
    def duration(self) -> float:
        """Planned duration in clock seconds, counting IO switches as instantaneous."""
        return plan_duration(self.segments)


def plan_duration(segments: Sequence[Segment]) -> float:
    """Sum of move and dwell durations of a segment list."""
    total = 0.0
    for seg in segments:
        if isinstance(seg, Move):
            total += seg.trajectory.duration
        elif isinstance(seg, Dwell):
            total += seg.seconds
    return total
