"""The planner's clock and the arrived / timed-out rules of commands sent to a cobot driver, on virtual clocks."""

from __future__ import annotations

import numpy as np
import pytest

from cobot_cell.core.motion_watch import DriverClock, MotionWatch, WatchLimits
from cobot_cell.core.ports import FakeCobot, VirtualClock
from cobot_cell.motion.trajectory import joint_move

HOME = np.zeros(6)
TARGET = np.array([0.5, -0.2, 0.3, 0.0, 0.1, 0.0])
LIMITS = WatchLimits(tolerance=0.005, timeout_factor=1.5, timeout_margin=2.0, timeout_wall_min=2.0)


class Rig:
    """A driver clock on a virtual node clock and a virtual wall clock, and a watch for cobot 'a'."""

    def __init__(self, limits: WatchLimits = LIMITS) -> None:
        self.node = VirtualClock(100.0)
        self.wall = VirtualClock(5000.0)
        self.clock = DriverClock(self.node.now, stale_after=3.0, wall=self.wall.now)
        self.watch = MotionWatch("a", limits, self.clock, wall=self.wall.now)
        self.port = FakeCobot("a", self.clock, HOME)
        self.traj = joint_move(HOME, TARGET, 1.0, 2.0)

    def report(self, stamp: float, dt_wall: float = 0.0) -> None:
        """A joint state stamped `stamp` arrives after `dt_wall` wall seconds."""
        self.wall.advance(dt_wall)
        self.clock.observe(stamp)


def test_driver_clock_follows_driver_stamps_then_the_node_clock_when_they_stop() -> None:
    r = Rig()
    assert r.clock.now() == 100.0  # no driver data yet: node time
    r.report(10.0)
    assert r.clock.fresh and r.clock.now() == 100.0  # never backwards
    r.report(120.0, dt_wall=0.1)
    assert r.clock.now() == 120.0
    r.report(119.0)  # an older stamp does not move it back
    assert r.clock.data_time == 120.0 and r.clock.now() == 120.0
    r.node.advance(30.0)
    r.wall.advance(2.9)
    assert r.clock.fresh and r.clock.now() == 120.0
    r.wall.advance(0.2)  # 3.1 wall s without a stamp: stale, node time goes on
    assert not r.clock.fresh and r.clock.now() == 130.0


def test_driver_clock_refuses_a_bad_stale_time() -> None:
    with pytest.raises(ValueError) as err:
        DriverClock(lambda: 0.0, stale_after=0.0)
    assert str(err.value) == "stale_after must be > 0, got 0.0"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tolerance", -0.1, "tolerance must be >= 0, got -0.1"),
        ("timeout_margin", float("nan"), "timeout_margin must be >= 0, got nan"),
        ("timeout_factor", 0.5, "timeout_factor must be >= 1, got 0.5"),
    ],
)
def test_watch_limits_name_a_bad_value(field: str, value: float, message: str) -> None:
    values = {"tolerance": 0.005, "timeout_factor": 1.5, "timeout_margin": 2.0, "timeout_wall_min": 2.0}
    with pytest.raises(ValueError) as err:
        WatchLimits(**{**values, field: value})
    assert str(err.value) == message


def test_a_move_arrives_at_its_last_stamp_once_its_duration_passed_and_the_arm_is_on_target() -> None:
    r = Rig()
    r.report(100.0)
    p = r.watch.move(r.traj)
    assert p.started == 100.0 and p.meta["duration"] == r.traj.duration
    end = 100.0 + r.traj.duration
    r.report(end - 0.01, dt_wall=0.5)
    assert not r.watch.poll(r.port, p, TARGET, end - 0.01) and not p.done  # on target, but early
    assert not r.watch.due(p, end - 0.01) and r.watch.due(p, end)
    r.report(end + 0.02, dt_wall=0.1)
    assert not r.watch.poll(r.port, p, TARGET + 0.01, end + 0.02) and not p.done  # late, but 0.01 rad off
    r.report(end + 0.03, dt_wall=0.01)
    assert r.watch.poll(r.port, p, TARGET + 0.004, end + 0.03)
    assert p.done and p.error is None and p.finished_at == end + 0.03
    assert not r.watch.poll(r.port, p, TARGET, end + 0.04)  # ended once


def test_a_stamped_move_ends_at_its_planned_end_and_starts_at_its_planned_start() -> None:
    r = Rig(WatchLimits(0.005, 1.5, 2.0, 2.0, stamped=True))
    r.report(100.0)
    p = r.watch.move(r.traj, start=99.5)
    assert p.started == 99.5
    r.report(104.0, dt_wall=1.0)
    assert r.watch.poll(r.port, p, TARGET, 104.0)
    assert p.finished_at == 99.5 + r.traj.duration
    assert Rig().watch.move(r.traj, start=99.5).started == 100.0  # not stamped: sent now


def test_a_move_times_out_after_factor_and_margin_but_never_sooner_than_the_wall_minimum() -> None:
    r = Rig()
    r.report(100.0)
    p = r.watch.move(r.traj)
    late = 100.0 + r.traj.duration * 1.5 + 2.0 + 0.01
    r.report(late, dt_wall=1.0)  # a fast sim: the clock ran far ahead of the wall clock
    assert not r.watch.poll(r.port, p, HOME, late) and not p.done
    r.report(late + 0.01, dt_wall=1.1)
    assert r.watch.poll(r.port, p, HOME, late + 0.01)
    assert p.code == "MOTION_TIMEOUT"
    elapsed = late + 0.01 - 100.0
    assert p.error == (
        f"motion of 'a' did not arrive within {elapsed:.2f} s (planned {r.traj.duration:.2f} s, "
        f"{float(np.max(np.abs(HOME - TARGET))):.4f} rad off target)"
    )


def test_a_move_without_joint_states_times_out_on_node_time() -> None:
    r = Rig()
    p = r.watch.move(r.traj)  # no driver data at all: node time
    r.node.advance(r.traj.duration * 1.5 + 2.1)
    r.wall.advance(2.5)
    assert r.watch.poll(r.port, p, None, -1.0)
    assert p.code == "MOTION_TIMEOUT" and p.error.endswith(", no joint state)")


def test_an_io_call_without_a_reply_fails_after_the_wall_minimum_plus_margin() -> None:
    r = Rig()
    p = r.watch.io("gripper/grip")
    r.wall.advance(3.9)
    assert not r.watch.poll(r.port, p, HOME, 0.0) and not p.done
    r.wall.advance(0.2)
    r.watch.poll(r.port, p, HOME, 0.0)
    assert (p.code, p.error) == ("IO_FAILED", "IO service 'gripper/grip' of 'a' did not reply")


def test_an_io_reply_finishes_at_the_command_when_stamped_else_when_it_came() -> None:
    stamped = Rig(WatchLimits(0.005, 1.5, 2.0, 2.0, stamped=True))
    p = stamped.watch.io("gripper/grip", start=98.0)
    stamped.watch.io_done(p)
    assert p.done and p.finished_at == 98.0
    q = Rig().watch.io("gripper/grip", start=98.0)
    Rig().watch.io_done(q)
    assert q.done and q.started == 100.0 and q.finished_at is None


def test_a_confirmation_ends_when_sensed_else_on_its_timeout_after_the_wall_minimum() -> None:
    r = Rig()
    r.port.io["gripper/grip"] = True
    ok = r.watch.watch_confirm(r.port.confirm("gripper/grip", True, 1.0, "GRIP_MISSED", r.watch.confirm_start(95.0)))
    assert ok.started == 100.0
    r.watch.poll(r.port, ok, HOME, 0.0)
    assert ok.done and ok.error is None
    r.port.grip_miss.add("gripper/grip")
    missed = r.watch.watch_confirm(r.port.confirm("gripper/grip", True, 1.0, "GRIP_MISSED"))
    r.node.advance(5.0)  # far past its clock timeout, but the wall minimum has not passed
    r.watch.poll(r.port, missed, HOME, 0.0)
    assert not missed.done
    r.wall.advance(2.1)
    r.watch.poll(r.port, missed, HOME, 0.0)
    assert missed.code == "GRIP_MISSED"
    assert missed.error == "'gripper/grip' of 'a' not confirmed within 1 s (expected on)"
