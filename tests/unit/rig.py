"""The unit tests' controller rig: a CellController with FakeCobots on a virtual clock, recording its callbacks.

`CellRig` takes any step planner and lands the clock on every instant a planned segment is due to end (so times
come out exact, not rounded to the update step), or, with `run_events`, jumps from one port or sequencer event to
the next. `SkillsRig` runs the real skills planner (plans cached across tests) and is the controller's recovery,
recording every retreat and reapproach it hands out. `crash` stops a rig the way a killed planner leaves the cell.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cobot_cell.core.cell import CellController
from cobot_cell.core.config import CellConfig, Step
from cobot_cell.core.faults import Code, Fault
from cobot_cell.core.journal import Journal
from cobot_cell.core.packml import State
from cobot_cell.core.plan import Dwell, Move, Segment, SkillPlan
from cobot_cell.core.ports import FakeCobot, VirtualClock
from cobot_cell.core.reports import CycleReport
from cobot_cell.skills import make_planner, pallet_places
from cobot_cell.skills.recovery import SkillRecovery

DT = 0.05  # clock seconds per update at most
Planner = Callable[[Step, int, np.ndarray], SkillPlan]


class CellRig:
    """A CellController on `cfg` with one FakeCobot (or `cobot`) per cobot at home, and the planner `planner`."""

    update_limit = 20_000  # run_until gives up after this many updates

    def __init__(
        self,
        cfg: CellConfig,
        planner: Planner,
        parts: int = 1,
        clock: VirtualClock | None = None,
        positions: dict[str, np.ndarray] | None = None,
        cobot: type[FakeCobot] = FakeCobot,
        **kwargs: Any,
    ) -> None:
        """`positions`: where arms start instead of home; `kwargs` go to the CellController."""
        self.cfg = cfg
        self.clock = clock or VirtualClock(0.0)
        self.ports = {n: cobot(n, self.clock, np.asarray(c.home)) for n, c in cfg.cobots.items()}
        for name, q in (positions or {}).items():
            self.ports[name].set_position(q)
        self.inner = planner
        self.due: list[float] = []
        self.states: list[tuple[State, State, str]] = []
        self.cycles: list[CycleReport] = []
        self.faults: list[Fault] = []
        self.cell = CellController(
            cfg,
            self.ports,
            self.plan,
            self.clock,
            parts=parts,
            on_state=lambda *a: self.states.append(a),
            on_cycle=self.cycles.append,
            on_fault=self.faults.append,
            **kwargs,
        )

    # -- the planner the cell sees
    def plan(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        """The rig's planner, noting when each segment of its plan is due to end."""
        plan = self.inner(step, part, q)
        self.note_due(plan.segments, self.clock.now())
        return plan

    def note_due(self, segs: Iterable[Segment], t0: float) -> float:
        """Note when each segment is due to end (run one after the other from t0); return their total time."""
        t = t0
        for seg in segs:
            t += seg.trajectory.duration if isinstance(seg, Move) else seg.seconds if isinstance(seg, Dwell) else 0.0
            heapq.heappush(self.due, t)
        return t - t0

    # -- driving
    def step(self, max_dt: float = DT) -> None:
        """Advance by max_dt (or less, to land on the next due instant), then update."""
        now = self.clock.now()
        while self.due and self.due[0] <= now + 1e-12:
            heapq.heappop(self.due)
        target = min(self.due[0], now + max_dt) if self.due else now + max_dt
        self.clock.advance(target - now)
        self.cell.update()
        self.after_update()

    def after_update(self) -> None:
        """What the rig's operator does after each update (nothing here)."""

    def run_until(self, cond: Callable[[], bool], limit: int | None = None, max_dt: float = DT) -> None:
        """Step until cond() holds; fail after `limit` updates naming the cell state."""
        limit = limit or self.update_limit
        for _ in range(limit):
            if cond():
                return
            self.step(max_dt)
        raise AssertionError(f"condition not met within {limit} updates; state {self.cell.state.value}")

    def wait(self, seconds: float) -> None:
        """Run for `seconds` of clock time."""
        end = self.clock.now() + seconds
        self.run_until(lambda: self.clock.now() >= end - 1e-9)

    def run_events(self, limit: int = 20_000) -> None:
        """While executing, jump the clock to the next port or sequencer event and update; fail on a deadlock."""
        cell = self.cell
        for _ in range(limit):
            if cell.state != State.EXECUTE:
                return
            now = self.clock.now()
            due = [t for t in (p.next_event() for p in self.ports.values()) if t is not None and t > now + 1e-12]
            nxt = cell._seq.next_event() if cell._seq is not None else None
            if nxt is not None and nxt > now + 1e-12:
                due.append(nxt)
            blocked = cell._seq.blocked() if cell._seq is not None else None
            assert due, f"deadlock at t = {now}: {cell.status().waiting}, blocked {blocked}"
            self.clock.advance(min(due) - now)
            cell.update()
        raise AssertionError(f"still executing after {limit} events")

    def start(self) -> None:
        """Reset and start the cell (from Stopped, Complete or Aborted-and-cleared)."""
        assert self.cell.command("reset") == State.IDLE
        assert self.cell.command("start") == State.EXECUTE

    # -- reading the FakeCobot logs
    def in_flight_move(self) -> tuple[str, float, float] | None:
        """(cobot, start, end) of a move dispatched and not yet over."""
        now = self.clock.now()
        for name, port in self.ports.items():
            moves = [(t, d) for t, kind, d in port.log if kind == "move"]
            if moves and moves[-1][0] + moves[-1][1] > now + 1e-9:
                return name, moves[-1][0], moves[-1][0] + moves[-1][1]
        return None

    def io_times(self, cobot: str, io: str, value: bool | None = None) -> list[float]:
        """When `cobot` was told to switch `io` (to `value`, or either way)."""
        return [t for t, kind, v in self.ports[cobot].log if kind == f"io:{io}" and (value is None or v is value)]

    def log_sizes(self) -> dict[str, int]:
        """How many commands each cobot was sent so far."""
        return {n: len(p.log) for n, p in self.ports.items()}

    def positions(self) -> dict[str, np.ndarray]:
        """Where each arm is."""
        return {n: p.joint_positions() for n, p in self.ports.items()}


# Plans of the skills planner are deterministic: cached across tests by cell geometry, step, start and skill state.
_PLANS: dict[tuple[str, str, bytes, str], SkillPlan] = {}


class SkillsRig(CellRig):
    """A CellRig with the skills planner, SkillRecovery and the cell's pallets; the operator removes scrap at once.

    It is also the controller's Recovery: it records every retreat and reapproach it hands out, and notes when each
    of their segments is due to end so the clock lands on those instants.
    """

    def __init__(self, cfg: CellConfig, parts: int = 1, **kwargs: Any) -> None:
        """`kwargs` as CellRig's (clock, positions, cobot, and the CellController's)."""
        self.skill_state: dict[str, Any] = {}
        self.skills = make_planner(cfg, self.skill_state)
        self.recovery = SkillRecovery(cfg)
        self._geometry = repr((cfg.cobots, cfg.stations, cfg.zones))
        self.plan_errors: dict[str, Callable[[int], str | None]] = {}  # step -> message to raise, by call count
        self.planned: list[tuple[str, int]] = []
        self.retreats: list[tuple[str, np.ndarray, np.ndarray, list[Segment]]] = []
        self.reapproaches: list[tuple[str, np.ndarray, np.ndarray, list[Segment]]] = []
        self._recovery_time = 0.0
        self.removes_scrap = True  # the operator takes a scrapped part out as soon as told, and confirms
        self.removed: list[str] = []
        kwargs.setdefault("pallets", pallet_places(cfg))
        super().__init__(cfg, self._plan_skill, parts, recovery=self, skill_state=self.skill_state, **kwargs)

    def _plan_skill(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        self.planned.append((step.name, part))
        error = self.plan_errors.get(step.name)
        if error is not None and (msg := error(sum(1 for s, _ in self.planned if s == step.name))):
            raise ValueError(msg)
        key = (
            self._geometry,
            f"{step.name} {step.skill} {step.cobot} {step.params!r}",
            np.round(q, 12).tobytes(),
            json.dumps(self.skill_state, sort_keys=True),
        )
        if key not in _PLANS:
            _PLANS[key] = self.skills(step, part, q)
        return _PLANS[key]

    def plan(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        """The skills plan, due after the recovery motions handed out just before it, if any."""
        plan = self.inner(step, part, q)
        self.note_due(plan.segments, self.clock.now() + self._recovery_time)
        self._recovery_time = 0.0
        return plan

    # -- the controller's recovery
    def retreat(self, step: Step, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """SkillRecovery's retreat, recorded."""
        segs = self.recovery.retreat(step, q_actual, q_target)
        self.retreats.append((step.name, np.asarray(q_actual), np.asarray(q_target), segs))
        self._recovery_time = self.note_due(segs, self.clock.now())
        return segs

    def reapproach(self, cobot: str, q_actual: np.ndarray, q_target: np.ndarray) -> list[Segment]:
        """SkillRecovery's reapproach, recorded."""
        segs = self.recovery.reapproach(cobot, q_actual, q_target)
        self.reapproaches.append((cobot, np.asarray(q_actual), np.asarray(q_target), segs))
        self.note_due(segs, self.clock.now())
        return segs

    def after_update(self) -> None:
        """Remove a scrapped part as soon as the cell asks for it."""
        if self.removes_scrap and any(f.code == Code.SCRAP_TO_REMOVE for f in self.cell.faults.active):
            self.removed.append(self.cell.parts_removed())


class WatchedJournal(Journal):
    """A journal that also remembers which (part, step) boundaries were written."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.steps: list[tuple[int, str]] = []

    def step_done(self, run_id, part, timing, q, skill_state=None, defer=False):  # type: ignore[no-untyped-def]
        super().step_done(run_id, part, timing, q, skill_state, defer)
        self.steps.append((part, timing.step))


def crash(old: CellRig, arc: str = "torch/arc") -> dict[str, np.ndarray]:
    """The planner dies: the drivers go on as the sim driver does. Returns where the arms end up.

    A service call already sent is carried out (noted in the port's `io_log` when it keeps one), a lit `arc` goes out
    and its arm stops where it is (heartbeat lost), other moves run to their end.
    """
    for port in old.ports.values():
        for p, _ in list(port._active):
            if not p.done and p.meta["kind"] == "io":
                io_log = getattr(port, "io_log", None)
                if io_log is not None and port.io.get(p.meta["io"], False) != p.meta["value"]:
                    io_log.append((port.clock.now(), p.meta["io"], p.meta["value"]))
                port.io[p.meta["io"]] = p.meta["value"]
        if port.io.get(arc):
            port.stop()
            port.io[arc] = False
        for p, traj in list(port._active):
            if traj is not None and not p.done:
                port.set_position(np.asarray(traj.final))
    return old.positions()
