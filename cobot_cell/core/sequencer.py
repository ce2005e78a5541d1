"""Job sequencer: runs a job's step DAG for several parts in flight, one segment at a time per cobot, with
stations and shared zones as resources.

Scheduling rules (docs/architecture.md, "Parts in flight"):
- A part's step is ready once the steps it comes `after` are done. A cobot runs one step at a time; among the
  ready steps of a free cobot the oldest part's goes first (then file order), so a gripper that both unloads and
  loads a fixture unloads before it loads.
- Up to `max_parts` parts are in flight (started, not finished). `max_parts = 1` is one part at a time.
- A station with a limited number of slots (a fixture) holds a part from its `Claim` (the arm about to put it down)
  until its `Vacate` (lifted off). A step that puts a part down somewhere reserves its slot before it starts (before
  it grips): it may start only if the station has a slot that is neither taken nor reserved, not counting parts
  that another cobot will take away (the one it waits for at its Claim). A cobot never grips a part it cannot put
  down, and never waits for a part it must move itself. A station group (`to: [a, b]`) takes the first station
  with such a slot; the choice is stored in the part's skill state (`route_key`), and later steps follow the part.
- A shared zone is held by at most one cobot: before a move, the cobot acquires every zone any of its links enters
  during the move that it does not hold yet, all or none (whole-set acquisition, so a move never holds one zone
  while waiting for another); after the move it keeps only the zones its final pose is in. A Claim that would be
  waited for inside a zone is moved before the move into the zone, so nobody waits for a station inside a zone.
  `cobot-cell validate` rejects cells where a cobot could still hold one resource while waiting for another in a
  cycle (see `skills.resources`).
- A wait longer than `timeout` clock seconds fails the step with RESOURCE_TIMEOUT naming the resource and holder.

Time is event time: each segment starts when the previous one finished (as the port reports it), not when the
sequencer got round to noticing, so recorded step and cycle times do not depend on how fast the host keeps up.
A step starts when the last of its constraints was met (its `after` steps, its cobot, the resource it waited for);
event times more than MAX_BACKDATE behind the clock are replaced by the clock's time, and so is a step's event
time after a pause, a retry or a resumed part. The sequencer is driven by `update()`, called whenever something
may have changed; it never blocks and reads time from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .dag import Route, occupancy_windows, ready_steps
from .model import Job, Step
from .plan import (
    AT_KEY,
    Checkpoint,
    Claim,
    Confirm,
    Dwell,
    Move,
    Segment,
    SetIo,
    SkillPlan,
    SkillState,
    Vacate,
    pallet_fill,
    part_key,
    part_prefix,
    route_key,
)
from .ports import Clock, CobotPort, Pending
from .reports import CycleReport, StepTiming

log = logging.getLogger(__name__)

MAX_BACKDATE = 30.0  # clock seconds: more lag than this means the host cannot keep up; use the clock
StepPlanner = Callable[[Step, int, np.ndarray], SkillPlan]
StepDone = Callable[[str, int, StepTiming, np.ndarray | None], None]
INF = float("inf")


class ZoneMap(Protocol):
    """Which shared zones a cobot's links are in (forward kinematics; the skills layer provides it)."""

    def during(self, cobot: str, move: Move) -> frozenset[str]:
        """Zones any link of the arm enters along the move (its start and end included)."""

    def at(self, cobot: str, q: np.ndarray) -> frozenset[str]:
        """Zones any link of the arm is in at joint positions q."""


def claim_position(segments: Sequence[Segment], k: int, cobot: str, zones: ZoneMap) -> int:
    """Where the Claim at `segments[k]` is waited for: before the moves that lead to it and end inside a zone, so
    nobody waits for a station place inside a zone (never above a grip or a Vacate: the part must be held and off
    its station first)."""
    j = k
    while j > 0:
        prev = segments[j - 1]
        if not (isinstance(prev, Move) and zones.at(cobot, prev.trajectory.final)):
            break
        j -= 1
    return j


@dataclass(frozen=True)
class Resources:
    """What the sequencer schedules besides cobots: limited stations (slots), step routes, zones, the WIP limit."""

    slots: Mapping[str, int] = field(default_factory=dict)  # station -> parts it holds (limited ones only)
    routes: Mapping[str, Route] = field(default_factory=dict)  # step name -> route
    zones: ZoneMap | None = None
    max_parts: int = 1
    timeout: float = INF  # clock seconds a resource wait may last
    pallets: Mapping[str, int] = field(default_factory=dict)  # pallet station -> its places


@dataclass(frozen=True)
class StepFailure:
    """Why a step could not go on."""

    step: str
    cobot: str
    skill: str
    reason: str
    time: float
    code: str = ""
    part: int = 0


@dataclass(frozen=True)
class Wait:
    """A cobot waiting for a resource (a station slot or a zone), in clock seconds."""

    cobot: str
    part: int
    step: str
    resource: str
    start: float
    end: float


@dataclass
class _Running:
    step: Step
    part: int
    segments: tuple[Segment, ...]
    start: float
    start_q: np.ndarray
    index: int = 0
    pending: Pending | None = None
    dwell_until: float | None = None
    interrupted: bool = False
    t: float = 0.0  # event time at which the next segment starts
    waiting: tuple[str, float] | None = None  # (resource, since) while a segment waits for it
    waited: float = 0.0


@dataclass
class PartProgress:
    """Where one part is: finished steps with their timings, and steps under way."""

    part: int
    run_id: str
    t0: float = -INF
    done: dict[str, StepTiming] = field(default_factory=dict)
    running: dict[str, _Running] = field(default_factory=dict)
    blocked: dict[str, tuple[str, float]] = field(default_factory=dict)  # ready step -> (resource, since)


class JobSequencer:
    """Sequences the steps of one job for several parts in flight over a set of cobot ports."""

    def __init__(
        self,
        cell: str,
        job_name: str,
        job: Job,
        ports: Mapping[str, CobotPort],
        planner: StepPlanner,
        clock: Clock,
        skill_state: dict[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        on_step_done: StepDone | None = None,
        max_backdate: float | None = None,
        resources: Resources | None = None,
        on_wait: Callable[[Wait], None] | None = None,
        on_resource: Callable[[str, str, float, bool], None] | None = None,
    ):
        missing = sorted({s.cobot for s in job.steps} - set(ports))
        if missing:
            raise ValueError(f"job '{job_name}': no port for cobot(s) {', '.join(missing)}")
        self.cell = cell
        self.job_name = job_name
        self.job = job
        self.ports = dict(ports)
        self.planner = planner
        self.clock = clock
        self.res = resources or Resources()
        self._paused = False
        self.parts: dict[int, PartProgress] = {}
        self.failure: StepFailure | None = None
        self.expected_q: dict[str, np.ndarray] = {}
        self.skill_state: dict[str, Any] = skill_state if skill_state is not None else {}
        self.max_backdate = MAX_BACKDATE if max_backdate is None else max_backdate
        # Plans made ahead, while the cobot is still busy: (part, step) -> (start q, plan, state keys read).
        self._plans: dict[tuple[int, str], tuple[np.ndarray, SkillPlan | None, dict[str, Any]]] = {}
        self._cobot_free: dict[str, float] = {}  # event time each cobot's last step ended
        self._slot_t = -INF  # event time a part last finished (a WIP slot opened)
        self._last_end: float | None = None  # end of the last part finished (for the takt)
        self._not_before = -INF
        self.on_checkpoint = on_checkpoint
        self.on_step_done = on_step_done
        self.on_wait = on_wait
        self.on_resource = on_resource  # (resource, holder, event time, taken): a station place or zone changes hands
        self._index = {s.name: i for i, s in enumerate(job.steps)}
        # resources: who holds what
        self.occupancy: dict[str, list[int]] = {s: [] for s in self.res.slots}  # station -> parts on it
        self.reserved: dict[str, list[int]] = {s: [] for s in [*self.res.slots, *self.res.pallets]}  # on their way
        self.full_pallets: list[str] = []  # pallets a ready step waits for, every one of its group full
        self.zone_holder: dict[str, str] = {}  # zone -> cobot
        self.held: dict[str, frozenset[str]] = {c: frozenset() for c in self.ports}
        self.blocked_cobots: set[str] = set()  # cobots that may not start a step now (the controller says why)
        self._released: dict[str, float] = {}  # resource -> event time it was last released
        self._frees = 0  # how many times a resource came free (a pass that frees one wakes the waiters)
        # station -> the steps that run while a part is on it (up to the one that takes it off)
        self._windows = {st: [job.step(n) for n in names] for st, names in occupancy_windows(job).items()}

    # ------------------------------------------------------------------ state
    @property
    def progress(self) -> PartProgress | None:
        """The oldest part under way."""
        return self.parts[min(self.parts)] if self.parts else None

    @property
    def paused(self) -> bool:
        """No new segment is dispatched (hold, suspend); segments in flight finish."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if self._paused and not value:
            now = self.clock.now()
            for run in self.runs():
                if run.pending is None and run.dwell_until is None:
                    run.t = max(run.t, now)  # the next segment starts now, not when the last one ended
                if run.waiting is not None:
                    run.waiting = (run.waiting[0], max(run.waiting[1], now))
            self._cobot_free = {c: max(t, now) for c, t in self._cobot_free.items()}
            self._not_before = now  # steps that became ready during the pause start now
        self._paused = value

    @property
    def active(self) -> bool:
        """A part is under way."""
        return bool(self.parts)

    @property
    def in_flight(self) -> bool:
        """Some segment has been dispatched and has not finished."""
        return any((r.pending is not None and not r.pending.done) or r.dwell_until is not None for r in self.runs())

    def runs(self) -> list[_Running]:
        """Every running step, oldest part first."""
        return [r for p in sorted(self.parts) for r in self.parts[p].running.values()]

    def busy_cobots(self) -> set[str]:
        """Cobots running a step now."""
        return {r.step.cobot for r in self.runs()}

    def can_start_part(self) -> bool:
        """Another part may be started (the work-in-process limit is not reached)."""
        return len(self.parts) < max(1, self.res.max_parts)

    def waiting(self) -> dict[str, tuple[int, str, str]]:
        """Cobots waiting for a resource now: cobot -> (part, step, resource)."""
        out = {r.step.cobot: (r.part, r.step.name, r.waiting[0]) for r in self.runs() if r.waiting is not None}
        return out

    def blocked(self) -> list[tuple[int, str, str]]:
        """Ready steps that cannot start for a resource: (part, step, resource)."""
        return [(p, s, res) for p in sorted(self.parts) for s, (res, _) in self.parts[p].blocked.items()]

    # ------------------------------------------------------------------ commands
    def start_part(
        self,
        part: int,
        run_id: str,
        done: Mapping[str, StepTiming] | None = None,
        resume: bool = False,
        not_before: float = -INF,
    ) -> None:
        """Begin a part (or resume it with the steps already done, its skill state kept: it may have got part-way
        through a step); steps are dispatched on the next update, at event time `not_before` at the earliest (when
        its material arrived)."""
        if part in self.parts:
            raise RuntimeError(f"part {part} is already under way")
        if not (resume or done) and not self.can_start_part():
            raise RuntimeError(f"{len(self.parts)} part(s) already in flight, the most this cell allows")
        self.failure = None
        resume = resume or bool(done)
        if not resume:  # a fresh part: no skill state left from an earlier part of this number
            self._drop_part_state(part)
        prog = PartProgress(part=part, run_id=run_id, done=dict(done or {}))
        # a part that takes a freed WIP slot starts when the slot freed, or when its material came if later
        prog.t0 = self._event_time(max(self._slot_t, not_before)) if self._slot_t > -INF else self.clock.now()
        if resume:  # a resumed part: its earlier steps ended in another session
            prog.t0 = self._not_before = self.clock.now()
        self.parts[part] = prog
        log.debug("part %d of run %s started (%d steps already done)", part, run_id, len(prog.done))

    def restore_station(self, station: str, part: int) -> None:
        """A resumed part is on `station` (from the journal, confirmed by sensing or the operator)."""
        if station in self.occupancy and part not in self.occupancy[station]:
            self.occupancy[station].append(part)

    def _drop_part_state(self, part: int) -> None:
        prefix = part_prefix(part)
        for key in [k for k in self.skill_state if k.startswith(prefix)]:
            del self.skill_state[key]

    def abandon(self, part: int | None = None) -> PartProgress | None:
        """Drop a part (default: every part, and stop every cobot); the cobots running its steps stop now. Returns
        what the part had done (the oldest part's when dropping all). Its station places stay taken (a scrapped
        part is still there until removed; see `remove_part`)."""
        if part is None:
            for port in self.ports.values():
                port.stop()
            progress = self.progress
            for p in list(self.parts):
                self._release_part(p)
            self.parts.clear()
            self.expected_q.clear()
            self._cobot_free.clear()
            self._plans.clear()
            self._not_before = self.clock.now()
            self.failure = None
            return progress
        prog = self.parts.pop(part, None)
        if prog is None:
            return None
        for run in prog.running.values():
            self.ports[run.step.cobot].stop()
            self._cobot_free[run.step.cobot] = self.clock.now()
            self.expected_q.pop(run.step.cobot, None)
        self._release_part(part, keep_stations=True)
        self._plans = {k: v for k, v in self._plans.items() if k[0] != part}
        if self.failure is not None and self.failure.part == part:
            self.failure = None
        return prog

    def _release_part(self, part: int, keep_stations: bool = False) -> None:
        """A part's reservations end; without keep_stations, its station places are given up too."""
        now = self.clock.now()
        for station, parts in self.reserved.items():
            if part in parts:
                parts.remove(part)
                self._free(station, now)
        if not keep_stations:
            for station, parts in self.occupancy.items():
                if part in parts:
                    parts.remove(part)
                    self._free(station, now)

    def _free(self, resource: str, t: float) -> None:
        """A station place or a zone came free at event time t (a waiting run may now take it)."""
        self._released[resource] = t
        self._frees += 1

    def remove_part(self, station: str) -> list[int]:
        """The operator (or a part-present sensor) says the station is empty: parts no longer under way that still
        hold a place there (scrapped ones) give it up. Returns those parts."""
        if station not in self.occupancy:
            raise ValueError(f"station '{station}' holds no parts the cell tracks")
        gone = [p for p in self.occupancy[station] if p not in self.parts]
        for p in gone:
            self.occupancy[station].remove(p)
            self._free(station, self.clock.now())
        return gone

    def interrupt(self, only_process: bool = False) -> list[str]:
        """Stop cobots now, keeping the parts: the running steps stopped will be redone from a safe point, process
        work (a seam) resuming where it stopped. `only_process`: only the steps doing process work now (the arc on);
        the others finish the segment they are in."""
        runs = self.runs()
        if only_process:
            runs = [r for r in runs if not r.interrupted and self.in_process(r)]
        else:
            self._cobot_free.clear()
            self._plans.clear()
        stop = {r.step.cobot for r in runs} if only_process else set(self.ports)
        for cobot in stop:
            self.ports[cobot].stop()
        names = []
        for run in runs:
            if not run.interrupted:
                self._record_process(run)
            self._end_wait(run, self.clock.now())
            run.pending, run.dwell_until, run.interrupted = None, None, True
            names.append(run.step.name)
        return names

    def _checkpoint(self, part: int, updates: dict[str, Any]) -> None:
        """Record skill state of a part (keys `part.*` become that part's); the callback commits it before the next
        segment is dispatched."""
        stored = {part_key(k, part): v for k, v in updates.items()}
        self.skill_state.update(stored)
        if self.on_checkpoint:
            self.on_checkpoint(stored)

    @staticmethod
    def in_process(run: _Running) -> bool:
        """The step is between switching a process tool on and off (the arc is, or is about to be, on)."""
        for seg in reversed(run.segments[: run.index + 1]):
            if isinstance(seg, SetIo) and seg.process:
                return seg.value
        return False

    def _record_process(self, run: _Running) -> None:
        """Record how far a step's process work got (a seam welded part-way), from the arm's measured position."""
        segs = run.segments
        k = min(run.index, len(segs) - 1)
        if k < 0 or not self.in_process(run):
            return
        record = None
        for j in range(k, -1, -1):
            seg = segs[j]
            if isinstance(seg, Move) and seg.process is not None:
                span = seg.process
                in_flight = j == run.index and run.pending is not None
                q = self.ports[run.step.cobot].joint_positions() if in_flight else None
                reached = span.reached(q) if in_flight else span.end
                record = (span.key, span.record(reached))
                break
            if isinstance(seg, SetIo) and seg.process:  # struck, no process move done: from the first one's start
                nxt = next((m for m in segs[j:] if isinstance(m, Move) and m.process is not None), None)
                first = nxt.process if nxt is not None else None
                if first is not None:
                    record = (first.key, first.record(first.start))
                break
        if record is not None:
            self._checkpoint(run.part, {record[0]: record[1]})
            log.info(
                "part %d: step %s stopped during process work: %s = %s", run.part, run.step.name, record[0], record[1]
            )

    def interrupted_steps(self) -> list[tuple[int, Step]]:
        """Running steps stopped by interrupt() or a failure, waiting to be redone: (part, step)."""
        failed = (self.failure.part, self.failure.step) if self.failure else None
        return [(r.part, r.step) for r in self.runs() if r.interrupted or (r.part, r.step.name) == failed]

    def step_start_q(self, name: str, part: int | None = None) -> np.ndarray:
        """Where the cobot was when a running step started (its safe point)."""
        return self._run(name, part).start_q

    def _run(self, name: str, part: int | None) -> _Running:
        prog = self.parts[part] if part is not None else self.progress
        assert prog is not None
        return prog.running[name]

    def restart_step(self, name: str, recovery: Sequence[Segment], part: int | None = None) -> None:
        """Redo a running step from its start: the recovery segments (retract, return), then a fresh plan."""
        run = self._run(name, part)
        t = self.clock.now()
        if self.failure is not None and (self.failure.part, self.failure.step) == (run.part, name):
            t = self._event_time(self.failure.time)  # the retry starts when the failure happened
            self.failure = None
        try:
            plan = self._fresh_plan(run.step, run.part, run.start_q)
        except Exception as exc:  # noqa: BLE001 - any skill error becomes a step failure
            self._fail(run, f"cannot plan: {exc}", "SKILL_ERROR")
            return
        run.segments = tuple(recovery) + tuple(plan.segments)
        run.index, run.pending, run.dwell_until, run.interrupted, run.waiting = 0, None, None, False, None
        self.expected_q[run.step.cobot] = np.asarray(plan.end_q, dtype=float)
        run.t = t
        log.info("part %d: step %s restarted (%d recovery segments)", run.part, name, len(recovery))

    def update(self) -> list[CycleReport]:
        """Advance every part; returns the reports of the parts whose last step finished."""
        reports: list[CycleReport] = []
        if self.failure is not None:
            return reports
        for _ in range(8):  # again while a pass frees a resource another run waits for (woken in this update)
            frees = self._frees
            for run in self.runs():
                if run.part in self.parts and run.step.name in self.parts[run.part].running:
                    self._advance(run)
                if self.failure is not None:
                    return reports
            if not any(r.waiting for r in self.runs()) or self._frees == frees:
                break
        if not self.paused:
            self._start_ready_steps()
            if self.failure is not None:
                return reports
        for part in sorted(self.parts):
            prog = self.parts[part]
            if not prog.running and len(prog.done) == len(self.job.steps):
                reports.append(self._finish(prog))
        return reports

    def next_event(self) -> float | None:
        """The earliest clock time something is due here by itself (a dwell ending, a wait timing out)."""
        times = [r.dwell_until for r in self.runs() if r.dwell_until is not None]
        if self.res.timeout < INF:
            times += [r.waiting[1] + self.res.timeout for r in self.runs() if r.waiting is not None]
            times += [since + self.res.timeout for p in self.parts.values() for _, since in p.blocked.values()]
        return min(times) if times else None

    # ------------------------------------------------------------------ internals
    def _ready(self, prog: PartProgress) -> list[Step]:
        """Steps of a part not done nor running whose `after` steps are all done, in file order."""
        return ready_steps(self.job, prog.done, prog.running)

    def _start_ready_steps(self) -> None:
        started = True
        while started and self.failure is None:
            started = False
            busy = self.busy_cobots() | self.blocked_cobots
            for part in sorted(self.parts):
                prog = self.parts[part]
                for step in self._ready(prog):
                    if step.cobot in busy:
                        continue
                    dest = self._destination(step, part)
                    if dest is None:
                        self._note_blocked(prog, step)
                        continue
                    self._start_step(prog, step, dest)
                    started = True
                    break
                if started:
                    break

    def _note_blocked(self, prog: PartProgress, step: Step) -> None:
        group = self.res.routes[step.name].dest
        if all(s in self.res.pallets for s in group):
            return  # full pallets: an event for the operator (the controller holds the cell), not a timeout
        resource = group[0] if len(group) == 1 else "|".join(group)
        since = prog.blocked.setdefault(step.name, (resource, self.clock.now()))[1]
        if self.clock.now() - since > self.res.timeout:
            holders = "; ".join(f"{s}: {self._holder_of(s)}" for s in group)
            self._fail_step(
                step,
                prog.part,
                f"no free place on {resource} for {self.clock.now() - since:.1f} s ({holders})",
                "RESOURCE_TIMEOUT",
            )

    def _holder_of(self, resource: str) -> str:
        if resource in self.occupancy:
            taken = [
                f"part {p}" + ("" if p in self.parts else " (scrapped, to be removed)")
                for p in self.occupancy[resource]
            ]
            taken += [f"part {p} (on its way)" for p in self.reserved[resource]]
            return "held by " + ", ".join(taken) if taken else "free"
        holder = self.zone_holder.get(resource)
        return f"held by cobot '{holder}'" if holder else "free"

    def _limited(self, group: Sequence[str]) -> tuple[str, ...]:
        return tuple(s for s in group if s in self.res.slots)

    def _destination(self, step: Step, part: int) -> str | None:
        """The station the step will put the part on ('' when it is not a limited station), reserving its slot;
        None when no station of its group may be reserved now."""
        route = self.res.routes.get(step.name)
        pallets = tuple(s for s in route.dest if s in self.res.pallets) if route is not None else ()
        if pallets:
            return self._pallet(step, part, pallets)
        group = self._limited(route.dest) if route is not None else ()
        if not group:
            return ""
        chosen = self.skill_state.get(part_key(route_key(group), part)) if len(group) > 1 else group[0]
        for station in [chosen] if chosen in group and part in self.reserved[chosen] else group:
            if part in self.reserved[station] or part in self.occupancy[station]:
                return station  # reserved already (a resumed or restarted step)
            # places that will not come free for this cobot: reserved ones, scrapped parts not yet removed, and
            # parts that still need this cobot before they leave (it cannot wait for itself)
            stuck = [
                p
                for p in self.occupancy[station]
                if p not in self.parts
                or any(
                    w.cobot == step.cobot and w.name not in self.parts[p].done for w in self._windows.get(station, ())
                )
            ]
            if len(self.reserved[station]) + len(stuck) < self.res.slots[station]:
                return station
        return None

    def pallet_fill(self, pallet: str) -> int:
        """Places of a pallet filled (and the next place's index)."""
        return pallet_fill(self.skill_state, pallet)

    def _pallet(self, step: Step, part: int, group: tuple[str, ...]) -> str | None:
        """The pallet of a group the part goes on: the first with a place neither filled nor promised to a part on
        its way; None (and the group in `full_pallets`) when every one is full."""
        for pallet in group:
            if part in self.reserved[pallet]:
                return pallet
        for pallet in group:
            if self.pallet_fill(pallet) + len(self.reserved[pallet]) < self.res.pallets[pallet]:
                return pallet
        for pallet in group:
            if pallet not in self.full_pallets and self.pallet_fill(pallet) >= self.res.pallets[pallet]:
                self.full_pallets.append(pallet)
        return None

    def _event_time(self, t: float) -> float:
        now = self.clock.now()
        return t if now - self.max_backdate <= t <= now else now

    def _start_step(self, prog: PartProgress, step: Step, dest: str) -> None:
        ready = [prog.t0, self._not_before, self._cobot_free.get(step.cobot, -INF)]
        ready += [prog.done[d].end for d in step.after]
        blocked = prog.blocked.pop(step.name, None)
        if blocked is not None and dest:
            ready.append(self._released.get(dest, -INF))
        now = self._event_time(max(ready))
        if dest:
            if prog.part not in self.reserved[dest] and prog.part not in self.occupancy.get(dest, ()):
                self.reserved[dest].append(prog.part)
            group = self.res.routes[step.name].dest
            group = tuple(s for s in group if s in self.res.pallets) or self._limited(group)
            if len(group) > 1 and self.skill_state.get(part_key(route_key(group), prog.part)) != dest:
                self._checkpoint(prog.part, {route_key(group): dest})
        start_q = self.expected_q.get(step.cobot)
        if start_q is None:
            start_q = self.ports[step.cobot].joint_positions()
        if start_q is None:
            self._fail_step(step, prog.part, f"no joint state from cobot '{step.cobot}'")
            return
        start_q = np.asarray(start_q, dtype=float)
        run = _Running(step=step, part=prog.part, segments=(), start=now, start_q=start_q, t=now)
        prog.running[step.name] = run
        try:
            plan = self._plan(step, prog.part, start_q)
        except Exception as exc:  # noqa: BLE001 - any skill error becomes a step failure
            self._fail(run, f"cannot plan: {exc}", "SKILL_ERROR")
            return
        self.expected_q[step.cobot] = np.asarray(plan.end_q, dtype=float)
        run.segments = plan.segments
        if blocked is not None and now > blocked[1] and self.on_wait:  # idle before the step: not in its time
            self.on_wait(Wait(step.cobot, prog.part, step.name, blocked[0], blocked[1], now))
        log.debug("part %d: step %s started on %s (%d segments)", prog.part, step.name, step.cobot, len(plan.segments))
        self._advance(run)

    def _fresh_plan(self, step: Step, part: int, start_q: np.ndarray) -> SkillPlan:
        return self._zoned(step.cobot, self.planner(step, part, start_q))

    def _plan(self, step: Step, part: int, start_q: np.ndarray) -> SkillPlan:
        """The plan made ahead for this step, if it still holds; else plan now."""
        cached = self._plans.pop((part, step.name), None)
        if cached is not None:
            q0, plan, reads = cached
            if (
                plan is not None
                and np.allclose(q0, start_q, rtol=0.0, atol=1e-9)
                and isinstance(self.skill_state, SkillState)
                and self.skill_state.unchanged(reads)
            ):
                return plan
        return self._fresh_plan(step, part, start_q)

    def _zoned(self, cobot: str, plan: SkillPlan) -> SkillPlan:
        """Move each Claim that would be waited for inside a zone to before the move into that zone (see
        `claim_position`)."""
        zones = self.res.zones
        if zones is None or not any(isinstance(s, Claim) for s in plan.segments):
            return plan
        segs = list(plan.segments)
        for k in [i for i, s in enumerate(segs) if isinstance(s, Claim)]:
            claim = segs[k]
            j = claim_position(segs, k, cobot, zones)
            if j < k:
                del segs[k]
                segs.insert(j, claim)
        return SkillPlan(tuple(segs), plan.end_q)

    def _next_steps(self) -> list[tuple[int, Step]]:
        """For each cobot: its next step (of the oldest part that has one not started, else of the next part)."""
        out: dict[str, tuple[int, Step]] = {}
        for part in sorted(self.parts):
            prog = self.parts[part]
            for step in self.job.steps:
                if step.cobot not in out and step.name not in prog.done and step.name not in prog.running:
                    out[step.cobot] = (part, step)
        nxt = max(self.parts) + 1 if self.parts else None
        if nxt is not None:
            for step in self.job.steps:
                out.setdefault(step.cobot, (nxt, step))
        return list(out.values())

    def preplan(self) -> bool:
        """Plan one cobot's next step ahead while it is busy (at most one plan per call); True if it did."""
        if not self.parts or self.failure is not None or not isinstance(self.skill_state, SkillState):
            return False
        for part, step in self._next_steps():
            q = self.expected_q.get(step.cobot)
            if q is None or (part, step.name) in self._plans:
                continue
            try:
                with self.skill_state.recording() as reads:
                    plan = self._fresh_plan(step, part, q)
            except Exception:  # noqa: BLE001 - planned again, and reported, when the step starts
                self._plans[(part, step.name)] = (q.copy(), None, {})
                continue
            self._plans[(part, step.name)] = (q.copy(), plan, dict(reads))
            port = self.ports[step.cobot]
            for seg in plan.segments:
                if isinstance(seg, Move):
                    port.prepare(seg.trajectory)
            return True
        return False

    def _advance(self, run: _Running) -> None:
        port = self.ports[run.step.cobot]
        if run.interrupted:
            return
        while True:
            if run.pending is not None:
                port.poll(run.pending)
                if not run.pending.done:
                    return
                seg = run.segments[run.index]
                if run.pending.error and isinstance(seg, SetIo) and seg.confirmed:
                    log.info("step %s: %s refused (%s); its state decides", run.step.name, seg.label, run.pending.error)
                elif run.pending.error:
                    self._record_process(run)
                    self._fail(run, run.pending.error, run.pending.code, run.pending.finished_at)
                    return
                run.t = self._event_time(
                    run.pending.finished_at if run.pending.finished_at is not None else self.clock.now()
                )
                run.pending = None
                if isinstance(seg, Move):
                    self._moved(run, seg)
                run.index += 1
            if run.dwell_until is not None:
                if self.clock.now() < run.dwell_until - 1e-9:
                    return
                run.t = self._event_time(run.dwell_until)
                run.dwell_until = None
                run.index += 1
            if run.index >= len(run.segments):
                self._step_done(run)
                return
            if self.paused:
                return
            seg = run.segments[run.index]
            if isinstance(seg, Move):
                if not self._acquire_zones(run, seg):
                    return
                run.pending = port.move(seg.trajectory, start=run.t)
            elif isinstance(seg, SetIo):
                run.pending = port.set_io(seg.io, seg.value, start=run.t)
            elif isinstance(seg, Dwell):
                run.dwell_until = run.t + seg.seconds
            elif isinstance(seg, Confirm):
                run.pending = port.confirm(seg.io, seg.expected, seg.timeout, seg.code, start=run.t)
            elif isinstance(seg, Checkpoint):
                self._checkpoint(run.part, seg.updates())
                run.index += 1
            elif isinstance(seg, Claim):
                if not self._claim(run, seg.station):
                    return
                run.index += 1
            elif isinstance(seg, Vacate):
                self._vacate(run, seg.station)
                run.index += 1
            else:  # pragma: no cover - the Segment union is closed
                raise TypeError(f"unknown segment {seg!r}")

    # ------------------------------------------------------------------ resources
    def _wait(self, run: _Running, resource: str) -> bool:
        """The run waits for `resource`; fails it after the timeout. Returns False (not acquired)."""
        now = self.clock.now()
        if run.waiting is None or run.waiting[0] != resource:
            self._end_wait(run, now)
            run.waiting = (resource, run.t)
            log.debug(
                "part %d: step %s on %s waits for %s (%s)",
                run.part,
                run.step.name,
                run.step.cobot,
                resource,
                self._holder_of(resource),
            )
        elif now - run.waiting[1] > self.res.timeout:
            self._fail(
                run,
                f"waited {now - run.waiting[1]:.1f} s for {resource} ({self._holder_of(resource)})",
                "RESOURCE_TIMEOUT",
            )
        return False

    def _got(self, run: _Running, resource: str) -> None:
        """The run has the resource it may have waited for: its next segment starts when the resource was freed."""
        if run.waiting is not None:
            since = run.waiting[1]
            run.t = self._event_time(max(run.t, self._released.get(resource, -INF)))
            self._wait_done(run, resource, since, run.t)
            run.waiting = None

    def _end_wait(self, run: _Running, at: float) -> None:
        if run.waiting is not None:
            self._wait_done(run, run.waiting[0], run.waiting[1], at)
            run.waiting = None

    def _wait_done(self, run: _Running, resource: str, since: float, end: float) -> None:
        if end > since:
            run.waited += end - since
            if self.on_wait:
                self.on_wait(Wait(run.step.cobot, run.part, run.step.name, resource, since, end))

    def _claim(self, run: _Running, station: str) -> bool:
        if station not in self.occupancy:
            return True
        parts = self.occupancy[station]
        if run.part in parts:
            self._got(run, station)
            return True
        if len(parts) >= self.res.slots[station]:
            return self._wait(run, station)
        parts.append(run.part)
        if run.part in self.reserved[station]:
            self.reserved[station].remove(run.part)
        self._got(run, station)
        if self.on_resource:
            self.on_resource(station, f"part {run.part}", run.t, True)
        self._checkpoint(run.part, {AT_KEY: station})
        return True

    def _vacate(self, run: _Running, station: str) -> None:
        if station in self.occupancy and run.part in self.occupancy[station]:
            self.occupancy[station].remove(run.part)
            self._free(station, run.t)
            if self.on_resource:
                self.on_resource(station, f"part {run.part}", run.t, False)
        if self.skill_state.get(part_key(AT_KEY, run.part)) == station:
            self._checkpoint(run.part, {AT_KEY: ""})

    def _acquire_zones(self, run: _Running, seg: Move) -> bool:
        zones = self.res.zones
        if zones is None:
            return True
        cobot = run.step.cobot
        need = zones.during(cobot, seg) - self.held[cobot]
        taken = sorted(z for z in need if self.zone_holder.get(z, cobot) != cobot)
        if taken:
            return self._wait(run, taken[0])
        for z in need:
            self.zone_holder[z] = cobot
        self.held[cobot] = self.held[cobot] | need
        if run.waiting is not None:
            self._got(run, run.waiting[0])
        if self.on_resource:
            for z in sorted(need):
                self.on_resource(z, cobot, run.t, True)
        return True

    def _moved(self, run: _Running, seg: Move) -> None:
        zones = self.res.zones
        if zones is None:
            return
        cobot = run.step.cobot
        keep = zones.at(cobot, seg.trajectory.final)
        for z in self.held[cobot] - keep:
            if self.zone_holder.get(z) == cobot:
                del self.zone_holder[z]
                self._free(z, run.t)
                if self.on_resource:
                    self.on_resource(z, cobot, run.t, False)
        self.held[cobot] = self.held[cobot] & keep

    def rezone(self) -> None:
        """Zones held from where the arms are now (after stopping or abandoning parts mid-move)."""
        zones = self.res.zones
        if zones is None:
            return
        for cobot, port in self.ports.items():
            q = port.joint_positions()
            if q is None:
                continue
            keep = zones.at(cobot, np.asarray(q, dtype=float))
            for z in self.held[cobot] - keep:
                if self.zone_holder.get(z) == cobot:
                    del self.zone_holder[z]
            for z in keep:
                self.zone_holder.setdefault(z, cobot)
            self.held[cobot] = frozenset(z for z in keep if self.zone_holder.get(z) == cobot)

    # ------------------------------------------------------------------ step and part ends
    def _step_done(self, run: _Running) -> None:
        now = run.t
        s = run.step
        prog = self.parts[run.part]
        self._cobot_free[s.cobot] = now
        timing = StepTiming(step=s.name, skill=s.skill, cobot=s.cobot, start=run.start, end=now, wait=run.waited)
        for pallet in self.res.pallets:  # placed: its pallet's fill now counts it
            if run.part in self.reserved[pallet]:
                self.reserved[pallet].remove(run.part)
        prog.done[s.name] = timing
        del prog.running[s.name]
        if self.on_step_done:
            self.on_step_done(prog.run_id, prog.part, timing, self.expected_q.get(s.cobot))
        log.debug("part %d: step %s done in %.3f s", prog.part, s.name, now - run.start)

    def _fail(self, run: _Running, reason: str, code: str = "", at: float | None = None) -> None:
        self._end_wait(run, self.clock.now())
        self._fail_step(run.step, run.part, reason, code, at)

    def _fail_step(self, step: Step, part: int, reason: str, code: str = "", at: float | None = None) -> None:
        self.failure = StepFailure(
            step=step.name,
            cobot=step.cobot,
            skill=step.skill,
            reason=reason,
            time=self._event_time(at) if at is not None else self.clock.now(),
            code=code,
            part=part,
        )
        log.warning("part %d: step %s on %s failed: %s", part, step.name, step.cobot, reason)

    def _finish(self, prog: PartProgress) -> CycleReport:
        report = self.report(prog, "done")
        del self.parts[prog.part]
        self._release_part(prog.part)
        self._drop_part_state(prog.part)
        self._slot_t = report.end
        return report

    def report(self, prog: PartProgress, status: str) -> CycleReport:
        """The cycle report of a part from the steps it has done (scrap: maybe none); `takt` is the time since
        the part finished before it (none for the first)."""
        order = self._index
        steps = tuple(sorted(prog.done.values(), key=lambda t: (t.start, order[t.step])))
        now = self.clock.now()
        end = max((t.end for t in steps), default=now)
        takt = None if self._last_end is None or status != "done" else end - self._last_end
        if status == "done":
            self._last_end = end
        return CycleReport(
            cell=self.cell,
            job=self.job_name,
            run_id=prog.run_id,
            part=prog.part,
            start=min((t.start for t in steps), default=now),
            end=end,
            status=status,
            steps=steps,
            takt=takt,
        )
