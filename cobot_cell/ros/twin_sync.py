"""The lockstep between the planner and the physics twin: the planner says what it has seen and when it acts next.

After each update the planner publishes on `/<cell>/twin_sync` (std_msgs/Float64MultiArray, four numbers):
the newest driver stamp it has processed, the clock time it next acts by itself (a dwell ending; NaN: nothing due),
the number of commands it has sent to the drivers (trajectories, IO calls) and the number of IO replies it has
processed. The twin (cobot_cell.ros.twin_driver) holds simulated time at each point where the planner acts (a move
ended, an output switched, a dwell ends) until the planner's sync shows it has seen that point and every command
it sent has arrived: the planner's reaction time never turns into simulated seconds, whatever the rate.
Drivers that do not listen (the kinematic sim, real controllers) are not affected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from std_msgs.msg import Float64MultiArray

if TYPE_CHECKING:
    from rclpy.node import Node

SYNC_TOPIC = "twin_sync"


@dataclass(frozen=True)
class Sync:
    """One sync message: what the planner has processed and when it acts next."""

    processed: float
    next_due: float | None
    commands: int
    replies: int

    def to_msg(self) -> Float64MultiArray:
        """As the wire message."""
        due = math.nan if self.next_due is None else self.next_due
        return Float64MultiArray(data=[self.processed, due, float(self.commands), float(self.replies)])

    @classmethod
    def from_msg(cls, msg: Float64MultiArray) -> Sync | None:
        """From the wire message (None if it is not four numbers)."""
        data = list(msg.data)
        if len(data) != 4 or any(math.isinf(v) for v in data) or math.isnan(data[0]):
            return None
        return cls(data[0], None if math.isnan(data[1]) else data[1], int(data[2]), int(data[3]))


class PlannerSync:
    """The planner's side: counts commands and replies; after an update, publishes a sync when it changed and a
    twin listens."""

    def __init__(self, node: Node) -> None:
        self.pub = node.create_publisher(Float64MultiArray, SYNC_TOPIC, 10)
        self.commands = 0
        self.replies = 0
        self._last: Sync | None = None

    def publish(self, processed: float, next_due: float | None) -> None:
        """After an update: the newest driver stamp processed and the next time the planner acts by itself."""
        if self.pub.get_subscription_count() == 0:
            return  # no twin listening (kinematic sims, real arms): nothing to build or send on the hot path
        sync = Sync(processed, next_due, self.commands, self.replies)
        if sync != self._last:
            self._last = sync
            self.pub.publish(sync.to_msg())
