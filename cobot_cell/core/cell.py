"""Cell controller: the PackML machine driving the job sequencer, with faults, policies and a durable journal.

Operator commands go to `command()`; `update()` does the work of the acting states (Starting, Holding, ...)
and of Execute, and fires the state-complete events. Every failure ends in a defined state (docs/faults.md):
a step failure is retried from a safe point as often as its fault policy allows, then the cell holds, aborts,
or scraps the part and goes on; driver faults hold (protective stop) or abort (e-stop, lost driver). Progress is
journalled at every step boundary, so a restarted planner comes up Stopped knowing the interrupted part, and
reset + start resumes it at the interrupted step. Everything is synchronous and clock-driven, so the ROS planner
node and the unit tests drive the same object.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .dag import routes_of
from .faults import FIXED_ACTIONS, Code, Fault, FaultBook, FaultPolicy
from .journal import Interrupted, Journal
from .limits import MAX_PARTS
from .model import CellConfig, Step
from .packml import CellMachine, Command, CommandRefused, State
from .plan import AT_KEY, PART_STATE_PREFIX, Move, Segment, SetIo, SkillState, pallet_fill, pallet_key, part_key
from .ports import Clock, CobotPort, Pending
from .reports import CycleReport, StepTiming
from .sequencer import JobSequencer, Resources, StepFailure, StepPlanner, Wait, ZoneMap

log = logging.getLogger(__name__)

# States in which the job and the part count may be changed.
CONFIGURABLE_STATES = frozenset({State.STOPPED, State.IDLE, State.COMPLETE, State.ABORTED})
DEFAULT_POLICY = FaultPolicy()
RESTING_STATES = frozenset({State.STOPPED, State.IDLE, State.ABORTED, State.COMPLETE, State.HELD, State.SUSPENDED})
RECENT_REPORTS = 100  # cycle reports kept by the controller; a cell running for weeks must not grow

__all__ = ["CellController", "CellStatus", "Fault", "Recovery", "CONFIGURABLE_STATES"]


class Recovery(Protocol):
    """Motions the controller needs to recover (the skills layer provides them)."""

    def retreat(self, step: Step, q_actual: np.ndarray, q_target: np.ndarray) -> Sequence[Segment]:
        """From wherever the arm stopped back to a step's safe start: retract, then a joint move."""

    def reapproach(self, cobot: str, q_actual: np.ndarray, q_target: np.ndarray) -> Sequence[Segment]:
        """A slow, safe move from where an operator left the arm to where the cell expects it."""


@dataclass(frozen=True)
class CellStatus:
    """A snapshot of the cell for displays and the state topic."""

    state: State
    job: str
    parts_target: int
    parts_done: int
    part: int | None
    run_id: str
    last_cycle_time: float | None
    fault: Fault | None
    scrap: int = 0
    resume: str = ""
    running: tuple[tuple[str, str, float], ...] = ()  # (cobot, step, start) of each step under way
    parts: tuple[int, ...] = ()  # every part in flight, oldest first
    waiting: tuple[tuple[str, int, str, str], ...] = ()  # (cobot, part, step, resource) of each resource wait
    bound: float | None = None  # the cell's takt lower bound (s per part) when known
    blocked: bool = False  # parts wait for their outfeed: every pallet they may go on is full
    starved: bool = False  # another part could start but an infeed it takes its part from is empty


class CellController:
    """Hosts the PackML machine and the job sequencer of one cell."""

    def __init__(
        self,
        cfg: CellConfig,
        ports: Mapping[str, CobotPort],
        planner: StepPlanner,
        clock: Clock,
        job: str | None = None,
        parts: int = 1,
        on_state: Callable[[State, State, str], None] | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        on_fault: Callable[[Fault], None] | None = None,
        ready_check: Callable[[], str | None] | None = None,
        start_timeout: float = 10.0,
        wall_clock: Clock | None = None,
        journal: Journal | None = None,
        recovery: Recovery | None = None,
        skill_state: dict[str, Any] | None = None,
        resume_tolerance: float = 0.02,
        settle_time: float = 0.0,
        max_backdate: float | None = None,
        process_off_timeout: float = 3.0,
        boot_id: str = "",
        zones: ZoneMap | None = None,
        on_wait: Callable[[Wait], None] | None = None,
        max_parts_in_flight: int | None = None,
        on_resource: Callable[[str, str, float, bool], None] | None = None,
        pallets: Mapping[str, int] | None = None,
    ):
        self.cfg = cfg
        self.zones = zones
        self.on_wait = on_wait
        self.on_resource = on_resource
        # pallet station -> its places (default: what the skills planner knows)
        self.pallets = dict(pallets if pallets is not None else getattr(planner, "pallets", {}))
        self._pallet_hold = False
        # sensed infeeds: what each part-present sensor last said (None: nothing heard yet), and the infeeds
        # whose part a started part has claimed -> that part (free again once the sensor shows the part taken
        # away, or the part's step that takes it from there is done)
        self.infeeds: dict[str, bool | None] = dict.fromkeys(cfg.infeed_sensors)
        self._infeed_claimed: dict[str, int] = {}
        self._infeed_since: dict[str, float] = {}  # clock time each sensed infeed's part was first seen
        self._infeed_job: tuple[str, dict[str, tuple[str, ...]]] = ("", {})
        self.max_parts_in_flight = max_parts_in_flight or cfg.max_parts_in_flight
        self.bound: float | None = None  # takt lower bound, set by whoever estimated it
        self._next_part = 1
        self._gated: set[str] = set()  # cobots that stopped for a scrapped part: process tools off first
        self._scrap_held: dict[str, int] = {}  # cobot -> scrapped part still in its gripper
        # cobots that stopped for a scrapped part go back to their home pose (out of shared zones) before going on
        self._clearing: dict[str, tuple[list[Segment], Pending | None]] = {}
        self.ports = dict(ports)
        self.planner = planner
        self.clock = clock
        self.on_cycle = on_cycle
        self.on_fault = on_fault
        self._on_state = on_state
        self.ready_check = ready_check
        self.start_timeout = start_timeout
        self.wall_clock = wall_clock or clock
        self.journal = journal or Journal(":memory:")
        self.recovery = recovery
        self.skill_state: dict[str, Any] = skill_state if skill_state is not None else SkillState()
        self.resume_tolerance = resume_tolerance
        self.settle_time = settle_time
        self.max_backdate = max_backdate
        self._settle_until = -float("inf")
        self._starting_since: float | None = None
        self.machine = CellMachine(on_change=self._state_changed)
        self.faults = FaultBook()
        self.job = ""
        self.parts_target = 1
        self.set_job(job or next(iter(cfg.jobs)))
        self.set_parts(parts)
        self.parts_done = 0
        self.scrapped = 0
        self.run_id = ""
        self.last_cycle_time: float | None = None
        # the most recent parts' reports (the production log, with every part, is the supervisor's)
        self.reports: list[CycleReport] = []
        self._seq: JobSequencer | None = None
        self._retries: dict[tuple[int, str], int] = {}
        self._fault_hold = False
        self._expected_q: dict[str, np.ndarray] = {}
        self._reapproach: dict[str, tuple[list[Segment], Pending | None]] = {}
        # Process tools (the arc): switched off and confirmed off on their state topics before unplanned motion.
        self.process_tools = [
            (c, t.io)
            for c, cobot in cfg.cobots.items()
            if c in self.ports
            for t in cobot.tools.values()
            if t.is_process
        ]
        self.process_off_timeout = process_off_timeout
        self._off_pending: dict[tuple[str, str], tuple[Pending, float]] = {}
        self._off_since: float | None = None
        self._process_gate = False  # after a scrap: process tools off before the next motion
        self._boot_q: dict[str, np.ndarray] = {}  # where the arms were when this planner first saw them
        self._alive_at = -float("inf")
        self.boot_id = boot_id or os.urandom(4).hex()
        self.previous_boot, last_alive = self.journal.boot(self.boot_id)
        self.interrupted: Interrupted | None = self.journal.interrupted()
        if self.interrupted is not None and self.interrupted.job in cfg.jobs:
            self.job, self.parts_target = self.interrupted.job, self.interrupted.parts_target
            log.warning("journal: %s; reset + start resumes it", self.interrupted.describe())
        elif self.interrupted is not None:
            log.warning(
                "journal: run %s is of unknown job '%s': it will be abandoned",
                self.interrupted.run_id,
                self.interrupted.job,
            )
        self.last_alive = last_alive
        self._restart_fault: Fault | None = None
        if self.interrupted is not None and self.interrupted.in_progress:
            # The planner died with a part in progress: a fault from the last moment it was seen alive until
            # the part resumes (or is abandoned), so the downtime counts in MTBF/MTTR.
            at = last_alive if last_alive is not None else self.clock.now()
            self._restart_fault = self.faults.raise_(
                Code.PLANNER_RESTARTED, f"planner restarted with {self.interrupted.describe()}", at
            )
            self._emit_fault(self._restart_fault)

    # ------------------------------------------------------------------ settings
    @property
    def state(self) -> State:
        """Current PackML state."""
        return self.machine.state

    @property
    def fault(self) -> Fault | None:
        """The most recent active fault, if any."""
        active = self.faults.active
        return active[-1] if active else None

    def check_job(self, job: str) -> None:
        """Raise ValueError with the reason if `job` cannot be selected now."""
        if job not in self.cfg.jobs:
            raise ValueError(f"unknown job '{job}': expected one of {', '.join(self.cfg.jobs)}")
        if job != self.job and self.state not in CONFIGURABLE_STATES:
            raise ValueError(f"cannot change the job in state {self.state.value}: stop the cell first")

    def check_parts(self, parts: int) -> None:
        """Raise ValueError with the reason if `parts` cannot be set now."""
        if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
            raise ValueError(f"parts must be a whole number from 1 to {MAX_PARTS}, got {parts!r}")
        if parts != self.parts_target and self.state not in CONFIGURABLE_STATES:
            raise ValueError(f"cannot change the part count in state {self.state.value}: stop the cell first")

    def set_job(self, job: str) -> None:
        """Select the job to run (only while stopped, idle, complete or aborted)."""
        self.check_job(job)
        self.job = job

    def set_parts(self, parts: int) -> None:
        """Set how many parts a run makes (only while stopped, idle, complete or aborted)."""
        self.check_parts(parts)
        self.parts_target = parts

    def status(self) -> CellStatus:
        """Snapshot of the cell."""
        seq = self._seq
        resume = self.interrupted.describe() if self.interrupted is not None and self._resumable() else ""
        runs = seq.runs() if seq else []
        parts = tuple(sorted(seq.parts)) if seq else ()
        waiting = tuple((c, p, s, r) for c, (p, s, r) in seq.waiting().items()) if seq else ()
        return CellStatus(
            state=self.state,
            job=self.job,
            parts_target=self.parts_target,
            parts_done=self.parts_done,
            part=parts[0] if parts else None,
            run_id=self.run_id,
            last_cycle_time=self.last_cycle_time,
            fault=self.fault,
            scrap=self.scrapped,
            resume=resume,
            running=tuple((r.step.cobot, r.step.name, r.start) for r in runs),
            parts=parts,
            waiting=waiting,
            bound=self.bound,
            blocked=bool(seq.full_pallets) if seq else False,
            starved=self._starved(),
        )

    def infeed_sensed(self, station: str, present: bool) -> None:
        """An infeed's part-present sensor reports: a part there can start the next part; once the sensor shows
        the part taken away, the infeed's next part is free for the part after. ValueError for an unknown infeed."""
        if station not in self.infeeds:
            raise ValueError(
                f"'{station}' is not an infeed with a sensor: expected one of {', '.join(self.infeeds) or '(none)'}"
            )
        if self.infeeds[station] != present:
            log.info("infeed %s: %s", station, "part present" if present else "empty")
            if present:
                self._infeed_since[station] = self.clock.now()
        self.infeeds[station] = present
        if not present:
            self._infeed_claimed.pop(station, None)

    def _infeed_steps(self) -> dict[str, tuple[str, ...]]:
        """The job's steps that take their part from a sensed infeed, each with the sensed infeeds it takes from."""
        if not self.infeeds:
            return {}
        if self._infeed_job[0] != self.job:
            out = {}
            for step, route in routes_of(self.cfg.jobs[self.job]).items():
                group = tuple(s for s in route.source if s in self.infeeds)
                if group:
                    out[step] = group
            self._infeed_job = (self.job, out)
        return self._infeed_job[1]

    def _infeed_parts(self) -> list[str] | None:
        """The infeeds whose parts the next part takes (none for a cell without sensed infeeds), or None when one
        of its steps finds no unclaimed part on any infeed it takes from."""
        steps = self._infeed_steps()
        seq = self._seq
        for station, part in list(self._infeed_claimed.items()):  # a sensor edge missed is no deadlock
            progress = seq.parts.get(part) if seq is not None else None
            if progress is None or all(st in progress.done for st, g in steps.items() if station in g):
                del self._infeed_claimed[station]
        take = []
        for group in steps.values():
            free = [s for s in group if self.infeeds[s] and s not in self._infeed_claimed]
            if not free:
                return None
            take.append(free[0])
        return take

    def _starved(self) -> bool:
        """The cell could start another part but an infeed it takes parts from is empty (a part that waits there
        for the part that claimed it is not a lack of material)."""
        seq = self._seq
        return (
            seq is not None
            and self.state == State.EXECUTE
            and self._next_part <= self.parts_target
            and not seq.full_pallets
            and seq.can_start_part()
            and any(not any(self.infeeds[s] for s in g) for g in self._infeed_steps().values())
        )

    def next_event(self) -> float | None:
        """The earliest clock time the running job acts by itself (a dwell ending), None when nothing is due."""
        return self._seq.next_event() if self._seq is not None and self.state == State.EXECUTE else None

    def full_pallets(self) -> list[str]:
        """Pallet stations whose every place is filled."""
        return [p for p, n in self.pallets.items() if pallet_fill(self.skill_state, p) >= n]

    def pallet_changed(self) -> str:
        """The operator confirms a full pallet was taken away and an empty one put in its place: its place count
        restarts at 0 (journalled), and a cell held because of it goes on. ValueError when no pallet is full."""
        full = self.full_pallets()
        if not full:
            raise ValueError(
                "no pallet is full: "
                + (
                    ", ".join(
                        f"{p} has {pallet_fill(self.skill_state, p)} of {n} places filled"
                        for p, n in self.pallets.items()
                    )
                    or "this cell has no pallet"
                )
            )
        for p in full:
            self.skill_state[pallet_key(p)] = 0
            if self.run_id:
                self.journal.checkpoint(self.run_id, {pallet_key(p): 0})
        if self._seq is not None:
            self._seq.full_pallets = [p for p in self._seq.full_pallets if p not in full]
        self._clear_faults([f for f in self.faults.active if f.code == Code.PALLET_FULL])
        log.info("pallet(s) %s changed: place count restarts at 0", ", ".join(full))
        if self.state == State.HELD and self._pallet_hold and not self.faults.active:
            self._pallet_hold = False
            self.command(Command.UNHOLD)
        return f"pallet {', '.join(full)} changed: place count 0; state {self.state.value}"

    def parts_removed(self) -> str:
        """The operator confirms that scrapped parts were taken out of the cell (off their stations, out of the
        grippers): their places come free. ValueError when there is none."""
        seq = self._seq
        places = []
        if seq is not None:
            for station in seq.occupancy:
                for part in seq.remove_part(station):
                    places.append(f"part {part} from {station}")
                    self.skill_state[part_key(AT_KEY, part)] = ""
                    self.journal.checkpoint(self.run_id, {part_key(AT_KEY, part): ""})
        for cobot, part in list(self._scrap_held.items()):
            places.append(f"part {part} from {cobot}'s gripper")
            del self._scrap_held[cobot]
            if seq is not None and cobot not in self._gated:
                seq.blocked_cobots.discard(cobot)
        if not places:
            raise ValueError("no scrapped part is waiting to be removed")
        self._clear_faults([f for f in self.faults.active if f.code == Code.SCRAP_TO_REMOVE])
        log.info("removed: %s", ", ".join(places))
        self.update()
        return "removed " + ", ".join(places)

    # ------------------------------------------------------------------ operator
    def command(self, cmd: Command | str) -> State:
        """Apply an operator command (CommandRefused with the reason); acting work follows in update()."""
        name = cmd.value if isinstance(cmd, Command) else str(cmd)
        if name in ("unhold", "unsuspend", "start") and name in [c.value for c in self.machine.allowed_commands()]:
            self._check_resume(name)
        self.machine.command(cmd)
        self.update()
        return self.state

    def acknowledge(self, fault_id: int | None = None) -> list[Fault]:
        """Operator acknowledges one fault or all; ValueError when there is nothing to acknowledge."""
        done = self.faults.acknowledge(fault_id, self.clock.now())
        for f in done:
            self._emit_fault(f)
        return done

    def reapproach(self) -> str:
        """Move every cobot that is off its expected position back to it, slowly; ValueError if not now."""
        if self.state not in (State.HELD, State.SUSPENDED, State.STOPPED, State.IDLE, State.ABORTED):
            raise ValueError(f"cannot reapproach in state {self.state.value}: only when held, suspended or stopped")
        if self._reapproach:
            raise ValueError("a reapproach is already under way")
        if self.recovery is None:
            raise ValueError("this cell has no recovery planner")
        problem = self.ready_check() if self.ready_check else None
        if problem:
            raise ValueError(f"cannot reapproach: {problem}")
        off = self._deviations(for_start=self.state not in (State.HELD, State.SUSPENDED))
        if not off:
            raise ValueError("every cobot is where the cell expects it: nothing to reapproach")
        for cobot, (q_actual, q_target, _) in off.items():
            segs = list(self.recovery.reapproach(cobot, q_actual, q_target))
            self._reapproach[cobot] = (segs, None)
        self.update()
        return "reapproaching " + ", ".join(off)

    @property
    def reapproaching(self) -> bool:
        """A reapproach move is under way."""
        return bool(self._reapproach)

    def raise_fault(self, code: Code, message: str, cobot: str = "", step: str = "", skill: str = "") -> Fault:
        """A fault detected outside a step (driver health, stale joint states): record it and act."""
        fault = self.faults.raise_(code, message, self.clock.now(), cobot=cobot, step=step, skill=skill)
        self._emit_fault(fault)
        self._act(FIXED_ACTIONS.get(code, "abort"), fault)
        return fault

    # ------------------------------------------------------------------ update
    def update(self) -> None:
        """Do the current state's work; call on every event and periodically."""
        if self.interrupted is not None and len(self._boot_q) < len(self.ports):
            for cobot, port in self.ports.items():
                q = port.joint_positions()
                if cobot not in self._boot_q and q is not None:
                    self._boot_q[cobot] = np.asarray(q, dtype=float)
        if self.state in RESTING_STATES:
            self._process_off()  # nothing may be lit while the cell is not producing (also a late arc-on reply)
        wall = self.wall_clock.now()
        if wall - self._alive_at >= 1.0:
            self._alive_at = wall
            self.journal.alive(self.clock.now(), defer=True)
        if self._reapproach:
            self._run_reapproach()
        elif (
            self.state in (State.HELD, State.SUSPENDED, State.STOPPED, State.ABORTED)
            and self.wall_clock.now() < self._settle_until
        ):
            self._snapshot_expected(settling=True)
        for _ in range(len(State)):  # settle chains of instantly completing acting states
            before = self.state
            self._step_state()
            if self.state == before:
                break
        self.journal.flush()  # step boundaries, now that the next steps are on their way
        if self.state == State.EXECUTE and self._seq is not None:
            self._seq.preplan()  # next steps planned while the arms move, not at the step boundary

    def _step_state(self) -> None:
        st = self.state
        if st == State.RESETTING:
            keep = self._restart_fault  # open until the interrupted part resumes (the downtime goes on)
            self._clear_faults([f for f in self.faults.active if f is not keep] if keep is not None else None)
            self.machine.state_complete()
        elif st == State.STARTING:
            self._starting()
        elif st == State.EXECUTE:
            self._execute()
        elif st in (State.HOLDING, State.SUSPENDING):
            if self._seq is not None:
                self._seq.paused = True
                if self._fault_hold:
                    self._seq.interrupt()
                else:
                    self._seq.interrupt(only_process=True)  # motion and arc stop together; other moves finish
                    self._run_sequencer()
                    if self.state != st:
                        return
            if not self._tools_safe():
                return
            if self._seq is None or not self._seq.in_flight:
                self._snapshot_expected()
                self.machine.state_complete()
        elif st in (State.UNHOLDING, State.UNSUSPENDING):
            if self._seq is not None:
                self._restart_interrupted()
                self._seq.paused = False
            self._fault_hold = False
            self._clear_faults()
            self.machine.state_complete()
        elif st == State.COMPLETING:
            self.journal.end_run(self.run_id, "complete", self.clock.now())
            self.interrupted = None
            self.machine.state_complete()
        elif st in (State.STOPPING, State.ABORTING):
            if self._seq is not None:
                self._seq.interrupt()
                self._snapshot_expected()
                self._seq = None
            if self._off_since is None or self._reapproach:
                for port in self.ports.values():
                    port.stop()
                self._reapproach.clear()
            if not self._tools_safe():
                return
            self._fault_hold = False
            self.interrupted = self.journal.interrupted()
            self.machine.state_complete()
        elif st == State.CLEARING:
            self.machine.state_complete()

    # ------------------------------------------------------------------ starting / resuming
    def _resumable(self) -> bool:
        i = self.interrupted
        return i is not None and i.job == self.job and i.parts_target == self.parts_target

    def _starting(self) -> None:
        problem = self.ready_check() if self.ready_check else None
        if problem:
            now = self.wall_clock.now()
            if self._starting_since is None:
                self._starting_since = now
            if now - self._starting_since > self.start_timeout:
                self._starting_since = None
                self.raise_fault(Code.NOT_READY, f"{problem} after {self.start_timeout:g} s")
            return
        self._starting_since = None
        if not self._tools_safe():
            return
        now = self.clock.now()
        self._retries.clear()
        self._seq = self._new_sequencer()
        self._gated.clear()
        self._scrap_held.clear()
        self._clearing.clear()
        if self._resumable():
            i = self.interrupted
            assert i is not None
            self.run_id, self.parts_done, self.scrapped = i.run_id, i.parts_finished, i.parts_scrapped
            self._next_part = i.last_part + 1
            self.skill_state.clear()
            self.skill_state.update(i.skill_state)
            self._seq.expected_q.update({c: np.asarray(q) for c, q in i.cobot_q.items() if c in self.ports})
            self._resolve_process_records(i)
            for part, done in sorted(i.in_progress.items()):
                self._seq.start_part(part, self.run_id, done=done, resume=True)
            for key, value in i.skill_state.items():  # station places: parts in flight, and scrapped ones
                owner = _part_of(key)
                if owner is not None and key == part_key(AT_KEY, owner) and value:
                    self._seq.restore_station(str(value), owner)
            # a resumed part that has not taken its part off an infeed yet owns the part there
            self._infeed_claimed.clear()
            for step, group in self._infeed_steps().items():
                for part, done in sorted(i.in_progress.items()):
                    if step not in done:
                        self._infeed_claimed.update({s: part for s in group if self.infeeds[s] is not False})
            log.info("resuming %s", i.describe())
        else:
            if self.interrupted is not None:
                self._abandon_run(self.interrupted, now)
            self.run_id = os.urandom(6).hex()
            self.parts_done = 0
            self.scrapped = 0
            self._next_part = 1
            self._infeed_claimed.clear()  # a part an abandoned run left on the infeed is the next part's
            # The cell's own state (a half-full pallet) carries over from the last run; a part's does not.
            cell_state = {
                k: v
                for k, v in {**self.journal.last_skill_state(), **self.skill_state}.items()
                if not k.startswith(PART_STATE_PREFIX)
            }
            self.skill_state.clear()
            self.skill_state.update(cell_state)
            self.journal.begin_run(self.run_id, self.job, self.parts_target, now)
            self.journal.checkpoint(self.run_id, cell_state)
            poses = {c: p.joint_positions() for c, p in self.ports.items()}
            self.journal.record_poses(self.run_id, {c: list(q) for c, q in poses.items() if q is not None})
        if self._restart_fault is not None:  # the interrupted part resumes, or its run is abandoned
            self._clear_faults([self._restart_fault], at=max(now, self._restart_fault.raised))
            self._restart_fault = None
        self.interrupted = None
        self.machine.state_complete()

    def _new_sequencer(self) -> JobSequencer:
        job = self.cfg.jobs[self.job]
        slots = {n: st.slots for n, st in self.cfg.stations.items() if st.slots is not None}
        resources = Resources(
            slots=slots,
            routes=routes_of(job),
            zones=self.zones,
            max_parts=self.max_parts_in_flight,
            timeout=self.cfg.cell.resource_timeout,
            pallets=self.pallets,
        )
        return JobSequencer(
            self.cfg.cell.name,
            self.job,
            job,
            self.ports,
            self.planner,
            self.clock,
            skill_state=self.skill_state,
            on_checkpoint=self._on_checkpoint,
            on_step_done=self._on_step_done,
            max_backdate=self.max_backdate,
            resources=resources,
            on_wait=self.on_wait,
            on_resource=self.on_resource,
        )

    def _abandon_run(self, i: Interrupted, now: float) -> None:
        for part, done in sorted(i.in_progress.items()):
            if self.journal.part_finished(i.run_id, part, "scrap", now, "run abandoned"):
                report = CycleReport(
                    cell=self.cfg.cell.name,
                    job=i.job,
                    run_id=i.run_id,
                    part=part,
                    start=now,
                    end=now,
                    status="scrap",
                    steps=tuple(done.values()),
                )
                self._publish_report(report)
        self.journal.end_run(i.run_id, "abandoned", now)
        log.warning("abandoned %s", i.describe())

    def _targets(self, for_start: bool) -> dict[str, np.ndarray]:
        """Where each cobot must be before motion resumes: where the journal left it (start of a resumed
        run), or where it stopped (unhold, unsuspend)."""
        if for_start:
            if not self._resumable():
                return {}
            assert self.interrupted is not None
            return {c: np.asarray(q, dtype=float) for c, q in self.interrupted.cobot_q.items() if c in self.ports}
        return dict(self._expected_q)

    def _deviations(self, for_start: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        """Cobots farther than the tolerance from where the cell expects them: (actual, expected, distance)."""
        out = {}
        for cobot, expected in self._targets(for_start).items():
            actual = self.ports[cobot].joint_positions()
            if actual is None:
                continue
            d = float(np.max(np.abs(np.asarray(actual) - expected)))
            if d > self.resume_tolerance:
                out[cobot] = (np.asarray(actual), expected, d)
        return out

    def _check_resume(self, cmd: str) -> None:
        if cmd == "start" and not self._resumable():
            return
        if self._reapproach:
            raise CommandRefused(cmd, self.state, f"cannot {cmd}: a reapproach is under way")
        if cmd != "start" and self.ready_check:
            problem = self.ready_check()
            if problem:
                raise CommandRefused(cmd, self.state, f"cannot {cmd}: {problem}")
        blind = [c for c in self._targets(cmd == "start") if self.ports[c].joint_positions() is None]
        if blind:
            raise CommandRefused(cmd, self.state, f"cannot {cmd}: no joint states from cobot '{blind[0]}' yet")
        off = self._deviations(for_start=cmd == "start")
        if off:
            cobot, (actual, expected, d) = max(off.items(), key=lambda kv: kv[1][2])
            joint = self.cfg.cobots[cobot].joints[int(np.argmax(np.abs(actual - expected)))]
            raise CommandRefused(
                cmd,
                self.state,
                (
                    f"cannot {cmd}: cobot '{cobot}' is {d:.3f} rad ({joint}) from where the cell left it "
                    f"(tolerance {self.resume_tolerance:g} rad): call reapproach to bring it back slowly"
                ),
            )

    def _snapshot_expected(self, settling: bool = False) -> None:
        """Remember where every cobot is when the cell stops moving (held, suspended, stopped, aborted).

        For `settle_time` (wall) seconds afterwards the snapshot follows the arms: joint states still in flight
        when the cell stopped are not mistaken for an operator moving an arm.
        """
        if not settling:
            self._settle_until = self.wall_clock.now() + self.settle_time
        for cobot, port in self.ports.items():
            q = port.joint_positions()
            if q is not None:
                self._expected_q[cobot] = np.asarray(q, dtype=float)

    def _restart_interrupted(self) -> None:
        seq = self._seq
        assert seq is not None
        for part, step in seq.interrupted_steps():
            actual = self.ports[step.cobot].joint_positions()
            start_q = seq.step_start_q(step.name, part)
            recovery = (
                list(self.recovery.retreat(step, actual, start_q))
                if self.recovery is not None and actual is not None
                else []
            )
            seq.restart_step(step.name, recovery, part)

    def _run_reapproach(self) -> None:
        if not self._process_off():
            return  # the arc is confirmed off before any reapproach motion
        for cobot in list(self._reapproach):
            segs, pending = self._reapproach[cobot]
            port = self.ports[cobot]
            if pending is not None:
                port.poll(pending)
                if not pending.done:
                    continue
                if pending.error:
                    del self._reapproach[cobot]
                    self.raise_fault(
                        Code(pending.code) if pending.code in Code.__members__ else Code.MOTION_TIMEOUT,
                        f"reapproach failed: {pending.error}",
                        cobot=cobot,
                    )
                    continue
            moves = [s for s in segs if isinstance(s, Move)]
            if not moves:
                del self._reapproach[cobot]
                if self.state in (State.HELD, State.SUSPENDED):
                    self._expected_q[cobot] = np.asarray(port.joint_positions())
                log.info("reapproach of %s done", cobot)
                continue
            segs.remove(moves[0])
            self._reapproach[cobot] = (segs, port.move(moves[0].trajectory))

    # ------------------------------------------------------------------ execute
    def _execute(self) -> None:
        seq = self._seq
        if seq is None:
            return
        if self._process_gate:
            if not self._process_off():
                return  # after a start or a stop: process tools off before the next motion
            self._process_gate = False
        if self._gated and self._process_off(self._gated):
            # cobots that stopped for a scrapped part: process tools off, then back home, before they go on
            for cobot in sorted(self._gated):
                if self._cleared(cobot):
                    self._gated.discard(cobot)
                    if cobot not in self._scrap_held:
                        seq.blocked_cobots.discard(cobot)
        self._start_parts()
        if not seq.active and self.parts_done >= self.parts_target:
            self.machine.execute_complete()
            return
        self._run_sequencer()

    def _start_parts(self) -> None:
        """Start parts up to the work-in-process limit while the run has parts left to make, each when its
        sensed infeeds show a part that no earlier part has claimed."""
        seq = self._seq
        assert seq is not None
        while seq.can_start_part() and self._next_part <= self.parts_target and self.state == State.EXECUTE:
            take = self._infeed_parts()
            if take is None:  # no free part on an infeed yet (status().starved while one is empty)
                return
            part = self._next_part
            self._infeed_claimed.update({station: part for station in take})
            self._next_part += 1
            self.journal.part_started(self.run_id, part, self.clock.now())
            seq.start_part(
                part, self.run_id, not_before=max((self._infeed_since[s] for s in take), default=-float("inf"))
            )

    def _run_sequencer(self) -> None:
        seq = self._seq
        assert seq is not None
        for _ in range(4 * MAX_PARTS):
            reports = seq.update()
            for report in reports:
                self._part_finished(report)
            if seq.failure is not None:
                self._step_failed(seq.failure)
                return
            if self.state != State.EXECUTE:
                return
            if not seq.active and self.parts_done >= self.parts_target:
                self.machine.execute_complete()
                return
            if self._pallets_full(seq):
                return
            before = len(seq.parts)
            self._start_parts()
            if not reports and len(seq.parts) == before:
                return

    def _part_finished(self, report: CycleReport) -> None:
        if self.bound is not None:
            report = dataclasses.replace(report, bound=self.bound)
        if report.status == "done":
            self.last_cycle_time = report.cycle_time
        else:
            self.scrapped += 1
        self.parts_done += 1
        self.journal.part_finished(report.run_id, report.part, report.status, report.end)
        self.reports.append(report)
        del self.reports[:-RECENT_REPORTS]
        log.info("part %d %s: cycle time %.3f s", report.part, report.status, report.cycle_time)
        self._publish_report(report)

    def _publish_report(self, report: CycleReport) -> None:
        if self.on_cycle:
            self.on_cycle(report)

    def _on_step_done(self, run_id: str, part: int, timing: StepTiming, q: np.ndarray | None) -> None:
        # deferred: written by update() right after the next step is dispatched (a crash in between redoes it)
        self.journal.step_done(run_id, part, timing, None if q is None else list(q), dict(self.skill_state), defer=True)
        if q is not None:
            self._expected_q[timing.cobot] = np.asarray(q)

    def _on_checkpoint(self, updates: dict[str, Any]) -> None:
        # committed now, before the next segment: process work recorded as done is never done again
        self.journal.checkpoint(self.run_id, updates)

    def _pallets_full(self, seq: JobSequencer) -> bool:
        """A full pallet is an event: the operator is told (PALLET_FULL) at once; if parts wait because every pallet
        they may go on is full, the cell holds until the change is confirmed (pallet_changed). True if it held."""
        told = {f.step for f in self.faults.active if f.code == Code.PALLET_FULL}
        for p in self.full_pallets():
            if p not in told:
                fault = self.faults.raise_(
                    Code.PALLET_FULL,
                    f"pallet '{p}' is full ({self.pallets[p]} places): "
                    "take it away, put an empty one, then confirm (pallet_changed)",
                    self.clock.now(),
                    step=p,
                    severity="WARN",
                )
                self._emit_fault(fault)
        if seq.full_pallets and self.state == State.EXECUTE:
            self._pallet_hold = True
            self.machine.command(Command.HOLD)
            return True
        return False

    def _cleared(self, cobot: str) -> bool:
        """Run a cobot's way home after a scrapped part, one move at a time; True once it is there (or has none)."""
        entry = self._clearing.get(cobot)
        if entry is None:
            return True
        segs, pending = entry
        port = self.ports[cobot]
        if pending is not None:
            port.poll(pending)
            if not pending.done:
                return False
            if pending.error:
                log.warning("%s: the move home after a scrapped part failed: %s", cobot, pending.error)
                segs = []
        moves = [seg for seg in segs if isinstance(seg, Move)]
        if moves:
            segs.remove(moves[0])
            self._clearing[cobot] = (segs, port.move(moves[0].trajectory))
            return False
        del self._clearing[cobot]
        seq = self._seq
        if seq is not None:
            seq.expected_q.pop(cobot, None)  # its next step is planned from where it is
            seq.rezone()
        return True

    # ------------------------------------------------------------------ process tools
    def _process_off(self, cobots: set[str] | None = None) -> bool:
        """Command every process tool (of `cobots`, default all) that is not sensed off to switch off (again every
        0.5 s wall until it is); True once each is confirmed off on its state topic. A driver refusing the call
        (e-stop) still confirms: it drops the arc itself."""
        wall = self.wall_clock.now()
        ok = True
        for cobot, io in self.process_tools:
            if cobots is not None and cobot not in cobots:
                continue
            port = self.ports[cobot]
            entry = self._off_pending.get((cobot, io))
            if entry is not None and not entry[0].done:
                port.poll(entry[0])
            if port.sensed(io) is False:
                continue
            if entry is None or (entry[0].done and wall - entry[1] >= 0.5):
                pending = port.set_io(io, False)
                port.poll(pending)
                self._off_pending[(cobot, io)] = (pending, wall)
                log.info("process tool %s/%s: switching off", cobot, io)
            ok = ok and port.sensed(io) is False
        if ok and cobots is None:
            self._off_pending.clear()
        return ok

    def _tools_safe(self) -> bool:
        """For an acting state: process tools confirmed off. After `process_off_timeout` wall seconds without a
        confirmation a PROCESS_TOOL_ON fault is raised: Stopping and Aborting then complete (the operator must
        check the tool), Holding, Suspending and Starting abort."""
        if self._process_off():
            return True
        now = self.wall_clock.now()
        if self._off_since is None:
            self._off_since = now
            return False
        if now - self._off_since < self.process_off_timeout:
            return False
        on = [f"{c}/{io}" for c, io in self.process_tools if self.ports[c].sensed(io) is not False]
        if not any(f.code == Code.PROCESS_TOOL_ON for f in self.faults.active):
            fault = self.faults.raise_(
                Code.PROCESS_TOOL_ON,
                f"process tool {', '.join(on)} not confirmed off "
                f"within {self.process_off_timeout:g} s: check it before going on",
                self.clock.now(),
                cobot=on[0].split("/")[0] if on else "",
            )
            self._emit_fault(fault)
        if self.state in (State.STOPPING, State.ABORTING):
            return True
        self.machine.command(Command.ABORT)
        return False

    def _resolve_process_records(self, i: Interrupted) -> None:
        """Process work the journal shows under way when the planner died (the arc struck, end unknown): where
        the arm stood when this planner first saw it tells how far it got, if the arm is on the work's path;
        otherwise the work resumes from where it was struck (nothing skipped)."""
        keys = {k for k, v in self.skill_state.items() if isinstance(v, dict) and v.get("arc")}
        for part, steps_done in sorted(i.in_progress.items()):
            for step in self.cfg.jobs[self.job].steps:
                if not keys:
                    return
                if step.name in steps_done or step.cobot not in self._boot_q or step.cobot not in i.cobot_q:
                    continue
                try:
                    plan = self.planner(step, part, np.asarray(i.cobot_q[step.cobot], dtype=float))
                except Exception:  # noqa: BLE001 - the step is planned (and any error reported) when it starts
                    continue
                for seg in plan.segments:
                    span = seg.process if isinstance(seg, Move) else None
                    key = part_key(span.key, part) if span is not None else ""
                    if span is None or key not in keys:
                        continue
                    u, off = span.locate(self._boot_q[step.cobot])
                    if off <= span.tolerance and span.start - span.tolerance <= u <= span.end + span.tolerance:
                        value = span.record(min(u, span.end))
                        self.skill_state[key] = value
                        self.journal.checkpoint(self.run_id, {key: value})
                        keys.discard(key)
                        log.info("part %d: process work of step %s stopped at %.4f m (%s)", part, step.name, u, key)

    # ------------------------------------------------------------------ faults
    def _policy(self, step_name: str) -> FaultPolicy:
        job = self.cfg.jobs[self.job]
        step = job.step(step_name)
        return step.fault_policy or job.fault_policy or DEFAULT_POLICY

    def _step_failed(self, failure: StepFailure) -> None:
        seq = self._seq
        assert seq is not None
        code = Code(failure.code) if failure.code in Code.__members__ else Code.SKILL_ERROR
        fault = self.faults.raise_(
            code, failure.reason, failure.time, cobot=failure.cobot, step=failure.step, skill=failure.skill
        )
        self._emit_fault(fault)
        policy = self._policy(failure.step)
        key = (failure.part, failure.step)
        used = self._retries.get(key, 0)
        if code not in FIXED_ACTIONS and code != Code.SKILL_ERROR and used < policy.retries:
            self._retries[key] = used + 1
            step = self.cfg.jobs[self.job].step(failure.step)
            actual = self.ports[failure.cobot].joint_positions()
            start_q = seq.step_start_q(failure.step, failure.part)
            recovery = (
                list(self.recovery.retreat(step, actual, start_q))
                if self.recovery is not None and actual is not None
                else []
            )
            log.warning("retry %d/%d of step %s (part %d)", used + 1, policy.retries, failure.step, key[0])
            seq.restart_step(failure.step, recovery, failure.part)
            self._clear_faults([fault], at=fault.raised)  # handled by the policy the moment it happened
            return
        action = FIXED_ACTIONS.get(code, "abort" if code == Code.SKILL_ERROR else policy.then)
        self._act(action, fault, failure.part)

    def _act(self, action: str, fault: Fault, part: int | None = None) -> None:
        st = self.state
        seq = self._seq
        if action == "scrap" and st == State.EXECUTE and seq is not None and part in seq.parts:
            # only the scrapped part's cobots stop; its place on a station (or in a gripper) stays taken until the
            # operator confirms it was removed (parts_removed)
            running = list(seq.parts[part].running.values())
            holding = {r.step.cobot for r in running if _holding(r.segments[: r.index + 1], self.ports[r.step.cobot])}
            prog = seq.abandon(part)
            assert prog is not None
            cobots = {r.step.cobot for r in running}
            self._gated |= cobots
            for run in running:
                actual = self.ports[run.step.cobot].joint_positions()
                home = np.asarray(self.cfg.cobots[run.step.cobot].home, dtype=float)
                if self.recovery is not None and actual is not None:
                    segs = list(self.recovery.retreat(run.step, np.asarray(actual), home))
                    self._clearing[run.step.cobot] = (segs, None)
            seq.blocked_cobots |= cobots
            for cobot in holding:
                self._scrap_held[cobot] = part
            self._part_finished(seq.report(prog, "scrap"))
            self._clear_faults([fault], at=fault.raised)
            places = [s for s, parts in seq.occupancy.items() if part in parts]
            places += [f"{c}'s gripper" for c in holding]
            if places:  # the cell goes on around it; the place comes free once the operator confirms
                left = self.faults.raise_(
                    Code.SCRAP_TO_REMOVE,
                    f"scrapped part {part} is still on "
                    f"{' and '.join(places)}: take it out, then confirm (parts_removed)",
                    self.clock.now(),
                    cobot=fault.cobot,
                    step=fault.step,
                    skill=fault.skill,
                    severity="WARN",
                )
                self._emit_fault(left)
            return
        if action in ("hold", "scrap") and st in (State.EXECUTE, State.UNHOLDING, State.UNSUSPENDING):
            self._fault_hold = True
            self.machine.command(Command.HOLD)
            return
        if action in ("hold", "scrap") and st in (State.HOLDING, State.HELD, State.SUSPENDING, State.SUSPENDED):
            self._fault_hold = True
            if self._seq is not None:
                self._seq.interrupt()
            return
        if st not in (State.ABORTING, State.ABORTED, State.CLEARING, State.STOPPED, State.IDLE, State.COMPLETE):
            self.machine.command(Command.ABORT)

    def _clear_faults(self, faults: list[Fault] | None = None, at: float | None = None) -> None:
        now = self.clock.now() if at is None else at
        if faults is None:
            cleared = self.faults.clear_all(now)
        else:
            cleared = [c for c in (self.faults.clear(f.id, now) for f in faults) if c is not None]
        for f in cleared:
            self._emit_fault(f)

    def _emit_fault(self, fault: Fault) -> None:
        if self.on_fault:
            self.on_fault(fault)

    def _state_changed(self, old: State, new: State, trigger: str) -> None:
        self._off_since = None  # each acting state waits for its own confirmation
        if new in (State.HOLDING, State.SUSPENDING, State.STOPPING, State.ABORTING, State.STARTING):
            self._process_gate = True
        if new == State.STARTING:
            self._starting_since = None  # the start timeout counts from this start, not an earlier one
        log.info("cell %s: %s -> %s (%s)", self.cfg.cell.name, old.value, new.value, trigger)
        if self._on_state:
            self._on_state(old, new, trigger)


def _part_of(key: str) -> int | None:
    """The part number of a part's skill-state key (`part.<n>.…`), else None."""
    head, _, rest = key[len(PART_STATE_PREFIX) :].partition(".")
    return int(head) if key.startswith(PART_STATE_PREFIX) and head.isdigit() and rest else None


def _holding(segments: Sequence[Segment], port: CobotPort) -> bool:
    """After these segments the tool holds a part: the last non-process output switched was switched on, and the
    tool does not sense that it holds nothing (a missed grip)."""
    for seg in reversed(segments):
        if isinstance(seg, SetIo) and not seg.process:
            return seg.value and port.sensed(seg.io) is not False
    return False
