"""Ports: the clock and the cobots as the core sees them. ROS adapters and in-process fakes implement them."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .plan import TrajectoryLike


class Clock(Protocol):
    """A source of time in seconds (node time in ROS, a virtual clock in tests)."""

    def now(self) -> float: ...


class VirtualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 0.0) -> None:
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
    meta: dict[str, Any] = field(default_factory=dict)  # what the port needs to poll it (kind, trajectory, io)
    code: str = ""
    finished_at: float | None = None  # event time the command finished, when the port knows it exactly

    def finish(self, at: float | None = None) -> None:
        """Mark the command done (at event time `at`, when known)."""
        self.finished_at = at
        self.done = True

    def fail(self, reason: str, code: str = "", at: float | None = None) -> None:
        """Mark the command failed with a reason and a fault code (at event time `at`, when known)."""
        self.error = reason
        self.code = code
        self.finished_at = at
        self.done = True


class CobotPort(abc.ABC):
    """One cobot as the planner drives it."""

    name: str
    clock: Clock

    @abc.abstractmethod
    def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
        """Start following a joint trajectory from the current position (planned to start at `start`)."""

    @abc.abstractmethod
    def set_io(self, io: str, value: bool, start: float | None = None) -> Pending:
        """Switch a tool output."""

    @abc.abstractmethod
    def joint_positions(self) -> np.ndarray | None:
        """Latest measured joint positions, or None before the first joint state."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop motion now (an empty trajectory for a ros2_control controller)."""

    def prepare(self, trajectory: TrajectoryLike) -> None:
        """A hint: this trajectory will be moved along soon (its step is planned ahead). A port may convert it
        to its wire format now, so `move` has less to do when the step starts. Default: nothing."""
        return None

    # A simulated tool's sensed state is known the instant it is switched (so a confirm ends at its start).
    sensed_instantly = False

    def sensed(self, io: str) -> bool | None:
        """Sensed state of a tool IO (part present for a gripper), None if unknown."""
        return None

    def confirm(self, io: str, expected: bool, timeout: float, code: str, start: float | None = None) -> Pending:
        """Wait (up to `timeout` clock seconds) for a tool's sensed state to equal `expected`."""
        return Pending(
            started=self.clock.now() if start is None else start,
            meta={"kind": "confirm", "io": io, "expected": expected, "timeout": timeout, "code": code},
        )

    def poll_confirm(self, pending: Pending) -> None:
        """Shared logic of a confirm: done when sensed as expected, failed with its code after the timeout."""
        if pending.done:
            return
        io, expected = pending.meta["io"], pending.meta["expected"]
        if self.sensed(io) == expected:
            pending.finish(pending.started if self.sensed_instantly else None)
        elif self.clock.now() - pending.started >= pending.meta["timeout"] - 1e-9:
            pending.fail(
                f"'{io}' of '{self.name}' not confirmed within {pending.meta['timeout']:g} s "
                f"(expected {'on' if expected else 'off'})",
                pending.meta["code"],
            )

    def poll(self, pending: Pending) -> None:
        """Update a pending command; called by the sequencer on every update."""
        if pending.meta.get("kind") == "confirm":
            self.poll_confirm(pending)


class FakeCobot(CobotPort):
    """In-process cobot for unit tests: moves take exactly their duration on the injected clock."""

    def __init__(self, name: str, clock: Clock, home: np.ndarray, io_delay: float = 0.0) -> None:
        self.name = name
        self.clock = clock
        self._q = np.asarray(home, dtype=float).copy()
        self.io_delay = io_delay
        self.io: dict[str, bool] = {}
        self.log: list[tuple[float, str, object]] = []
        self._active: list[tuple[Pending, TrajectoryLike | None]] = []
        self.fail_io: set[str] = set()
        self.grip_miss: set[str] = set()
        self.stall = False

    sensed_instantly = True

    def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
        p = Pending(
            started=self.clock.now() if start is None else start, meta={"kind": "move", "trajectory": trajectory}
        )
        self.log.append((p.started, "move", trajectory.duration))
        self._active = [(a, t) for a, t in self._active if not a.done]
        self._active.append((p, trajectory))
        return p

    def set_io(self, io: str, value: bool, start: float | None = None) -> Pending:
        p = Pending(started=self.clock.now() if start is None else start, meta={"kind": "io", "io": io, "value": value})
        self.log.append((p.started, f"io:{io}", value))
        self._active.append((p, None))
        self._active = [(a, t) for a, t in self._active if not a.done]
        return p

    def joint_positions(self) -> np.ndarray:
        return self._q.copy()

    def sensed(self, io: str) -> bool | None:
        return self.io.get(io, False) and io not in self.grip_miss

    def set_position(self, q: np.ndarray) -> None:
        """Put the arm somewhere (an operator jogging it, a crash mid-move)."""
        self._q = np.asarray(q, dtype=float).copy()

    def stop(self) -> None:
        now = self.clock.now()
        self.log.append((now, "stop", None))
        for p, traj in self._active:
            if not p.done:
                if traj is not None and not self.stall:  # the arm stops where it is along the move
                    self._q = self._position(traj, now - p.started)
                p.fail("stopped")
        self._active.clear()

    @staticmethod
    def _position(traj: TrajectoryLike, t: float) -> np.ndarray:
        """Joint positions along a trajectory at time t from its start (linear between its samples)."""
        times = getattr(traj, "times", None)
        positions = getattr(traj, "positions", None)
        if times is None or positions is None or t >= traj.duration:
            return np.asarray(traj.final, dtype=float).copy()
        times, positions = np.asarray(times, dtype=float), np.asarray(positions, dtype=float)
        t = max(t, 0.0)
        return np.array([np.interp(t, times, positions[:, j]) for j in range(positions.shape[1])])

    def next_event(self) -> float | None:
        """The earliest clock time a command in flight is due to finish (for event-driven simulation)."""
        due = []
        for p, traj in self._active:
            if p.done:
                continue
            kind = p.meta["kind"]
            if kind == "move" and traj is not None:
                due.append(p.started + (2 * traj.duration + 1.0 if self.stall else traj.duration))
            elif kind == "io":
                due.append(p.started + self.io_delay)
        return min(due) if due else None

    def poll(self, pending: Pending) -> None:
        if pending.done:
            return
        now = self.clock.now()
        if pending.meta["kind"] == "confirm":
            self.poll_confirm(pending)
        elif pending.meta["kind"] == "move":
            traj = pending.meta["trajectory"]
            if self.stall:
                if now > pending.started + 2 * traj.duration + 1.0:
                    pending.fail(f"motion of '{self.name}' did not arrive", "MOTION_TIMEOUT")
            elif now >= pending.started + traj.duration - 1e-9:
                self._q = np.asarray(traj.final, dtype=float).copy()
                pending.finish(pending.started + traj.duration)
        elif now >= pending.started + self.io_delay - 1e-9:
            io = pending.meta["io"]
            if io in self.fail_io:
                pending.fail(f"IO service '{io}' failed", "IO_FAILED", pending.started + self.io_delay)
            else:
                self.io[io] = pending.meta["value"]
                pending.finish(pending.started + self.io_delay)
