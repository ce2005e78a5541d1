"""Process tools and recovery through the CellController: the arc is off before any unplanned motion, a seam is
welded once (bar the restart overlap), a blank is loaded once and a pallet place is used once, whatever stops
the cell or wherever the planner crashes.

The demo cell, the real skills planner and SkillRecovery, FakeCobots on a VirtualClock (the SkillsRig of
tests/unit/rig.py) and, for the crashes, the real file journal: a crash drops the controller and whatever it
had not committed; the drivers react as the sim driver does (an arc lit when the planner goes silent is switched
off and its arm stops; other moves run to their end; IO calls in flight are carried out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_fault_policies as tfp
from rig import DT, SkillsRig, WatchedJournal, crash

from cobot_cell.core.faults import Code
from cobot_cell.core.journal import Journal
from cobot_cell.core.packml import State
from cobot_cell.core.ports import FakeCobot, VirtualClock
from cobot_cell.skills import step_params
from cobot_cell.skills.common import SkillContext
from cobot_cell.skills.weld import locate, seam_length

ARC, GRIP = tfp.ARC, tfp.GRIP
OVERLAP = 0.010  # the weld step's default restart overlap (m)


class ArcCobot(FakeCobot):
    """A FakeCobot that records every move made with the arc lit: (pending, trajectory, where it stopped)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arc_moves: list[list] = []
        self.io_log: list[tuple[float, str, bool]] = []

    def move(self, trajectory, start=None):
        p = super().move(trajectory, start)
        if self.io.get(ARC):
            self.arc_moves.append([p, trajectory, None])
        return p

    def stop(self) -> None:
        stopped = [p for p, _ in self._active if not p.done]
        super().stop()
        for rec in self.arc_moves:
            if rec[0] in stopped:
                rec[2] = self._q.copy()

    def poll(self, pending) -> None:
        before = dict(self.io)
        super().poll(pending)
        for io, v in self.io.items():
            if before.get(io) != v:
                self.io_log.append((self.clock.now(), io, v))


def arc_rig(*args, **kwargs) -> SkillsRig:
    """The SkillsRig with ArcCobots."""
    return SkillsRig(*args, cobot=ArcCobot, **kwargs)


def welded(ports: list[ArcCobot], cfg) -> dict[int, list[tuple[float, float]]]:
    """Per seam, the stretches (u0, u1) welded: every move made with the arc on, to its end or where it stopped."""
    step = cfg.jobs["bracket"].step("weld_seams")
    params = step_params(step)
    ctx = SkillContext(cfg, "welder")
    out: dict[int, list[tuple[float, float]]] = {}
    for port in ports:
        for _p, traj, stopped in port.arc_moves:
            q0, q1 = np.asarray(traj.positions[0]), np.asarray(traj.final) if stopped is None else stopped
            seam = min(range(len(params.seams)), key=lambda i: locate(ctx, params, i, q0)[1])
            (u0, off0), (u1, off1) = locate(ctx, params, seam, q0), locate(ctx, params, seam, q1)
            assert off0 < 1e-4 and off1 < 1e-4, "an arc-on move off the seam"
            out.setdefault(seam, []).append((u0, u1))
    return out


def assert_each_seam_welded_once(stretches: dict[int, list[tuple[float, float]]], cfg, parts: int = 1) -> None:
    """Every seam covered end to end, nothing welded twice but the restart overlaps (per part)."""
    params = step_params(cfg.jobs["bracket"].step("weld_seams"))
    assert sorted(stretches) == list(range(len(params.seams)))
    for seam, spans in stretches.items():
        length = seam_length(params.seams[seam])
        spans = sorted(spans)
        restarts = sum(1 for a, _ in spans if a > 1e-6)
        covered, reach, twice = 0.0, 0.0, 0.0
        for a, b in spans:
            assert a <= reach + 1e-6, f"seam {seam}: {reach:.4f} to {a:.4f} m never welded"
            twice += max(0.0, min(b, reach) - a)
            covered += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        assert covered == pytest.approx(length * parts, abs=1e-6) or reach == pytest.approx(length, abs=1e-6)
        assert twice <= restarts * OVERLAP + 1e-6, f"seam {seam}: {twice:.4f} m welded twice"


def run_to_arc(rig: SkillsRig, seam_fraction: float = 0.4) -> float:
    """Run until the welder is `seam_fraction` into its first arc-on move; returns that time."""
    welder = rig.ports["welder"]
    rig.run_until(lambda: bool(welder.arc_moves))
    p, traj, _ = welder.arc_moves[0]
    rig.wait(p.started + seam_fraction * traj.duration - rig.clock.now())
    assert welder.io[ARC] and not p.done
    return rig.clock.now()


@pytest.mark.parametrize(
    "command, rest",
    [("hold", State.HELD), ("stop", State.STOPPED), ("abort", State.ABORTED), ("suspend", State.SUSPENDED)],
)
def test_a_command_mid_seam_stops_motion_and_arc_together_and_completes_only_once_the_arc_is_off(command, rest):
    rig = arc_rig(tfp.cell())
    welder = rig.ports["welder"]
    welder.io_delay = 0.3  # the arc's state confirms 0.3 s after the call
    rig.start()
    at = run_to_arc(rig)
    moves_before = len([e for e in welder.log if e[1] == "move"])
    rig.cell.command(command)
    # the arm stops at once and the arc is told to go out at the same instant
    assert [e[1:] for e in welder.log[-2:]] == [("stop", None), (f"io:{ARC}", False)]
    assert [e[0] for e in welder.log[-2:]] == pytest.approx([at, at])
    assert welder.arc_moves[0][2] is not None  # ... part-way along the seam
    assert rig.cell.state not in (rest,) and welder.io[ARC]  # not complete while the arc is lit
    rig.run_until(lambda: rig.cell.state == rest, limit=200)
    assert not welder.io[ARC]
    off = [t for t, io, v in welder.io_log if io == ARC and not v]
    assert off and off[-1] == pytest.approx(at + 0.3, abs=DT + 1e-9)  # Held/Stopped/Aborted after that
    assert len([e for e in welder.log if e[1] == "move"]) == moves_before  # nothing moved meanwhile
    # how far the arc got is recorded
    reached = rig.skill_state[tfp.SEAM_KEY]
    assert reached["done"] == 0 and 0.03 < reached["at"] < 0.05


@pytest.mark.parametrize("command, back", [("hold", "unhold"), ("suspend", "unsuspend")])
def test_after_a_hold_mid_seam_the_seam_is_struck_again_one_overlap_back_and_welded_once(command, back):
    rig = arc_rig(tfp.cell(), parts=2)
    rig.start()
    run_to_arc(rig, 0.6)
    rig.cell.command(command)
    rig.run_until(lambda: rig.cell.state in (State.HELD, State.SUSPENDED), limit=200)
    welder = rig.ports["welder"]
    n = len(welder.log)
    rig.cell.command(back)
    rig.run_until(lambda: len(welder.log) > n + 1)
    # the arc is switched off before the recovery's first move
    assert [e[1] for e in welder.log[n : n + 2]] == [f"io:{ARC}", "move"] and welder.log[n][2] is False
    rig.run_until(lambda: rig.cell.parts_done >= 1)
    assert_each_seam_welded_once(welded([welder], rig.cfg), rig.cfg)
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)


def test_a_failure_mid_seam_switches_the_arc_off_before_the_retreat():
    rig = arc_rig(tfp.cell("{retries: 1, then: hold}"))
    welder = rig.ports["welder"]
    rig.start()
    run_to_arc(rig, 0.5)
    welder.stall = True  # the arm stops following: the move times out
    rig.run_until(lambda: bool(rig.cell.faults.faults), limit=2000)
    assert rig.cell.faults.faults[0].code == Code.MOTION_TIMEOUT
    welder.stall = False
    n = len(welder.log)
    rig.run_until(lambda: any(e[1] == "move" for e in welder.log[n:]), limit=2000)
    first_move = next(i for i, e in enumerate(welder.log[n:]) if e[1] == "move")
    assert (f"io:{ARC}", False) in [e[1:] for e in welder.log[n : n + first_move]]
    assert rig.retreats and not welder.io[ARC]
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert rig.cell.reports[0].status == "done"


def test_a_scrapped_part_leaves_no_arc_lit():
    rig = arc_rig(tfp.cell(weld_seams="{retries: 0, then: scrap}"), parts=2)
    welder = rig.ports["welder"]
    welder.io_delay = 0.2
    rig.start()
    run_to_arc(rig, 0.5)
    welder.stall = True
    rig.run_until(lambda: rig.cell.scrapped == 1, limit=2000)
    welder.stall = False
    n = len(welder.log)
    rig.run_until(lambda: any(e[1] == "move" for e in rig.ports["picker"].log[-1:]) and len(welder.log) > n, limit=4000)
    assert not welder.io[ARC] or welder.arc_moves[-1][0].started > welder.log[n][0]


# ---------------------------------------------------------------------------------------------- crashes


def _restart_and_finish(old: SkillsRig, path: Path) -> SkillsRig:
    positions = crash(old)
    rig = arc_rig(
        old.cfg, journal=WatchedJournal(path), clock=VirtualClock(old.clock.now() + 30.0), positions=positions
    )
    for name, port in rig.ports.items():  # a gripper holding a part still holds it
        port.io.update({k: v for k, v in old.ports[name].io.items() if k != ARC})
    assert rig.cell.command("reset") == State.IDLE
    if rig.cell.interrupted is not None and rig.cell._deviations(for_start=True):
        rig.cell.reapproach()
        rig.run_until(lambda: not rig.cell.reapproaching, limit=4000)
    assert rig.cell.command("start") in (State.EXECUTE, State.COMPLETE)
    rig.run_until(lambda: rig.cell.state == State.COMPLETE, limit=20_000)
    return rig


def _commands(rig: SkillsRig) -> int:
    return sum(len(p.log) for p in rig.ports.values())


def _reference_commands() -> int:
    rig = arc_rig(tfp.cell())
    rig.start()
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    return _commands(rig)


def test_a_crash_at_every_command_of_a_part_welds_each_seam_once_loads_one_blank_and_fills_one_place(tmp_path):
    total = _reference_commands()
    assert total > 30
    for k in range(1, total):
        path = tmp_path / f"journal{k}.db"
        old = arc_rig(tfp.cell(), journal=WatchedJournal(path))
        old.start()
        old.run_until(lambda old=old, k=k: _commands(old) >= k or old.cell.state == State.COMPLETE)
        if old.cell.state == State.COMPLETE:
            break
        rig = _restart_and_finish(old, path)
        what = f"crash after command {k} ({[p.log[-1:] for p in old.ports.values()]})"
        assert Journal(path).ledger() == [(old.cell.run_id, 1, "done")], what
        assert_each_seam_welded_once(welded([old.ports["welder"], rig.ports["welder"]], old.cfg), old.cfg)
        # parts let go (the gripper opening while closed): one at the fixture, one on the pallet
        changes = [v for r in (old, rig) for _, io, v in r.ports["picker"].io_log if io == GRIP]
        assert changes == [True, False, True, False], f"{what}: gripper {changes}"
        assert rig.skill_state["pallet.pallet.next"] == 1, what  # one place used


def test_a_planner_crash_raises_a_restart_fault_dated_when_it_was_last_alive_and_cleared_on_resume(tmp_path):
    path = tmp_path / "journal.db"
    old = arc_rig(tfp.cell(), journal=WatchedJournal(path))
    old.start()
    run_to_arc(old)
    crash_at = old.clock.now()
    positions = crash(old)
    rig = arc_rig(old.cfg, journal=WatchedJournal(path), clock=VirtualClock(crash_at + 30.0), positions=positions)
    fault = rig.cell.fault
    assert fault is not None and fault.code == Code.PLANNER_RESTARTED
    assert crash_at - 1.0 - 1e-9 <= fault.raised <= crash_at  # the journal saw it alive within the last second
    assert rig.faults[0] is fault  # published at once
    assert rig.cell.command("reset") == State.IDLE
    rig.cell.reapproach()
    rig.run_until(lambda: not rig.cell.reapproaching, limit=4000)
    resumed_at = rig.clock.now()
    rig.cell.command("start")
    assert rig.cell.faults.get(fault.id).cleared == pytest.approx(resumed_at)
    rig.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert_each_seam_welded_once(welded([old.ports["welder"], rig.ports["welder"]], old.cfg), old.cfg)
