"""The planner's ROS cobot port turns the core's trajectories into JointTrajectory points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cobot_cell.motion.trajectory import Trajectory
from cobot_cell.ros.common import JointReader
from cobot_cell.ros.planner_node import RosCobotPort


@dataclass(frozen=True)
class FinalOnly:
    """A trajectory as the core's protocol promises it: a duration and a final point, no knots."""

    duration: float
    final: np.ndarray


def test_a_trajectory_with_knots_becomes_one_point_per_knot() -> None:
    traj = Trajectory(
        times=np.array([0.0, 0.5, 1.25]),
        positions=np.array([[0.0, 0.0], [0.1, 0.2], [0.2, 0.4]]),
        velocities=np.array([[0.0, 0.0], [0.2, 0.4], [0.0, 0.0]]),
    )
    points = RosCobotPort._points(traj)
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in points] == [
        (0, 0),
        (0, 500_000_000),
        (1, 250_000_000),
    ]
    assert [list(p.positions) for p in points] == [[0.0, 0.0], [0.1, 0.2], [0.2, 0.4]]
    assert [list(p.velocities) for p in points] == [[0.0, 0.0], [0.2, 0.4], [0.0, 0.0]]


def test_a_trajectory_without_knots_reaches_its_final_point_at_rest_by_its_duration() -> None:
    points = RosCobotPort._points(FinalOnly(duration=2.5, final=np.array([0.3, -0.1])))
    assert len(points) == 1
    assert (points[0].time_from_start.sec, points[0].time_from_start.nanosec) == (2, 500_000_000)
    assert list(points[0].positions) == [0.3, -0.1]
    assert list(points[0].velocities) == [0.0, 0.0]


def test_joint_states_are_read_by_name_and_a_malformed_message_is_ignored() -> None:
    reader = JointReader(["a", "b"])  # the planner's port and sim_infeed read joint_states with it

    def read(names: list[str], positions: list[float]):
        return reader.read(names, positions)

    assert list(read(["x", "b", "y", "a"], [9.0, 2.0, 9.0, 1.0])) == [1.0, 2.0]  # among others, any order
    assert list(read(["a", "b"], [1.5, 2.5])) == [1.5, 2.5]  # fewer names than the last message
    assert read(["a", "b"], [1.5]) is None  # fewer positions than names: ignored, no IndexError
    assert read(["c", "d"], [0.0, 0.0]) is None  # another arm's joints
    assert list(read(["b", "a"], [4.0, 3.0])) == [3.0, 4.0]
