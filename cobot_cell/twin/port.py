"""The twin as the cell controller's cobot ports, in one process on the twin's own clock (no ROS).

`TwinPort` implements `CobotPort` over a shared `Twin` the way the ROS adapter drives a physical sim: a move
starts when commanded and is done once the measured arm is within `tolerance` of its end (no sooner than its
planned duration), IO switches at once and a gripper's sensed state is the physics'.
"""

from __future__ import annotations

import numpy as np

from ..core.plan import TrajectoryLike
from ..core.ports import CobotPort, Pending
from .physics import Twin

ARRIVAL_TOLERANCE = 0.005
"""Joint tolerance (rad) for a move to count as arrived (the planner node's default `tolerance`)."""


class TwinClock:
    """The twin's simulated time as a core Clock."""

    def __init__(self, twin: Twin):
        self.twin = twin

    def now(self) -> float:
        """Simulated seconds."""
        return self.twin.t


class TwinPort(CobotPort):
    """One cobot of a running twin as the controller's port."""

    def __init__(self, name: str, twin: Twin, tolerance: float = ARRIVAL_TOLERANCE):
        self.name = name
        self.twin = twin
        self.clock = TwinClock(twin)
        self.tolerance = tolerance

    def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
        p = Pending(
            started=self.twin.t,
            meta={
                "kind": "move",
                "final": np.asarray(trajectory.final, dtype=float),
                "duration": float(trajectory.duration),
            },
        )
        times = getattr(trajectory, "times", None)
        positions = getattr(trajectory, "positions", None)
        if times is None or positions is None:
            times, positions, velocities = (
                np.array([max(trajectory.duration, 0.1)]),
                np.asarray(trajectory.final, dtype=float)[None, :],
                None,
            )
        else:
            velocities = getattr(trajectory, "velocities", None)
            if len(times) == 1:
                times = np.array([0.1])
        if not self.twin.follow(self.name, np.asarray(times), np.asarray(positions), velocities):
            p.fail(f"'{self.name}' is stopped: {self.twin.stopped.get(self.name, '')}", "COLLISION")
        return p

    def set_io(self, io: str, value: bool, start: float | None = None) -> Pending:
        p = Pending(started=self.twin.t, meta={"kind": "io", "io": io})
        if self.name in self.twin.stopped:
            p.fail(f"IO '{io}' of '{self.name}' refused: stopped ({self.twin.stopped[self.name]})", "IO_FAILED")
            return p
        self.twin.set_io(self.name, io, value)
        p.finish(self.twin.t)
        return p

    def joint_positions(self) -> np.ndarray:
        return self.twin.joint_positions(self.name)

    def stop(self) -> None:
        self.twin.stop(self.name)

    def sensed(self, io: str) -> bool | None:
        return self.twin.sensed(self.name, io)

    def poll(self, pending: Pending) -> None:
        if pending.done:
            return
        if pending.meta["kind"] == "confirm":
            self.poll_confirm(pending)
            return
        if pending.meta["kind"] != "move":
            return
        if self.name in self.twin.stopped:
            pending.fail(f"motion of '{self.name}' stopped: {self.twin.stopped[self.name]}", "COLLISION")
            return
        elapsed = self.twin.t - pending.started
        if (
            elapsed >= pending.meta["duration"] - 1e-9
            and float(np.max(np.abs(self.joint_positions() - pending.meta["final"]))) <= self.tolerance
        ):
            pending.finish(self.twin.t)
