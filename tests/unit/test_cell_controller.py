"""Cell controller (cobot_cell.core.cell): PackML machine + sequencer on the demo cell, FakeCobots, a VirtualClock.

On the shared CellRig (tests/unit/rig.py): the clock moves in small steps (at most DT), landing exactly on the
instants the plans say a segment ends, so cycle times can be compared with the planned durations. Every wait has an
iteration bound; nothing sleeps.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rig import DT, CellRig, Planner

from cobot_cell.core.cell import RECENT_REPORTS, CellController, Fault
from cobot_cell.core.config import CellConfig, Step, parse_cell
from cobot_cell.core.packml import CommandRefused, State
from cobot_cell.core.plan import Move, SetIo, SkillPlan
from cobot_cell.core.ports import VirtualClock
from cobot_cell.skills import check_skills, estimate, make_planner

REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "config" / "demo_cell.yaml").read_text(encoding="utf-8")
# The demo cell plus a second job, to switch jobs.
CELL_TEXT = (
    DEMO
    + """
  weld_only:
    steps:
      - name: weld
        skill: weld
        cobot: welder
        params: {station: fixture, speed: 0.05, seams: [[[-0.05, 0.0, 0.05], [0.05, 0.0, 0.05]]]}
"""
)
CFG = parse_cell(CELL_TEXT)[0]
assert check_skills(CFG) == []
# The same cell where a failed step aborts the run at once (no retry).
ABORT_TEXT = CELL_TEXT.replace("  bracket:\n", "  bracket:\n    fault_policy: {retries: 0, then: abort}\n", 1)
CFG_ABORT = parse_cell(ABORT_TEXT)[0]
assert CFG_ABORT.jobs["bracket"].fault_policy is not None
SKILLS_PLANNER = make_planner(CFG)
PLACES = 8


@functools.cache
def planned_cycle(part: int, job: str = "bracket") -> float:
    """Planned cycle time of a part of a chain job: the sum of its step estimates."""
    return sum(e.duration for e in estimate(CFG, job, part=part))


@dataclass(frozen=True)
class Traj:
    """The least a trajectory has to offer the core: a duration and a final position."""

    duration: float
    final: np.ndarray


def one_second_planner(step: Step, part: int, q: np.ndarray) -> SkillPlan:
    """Every step is a single one-second move that ends where it starts."""
    return SkillPlan((Move(Traj(1.0, q)),), q)


def what(fault: Fault | None) -> tuple[str, str, str, float]:
    """Code, source, message and time of a fault."""
    assert fault is not None
    return fault.code, fault.source, fault.message, fault.raised


def instant_planner(step: Step, part: int, q: np.ndarray) -> SkillPlan:
    """A step that only switches an output: done the moment it starts."""
    return SkillPlan((SetIo("tool", f"{step.name}/io", True),), q)


class Memo:
    """Caches the skills planner by step, pallet place and start position (plans are deterministic)."""

    def __init__(self) -> None:
        self.cache: dict[tuple, SkillPlan] = {}

    def __call__(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        place = (part - 1) % PLACES if step.skill == "palletise" else 0
        key = (step.name, place, np.round(q, 12).tobytes())
        if key not in self.cache:
            self.cache[key] = SKILLS_PLANNER(step, part, q)
        return self.cache[key]


class Rig(CellRig):
    """The shared CellRig on the demo cell variant, with the skills planner unless told otherwise."""

    update_limit = 50_000

    def __init__(self, planner: Planner = SKILLS_PLANNER, parts: int = 1, cfg: CellConfig = CFG, **kwargs: Any):
        super().__init__(cfg, planner, parts, **kwargs)


# ---------------------------------------------------------------------------------------------- runs


def test_run_of_n_parts_completes_with_planned_cycle_times() -> None:
    n = 3
    rig = Rig(parts=n)
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    reports = rig.cell.reports
    assert [r.part for r in reports] == list(range(1, n + 1))
    assert rig.cycles == reports
    assert {r.run_id for r in reports} == {rig.cell.run_id} and len(rig.cell.run_id) == 12
    assert {(r.cell, r.job) for r in reports} == {("demo", "bracket")}
    for r in reports:
        # the clock lands on every planned segment end, so this is far tighter than one update step
        assert r.cycle_time == pytest.approx(planned_cycle(r.part), abs=1e-6)
        assert [s.step for s in r.steps] == ["load_blank", "weld_seams", "palletise"]
    assert reports[0].start == 0.0
    for a, b in zip(reports, reports[1:]):
        assert b.start == a.end  # the next part starts as soon as one is done
    assert rig.cell.parts_done == n and rig.cell.last_cycle_time == reports[-1].cycle_time
    status = rig.cell.status()
    assert (status.state, status.job, status.parts_target, status.parts_done, status.part, status.fault) == (
        State.COMPLETE,
        "bracket",
        n,
        n,
        None,
        None,
    )
    assert rig.states == [
        (State.STOPPED, State.RESETTING, "reset"),
        (State.RESETTING, State.IDLE, "state_complete"),
        (State.IDLE, State.STARTING, "start"),
        (State.STARTING, State.EXECUTE, "state_complete"),
        (State.EXECUTE, State.COMPLETING, "execute_complete"),
        (State.COMPLETING, State.COMPLETE, "state_complete"),
    ]


def test_status_follows_the_part_under_way_and_a_new_run_starts_afresh() -> None:
    rig = Rig(parts=2)
    rig.start()
    seen = set()
    rig.run_until(
        lambda: seen.add((rig.cell.status().part, rig.cell.status().parts_done)) or rig.cell.state == State.COMPLETE
    )
    assert {(1, 0), (2, 1), (None, 2)} <= seen
    first_run = rig.cell.run_id
    rig.start()
    assert rig.cell.parts_done == 0 and rig.cell.run_id != first_run
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [r.part for r in rig.cell.reports] == [1, 2, 1, 2]


def test_parts_that_finish_instantly_are_each_made_once() -> None:
    rig = Rig(planner=instant_planner, parts=5)
    assert rig.cell.command("reset") == State.IDLE
    assert rig.cell.command("start") == State.COMPLETE
    assert [r.part for r in rig.cell.reports] == [1, 2, 3, 4, 5]
    # load_blank and palletise on the picker, weld_seams on the welder, once per part
    assert [e[1] for e in rig.ports["picker"].log] == ["io:load_blank/io", "io:palletise/io"] * 5
    assert [e[1] for e in rig.ports["welder"].log] == ["io:weld_seams/io"] * 5


def test_thousand_parts_on_the_virtual_clock() -> None:
    n = 1000
    memo = Memo()
    rig = Rig(planner=memo, parts=n)
    t0 = time.perf_counter()
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE, limit=200_000, max_dt=1.0)
    elapsed = time.perf_counter() - t0
    print(f"1,000 parts: {elapsed:.2f} s wall, {rig.clock.now():.0f} s on the virtual clock")
    reports = rig.cycles
    assert len(reports) == n and rig.cell.reports == reports[-RECENT_REPORTS:]
    assert [r.part for r in reports] == list(range(1, n + 1))
    assert all(b.start == a.end and b.end > b.start for a, b in zip(reports, reports[1:]))
    # the pallet wraps every 8 parts, so every 8th cycle repeats
    for r in reports[: 2 * PLACES]:
        assert r.cycle_time == pytest.approx(planned_cycle(r.part), abs=1e-6)
    assert reports[-1].cycle_time == pytest.approx(reports[(n - 1) % PLACES].cycle_time, abs=1e-6)
    assert len(memo.cache) == 2 + PLACES


# ---------------------------------------------------------------------------------------------- hold, stop, abort


def run_into_a_long_move(rig: Rig, cobot: str = "welder", min_left: float = 1.0) -> tuple[float, float]:
    """Run until `cobot` is in a move with at least min_left seconds to go; return (move start, move end)."""

    def in_long_move() -> bool:
        m = rig.in_flight_move()
        return m is not None and m[0] == cobot and m[2] - rig.clock.now() > min_left

    rig.run_until(in_long_move)
    _, start, end = rig.in_flight_move()
    return start, end


def test_hold_waits_for_the_move_in_flight_then_unhold_resumes() -> None:
    rig = Rig(parts=2)
    rig.start()
    _, end = run_into_a_long_move(rig)
    assert rig.cell.command("hold") == State.HOLDING
    sizes = rig.log_sizes()
    rig.run_until(lambda: rig.cell.state != State.HOLDING)
    assert rig.cell.state == State.HELD
    assert rig.clock.now() == pytest.approx(end, abs=1e-9)  # Held exactly when the move is over, not before
    assert rig.log_sizes() == sizes  # nothing new was dispatched
    for _ in range(200):  # ten seconds held
        rig.step()
    assert rig.cell.state == State.HELD and rig.log_sizes() == sizes and not rig.cell.reports
    unhold_at = rig.clock.now()
    assert rig.cell.command("unhold") == State.EXECUTE
    new = [e for n, p in rig.ports.items() for e in p.log[sizes[n] :]]
    assert new and new[0][0] == unhold_at  # the next segment goes out at once
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    r1, r2 = rig.cell.reports
    held_for = unhold_at - end
    # the held part took its planned time plus the hold (the clock may land up to DT late on each remaining segment)
    assert planned_cycle(1) + held_for - 1e-6 <= r1.cycle_time <= planned_cycle(1) + held_for + 40 * DT
    assert r2.cycle_time == pytest.approx(planned_cycle(2), abs=40 * DT)
    assert (State.HOLDING, State.HELD, "state_complete") in rig.states
    assert (State.UNHOLDING, State.EXECUTE, "state_complete") in rig.states


def test_hold_during_the_last_move_of_the_run_completes_on_unhold() -> None:
    rig = Rig(planner=one_second_planner, parts=1)
    rig.start()
    rig.run_until(lambda: rig.clock.now() >= 2.5)  # palletise, the last step, runs from 2 to 3
    assert rig.cell.command("hold") == State.HOLDING
    rig.run_until(lambda: rig.cell.state != State.HOLDING)
    assert rig.cell.state == State.HELD and rig.clock.now() == pytest.approx(3.0, abs=1e-9)
    assert [r.part for r in rig.cell.reports] == [1]  # the part did finish
    assert rig.cell.reports[0].cycle_time == pytest.approx(3.0, abs=1e-9)
    assert rig.cell.command("unhold") == State.COMPLETE
    assert rig.cell.parts_done == 1 and len(rig.cell.reports) == 1


def test_suspend_waits_for_the_move_in_flight_then_unsuspend_resumes() -> None:
    rig = Rig(parts=1)
    rig.start()
    _, end = run_into_a_long_move(rig, "picker")
    assert rig.cell.command("suspend") == State.SUSPENDING
    rig.run_until(lambda: rig.cell.state != State.SUSPENDING)
    assert rig.cell.state == State.SUSPENDED and rig.clock.now() == pytest.approx(end, abs=1e-9)
    assert rig.cell.command("unsuspend") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [r.part for r in rig.cell.reports] == [1]


def test_stop_stops_every_cobot_at_once_and_lands_in_stopped() -> None:
    rig = Rig(parts=2)
    rig.start()
    run_into_a_long_move(rig)
    now = rig.clock.now()
    assert rig.cell.command("stop") == State.STOPPED
    for name, port in rig.ports.items():
        assert port.log[-1] == (now, "stop", None), name
    assert rig.cell.reports == [] and rig.cell.status().part is None
    sizes = rig.log_sizes()
    for _ in range(100):
        rig.step()
    assert rig.cell.state == State.STOPPED and rig.log_sizes() == sizes
    assert (State.EXECUTE, State.STOPPING, "stop") in rig.states
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [r.part for r in rig.cell.reports] == [1, 2]


def test_abort_clear_reset() -> None:
    rig = Rig(parts=1)
    rig.start()
    run_into_a_long_move(rig, "picker")
    now = rig.clock.now()
    assert rig.cell.command("abort") == State.ABORTED
    assert all(
        (p.log[-1][1:] == ("stop", None) and p.log[-1][0] == pytest.approx(now, abs=1e-9)) for p in rig.ports.values()
    )
    assert rig.cell.fault is None and rig.faults == []  # an operator abort is not a fault
    assert rig.cell.command("clear") == State.STOPPED
    assert rig.cell.command("reset") == State.IDLE
    assert rig.cell.command("start") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [r.part for r in rig.cell.reports] == [1]


def test_commands_the_state_does_not_accept_are_refused() -> None:
    rig = Rig()
    with pytest.raises(CommandRefused) as err:
        rig.cell.command("start")
    assert str(err.value) == "cannot start in state Stopped: allowed commands are reset, abort"
    assert rig.cell.state == State.STOPPED


# ---------------------------------------------------------------------------------------------- faults


def test_step_failure_raises_a_fault_and_aborts() -> None:
    rig = Rig(parts=2, cfg=CFG_ABORT)
    rig.ports["welder"].fail_io.add("torch/arc")
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.ABORTED
    arc_at = next(t for t, kind, _ in rig.ports["welder"].log if kind == "io:torch/arc")
    fault = ("IO_FAILED", "welder/weld_seams", "IO service 'torch/arc' failed", arc_at)
    assert [what(f) for f in rig.faults] == [fault]
    assert what(rig.cell.fault) == fault and what(rig.cell.status().fault) == fault
    assert all(
        (p.log[-1][1:] == ("stop", None) and p.log[-1][0] == pytest.approx(arc_at, abs=1e-9))
        for p in rig.ports.values()
    )
    assert rig.states[-2:] == [
        (State.EXECUTE, State.ABORTING, "abort"),
        (State.ABORTING, State.ABORTED, "state_complete"),
    ]
    assert rig.cell.reports == []
    assert rig.cell.command("clear") == State.STOPPED
    assert rig.cell.command("reset") == State.IDLE and rig.cell.fault is None


def test_fault_while_holding() -> None:
    rig = Rig(parts=1, cfg=CFG_ABORT)
    rig.start()
    run_into_a_long_move(rig, "picker")  # load_blank, before the weld
    rig.ports["picker"].fail_io.add("gripper/grip")
    assert rig.cell.command("hold") == State.HOLDING
    rig.run_until(lambda: rig.cell.state != State.HOLDING)
    # the move in flight ends, then the grip is not tried while holding: no fault, Held
    assert rig.cell.state == State.HELD and rig.faults == []
    rig.cell.command("unhold")
    rig.run_until(lambda: rig.cell.state == State.ABORTED)
    assert [what(f)[:3] for f in rig.faults] == [("IO_FAILED", "picker/load_blank", "IO service 'gripper/grip' failed")]


# ---------------------------------------------------------------------------------------------- settings


def test_job_and_parts_cannot_change_while_running() -> None:
    rig = Rig(parts=2)
    rig.start()
    for state in (State.EXECUTE, State.HELD):
        if state == State.HELD:
            rig.cell.command("hold")
            rig.run_until(lambda: rig.cell.state == State.HELD)
        with pytest.raises(ValueError) as err:
            rig.cell.set_job("weld_only")
        assert str(err.value) == f"cannot change the job in state {state.value}: stop the cell first"
        with pytest.raises(ValueError) as err:
            rig.cell.set_parts(5)
        assert str(err.value) == f"cannot change the part count in state {state.value}: stop the cell first"
        rig.cell.set_job("bracket")  # the same values are fine
        rig.cell.set_parts(2)
        assert (rig.cell.job, rig.cell.parts_target) == ("bracket", 2)
    rig.cell.command("stop")
    rig.cell.set_job("weld_only")
    rig.cell.set_parts(3)
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.job, r.part) for r in rig.cell.reports] == [("weld_only", 1), ("weld_only", 2), ("weld_only", 3)]
    for r in rig.cell.reports:
        assert r.cycle_time == pytest.approx(planned_cycle(1, "weld_only"), abs=1e-6)


def test_unknown_job_is_refused_with_the_list_of_jobs() -> None:
    rig = Rig()
    with pytest.raises(ValueError) as err:
        rig.cell.set_job("brackets")
    assert str(err.value) == "unknown job 'brackets': expected one of bracket, weld_only"
    assert rig.cell.job == "bracket"
    with pytest.raises(ValueError) as err:
        CellController(CFG, rig.ports, SKILLS_PLANNER, rig.clock, job="nope")
    assert str(err.value) == "unknown job 'nope': expected one of bracket, weld_only"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_part_count_must_be_a_whole_number_of_at_least_one(bad: object) -> None:
    rig = Rig()
    with pytest.raises(ValueError) as err:
        rig.cell.set_parts(bad)  # type: ignore[arg-type]
    assert str(err.value) == f"parts must be a whole number from 1 to 999999999, got {bad!r}"
    assert rig.cell.parts_target == 1
    with pytest.raises(ValueError) as err:
        CellController(CFG, rig.ports, SKILLS_PLANNER, rig.clock, parts=bad)  # type: ignore[arg-type]
    assert str(err.value) == f"parts must be a whole number from 1 to 999999999, got {bad!r}"


def test_settings_apply_in_every_resting_state() -> None:
    rig = Rig(planner=instant_planner)
    rig.cell.set_parts(2)  # Stopped
    rig.cell.command("reset")
    rig.cell.set_parts(3)  # Idle
    rig.cell.command("start")
    assert rig.cell.state == State.COMPLETE and rig.cell.parts_done == 3
    rig.cell.set_parts(4)  # Complete
    rig.cell.command("abort")
    rig.cell.set_job("weld_only")  # Aborted
    assert (rig.cell.job, rig.cell.parts_target) == ("weld_only", 4)


# ---------------------------------------------------------------------------------------------- ready check


def test_not_ready_keeps_starting_until_the_timeout_then_faults() -> None:
    rig = Rig(ready_check=lambda: "welder: no joint states", start_timeout=5.0)
    rig.cell.command("reset")
    assert rig.cell.command("start") == State.STARTING
    rig.run_until(lambda: rig.cell.state != State.STARTING, limit=1000)
    t = rig.clock.now()
    assert 5.0 < t <= 5.0 + DT + 1e-9
    assert rig.cell.state == State.ABORTED
    assert [what(f) for f in rig.faults] == [("NOT_READY", "cell", "welder: no joint states after 5 s", t)]
    assert all(p.log == [(t, "stop", None)] for p in rig.ports.values())  # nothing moved


def test_becoming_ready_before_the_timeout_starts_the_run() -> None:
    problem: list[str | None] = ["picker: driver not connected"]
    rig = Rig(planner=instant_planner, ready_check=lambda: problem[0], start_timeout=5.0)
    rig.cell.command("reset")
    rig.cell.command("start")
    rig.run_until(lambda: rig.clock.now() >= 4.0)
    assert rig.cell.state == State.STARTING and rig.ports["picker"].log == []
    problem[0] = None
    rig.step()
    assert rig.cell.state == State.COMPLETE and rig.faults == []


def test_start_timeout_counts_wall_time() -> None:
    wall = VirtualClock(1000.0)
    rig = Rig(ready_check=lambda: "not homed", start_timeout=2.0, wall_clock=wall)
    rig.cell.command("reset")
    rig.cell.command("start")
    for _ in range(100):  # the cell clock stands still (no /clock yet), wall time goes on
        if rig.cell.state != State.STARTING:
            break
        wall.advance(0.5)
        rig.cell.update()
    assert rig.cell.state == State.ABORTED and wall.now() == 1002.5
    assert [what(f) for f in rig.faults] == [("NOT_READY", "cell", "not homed after 2 s", 0.0)]


def test_start_timeout_counts_from_this_start_not_an_earlier_one() -> None:
    rig = Rig(ready_check=lambda: "not homed", start_timeout=5.0)
    rig.cell.command("reset")
    rig.cell.command("start")
    rig.run_until(lambda: rig.clock.now() >= 3.0)
    assert rig.cell.command("stop") == State.STOPPED
    rig.run_until(lambda: rig.clock.now() >= 100.0, limit=5000, max_dt=1.0)
    rig.cell.command("reset")
    assert rig.cell.command("start") == State.STARTING  # not an immediate NOT_READY from the old attempt
    started = rig.clock.now()
    rig.run_until(lambda: rig.cell.state != State.STARTING, limit=1000)
    assert rig.clock.now() - started > 5.0 and rig.faults[0].code == "NOT_READY"


def test_a_step_boundary_is_journalled_after_the_next_step_is_dispatched(tmp_path: Path) -> None:
    """The fsync of a step boundary is not on the way to the next step's first command (it follows it)."""
    from cobot_cell.core.journal import Journal

    order: list[str] = []

    class Recording(Journal):
        def flush(self) -> None:
            if self.deferred:
                order.append(f"journal {self.deferred}")
            super().flush()

        def alive(self, time: float, defer: bool = False) -> None:
            pass  # the periodic liveness record is not a step boundary

    rig = Rig(planner=one_second_planner, journal=Recording(tmp_path / "j.db"))
    rig.start()
    welder = rig.ports["welder"]
    move = welder.move
    welder.move = lambda traj, start=None: (order.append("welder moves"), move(traj, start))[1]  # type: ignore
    rig.run_until(lambda: bool(welder.log))
    # picker's step ended and welder's step started in the same update: the dispatch came first
    assert order == ["welder moves", "journal 1"]
    ended = Journal(tmp_path / "j.db").interrupted()
    assert ended is not None and list(ended.steps_done) == ["load_blank"]


def test_the_controller_keeps_only_the_recent_reports() -> None:
    """A cell running for weeks keeps a bounded number of reports in memory (the supervisor logs them all)."""
    n = RECENT_REPORTS + 5
    rig = Rig(planner=one_second_planner, parts=n)
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert rig.cell.parts_done == n and len(rig.cycles) == n
    assert [r.part for r in rig.cell.reports] == list(range(6, n + 1))


@pytest.mark.parametrize("bad", [10**9, 10**12])
def test_part_count_is_bounded_by_what_the_pendant_can_show(bad: int) -> None:
    from cobot_cell.core.limits import MAX_PARTS

    assert MAX_PARTS == 999_999_999
    rig = Rig()
    with pytest.raises(ValueError) as err:
        rig.cell.set_parts(bad)
    assert str(err.value) == f"parts must be a whole number from 1 to 999999999, got {bad}"
    assert rig.cell.parts_target == 1
    rig.cell.set_parts(MAX_PARTS)
    assert rig.cell.parts_target == MAX_PARTS
