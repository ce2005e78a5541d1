"""Ports: the clock and the cobots as the core sees them. ROS adapters and in-process fakes implement them."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .plan import TrajectoryLike


class Clock(Protocol):
    """A source of time in seconds (node time in ROS, a virtual clock in tests)."""

    def now(self) -> float: ...


class VirtualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 0.0):
        self._t = start

    def now(self) -> float:
        """Current virtual time in seconds."""
        return self._t

    def advance(self, dt: float) -> float:
        """Move time forward by dt seconds and return the new time."""
        if dt < 0:
            raise ValueError(f"dt must be >= 0, got {dt}")
        self._t += dt
        return self._t


@dataclass
class Pending:
    """A command in flight on a port: done, or failed with a reason."""

    done: bool = False
    error: str | None = None
    started: float = 0.0
    meta: dict = field(default_factory=dict)

    def finish(self) -> None:
        """Mark the command done."""
        self.done = True

    def fail(self, reason: str) -> None:
        """Mark the command failed with a reason."""
        self.error = reason
        self.done = True


class CobotPort(abc.ABC):
    """One cobot as the planner drives it."""

    name: str

    @abc.abstractmethod
    def move(self, trajectory: TrajectoryLike) -> Pending:
        """Start following a joint trajectory from the current position."""

    @abc.abstractmethod
    def set_io(self, io: str, value: bool) -> Pending:
        """Switch a tool output."""

    @abc.abstractmethod
    def joint_positions(self) -> np.ndarray | None:
        """Latest measured joint positions, or None before the first joint state."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop motion now (an empty trajectory for a ros2_control controller)."""

    def poll(self, pending: Pending) -> None:
        """Update a pending command; called by the sequencer on every update."""


class FakeCobot(CobotPort):
    """In-process cobot for unit tests: moves take exactly their duration on the injected clock."""

    def __init__(self, name: str, clock: Clock, home: np.ndarray, io_delay: float = 0.0):
        self.name = name
        self.clock = clock
        self._q = np.asarray(home, dtype=float).copy()
        self.io_delay = io_delay
        self.io: dict[str, bool] = {}
        self.log: list[tuple[float, str, object]] = []
        self._active: list[tuple[Pending, object]] = []
        self.fail_io: set[str] = set()

    def move(self, trajectory: TrajectoryLike) -> Pending:
        p = Pending(started=self.clock.now(), meta={"kind": "move", "trajectory": trajectory})
        self.log.append((p.started, "move", trajectory.duration))
        self._active.append((p, trajectory))
        return p

    def set_io(self, io: str, value: bool) -> Pending:
        p = Pending(started=self.clock.now(), meta={"kind": "io", "io": io, "value": value})
        self.log.append((p.started, f"io:{io}", value))
        self._active.append((p, None))
        return p

    def joint_positions(self) -> np.ndarray:
        return self._q.copy()

    def stop(self) -> None:
        self.log.append((self.clock.now(), "stop", None))
        for p, _ in self._active:
            if not p.done:
                p.fail("stopped")
        self._active.clear()

    def poll(self, pending: Pending) -> None:
        if pending.done:
            return
        now = self.clock.now()
        if pending.meta["kind"] == "move":
            traj = pending.meta["trajectory"]
            if now >= pending.started + traj.duration - 1e-9:
                self._q = np.asarray(traj.final, dtype=float).copy()
                pending.finish()
        elif now >= pending.started + self.io_delay - 1e-9:
            io = pending.meta["io"]
            if io in self.fail_io:
                pending.fail(f"IO service '{io}' failed")
            else:
                self.io[io] = pending.meta["value"]
                pending.finish()
