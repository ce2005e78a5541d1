"""Job sequencer (cobot_cell.core.sequencer) over FakeCobots on a VirtualClock: timing, DAG parallelism, pause, faults.

Time only moves when a test advances the clock; every wait is a loop with an iteration bound.
Synthetic plans use durations that are multiples of the update step (exact binary fractions), so the step start and
end times can be compared exactly with the planned ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cobot_cell.core.config import Job, Step
from cobot_cell.core.plan import Dwell, Move, Segment, SetIo, SkillPlan, SkillState
from cobot_cell.core.ports import FakeCobot, VirtualClock
from cobot_cell.core.reports import CycleReport
from cobot_cell.core.sequencer import JobSequencer, StepFailure
from cobot_cell.core.validation import validate

DT = 0.125
Q0 = np.zeros(6)


@dataclass(frozen=True)
class Traj:
    """The least a trajectory has to offer the core: a duration and a final position."""

    duration: float
    final: np.ndarray


def move(seconds: float) -> tuple[str, float]:
    return ("move", seconds)


def io(name: str, value: bool = True) -> tuple[str, str, bool]:
    return ("io", name, value)


def dwell(seconds: float) -> tuple[str, float]:
    return ("dwell", seconds)


class SyntheticPlanner:
    """Plans each step from a fixed recipe; every move adds 1 rad to joint 0. Records every call."""

    def __init__(self, recipes: dict[str, list[tuple]], clock: VirtualClock):
        self.recipes = recipes
        self.clock = clock
        self.calls: list[tuple[str, int, np.ndarray, float]] = []
        self.fail: dict[str, str] = {}

    def __call__(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        self.calls.append((step.name, part, q.copy(), self.clock.now()))
        if step.name in self.fail:
            raise ValueError(self.fail[step.name])
        segs: list[Segment] = []
        cur = np.asarray(q, dtype=float).copy()
        for spec in self.recipes[step.name]:
            if spec[0] == "move":
                cur = cur.copy()
                cur[0] += 1.0
                segs.append(Move(Traj(spec[1], cur), f"{step.name} move"))
            elif spec[0] == "io":
                segs.append(SetIo("tool", spec[1], spec[2]))
            else:
                segs.append(Dwell(spec[1]))
        return SkillPlan(tuple(segs), cur)


def make_job(*steps: tuple[str, str, list[str]]) -> Job:
    """Steps as (name, cobot, after)."""
    return validate(Job, {"steps": [{"name": n, "skill": "pick", "cobot": c, "after": a} for n, c, a in steps]})


class Rig:
    """A sequencer, its FakeCobots, the clock and the synthetic planner, with a bounded driving loop."""

    def __init__(
        self,
        job: Job,
        recipes: dict[str, list[tuple]],
        cobots: tuple[str, ...] = ("c1", "c2"),
        start: float = 10.0,
        skill_state: dict | None = None,
    ):
        self.clock = VirtualClock(start)
        self.ports = {n: FakeCobot(n, self.clock, Q0) for n in cobots}
        self.planner = SyntheticPlanner(recipes, self.clock)
        self.seq = JobSequencer("cell", "job", job, self.ports, self.planner, self.clock, skill_state=skill_state)
        self.reports: list[CycleReport] = []

    def tick(self) -> None:
        """One update, then time moves on by DT."""
        self.reports += self.seq.update()
        self.clock.advance(DT)

    def run_until(self, cond: Callable[[], bool], limit: int = 10_000) -> None:
        """Update and advance until cond() holds right after an update (bounded)."""
        for _ in range(limit):
            self.reports += self.seq.update()
            if cond():
                return
            self.clock.advance(DT)
        raise AssertionError(f"condition not met within {limit} updates")

    def run_until_time(self, t: float) -> None:
        """Update at every tick up to and including time t."""
        self.run_until(lambda: self.clock.now() >= t - 1e-9)

    def run_part(self, part: int = 1, run_id: str = "run") -> CycleReport:
        self.seq.start_part(part, run_id)
        n = len(self.reports)
        self.run_until(lambda: len(self.reports) > n)
        return self.reports[-1]


def timings(report: CycleReport) -> dict[str, tuple[float, float]]:
    return {s.step: (s.start, s.end) for s in report.steps}


# ---------------------------------------------------------------------------------------------- timing


def test_linear_job_step_times_are_the_sums_of_planned_durations() -> None:
    job = make_job(("a", "c1", []), ("b", "c2", ["a"]), ("c", "c1", ["b"]))
    recipes = {
        "a": [move(1.0), io("grip"), dwell(0.5), move(0.25)],  # 1.75 s
        "b": [dwell(0.25), io("arc"), move(2.0), io("arc", False)],  # 2.25 s
        "c": [move(0.375), io("grip", False), dwell(0.5)],  # 0.875 s
    }
    rig = Rig(job, recipes, start=10.0)
    report = rig.run_part(part=7, run_id="r1")
    assert timings(report) == {"a": (10.0, 11.75), "b": (11.75, 14.0), "c": (14.0, 14.875)}
    assert (report.cell, report.job, report.run_id, report.part) == ("cell", "job", "r1", 7)
    assert (report.start, report.end, report.cycle_time) == (10.0, 14.875, 4.875)
    assert [(s.step, s.skill, s.cobot) for s in report.steps] == [
        ("a", "pick", "c1"),
        ("b", "pick", "c2"),
        ("c", "pick", "c1"),
    ]
    # each segment is dispatched the moment the one before it ends
    assert rig.ports["c1"].log == [
        (10.0, "move", 1.0),
        (11.0, "io:grip", True),
        (11.5, "move", 0.25),
        (14.0, "move", 0.375),
        (14.375, "io:grip", False),
    ]
    assert rig.ports["c2"].log == [(12.0, "io:arc", True), (12.0, "move", 2.0), (14.0, "io:arc", False)]
    assert rig.ports["c1"].io == {"grip": False} and rig.ports["c2"].io == {"arc": False}
    assert not rig.seq.active and not rig.seq.in_flight


def test_plans_start_from_the_cobot_and_then_from_where_the_last_plan_ends() -> None:
    job = make_job(("a", "c1", []), ("b", "c1", ["a"]))
    rig = Rig(job, {"a": [move(0.5), move(0.5)], "b": [move(0.25)]}, cobots=("c1",))
    rig.run_part(1)
    rig.run_part(2)
    starts = [(name, part, q[0]) for name, part, q, _ in rig.planner.calls]
    # a: from the measured home (0), two moves -> 2; b: from 2 -> 3; part 2 continues from 3
    assert starts == [("a", 1, 0.0), ("b", 1, 2.0), ("a", 2, 3.0), ("b", 2, 5.0)]
    assert rig.reports[1].start == rig.reports[0].end


@pytest.mark.parametrize("b_time, c_time", [(2.0, 3.0), (3.0, 2.0), (2.5, 2.5)])
def test_diamond_runs_branches_in_parallel_and_joins(b_time: float, c_time: float) -> None:
    #      a (c1)
    #     /      \
    #  b (c1)   c (c2)
    #     \      /
    #      d (c2)
    job = make_job(("a", "c1", []), ("b", "c1", ["a"]), ("c", "c2", ["a"]), ("d", "c2", ["b", "c"]))
    rig = Rig(
        job, {"a": [move(1.0)], "b": [move(b_time)], "c": [dwell(0.5), move(c_time - 0.5)], "d": [move(0.5)]}, start=0.0
    )
    t = timings(rig.run_part())
    join = 1.0 + max(b_time, c_time)
    assert t == {"a": (0.0, 1.0), "b": (1.0, 1.0 + b_time), "c": (1.0, 1.0 + c_time), "d": (join, join + 0.5)}
    (b0, b1), (c0, c1) = t["b"], t["c"]
    assert b0 < c1 and c0 < b1  # the branches overlap in time
    assert rig.reports[0].cycle_time == join + 0.5


def test_parallel_branches_are_both_under_way_at_once() -> None:
    job = make_job(("a", "c1", []), ("b", "c1", ["a"]), ("c", "c2", ["a"]))
    rig = Rig(job, {"a": [move(1.0)], "b": [move(2.0)], "c": [move(2.0)]}, start=0.0)
    rig.seq.start_part(1, "r")
    rig.run_until_time(1.5)
    assert rig.seq.busy_cobots() == {"c1", "c2"}
    assert set(rig.seq.progress.running) == {"b", "c"}
    assert rig.seq.in_flight


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_ready_steps_on_one_cobot_run_one_after_the_other_in_file_order(order: tuple[str, str]) -> None:
    durations = {"a": 1.0, "b": 0.5}
    job = make_job(*[(n, "c1", []) for n in order], ("c", "c2", []))
    rig = Rig(job, {"a": [move(1.0)], "b": [move(0.5)], "c": [move(0.25)]}, start=0.0)
    t = timings(rig.run_part())
    first, second = order
    assert t[first] == (0.0, durations[first])
    assert t[second] == (durations[first], 1.5)
    assert t["c"] == (0.0, 0.25)  # the other cobot does not wait
    # never two moves at once on c1
    moves = [(t0, t0 + d) for t0, kind, d in rig.ports["c1"].log if kind == "move"]
    assert all(e0 <= s1 for (_, e0), (s1, _) in zip(moves, moves[1:]))


def test_instant_steps_finish_in_one_update() -> None:
    job = make_job(("a", "c1", []), ("b", "c2", ["a"]))
    rig = Rig(job, {"a": [io("x")], "b": [io("y"), move(0.0)]}, start=3.0)
    rig.seq.start_part(1, "r")
    [report] = rig.seq.update()
    assert timings(report) == {"a": (3.0, 3.0), "b": (3.0, 3.0)}


# ---------------------------------------------------------------------------------------------- failures


def what_failed(failure: StepFailure | None) -> tuple[str, str, str, str, float]:
    """Step, cobot, skill, reason and time of a failure."""
    assert failure is not None
    return failure.step, failure.cobot, failure.skill, failure.reason, failure.time


def test_io_failure_is_a_step_failure_naming_step_cobot_and_reason() -> None:
    job = make_job(("a", "c1", []), ("b", "c2", ["a"]))
    rig = Rig(job, {"a": [move(1.0)], "b": [move(0.5), io("torch/arc"), move(1.0)]}, start=0.0)
    rig.ports["c2"].fail_io.add("torch/arc")
    rig.seq.start_part(1, "r")
    rig.run_until(lambda: rig.seq.failure is not None)
    assert what_failed(rig.seq.failure) == ("b", "c2", "pick", "IO service 'torch/arc' failed", 1.5)
    assert rig.clock.now() == 1.5
    log = list(rig.ports["c2"].log)
    for _ in range(20):
        rig.tick()
    assert rig.reports == []
    assert rig.ports["c2"].log == log  # nothing more is dispatched
    assert "torch/arc" not in rig.ports["c2"].io


def test_planning_error_is_a_step_failure() -> None:
    job = make_job(("a", "c1", []))
    rig = Rig(job, {"a": [move(1.0)]}, start=2.0)
    rig.planner.fail["a"] = "target out of reach"
    rig.seq.start_part(1, "r")
    assert rig.seq.update() == []
    assert what_failed(rig.seq.failure) == ("a", "c1", "pick", "cannot plan: target out of reach", 2.0)
    assert rig.ports["c1"].log == []


def test_no_joint_state_is_a_step_failure() -> None:
    class Blind(FakeCobot):
        def joint_positions(self) -> None:  # type: ignore[override]
            return None

    clock = VirtualClock()
    job = make_job(("a", "c1", []))
    seq = JobSequencer("cell", "job", job, {"c1": Blind("c1", clock, Q0)}, SyntheticPlanner({"a": []}, clock), clock)
    seq.start_part(1, "r")
    seq.update()
    assert what_failed(seq.failure) == ("a", "c1", "pick", "no joint state from cobot 'c1'", 0.0)


def test_a_new_part_clears_the_failure() -> None:
    rig = Rig(make_job(("a", "c1", [])), {"a": [io("x"), move(0.5)]}, cobots=("c1",))
    rig.ports["c1"].fail_io.add("x")
    rig.seq.start_part(1, "r")
    rig.seq.update()
    assert rig.seq.failure is not None
    rig.seq.abandon()
    rig.ports["c1"].fail_io.clear()
    report = rig.run_part(2)
    assert rig.seq.failure is None and report.part == 2


def test_every_cobot_of_the_job_needs_a_port() -> None:
    clock = VirtualClock()
    job = make_job(("a", "c1", []), ("b", "c3", []), ("c", "c2", []))
    with pytest.raises(ValueError) as err:
        JobSequencer("cell", "bracket", job, {"c1": FakeCobot("c1", clock, Q0)}, SyntheticPlanner({}, clock), clock)
    assert str(err.value) == "job 'bracket': no port for cobot(s) c2, c3"


def test_one_part_at_a_time() -> None:
    rig = Rig(make_job(("a", "c1", [])), {"a": [move(1.0)]})
    rig.seq.start_part(1, "r")
    with pytest.raises(RuntimeError) as err:
        rig.seq.start_part(2, "r")
    assert str(err.value) == "1 part(s) already in flight, the most this cell allows"
    with pytest.raises(RuntimeError) as err:
        rig.seq.start_part(1, "r")
    assert str(err.value) == "part 1 is already under way"


def test_update_without_a_part_does_nothing() -> None:
    rig = Rig(make_job(("a", "c1", [])), {"a": [move(1.0)]})
    assert rig.seq.update() == [] and not rig.seq.active and not rig.seq.in_flight
    assert rig.seq.busy_cobots() == set() and rig.ports["c1"].log == []


# ---------------------------------------------------------------------------------------------- pause


def test_pause_lets_the_move_in_flight_finish_and_dispatches_nothing_new() -> None:
    job = make_job(("a", "c1", []), ("b", "c1", ["a"]))
    rig = Rig(job, {"a": [move(1.0), move(1.0)], "b": [move(0.5)]}, cobots=("c1",), start=0.0)
    rig.seq.start_part(1, "r")
    rig.run_until_time(0.5)
    rig.seq.paused = True
    rig.run_until(lambda: not rig.seq.in_flight)
    assert rig.clock.now() == 1.0  # exactly when the move ends
    assert rig.ports["c1"].log == [(0.0, "move", 1.0)]
    assert rig.ports["c1"].joint_positions()[0] == 1.0
    for _ in range(80):  # ten seconds paused
        rig.tick()
    assert rig.ports["c1"].log == [(0.0, "move", 1.0)] and rig.reports == []
    resume = rig.clock.now()
    rig.seq.paused = False
    rig.run_until(lambda: bool(rig.reports))
    assert rig.ports["c1"].log == [(0.0, "move", 1.0), (resume, "move", 1.0), (resume + 1.0, "move", 0.5)]
    assert timings(rig.reports[0]) == {"a": (0.0, resume + 1.0), "b": (resume + 1.0, resume + 1.5)}


def test_pause_waits_for_a_dwell_in_progress() -> None:
    rig = Rig(make_job(("a", "c1", [])), {"a": [dwell(1.0), move(1.0)]}, cobots=("c1",), start=0.0)
    rig.seq.start_part(1, "r")
    rig.run_until_time(0.25)
    rig.seq.paused = True
    rig.run_until(lambda: not rig.seq.in_flight)
    assert rig.clock.now() == 1.0
    assert rig.ports["c1"].log == []


def test_pause_holds_back_steps_whose_predecessors_are_done() -> None:
    job = make_job(("a", "c1", []), ("b", "c2", ["a"]))
    rig = Rig(job, {"a": [move(1.0)], "b": [move(1.0)]}, start=0.0)
    rig.seq.start_part(1, "r")
    rig.run_until_time(0.5)
    rig.seq.paused = True
    for _ in range(40):
        rig.tick()
    assert "a" in rig.seq.progress.done and rig.seq.progress.running == {}
    assert rig.ports["c2"].log == []
    resume = rig.clock.now()
    rig.seq.paused = False
    rig.run_until(lambda: bool(rig.reports))
    assert timings(rig.reports[0]) == {"a": (0.0, 1.0), "b": (resume, resume + 1.0)}


# ---------------------------------------------------------------------------------------------- abandon


def test_abandon_stops_every_cobot_and_drops_the_part() -> None:
    job = make_job(("a", "c1", []), ("b", "c1", ["a"]), ("c", "c2", ["a"]))
    rig = Rig(job, {"a": [move(1.0)], "b": [move(2.0)], "c": [move(2.0)]}, start=0.0)
    rig.seq.start_part(4, "r")
    rig.run_until_time(1.5)
    pendings = {n: p for n, p in ((r.step.cobot, r.pending) for r in rig.seq.progress.running.values())}
    dropped = rig.seq.abandon()
    assert dropped is not None and dropped.part == 4 and set(dropped.done) == {"a"}
    assert set(dropped.running) == {"b", "c"}
    for name, port in rig.ports.items():
        assert port.log[-1] == (1.5, "stop", None), name
        assert pendings[name].done and pendings[name].error == "stopped"
    assert not rig.seq.active and not rig.seq.in_flight and rig.seq.busy_cobots() == set()
    logs = {n: list(p.log) for n, p in rig.ports.items()}
    for _ in range(40):
        rig.tick()
    assert {n: p.log for n, p in rig.ports.items()} == logs and rig.reports == []
    # the arms stopped where they were along their moves (b: 1.0 -> 3.0, c: 0.0 -> 2.0, both 0.5 s in)
    stopped = {n: float(p.joint_positions()[0]) for n, p in rig.ports.items()}
    assert 1.0 < stopped["c1"] < 3.0 and 0.0 < stopped["c2"] < 2.0
    # the next part plans from where the cobots really are, not where the dropped plans would have left them
    rig.planner.calls.clear()
    report = rig.run_part(5)
    assert report.part == 5
    assert {(name, q[0]) for name, _, q, _ in rig.planner.calls} == {
        ("a", stopped["c1"]),
        ("b", stopped["c1"] + 1.0),
        ("c", stopped["c2"]),
    }


def test_abandon_without_a_part_still_stops_the_cobots() -> None:
    rig = Rig(make_job(("a", "c1", [])), {"a": []})
    assert rig.seq.abandon() is None
    assert [p.log for p in rig.ports.values()] == [[(10.0, "stop", None)], [(10.0, "stop", None)]]


# ---------------------------------------------------------------------------------------------- real skills


class Timeline:
    """Wraps a planner and remembers when each planned segment is due to end, so the clock can land on it."""

    def __init__(self, planner: Callable[[Step, int, np.ndarray], SkillPlan], clock: VirtualClock):
        self.inner = planner
        self.clock = clock
        self.due: list[float] = []

    def __call__(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        plan = self.inner(step, part, q)
        t = self.clock.now()
        for seg in plan.segments:
            t += seg.trajectory.duration if isinstance(seg, Move) else seg.seconds if isinstance(seg, Dwell) else 0.0
            heapq.heappush(self.due, t)
        return plan

    def advance(self, max_dt: float) -> None:
        """Move the clock by max_dt, or less to land exactly on the next due instant."""
        now = self.clock.now()
        while self.due and self.due[0] <= now + 1e-12:
            heapq.heappop(self.due)
        target = min(self.due[0], now + max_dt) if self.due else now + max_dt
        self.clock.advance(target - now)


class CheckedCobot(FakeCobot):
    """A FakeCobot that remembers how far each trajectory starts from where the arm is."""

    gaps: list[float]

    def move(self, trajectory, start=None):  # type: ignore[no-untyped-def]
        self.gaps = getattr(self, "gaps", [])
        self.gaps.append(float(np.max(np.abs(trajectory.start - self.joint_positions()))))
        return super().move(trajectory, start)


def test_demo_cell_with_the_skills_planner() -> None:
    from cobot_cell.skills import estimate, load_cell, make_planner

    cfg = load_cell(Path(__file__).resolve().parents[2] / "config" / "demo_cell.yaml")
    clock = VirtualClock(100.0)
    ports = {n: CheckedCobot(n, clock, np.asarray(c.home)) for n, c in cfg.cobots.items()}
    timeline = Timeline(make_planner(cfg), clock)
    seq = JobSequencer(cfg.cell.name, "bracket", cfg.jobs["bracket"], ports, timeline, clock)
    reports = []
    for part in (1, 2):
        seq.start_part(part, "demo-run")
        for _ in range(20_000):
            done = seq.update()
            if done:
                reports += done
                break
            timeline.advance(0.05)
        else:
            raise AssertionError("part did not finish")
    for report, part in zip(reports, (1, 2)):
        est = estimate(cfg, "bracket", part=part)
        t = report.start
        for timing, e in zip(report.steps, est):  # the job is a chain: each step starts when the one before ends
            assert (timing.step, timing.cobot) == (e.step, e.cobot)
            assert timing.start == pytest.approx(t, abs=1e-6)
            assert timing.duration == pytest.approx(e.duration, abs=1e-6)
            t = timing.end
        assert report.cycle_time == pytest.approx(sum(e.duration for e in est), abs=1e-6)
    assert reports[0].start == 100.0 and reports[1].start == reports[0].end
    # every trajectory the cobots were sent starts where the arm was
    for port in ports.values():
        assert port.gaps and max(port.gaps) < 1e-9
    assert ports["picker"].io == {"gripper/grip": False} and ports["welder"].io == {"torch/arc": False}


# ---------------------------------------------------------------------------------------------- planning ahead

CHAIN = (("a", "c1", []), ("b", "c2", ["a"]), ("c", "c1", ["b"]))
CHAIN_RECIPES = {"a": [move(1.0), io("grip")], "b": [move(2.0)], "c": [move(0.5), move(0.25)]}


class PreparingCobot(FakeCobot):
    """A FakeCobot that notes the trajectories it is told to prepare and those it is told to move along."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prepared: list[object] = []
        self.moved: list[object] = []

    def prepare(self, trajectory) -> None:
        self.prepared.append(trajectory)

    def move(self, trajectory, start=None):
        self.moved.append(trajectory)
        return super().move(trajectory, start)


def ahead_rig() -> Rig:
    rig = Rig(make_job(*CHAIN), CHAIN_RECIPES, skill_state=SkillState())
    rig.ports = {n: PreparingCobot(n, rig.clock, Q0) for n in ("c1", "c2")}
    rig.seq = JobSequencer(
        "cell", "job", rig.seq.job, rig.ports, rig.planner, rig.clock, skill_state=rig.seq.skill_state
    )
    return rig


def preplan_all(rig: Rig) -> int:
    n = 0
    while rig.seq.preplan():
        n += 1
    return n


def test_the_next_steps_are_planned_while_the_first_one_moves_and_used_as_planned() -> None:
    rig = ahead_rig()
    rig.seq.start_part(1, "r1")
    rig.seq.update()  # a starts on c1
    assert preplan_all(rig) == 1  # c1's next step (c) from where a ends; c2 has no expected position yet
    rig.run_until(lambda: "b" in rig.seq.progress.running)
    preplan_all(rig)
    rig.run_until(lambda: bool(rig.reports))
    calls = [(name, q[0], t) for name, _, q, t in rig.planner.calls]
    # c was planned at 10.0, while a was still moving, from a's end position, and not planned again
    assert calls[:2] == [("a", 0.0, 10.0), ("c", 1.0, 10.0)]
    assert [name for name, _, _ in calls].count("c") == 1
    # the same timings as planning at each step start
    plain = Rig(make_job(*CHAIN), CHAIN_RECIPES)
    assert (
        timings(rig.reports[0])
        == timings(plain.run_part(1, "r1"))
        == {"a": (10.0, 11.0), "b": (11.0, 13.0), "c": (13.0, 13.75)}
    )


def test_a_plan_made_ahead_is_given_to_the_port_to_prepare_and_then_moved_along() -> None:
    rig = ahead_rig()
    rig.seq.start_part(1, "r1")
    rig.seq.update()
    preplan_all(rig)
    c1 = rig.ports["c1"]
    assert len(c1.prepared) == 2  # c's two moves, before c starts
    rig.run_until(lambda: bool(rig.reports))
    assert [id(t) for t in c1.moved[1:]] == [id(t) for t in c1.prepared]  # a's move, then c's prepared ones


def test_a_plan_made_ahead_is_dropped_when_the_start_position_changed() -> None:
    rig = ahead_rig()
    rig.seq.start_part(1, "r1")
    rig.seq.update()
    preplan_all(rig)
    rig.run_until(lambda: "b" in rig.seq.progress.running)
    rig.seq.expected_q["c1"] = np.full(6, 0.5)  # c1 was moved by other means (a recovery, a resume)
    rig.run_until(lambda: bool(rig.reports))
    c_calls = [q[0] for name, _, q, _ in rig.planner.calls if name == "c"]
    assert c_calls == [1.0, 0.5]  # planned ahead from 1.0, planned again from where c1 really starts


def test_a_plan_made_ahead_is_dropped_when_skill_state_it_read_changed() -> None:
    state = SkillState({"next_place": 0})
    rig = ahead_rig()
    rig.seq = JobSequencer("cell", "job", rig.seq.job, rig.ports, rig.planner, rig.clock, skill_state=state)
    places: list[int] = []
    inner = rig.planner

    def reading(step, part, q):
        if step.name == "c":
            places.append(state.get("next_place"))
        return inner(step, part, q)

    rig.seq.planner = reading
    rig.seq.start_part(1, "r1")
    rig.seq.update()
    preplan_all(rig)
    assert places == [0]
    state["next_place"] = 1  # e.g. a palletise step of another cobot took place 0 meanwhile
    rig.run_until(lambda: bool(rig.reports))
    assert places == [0, 1]
