"""When a command sent to a cobot driver has ended, and the planner's clock: the rules a ROS port applies.

A port publishes a trajectory, calls an IO service, or waits for a sensed tool state; these rules decide from
what the driver reported (joint positions, their stamps) and two clocks when the command arrived or timed out.
Cell time is the drivers' own stamps while they report (`DriverClock`), so cycle times do not depend on how far
the planner lags a fast simulation; wall time bounds how soon anything may fail.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .plan import TrajectoryLike
from .ports import CobotPort, Pending

logger = logging.getLogger(__name__)

MOTION_TIMEOUT = "MOTION_TIMEOUT"
IO_FAILED = "IO_FAILED"


class DriverClock:
    """Cell time in seconds: the newest driver stamp while drivers report, else the node's clock.

    Timing steps and motions on the drivers' own stamps keeps cycle times the same whether the planner keeps up
    with a fast simulation or lags it by a few messages. When no stamp has arrived for `stale_after` wall
    seconds, time goes on with the node clock so dwells and timeouts still end. Never goes backwards.
    """

    def __init__(
        self, node_now: Callable[[], float], stale_after: float = 3.0, wall: Callable[[], float] = time.monotonic
    ) -> None:
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0, got {stale_after}")
        self._node_now = node_now
        self._wall = wall
        self.stale_after = stale_after
        self.data_time = -1.0
        self._rx_wall = -math.inf
        self._last = 0.0

    def node_now(self) -> float:
        """Node time (sim time when use_sim_time) in seconds."""
        return self._node_now()

    def observe(self, stamp: float) -> None:
        """A driver reported data stamped `stamp`."""
        self._rx_wall = self._wall()
        if stamp > self.data_time:
            self.data_time = stamp

    @property
    def fresh(self) -> bool:
        """Driver data arrived within the last `stale_after` wall seconds."""
        return self._wall() - self._rx_wall < self.stale_after

    def now(self) -> float:
        """Cell time in seconds."""
        t = self.data_time if self.fresh else self.node_now()
        self._last = max(self._last, t)
        return self._last


@dataclass(frozen=True)
class WatchLimits:
    """How long a command may take. `stamped`: trajectories carry their planned start (simulated drivers on
    /clock follow them exactly, so a move ends at its planned end and a switched output at its command)."""

    tolerance: float  # rad: largest joint error at which a move counts as arrived
    timeout_factor: float  # a move fails after its planned duration x this + timeout_margin
    timeout_margin: float  # s (clock)
    timeout_wall_min: float  # wall s: nothing fails sooner after dispatch (a lagging planner sees old data)
    stamped: bool = False

    def __post_init__(self) -> None:
        for name in ("tolerance", "timeout_margin", "timeout_wall_min"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.timeout_factor >= 1:
            raise ValueError(f"timeout_factor must be >= 1, got {self.timeout_factor}")


class MotionWatch:
    """The rules for one cobot's commands in flight: build their Pending, then finish or fail it on poll."""

    def __init__(
        self, cobot: str, limits: WatchLimits, clock: DriverClock, wall: Callable[[], float] = time.monotonic
    ) -> None:
        self.cobot = cobot
        self.limits = limits
        self.clock = clock
        self._wall = wall

    def _start(self, start: float | None) -> float:
        return start if self.limits.stamped and start is not None else self.clock.now()

    def move(self, trajectory: TrajectoryLike, start: float | None = None) -> Pending:
        """A move sent now (planned to start at `start`: used when trajectories are stamped)."""
        return Pending(
            started=self._start(start),
            meta={
                "kind": "move",
                "final": np.asarray(trajectory.final, dtype=float),
                "duration": float(trajectory.duration),
                "wall": self._wall(),
            },
        )

    def io(self, io: str, start: float | None = None) -> Pending:
        """An IO service call made now."""
        return Pending(started=self._start(start), meta={"kind": "io", "io": io, "wall": self._wall()})

    def confirm_start(self, start: float | None) -> float | None:
        """Where a confirmation starts: its planned start when trajectories are stamped, else now (None)."""
        return start if self.limits.stamped else None

    def watch_confirm(self, pending: Pending) -> Pending:
        """Note the wall time a confirmation began."""
        pending.meta["wall"] = self._wall()
        return pending

    def io_done(self, pending: Pending) -> None:
        """The IO service accepted the call: a simulated output switched the instant it was commanded."""
        pending.finish(pending.started if self.limits.stamped else None)

    def due(self, pending: Pending, stamp: float) -> bool:
        """A move's planned end has passed at driver stamp `stamp` (worth polling at once)."""
        return pending.meta.get("kind") == "move" and stamp >= pending.started + pending.meta["duration"]

    def poll(self, port: CobotPort, pending: Pending, q: np.ndarray | None, last_stamp: float) -> bool:
        """Finish or fail `pending` from the latest joint positions `q` (stamped up to `last_stamp`); True when a
        move ended (arrived or timed out) on this poll."""
        kind = pending.meta.get("kind")
        wall_age = self._wall() - pending.meta.get("wall", -math.inf)
        lim = self.limits
        if kind == "confirm":
            if port.sensed(pending.meta["io"]) == pending.meta["expected"] or wall_age > lim.timeout_wall_min:
                port.poll_confirm(pending)
            return False
        if pending.done:
            return False
        if kind == "io":
            # A reply lost to a driver that died mid-call must not hang the step.
            if wall_age > lim.timeout_wall_min + lim.timeout_margin:
                pending.fail(f"IO service '{pending.meta['io']}' of '{self.cobot}' did not reply", IO_FAILED)
            return False
        if kind != "move":
            return False
        # On this cobot's own stamps: a planner lagging behind a fast sim sees late data, not a late arm.
        elapsed = (last_stamp if self.clock.fresh else self.clock.now()) - pending.started
        duration = pending.meta["duration"]
        error = math.inf if q is None else float(np.max(np.abs(q - pending.meta["final"])))
        if elapsed >= duration and error <= lim.tolerance:
            # A simulated arm follows the stamped trajectory exactly: it arrived at the planned end.
            pending.finish(pending.started + duration if lim.stamped else last_stamp)
            return True
        if elapsed > duration * lim.timeout_factor + lim.timeout_margin and wall_age > lim.timeout_wall_min:
            off = "no joint state" if q is None else f"{error:.4f} rad off target"
            pending.fail(
                f"motion of '{self.cobot}' did not arrive within {elapsed:.2f} s (planned {duration:.2f} s, {off})",
                MOTION_TIMEOUT,
            )
            return True
        return False
