"""Cell controller: the PackML machine driving the job sequencer for a run of parts.

Operator commands go to `command()`; `update()` does the work of the acting states (Starting, Holding, ...)
and of Execute, and fires the state-complete events. Everything is synchronous and clock-driven, so the ROS
planner node and the unit tests drive the same object.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

from .config import CellConfig
from .packml import CellMachine, Command, State
from .ports import Clock, CobotPort
from .reports import CycleReport
from .sequencer import JobSequencer, StepFailure, StepPlanner

log = logging.getLogger(__name__)

# States in which the job and the part count may be changed.
CONFIGURABLE_STATES = frozenset({State.STOPPED, State.IDLE, State.COMPLETE, State.ABORTED})


@dataclass(frozen=True)
class Fault:
    """A fault raised by the cell: what failed, where, and when (clock seconds)."""

    code: str
    source: str
    message: str
    time: float
    level: str = "ERROR"


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
    ):
        self.cfg = cfg
        self.ports = dict(ports)
        self.planner = planner
        self.clock = clock
        self.on_cycle = on_cycle
        self.on_fault = on_fault
        self._on_state = on_state
        self.ready_check = ready_check
        self.start_timeout = start_timeout
        self.wall_clock = wall_clock or clock
        self._starting_since: float | None = None
        self.machine = CellMachine(on_change=self._state_changed)
        self.job = ""
        self.parts_target = 1
        self.set_job(job or next(iter(cfg.jobs)))
        self.set_parts(parts)
        self.parts_done = 0
        self.run_id = ""
        self.last_cycle_time: float | None = None
        self.fault: Fault | None = None
        self.reports: list[CycleReport] = []
        self._seq: JobSequencer | None = None

    # ------------------------------------------------------------------ settings
    @property
    def state(self) -> State:
        """Current PackML state."""
        return self.machine.state

    def check_job(self, job: str) -> None:
        """Raise ValueError with the reason if `job` cannot be selected now."""
        if job not in self.cfg.jobs:
            raise ValueError(f"unknown job '{job}': expected one of {', '.join(self.cfg.jobs)}")
        if job != self.job and self.state not in CONFIGURABLE_STATES:
            raise ValueError(f"cannot change the job in state {self.state.value}: stop the cell first")

    def check_parts(self, parts: int) -> None:
        """Raise ValueError with the reason if `parts` cannot be set now."""
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"parts must be a whole number >= 1, got {parts!r}")
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
        prog = self._seq.progress if self._seq else None
        return CellStatus(
            state=self.state, job=self.job, parts_target=self.parts_target, parts_done=self.parts_done,
            part=prog.part if prog else None, run_id=self.run_id, last_cycle_time=self.last_cycle_time,
            fault=self.fault,
        )

    # ------------------------------------------------------------------ commands
    def command(self, cmd: Command | str) -> State:
        """Apply an operator command (raises CommandRefused with the reason); acting work follows in update()."""
        self.machine.command(cmd)
        self.update()
        return self.state

    def update(self) -> None:
        """Do the current state's work; call on every event and periodically."""
        for _ in range(len(State)):  # settle chains of instantly completing acting states
            before = self.state
            self._step_state()
            if self.state == before:
                return

    # ------------------------------------------------------------------ internals
    def _step_state(self) -> None:
        st = self.state
        if st == State.RESETTING:
            self.fault = None
            self.parts_done = 0
            self.machine.state_complete()
        elif st == State.STARTING:
            problem = self.ready_check() if self.ready_check else None
            if problem:
                now = self.wall_clock.now()
                if self._starting_since is None:
                    self._starting_since = now
                if now - self._starting_since > self.start_timeout:
                    self._starting_since = None
                    self._raise(Fault(code="NOT_READY", source="cell", time=self.clock.now(),
                                      message=f"{problem} after {self.start_timeout:g} s"))
                return
            self._starting_since = None
            self.run_id = uuid.uuid4().hex[:12]
            self.parts_done = 0
            self._seq = JobSequencer(self.cfg.cell.name, self.job, self.cfg.jobs[self.job], self.ports,
                                     self.planner, self.clock)
            self._seq.start_part(1, self.run_id)
            self.machine.state_complete()
        elif st == State.EXECUTE:
            self._execute()
        elif st in (State.HOLDING, State.SUSPENDING):
            if self._seq is not None:
                self._seq.paused = True
                self._run_sequencer()
                if self.state != st:
                    return
            if self._seq is None or not self._seq.in_flight:
                self.machine.state_complete()
        elif st in (State.UNHOLDING, State.UNSUSPENDING):
            if self._seq is not None:
                self._seq.paused = False
            self.machine.state_complete()
        elif st == State.COMPLETING:
            self.machine.state_complete()
        elif st in (State.STOPPING, State.ABORTING):
            if self._seq is not None:
                dropped = self._seq.abandon()
                if dropped is not None:
                    log.warning("part %d of run %s abandoned in %s", dropped.part, dropped.run_id, st.value)
            else:
                for port in self.ports.values():
                    port.stop()
            self._seq = None
            self.machine.state_complete()
        elif st == State.CLEARING:
            self.fault = None
            self.machine.state_complete()

    def _execute(self) -> None:
        seq = self._seq
        if seq is None:
            return
        if not seq.active:
            if self.parts_done >= self.parts_target:
                self.machine.execute_complete()
                return
            seq.start_part(self.parts_done + 1, self.run_id)
        self._run_sequencer()

    def _run_sequencer(self) -> None:
        seq = self._seq
        assert seq is not None
        while True:  # a part may finish in the same update that starts it (instant steps)
            report = seq.update()
            if seq.failure is not None:
                self._raise_fault(seq.failure)
                return
            if report is None:
                return
            self.parts_done += 1
            self.last_cycle_time = report.cycle_time
            self.reports.append(report)
            log.info("part %d done: cycle time %.3f s", report.part, report.cycle_time)
            if self.on_cycle:
                self.on_cycle(report)
            if self.state != State.EXECUTE:
                return
            if self.parts_done >= self.parts_target:
                self.machine.execute_complete()
                return
            seq.start_part(self.parts_done + 1, self.run_id)

    def _raise_fault(self, failure: StepFailure) -> None:
        self._raise(Fault(code="STEP_FAILED", source=f"{failure.cobot}/{failure.step}", message=failure.reason,
                          time=failure.time))

    def _raise(self, fault: Fault) -> None:
        self.fault = fault
        log.error("fault on %s: %s", fault.source, fault.message)
        if self.on_fault:
            self.on_fault(fault)
        self.machine.command(Command.ABORT)

    def _state_changed(self, old: State, new: State, trigger: str) -> None:
        if new == State.STARTING:
            self._starting_since = None  # the start timeout counts from this start, not an earlier one
        log.info("cell %s: %s -> %s (%s)", self.cfg.cell.name, old.value, new.value, trigger)
        if self._on_state:
            self._on_state(old, new, trigger)
