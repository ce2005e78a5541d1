"""Fault policies, driver faults, safe resume and the journal through the CellController (cobot_cell.core.cell).

The demo cell (config/demo_cell.yaml) with fault policies added to the job or a step, on the shared SkillsRig
(tests/unit/rig.py): the skills planner sharing the controller's skill state, SkillRecovery for the recovery motions,
FakeCobots on a VirtualClock. The clock moves in small steps (at most DT), landing exactly on the instants where
planned and recovery segments end; every wait is a loop with an iteration bound; nothing sleeps. A crash of the
planner is simulated by dropping its controller and building a new one on the same journal file, with fresh
FakeCobots put where the old ones were.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rig import DT, WatchedJournal
from rig import SkillsRig as Rig

from cobot_cell.core.config import CellConfig, CellFileError, parse_cell
from cobot_cell.core.faults import Code, Fault, FaultPolicy
from cobot_cell.core.journal import Journal
from cobot_cell.core.packml import CommandRefused, State
from cobot_cell.core.plan import Move
from cobot_cell.core.ports import VirtualClock
from cobot_cell.core.reports import CycleReport
from cobot_cell.motion.trajectory import joint_move
from cobot_cell.skills import load_cell
from cobot_cell.skills.common import SkillContext

REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "config" / "demo_cell.yaml").read_text(encoding="utf-8")
WELD_ONLY = """
  weld_only:
    steps:
      - name: weld
        skill: weld
        cobot: welder
        params: {station: fixture, speed: 0.05, seams: [[[-0.05, 0.0, 0.05], [0.05, 0.0, 0.05]]]}
"""
HOME = np.asarray([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])
ARC, GRIP = "torch/arc", "gripper/grip"
SEAM_KEY, PALLET_KEY = "part.1.weld.fixture.progress", "pallet.pallet.next"  # part 1's seam progress


def cell_text(job: str | None = None, steps: dict[str, str] | None = None, weld_only: bool = False) -> str:
    """The demo cell file with `fault_policy: <job>` on the bracket job and `fault_policy: <p>` on named steps."""
    text = DEMO + (WELD_ONLY if weld_only else "")
    if job is not None:
        text = text.replace("  bracket:\n", f"  bracket:\n    fault_policy: {job}\n", 1)
    for name, policy in (steps or {}).items():
        anchor = f"      - name: {name}\n"
        assert anchor in text
        text = text.replace(anchor, f"{anchor}        fault_policy: {policy}\n", 1)
    return text


@functools.cache
def cell(job: str | None = None, weld_only: bool = False, **steps: str) -> CellConfig:
    return parse_cell(cell_text(job, steps, weld_only))[0]


def life(f: Fault) -> tuple[str, str, float, float | None, float | None]:
    """Code, source and the three life cycle times of a fault."""
    return f.code.value, f.source, f.raised, f.acknowledged, f.cleared


def welder_in_a_long_move(rig: Rig, min_left: float = 1.0) -> Callable[[], bool]:
    def cond() -> bool:
        log = rig.ports["welder"].log
        return bool(log) and log[-1][1] == "move" and log[-1][0] + log[-1][2] - rig.clock.now() > min_left

    return cond


# ---------------------------------------------------------------------------------------------- bad input


def test_the_demo_cell_variants_are_valid_cell_files(tmp_path: Path) -> None:
    file = tmp_path / "cell.yaml"
    text = cell_text("{retries: 2, then: scrap}", {"weld_seams": "{retries: 0, then: abort}"})
    file.write_text(text, encoding="utf-8")
    cfg = load_cell(file)  # structure, references, skill parameters and reachability
    assert cfg == cell("{retries: 2, then: scrap}", weld_seams="{retries: 0, then: abort}")
    assert cfg.jobs["bracket"].fault_policy == FaultPolicy(retries=2, then="scrap")
    assert cfg.jobs["bracket"].step("weld_seams").fault_policy == FaultPolicy(retries=0, then="abort")
    assert cfg.jobs["bracket"].step("load_blank").fault_policy is None


@pytest.mark.parametrize(
    "where, policy, path, message",
    [
        (
            "job",
            "{retries: -1}",
            "jobs.bracket.fault_policy.retries",
            "input should be greater than or equal to 0, got -1",
        ),
        (
            "job",
            "{retries: 11}",
            "jobs.bracket.fault_policy.retries",
            "input should be less than or equal to 10, got 11",
        ),
        (
            "job",
            "{then: explode}",
            "jobs.bracket.fault_policy.then",
            "got 'explode': input should be 'hold', 'abort' or 'scrap'",
        ),
        (
            "step",
            "{then: explode}",
            "jobs.bracket.steps[0].fault_policy.then",
            "got 'explode': input should be 'hold', 'abort' or 'scrap'",
        ),
        (
            "step",
            "{retries: -1}",
            "jobs.bracket.steps[0].fault_policy.retries",
            "input should be greater than or equal to 0, got -1",
        ),
        ("step", "{retry: 2}", "jobs.bracket.steps[0].fault_policy.retry", "unknown key"),
    ],
)
def test_a_bad_fault_policy_is_rejected_with_its_yaml_path(
    tmp_path: Path, where: str, policy: str, path: str, message: str
) -> None:
    text = cell_text(policy if where == "job" else None, {"load_blank": policy} if where == "step" else None)
    line = text.splitlines().index(f"{'    ' if where == 'job' else '        '}fault_policy: {policy}") + 1
    with pytest.raises(CellFileError) as err:
        parse_cell(text, "cell.yaml")
    assert [(i.path, i.message, i.line) for i in err.value.issues] == [(path, message, line)]
    assert str(err.value) == f"cell.yaml: 1 error\n  {path} (line {line}): {message}"
    file = tmp_path / "cell.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(CellFileError) as err:
        load_cell(file)
    assert str(err.value) == f"{file}: 1 error\n  {path} (line {line}): {message}"


# ---------------------------------------------------------------------------------------------- policy choice


def test_the_steps_policy_overrides_the_jobs() -> None:
    rig = Rig(cell("{retries: 0, then: abort}", weld_seams="{retries: 2, then: scrap}"), parts=2)
    assert rig.cell._policy("weld_seams") == FaultPolicy(retries=2, then="scrap")
    assert rig.cell._policy("load_blank") == FaultPolicy(retries=0, then="abort")
    assert Rig(cell()).cell._policy("palletise") == FaultPolicy()  # neither: the default
    rig.ports["welder"].fail_io.add(ARC)
    rig.start()
    rig.run_until(lambda: rig.cell.scrapped == 1)  # the welder: two retries then scrap, not the job's abort
    # the scrapped part is still in the fixture: the operator is told to take it out (and confirms)
    assert [f.code for f in rig.cell.faults.faults] == [Code.IO_FAILED] * 3 + [Code.SCRAP_TO_REMOVE]
    assert rig.removed == ["removed part 1 from fixture"]
    # two retries, then the welder's way home after the scrap (out of the fixture)
    assert len(rig.retreats) == 3 and rig.cell.state == State.EXECUTE
    rig.ports["welder"].fail_io.clear()
    rig.ports["picker"].fail_io.add(GRIP)
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)  # the picker: the job's policy, abort at once
    assert rig.cell.state == State.ABORTED
    assert life(rig.cell.fault)[:2] == ("IO_FAILED", "picker/load_blank") and len(rig.retreats) == 3


# ---------------------------------------------------------------------------------------------- IO failure


def test_io_failure_is_retried_from_the_safe_point_then_holds_and_recovers() -> None:
    retries = 2
    rig = Rig(cell(f"{{retries: {retries}, then: hold}}"), parts=2)
    rig.ports["welder"].fail_io.add(ARC)
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.HELD
    held_at = rig.clock.now()
    arcs = rig.io_times("welder", ARC, True)
    assert len(arcs) == retries + 1  # the first try and two retries
    # every failure is a fault; a retried one is cleared at once, the last one stays active while Held
    faults = rig.cell.faults.faults
    assert [(f.id, f.code, f.source, f.message) for f in faults] == [
        (i, Code.IO_FAILED, "welder/weld_seams", "IO service 'torch/arc' failed") for i in (1, 2, 3)
    ]
    assert [f.raised for f in faults] == pytest.approx(arcs, abs=1e-9)
    assert [life(f)[2:] for f in faults[:retries]] == [(t, t, t) for t in arcs[:retries]]
    assert (faults[-1].acknowledged, faults[-1].cleared) == (None, None)
    assert faults[-1].raised == pytest.approx(held_at, abs=1e-9)
    assert rig.cell.fault == faults[-1] and rig.cell.status().fault == faults[-1]
    # each retry: at the failure, retract then back to the step's start (home), then the step is redone
    log = rig.ports["welder"].log
    first_move = log[0][2]
    assert len(rig.retreats) == retries
    for t_fail, (step, q_actual, q_target, segs) in zip(arcs, rig.retreats):
        assert step == "weld_seams"
        np.testing.assert_allclose(q_target, HOME, atol=1e-12)
        assert float(np.max(np.abs(q_actual - HOME))) > 0.1  # it failed away from the safe point
        assert [s.label for s in segs] == [
            "torch off before recovery",
            "torch confirmed off",
            "retract",
            "return to safe point",
        ]
        moves = [s for s in segs if isinstance(s, Move)]
        i = next(k for k, e in enumerate(log) if e[0] == t_fail and e[1] == f"io:{ARC}")
        assert log[i + 1][1:] == (f"io:{ARC}", False)  # the arc is switched off before the arm moves
        after = [e for e in log[i + 1 :] if e[1] == "move"][: len(moves) + 1]
        assert [(e[0], e[1]) for e in after[:1]] == [(t_fail, "move")]
        assert [e[2] for e in after] == [s.trajectory.duration for s in moves] + [first_move]
    # Held: every cobot stopped, nothing moves, the position is kept
    assert all(
        (p.log[-1][1:] == ("stop", None) and p.log[-1][0] == pytest.approx(held_at, abs=1e-9))
        for p in rig.ports.values()
    )
    sizes, q_held = rig.log_sizes(), rig.positions()
    rig.wait(5.0)
    assert rig.cell.state == State.HELD and rig.log_sizes() == sizes
    assert all(np.array_equal(q_held[n], q) for n, q in rig.positions().items())
    # the operator acknowledges, fixes the IO, unholds: the step is redone from its safe point
    ack_at = rig.clock.now()
    assert rig.cell.acknowledge() == [rig.cell.faults.get(3)]
    assert life(rig.cell.faults.get(3))[2:] == (pytest.approx(held_at, abs=1e-9), ack_at, None)
    with pytest.raises(ValueError) as err:
        rig.cell.acknowledge()
    assert str(err.value) == "no active fault to acknowledge"
    rig.ports["welder"].fail_io.clear()
    rig.wait(5.0)
    unhold_at = rig.clock.now()
    assert rig.cell.command("unhold") == State.EXECUTE
    assert life(rig.cell.faults.get(3))[2:] == (pytest.approx(held_at, abs=1e-9), ack_at, unhold_at)
    assert rig.cell.fault is None and len(rig.retreats) == retries + 1
    # the step is redone from its safe point, the arc switched off before the first move
    assert [e[:2] for e in rig.ports["welder"].log[sizes["welder"] : sizes["welder"] + 2]] == [
        (unhold_at, f"io:{ARC}"),
        (unhold_at, "move"),
    ]
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done"), (2, "done")]
    assert rig.cell.journal.ledger() == [(rig.cell.run_id, 1, "done"), (rig.cell.run_id, 2, "done")]
    assert len(rig.io_times("welder", ARC, True)) == retries + 1 + 2 * 2  # then two seams per part
    # the diagnostics saw every change: raised, (acknowledged), cleared
    assert [(f.id, f.acknowledged is not None, f.cleared is not None) for f in rig.faults] == [
        (1, False, False),
        (1, True, True),
        (2, False, False),
        (2, True, True),
        (3, False, False),
        (3, True, False),
        (3, True, True),
    ]


def test_io_failure_with_abort_policy_aborts_after_the_retries() -> None:
    rig = Rig(cell("{retries: 1, then: abort}"), parts=2)
    rig.ports["welder"].fail_io.add(ARC)
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.ABORTED
    arcs = rig.io_times("welder", ARC, True)
    assert len(arcs) == 2 and len(rig.retreats) == 1
    one, two = rig.cell.faults.faults
    assert life(one)[:2] == ("IO_FAILED", "welder/weld_seams")
    assert life(one)[2:] == pytest.approx((arcs[0],) * 3, abs=1e-9)
    assert life(two) == ("IO_FAILED", "welder/weld_seams", arcs[1], None, None)
    assert all(
        (p.log[-1][1:] == ("stop", None) and p.log[-1][0] == pytest.approx(arcs[1], abs=1e-9))
        for p in rig.ports.values()
    )
    assert rig.states[-2:] == [
        (State.EXECUTE, State.ABORTING, "abort"),
        (State.ABORTING, State.ABORTED, "state_complete"),
    ]
    assert rig.cell.reports == [] and rig.cell.journal.ledger() == [(rig.cell.run_id, 1, "in_progress")]
    rig.wait(1.0)
    assert rig.cell.command("clear") == State.STOPPED and rig.cell.fault == two  # still active
    rig.wait(1.0)
    reset_at = rig.clock.now()
    assert rig.cell.command("reset") == State.IDLE
    assert life(rig.cell.faults.get(2))[2:] == (arcs[1], reset_at, reset_at)  # cleared (and acknowledged) at reset
    assert rig.cell.fault is None


def test_scrap_policy_scraps_the_part_and_the_run_goes_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    rig = Rig(cell(weld_seams="{retries: 1, then: scrap}"), parts=3, journal=journal)
    rig.start()
    rig.run_until(lambda: rig.cell.status().part == 2)
    rig.ports["welder"].fail_io.add(ARC)  # part 2's weld fails, and its retry
    rig.run_until(lambda: rig.cell.scrapped == 1)
    scrapped_at = rig.clock.now()
    arcs = rig.io_times("welder", ARC, True)[-2:]  # part 2's try and retry
    rig.ports["welder"].fail_io.clear()
    assert rig.cell.state == State.EXECUTE and rig.cell.parts_done == 2 and rig.cell.fault is None
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    reports = rig.cell.reports
    assert [(r.part, r.status) for r in reports] == [(1, "done"), (2, "scrap"), (3, "done")]
    assert rig.cycles == reports
    scrap = reports[1]
    assert [s.step for s in scrap.steps] == ["load_blank"]  # what it had done before it was scrapped
    assert rig.cell.parts_done == 3 and rig.cell.scrapped == 1
    status = rig.cell.status()
    assert (status.state, status.parts_done, status.scrap, status.fault) == (State.COMPLETE, 3, 1, None)
    assert rig.cell.last_cycle_time == reports[2].cycle_time
    run = rig.cell.run_id
    assert Journal(tmp_path / "journal.db").ledger() == [(run, 1, "done"), (run, 2, "scrap"), (run, 3, "done")]
    assert Journal(tmp_path / "journal.db").interrupted() is None
    # two faults, both handled by the policy: cleared when raised; then the scrapped part to take out of the
    # fixture, cleared when the operator confirms it is out
    assert [life(f) for f in rig.cell.faults.faults] == [("IO_FAILED", "welder/weld_seams", t, t, t) for t in arcs] + [
        ("SCRAP_TO_REMOVE", "welder/weld_seams", scrapped_at, scrapped_at, scrapped_at)
    ]
    assert arcs[-1] == scrapped_at and len(rig.retreats) == 2  # the retry's, then the way home after the scrap
    home = np.asarray(rig.cfg.cobots["welder"].home)
    assert rig.retreats[-1][0] == "weld_seams" and np.allclose(rig.retreats[-1][2], home)
    # scrapping stops the scrapped part's cobot at once, and only it
    assert (scrapped_at, "stop", None) in rig.ports["welder"].log
    assert (scrapped_at, "stop", None) not in rig.ports["picker"].log


def test_retries_are_counted_per_part() -> None:
    rig = Rig(cell(weld_seams="{retries: 1, then: scrap}"), parts=2)
    rig.ports["welder"].fail_io.add(ARC)
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.COMPLETE
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "scrap"), (2, "scrap")]
    # one retry for each part and its way home after the scrap; a fault to remove each scrapped part
    assert len(rig.cell.faults.faults) == 6 and len(rig.retreats) == 4
    assert rig.cell.faults.active == []


# ---------------------------------------------------------------------------------------------- grip miss


def test_grip_miss_is_detected_by_the_confirm_and_scraps_the_part() -> None:
    rig = Rig(cell(load_blank="{retries: 0, then: scrap}"), parts=2)
    rig.ports["picker"].grip_miss.add(GRIP)
    rig.start()
    rig.run_until(lambda: rig.cell.scrapped == 1)
    rig.ports["picker"].grip_miss.clear()
    grip_at = rig.io_times("picker", GRIP, True)[0]
    fault = rig.cell.faults.get(1)
    assert (fault.code, fault.source, fault.skill, fault.message) == (
        Code.GRIP_MISSED,
        "picker/load_blank",
        "pick",
        "'gripper/grip' of 'picker' not confirmed within 0.5 s (expected on)",
    )
    deadline = grip_at + 0.2 + 0.5  # grip settle, then the confirm timeout
    assert deadline - 1e-9 <= fault.raised <= deadline + DT
    assert (fault.acknowledged, fault.cleared) == (fault.raised, fault.raised)
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status, len(r.steps)) for r in rig.cell.reports] == [(1, "scrap", 0), (2, "done", 3)]
    assert rig.cell.journal.ledger() == [(rig.cell.run_id, 1, "scrap"), (rig.cell.run_id, 2, "done")]
    # a missed grip leaves nothing to take out: no part in the gripper, none on a fixture
    assert rig.removed == [] and Code.SCRAP_TO_REMOVE not in [f.code for f in rig.cell.faults.faults]


def test_grip_miss_with_the_default_policy_retries_once_then_holds() -> None:
    rig = Rig(cell(), parts=1)
    rig.ports["picker"].grip_miss.add(GRIP)
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.HELD
    assert [(f.code, f.active) for f in rig.cell.faults.faults] == [(Code.GRIP_MISSED, False), (Code.GRIP_MISSED, True)]
    assert [r[0] for r in rig.retreats] == ["load_blank"]
    np.testing.assert_allclose(rig.retreats[0][2], HOME, atol=1e-12)
    rig.ports["picker"].grip_miss.clear()
    rig.cell.acknowledge(2)
    assert rig.cell.command("unhold") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done")]


# ---------------------------------------------------------------------------------------------- skill errors


def test_a_skill_error_aborts_and_is_never_retried() -> None:
    rig = Rig(cell("{retries: 3, then: hold}"), parts=2)
    rig.plan_errors["weld_seams"] = lambda n: "seam 1 out of reach"
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.ABORTED
    assert [(f.code, f.source, f.skill, f.message, f.active) for f in rig.cell.faults.faults] == [
        (Code.SKILL_ERROR, "welder/weld_seams", "weld", "cannot plan: seam 1 out of reach", True)
    ]
    assert [p for p in rig.planned if p[0] == "weld_seams"] == [("weld_seams", 1)]  # planned once, not retried
    assert rig.retreats == [] and rig.cell.reports == []


def test_a_skill_error_on_the_replan_of_a_retry_aborts() -> None:
    rig = Rig(cell("{retries: 3, then: hold}"), parts=1)
    rig.plan_errors["weld_seams"] = lambda n: "fixture moved" if n >= 2 else None
    rig.ports["welder"].fail_io.add(ARC)
    rig.start()
    rig.run_until(lambda: rig.cell.state != State.EXECUTE)
    assert rig.cell.state == State.ABORTED
    assert [(f.code, f.message, f.active) for f in rig.cell.faults.faults] == [
        (Code.IO_FAILED, "IO service 'torch/arc' failed", False),
        (Code.SKILL_ERROR, "cannot plan: fixture moved", True),
    ]


# ---------------------------------------------------------------------------------------------- driver faults


@pytest.mark.parametrize(
    "code, state",
    [
        (Code.PROTECTIVE_STOP, State.HELD),
        (Code.ESTOP, State.ABORTED),
        (Code.DRIVER_ERROR, State.ABORTED),
        (Code.STALE_JOINT_STATES, State.ABORTED),
    ],
)
def test_driver_faults_ignore_the_policy(code: Code, state: State) -> None:
    rig = Rig(cell("{retries: 5, then: scrap}"), parts=1)
    rig.start()
    rig.run_until(welder_in_a_long_move(rig))
    t = rig.clock.now()
    fault = rig.cell.raise_fault(code, "driver reports trouble", cobot="welder")
    rig.cell.update()
    assert rig.cell.state == state
    assert life(fault) == (code.value, "welder", t, None, None) and rig.cell.fault == fault
    assert rig.faults == [fault]
    # every cobot stopped at once
    assert all(
        (p.log[-1][1:] == ("stop", None) and p.log[-1][0] == pytest.approx(t, abs=1e-9)) for p in rig.ports.values()
    )
    assert rig.retreats == [] and rig.cell.reports == []  # no retry, no scrap
    rig.wait(2.0)
    assert rig.cell.state == state


def test_protective_stop_holds_and_unhold_clears_it_and_resumes() -> None:
    rig = Rig(cell(), parts=1)
    rig.start()
    rig.run_until(welder_in_a_long_move(rig))
    t = rig.clock.now()
    rig.cell.raise_fault(Code.PROTECTIVE_STOP, "driver reports protective stop", cobot="welder")
    rig.cell.update()
    assert rig.cell.state == State.HELD
    rig.wait(3.0)
    ack = rig.clock.now()
    rig.cell.acknowledge(1)
    rig.wait(3.0)
    unhold = rig.clock.now()
    assert rig.cell.command("unhold") == State.EXECUTE
    assert life(rig.cell.faults.get(1)) == ("PROTECTIVE_STOP", "welder", t, ack, unhold)
    assert [r[0] for r in rig.retreats] == ["weld_seams"]  # the interrupted step is redone from its safe point
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done")]


def test_estop_aborts_then_clear_reset_start_resumes_the_part() -> None:
    rig = Rig(cell(), parts=2)
    rig.start()
    rig.run_until(welder_in_a_long_move(rig))
    t = rig.clock.now()
    rig.cell.raise_fault(Code.ESTOP, "driver reports estop", cobot="welder")
    rig.cell.update()
    assert rig.cell.state == State.ABORTED
    assert rig.cell.command("clear") == State.STOPPED
    assert rig.cell.status().resume == (
        f"run {rig.cell.run_id} of job 'bracket': part 1 interrupted after load_blank (on fixture) (0/2 parts finished)"
    )
    rig.wait(1.0)
    reset = rig.clock.now()
    assert rig.cell.command("reset") == State.IDLE
    assert life(rig.cell.faults.get(1)) == ("ESTOP", "welder", t, reset, reset)
    sizes = rig.log_sizes()
    assert rig.cell.command("start") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done"), (2, "done")]
    # part 1 resumed at the weld: the picker's next work is part 1's palletise (grip, release), not load_blank
    grips = [v for _, kind, v in rig.ports["picker"].log[sizes["picker"] :] if kind == f"io:{GRIP}"]
    assert grips == [True, False] * 3


# ---------------------------------------------------------------------------------------------- hold keeps position


def test_hold_keeps_position_and_unhold_checks_it() -> None:
    rig = Rig(cell(), parts=1)
    rig.start()
    rig.run_until(welder_in_a_long_move(rig))
    with pytest.raises(ValueError) as err:
        rig.cell.reapproach()
    assert str(err.value) == "cannot reapproach in state Execute: only when held, suspended or stopped"
    t = rig.clock.now()
    rig.cell.raise_fault(Code.PROTECTIVE_STOP, "driver reports protective stop", cobot="welder")
    rig.cell.update()
    assert rig.cell.state == State.HELD
    assert [p.log[-1] for p in rig.ports.values()] == [(t, "stop", None)] * 2
    q_held = rig.positions()
    with pytest.raises(ValueError) as err:
        rig.cell.reapproach()
    assert str(err.value) == "every cobot is where the cell expects it: nothing to reapproach"
    # an operator jogs the welder while Held
    jogged = q_held["welder"] + np.array([0.0, 0.0, 0.3, 0.0, 0.0, 0.0])
    rig.ports["welder"].set_position(jogged)
    rig.cell.acknowledge()
    with pytest.raises(CommandRefused) as refused:
        rig.cell.command("unhold")
    assert str(refused.value) == (
        "cannot unhold: cobot 'welder' is 0.300 rad (welder_elbow_joint) from where the cell left it "
        "(tolerance 0.02 rad): call reapproach to bring it back slowly"
    )
    assert rig.cell.state == State.HELD and rig.cell.fault is not None
    assert rig.cell.reapproach() == "reapproaching welder"
    assert rig.cell.reapproaching
    with pytest.raises(CommandRefused) as refused:
        rig.cell.command("unhold")
    assert str(refused.value) == "cannot unhold: a reapproach is under way"
    with pytest.raises(ValueError) as err:
        rig.cell.reapproach()
    assert str(err.value) == "a reapproach is already under way"
    rig.run_until(lambda: not rig.cell.reapproaching, limit=1000)
    cobot, q_from, q_to, segs = rig.reapproaches[0]
    assert cobot == "welder" and np.array_equal(q_from, jogged) and np.array_equal(q_to, q_held["welder"])
    np.testing.assert_array_equal(rig.ports["welder"].joint_positions(), q_held["welder"])
    np.testing.assert_array_equal(rig.ports["picker"].joint_positions(), q_held["picker"])  # untouched
    assert rig.cell.state == State.HELD
    unhold = rig.clock.now()
    assert rig.cell.command("unhold") == State.EXECUTE
    assert rig.cell.faults.get(1).cleared == unhold
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done")]


# ---------------------------------------------------------------------------------------------- resume


def crash_in_part_2(tmp_path: Path, cfg: CellConfig | None = None) -> tuple[Rig, Path, str]:
    """Run 3 parts with a file journal until part 2's first step is done, then drop the controller."""
    path = tmp_path / "journal.db"
    journal = WatchedJournal(path)
    rig = Rig(cfg or cell(), parts=3, journal=journal)
    rig.start()
    rig.run_until(lambda: (2, "load_blank") in journal.steps)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done")]
    return rig, path, rig.cell.run_id


def restarted(old: Rig, path: Path, positions: dict[str, np.ndarray] | None = None, **kwargs) -> Rig:
    """A new planner: new controller, new journal on the same file, fresh FakeCobots, its clock 30 s later."""
    return Rig(
        old.cfg,
        journal=WatchedJournal(path),
        clock=VirtualClock(old.clock.now() + 30.0),
        positions=positions if positions is not None else old.positions(),
        **kwargs,
    )


def test_a_restarted_planner_resumes_the_interrupted_part_at_the_interrupted_step(tmp_path: Path) -> None:
    old, path, run = crash_in_part_2(tmp_path)
    load_blank_2 = Journal(path).interrupted().steps_done["load_blank"]
    rig = restarted(old, path)
    status = rig.cell.status()
    assert (status.state, status.job, status.parts_target) == (State.STOPPED, "bracket", 3)  # from the journal
    assert status.resume == (
        f"run {run} of job 'bracket': part 2 interrupted after load_blank (on fixture) (1/3 parts finished)"
    )
    assert all(p.log == [] for p in rig.ports.values())  # coming up moves nothing
    rig.start()
    assert rig.cell.run_id == run and rig.cell.status().part == 2 and rig.cell.parts_done == 1
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    # part 2 went on at weld_seams: load_blank was not redone
    assert rig.planned[0] == ("weld_seams", 2) and ("load_blank", 2) not in rig.planned
    weld_2_end = rig.cell.reports[0].steps[1].end
    assert rig.ports["picker"].log[0][0] >= weld_2_end - 1e-9  # the picker's first move is part 2's palletise
    grips = [v for _, kind, v in rig.ports["picker"].log if kind == f"io:{GRIP}"]
    assert grips == [True, False] * 3  # palletise 2, load_blank 3, palletise 3
    assert len(rig.io_times("welder", ARC, True)) == 2 * 2  # two seams for parts 2 and 3
    assert [(r.run_id, r.part, r.status) for r in rig.cell.reports] == [(run, 2, "done"), (run, 3, "done")]
    assert rig.cell.reports[0].steps[0] == load_blank_2  # its first step, from before the crash
    assert [s.step for s in rig.cell.reports[0].steps] == ["load_blank", "weld_seams", "palletise"]
    assert rig.cell.parts_done == 3
    assert Journal(path).ledger() == [(run, 1, "done"), (run, 2, "done"), (run, 3, "done")]
    assert Journal(path).interrupted() is None
    assert rig.skill_state[PALLET_KEY] == 3  # the pallet went on at place 1 for part 2, then 2


def test_an_arm_moved_during_the_restart_must_be_reapproached_slowly(tmp_path: Path) -> None:
    old, path, run = crash_in_part_2(tmp_path)
    left = old.positions()
    elsewhere = dict(left, welder=left["welder"] + np.array([0.0, 0.3, -0.2, 0.0, 0.0, 0.0]))
    rig = restarted(old, path, positions=elsewhere)
    assert rig.cell.command("reset") == State.IDLE
    with pytest.raises(CommandRefused) as refused:
        rig.cell.command("start")
    assert "call reapproach" in str(refused.value)
    assert str(refused.value) == (
        "cannot start: cobot 'welder' is 0.300 rad (welder_shoulder_lift_joint) from where the cell left it "
        "(tolerance 0.02 rad): call reapproach to bring it back slowly"
    )
    assert rig.cell.state == State.IDLE and all(p.log == [] for p in rig.ports.values())
    assert rig.cell.reapproach() == "reapproaching welder"
    with pytest.raises(CommandRefused) as refused:
        rig.cell.command("start")
    assert str(refused.value) == "cannot start: a reapproach is under way"
    rig.run_until(lambda: not rig.cell.reapproaching, limit=2000)
    np.testing.assert_array_equal(rig.ports["welder"].joint_positions(), left["welder"])
    assert rig.ports["picker"].log == []
    # slowly: the joint move back takes longer than the same move at full speed, and so does the whole reapproach
    _, q_from, q_to, segs = rig.reapproaches[0]
    segs = [s for s in segs if isinstance(s, Move)]
    assert [s.label for s in segs][-1] == "return to safe point"
    assert [(e[1], e[2]) for e in rig.ports["welder"].log] == [("move", s.trajectory.duration) for s in segs]
    ctx = SkillContext(rig.cfg, "welder")
    back = segs[-1].trajectory
    full_speed = joint_move(back.start, back.final, ctx.v_max, ctx.a_max).duration
    assert back.duration > 1.9 * full_speed  # a quarter of the limits: 2x (acceleration-bound) to 4x longer
    assert sum(s.trajectory.duration for s in segs) > joint_move(q_from, q_to, ctx.v_max, ctx.a_max).duration
    assert rig.cell.command("start") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert Journal(path).ledger() == [(run, 1, "done"), (run, 2, "done"), (run, 3, "done")]
    assert ("load_blank", 2) not in rig.planned


@pytest.mark.parametrize("change", ["parts", "job"])
def test_changing_the_job_or_part_count_abandons_the_interrupted_run(tmp_path: Path, change: str) -> None:
    old, path, run = crash_in_part_2(tmp_path, cell(weld_only=True))
    load_blank_2 = Journal(path).interrupted().steps_done["load_blank"]
    rig = restarted(old, path)
    assert rig.cell.status().resume != ""
    if change == "parts":
        rig.cell.set_parts(2)
    else:
        rig.cell.set_job("weld_only")
        rig.cell.set_parts(2)
    assert rig.cell.status().resume == ""  # no longer resumable
    rig.start()
    new = rig.cell.run_id
    assert new != run and rig.cell.parts_done == 0
    assert Journal(path).ledger(run) == [(run, 1, "done"), (run, 2, "scrap")]
    assert rig.cycles[0] == CycleReport(
        cell="demo",
        job="bracket",
        run_id=run,
        part=2,
        start=rig.clock.now(),
        end=rig.clock.now(),
        status="scrap",
        steps=(load_blank_2,),
    )
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT status, ended FROM runs WHERE run_id = ?", (run,)).fetchone() == (
            "abandoned",
            rig.clock.now(),
        )
        assert db.execute("SELECT reason FROM ledger WHERE run_id = ? AND part = 2", (run,)).fetchone() == (
            "run abandoned",
        )
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert Journal(path).ledger(new) == [(new, 1, "done"), (new, 2, "done")]
    assert [(r.job, r.part) for r in rig.cell.reports] == [(rig.cell.job, 1), (rig.cell.job, 2)]
    assert Journal(path).interrupted() is None


def test_a_stopped_run_resumes_in_the_same_process(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    rig = Rig(cell(), parts=2, journal=journal)
    rig.start()
    rig.run_until(welder_in_a_long_move(rig))
    assert rig.cell.command("stop") == State.STOPPED
    assert "part 1 interrupted after load_blank" in rig.cell.status().resume
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [p for p in rig.planned if p == ("load_blank", 1)] == [("load_blank", 1)]  # not redone
    assert journal.ledger() == [(rig.cell.run_id, 1, "done"), (rig.cell.run_id, 2, "done")]


# ---------------------------------------------------------------------------------------------- known bugs


def test_the_part_after_a_scrap_starts_when_the_scrap_is_done() -> None:
    rig = Rig(cell(load_blank="{retries: 0, then: scrap}"), parts=2)
    rig.ports["picker"].grip_miss.add(GRIP)
    rig.start()
    rig.run_until(lambda: rig.cell.scrapped == 1)
    scrapped_at = rig.clock.now()
    sizes = rig.log_sizes()
    rig.ports["picker"].grip_miss.clear()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    scrap, done = rig.cell.reports
    assert (scrap.status, scrap.start, scrap.end) == ("scrap", scrapped_at, scrapped_at)
    assert [t for t, _, _ in rig.ports["picker"].log[sizes["picker"] :] if t < scrapped_at - 1e-9] == []
    assert done.start >= scrapped_at - 1e-9


def hold_while_confirming(rig: Rig, command: str) -> None:
    """Run until the picker's grip confirm is waiting, then hold (or suspend) the cell."""

    def confirming() -> bool:
        grips = rig.io_times("picker", GRIP, True)
        return bool(grips) and rig.clock.now() > grips[0] + 0.2 + 0.1  # settle over, confirm waiting

    rig.run_until(confirming)
    assert rig.cell.command(command) in (State.HOLDING, State.SUSPENDING)


@pytest.mark.parametrize("command", ["hold", "suspend"])
def test_scrap_policy_failure_while_holding_does_not_abort(command: str) -> None:
    rig = Rig(cell(load_blank="{retries: 0, then: scrap}"), parts=2)
    rig.ports["picker"].grip_miss.add(GRIP)
    rig.start()
    hold_while_confirming(rig, command)
    rig.run_until(lambda: rig.cell.state not in (State.HOLDING, State.SUSPENDING))
    assert rig.cell.faults.get(1).code == Code.GRIP_MISSED
    assert rig.cell.state in (State.HELD, State.SUSPENDED)


def test_hold_policy_failure_while_holding_holds() -> None:
    """The same failure under `then: hold` ends Held with the fault active (the contrast to the bug above)."""
    rig = Rig(cell(load_blank="{retries: 0, then: hold}"), parts=2)
    rig.ports["picker"].grip_miss.add(GRIP)
    rig.start()
    hold_while_confirming(rig, "hold")
    rig.run_until(lambda: rig.cell.state != State.HOLDING)
    assert rig.cell.state == State.HELD and rig.cell.fault.code == Code.GRIP_MISSED
    rig.ports["picker"].grip_miss.clear()
    assert rig.cell.command("unhold") == State.EXECUTE
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done"), (2, "done")]


def test_after_a_scrap_the_next_part_is_welded_from_its_first_seam() -> None:
    rig = Rig(cell(weld_seams="{retries: 0, then: scrap}"), parts=2)
    rig.start()
    rig.run_until(lambda: rig.skill_state.get(SEAM_KEY) == {"done": 1, "at": 0.0})  # part 1: seam 0 welded
    rig.ports["welder"].fail_io.add(ARC)  # seam 1's arc fails: part 1 is scrapped
    rig.run_until(lambda: rig.cell.scrapped == 1)
    rig.ports["welder"].fail_io.clear()
    arcs_before = len(rig.io_times("welder", ARC, True))
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "scrap"), (2, "done")]
    assert len(rig.io_times("welder", ARC, True)) - arcs_before == 2  # part 2 gets both of its seams


def test_after_an_abandoned_run_the_first_part_is_welded_from_its_first_seam() -> None:
    rig = Rig(cell(), parts=2)
    rig.start()
    rig.run_until(lambda: rig.skill_state.get(SEAM_KEY) == {"done": 1, "at": 0.0})  # part 1: seam 0 welded
    assert rig.cell.command("stop") == State.STOPPED
    rig.cell.set_parts(1)  # not resumed: abandoned, part 1 scrapped
    arcs_before = len(rig.io_times("welder", ARC, True))
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert [(r.part, r.status) for r in rig.cell.reports] == [(1, "done")]
    assert len(rig.io_times("welder", ARC, True)) - arcs_before == 2


def test_status_counts_the_scrap_of_a_run_resumed_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = WatchedJournal(path)
    old = Rig(cell(load_blank="{retries: 0, then: scrap}"), parts=3, journal=journal)
    old.ports["picker"].grip_miss.add(GRIP)
    old.start()
    old.run_until(lambda: old.cell.scrapped == 1)
    old.ports["picker"].grip_miss.clear()
    old.run_until(lambda: (2, "load_blank") in journal.steps)
    assert (old.cell.status().parts_done, old.cell.status().scrap) == (1, 1)
    rig = restarted(old, path)
    rig.start()
    assert (rig.cell.status().parts_done, rig.cell.status().scrap) == (1, 1)


def test_a_restarted_planner_keeps_the_pallet_place_when_it_abandons_the_run(tmp_path: Path) -> None:
    def next_place_after_abandoning(restart: bool) -> int:
        path = tmp_path / f"journal-{restart}.db"
        journal = WatchedJournal(path)
        rig = Rig(cell(), parts=3, journal=journal)
        rig.start()
        rig.run_until(lambda: (2, "load_blank") in journal.steps)  # part 1 is on the pallet at place 0
        if restart:
            rig = restarted(rig, path)
        else:
            assert rig.cell.command("stop") == State.STOPPED
        rig.cell.set_parts(1)
        rig.start()
        rig.run_until(lambda: rig.cell.state == State.COMPLETE)
        return rig.skill_state[PALLET_KEY]

    assert next_place_after_abandoning(restart=False) == 2  # the new part went to place 1
    assert next_place_after_abandoning(restart=True) == 2
