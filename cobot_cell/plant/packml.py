"""PackML tags of a cell (OPC 30050 v1.01, the OPC UA mapping of ISA-TR88.00.02): the pure mapping.

From what a cell publishes (state, status key/values, cycle reports, faults, the supervisor's KPIs) to the values
of the OPC 30050 model: the three nested state machines with their states, state numbers and transitions
(OPC 30050 section 6.2.4-6.2.7: PackMLBaseStateMachineType, PackMLMachineStateMachineType,
PackMLExecuteStateMachineType), the Status tags (section 6.2.2, PackMLStatusObjectType) and the Admin tags
(section 6.2.3, PackMLAdminObjectType: counts, StopReason, Warning and Alarm arrays, mode and state times).
No OPC UA library here: the server (`opcua_server.py`) turns these values into nodes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cobot_cell.core.reports import CycleReport

logger = logging.getLogger(__name__)

# ISA-TR88.00.02 state numbers, as OPC 30050 gives them in each state's StateNumber property (0 is Undefined).
STATE_NUMBERS: dict[str, int] = {
    "Clearing": 1,
    "Stopped": 2,
    "Starting": 3,
    "Idle": 4,
    "Suspended": 5,
    "Execute": 6,
    "Stopping": 7,
    "Aborting": 8,
    "Aborted": 9,
    "Holding": 10,
    "Held": 11,
    "Unholding": 12,
    "Suspending": 13,
    "Unsuspending": 14,
    "Resetting": 15,
    "Completing": 16,
    "Complete": 17,
}
# The two parent states OPC 30050 adds: Running (holds the Execute state machine), Cleared (holds MachineState).
PARENT_STATE_NUMBERS: dict[str, int] = {"Running": 18, "Cleared": 19}

BASE, MACHINE, EXECUTE = "BaseStateMachine", "MachineState", "ExecuteState"


@dataclass(frozen=True)
class Transition:
    """A transition of one of the state machines: name, from, to, and the method that causes it (if any)."""

    name: str
    source: str
    target: str
    cause: str | None = None


# States and transitions per state machine (OPC 30050 tables for the three StateMachineTypes). Only the
# transitions this cell's machine takes: the optional Hold transitions of the 2015 model are left out
# (Hold is accepted in Execute only, see cobot_cell.core.packml).
STATES: dict[str, tuple[str, ...]] = {
    BASE: ("Aborting", "Aborted", "Cleared"),
    MACHINE: ("Clearing", "Stopped", "Stopping", "Running"),
    EXECUTE: (
        "Idle",
        "Starting",
        "Execute",
        "Completing",
        "Complete",
        "Resetting",
        "Holding",
        "Held",
        "Unholding",
        "Suspending",
        "Suspended",
        "Unsuspending",
    ),
}
TRANSITIONS: dict[str, tuple[Transition, ...]] = {
    BASE: (
        Transition("ClearedToAborting", "Cleared", "Aborting", "Abort"),
        Transition("AbortingToAborted", "Aborting", "Aborted"),
        Transition("AbortedToCleared", "Aborted", "Cleared", "Clear"),
    ),
    MACHINE: (
        Transition("ClearingToStopped", "Clearing", "Stopped"),
        Transition("StoppedToRunning", "Stopped", "Running", "Reset"),
        Transition("RunningToStopping", "Running", "Stopping", "Stop"),
        Transition("StoppingToStopped", "Stopping", "Stopped"),
    ),
    EXECUTE: (
        Transition("ResettingToIdle", "Resetting", "Idle"),
        Transition("IdleToStarting", "Idle", "Starting", "Start"),
        Transition("StartingToExecute", "Starting", "Execute"),
        Transition("ExecuteToCompleting", "Execute", "Completing"),
        Transition("CompletingToComplete", "Completing", "Complete"),
        Transition("CompleteToResetting", "Complete", "Resetting", "Reset"),
        Transition("ExecuteToHolding", "Execute", "Holding", "Hold"),
        Transition("HoldingToHeld", "Holding", "Held"),
        Transition("HeldToUnholding", "Held", "Unholding", "Unhold"),
        Transition("UnholdingToExecute", "Unholding", "Execute"),
        Transition("ExecuteToSuspending", "Execute", "Suspending", "Suspend"),
        Transition("SuspendingToSuspended", "Suspending", "Suspended"),
        Transition("SuspendedToUnsuspending", "Suspended", "Unsuspending", "Unsuspend"),
        Transition("UnsuspendingToExecute", "Unsuspending", "Execute"),
    ),
}
# PackML command methods of each state machine (OPC 30050 tables; Reset is on MachineState, for Stopped, and on
# ExecuteState, for Complete) and the cell command each stands for.
METHODS: dict[str, tuple[str, ...]] = {
    BASE: ("Abort", "Clear"),
    MACHINE: ("Stop", "Reset"),
    EXECUTE: ("Reset", "Start", "Hold", "Unhold", "Suspend", "Unsuspend"),
}
METHOD_COMMANDS: dict[str, str] = {m: m.lower() for names in METHODS.values() for m in names}

# TR88 PackTags Command.CntrlCmd numbers (ISA-TR88.00.02 Table "Command tags"); clients differ, so configurable.
DEFAULT_CNTRL_CMD: dict[int, str] = {
    1: "reset",
    2: "start",
    3: "stop",
    4: "hold",
    5: "unhold",
    6: "suspend",
    7: "unsuspend",
    8: "abort",
    9: "clear",
}
CELL_COMMANDS = ("reset", "start", "stop", "hold", "unhold", "suspend", "unsuspend", "abort", "clear")

# ProductionMaintenanceModeEnum (OPC 30050 section 6.3): the cell has one mode, Produce.
MODES: dict[int, str] = {0: "Invalid", 1: "Produce", 2: "Maintenance", 3: "Manual"}
PRODUCE = 1


def state_path(state: str) -> dict[str, str | None]:
    """The current state of each of the three state machines for a cell state (None: that machine is inactive)."""
    if state not in STATE_NUMBERS:
        raise ValueError(f"unknown PackML state {state!r}")
    if state in STATES[BASE]:
        return {BASE: state, MACHINE: None, EXECUTE: None}
    if state in STATES[MACHINE]:
        return {BASE: "Cleared", MACHINE: state, EXECUTE: None}
    return {BASE: "Cleared", MACHINE: "Running", EXECUTE: state}


def state_number(name: str) -> int:
    """TR88 (or OPC 30050 parent) state number of a state name."""
    return STATE_NUMBERS.get(name) or PARENT_STATE_NUMBERS[name]


def available_transitions(machine: str, current: str | None) -> list[str]:
    """Names of the transitions of `machine` that leave its current state (none while it is inactive)."""
    return [t.name for t in TRANSITIONS[machine] if current is not None and t.source == current]


def parse_cntrl_cmd_map(text: str) -> dict[int, str]:
    """'1=reset,2=start,...' -> {1: 'reset', ...}; empty text gives the TR88 numbering; ValueError naming the item."""
    if not text.strip():
        return dict(DEFAULT_CNTRL_CMD)
    mapping: dict[int, str] = {}
    for item in text.split(","):
        number, sep, command = item.partition("=")
        try:
            n = int(number)
        except ValueError:
            raise ValueError(f"CntrlCmd map item {item.strip()!r}: expected NUMBER=COMMAND") from None
        if not sep or command.strip() not in CELL_COMMANDS:
            raise ValueError(f"CntrlCmd map item {item.strip()!r}: command must be one of {', '.join(CELL_COMMANDS)}")
        if n < 1 or n in mapping:
            raise ValueError(f"CntrlCmd map item {item.strip()!r}: numbers must be >= 1 and appear once")
        mapping[n] = command.strip()
    return mapping


@dataclass(frozen=True)
class Count:
    """PackMLCountDataType: ID, Name, Count (this run) and AccCount (since the server started), unit parts."""

    id: int
    name: str
    count: int
    acc_count: int


@dataclass(frozen=True)
class Alarm:
    """PackMLAlarmDataType: ID (fault id), Value (fault code number), Message, Category, times (Unix s), Trigger."""

    id: int
    value: int
    message: str
    category: int
    time: float
    ack_time: float | None
    trigger: bool


NO_ALARM = Alarm(0, 0, "", 0, 0.0, None, False)
# Fault codes as Alarm.Value numbers (Message carries the code's name too); unknown codes get 0.
FAULT_CODES = (
    "PROTECTIVE_STOP",
    "ESTOP",
    "DRIVER_ERROR",
    "STALE_JOINT_STATES",
    "MOTION_TIMEOUT",
    "IO_MISSING",
    "IO_FAILED",
    "GRIP_MISSED",
    "SKILL_ERROR",
    "NOT_READY",
)
CATEGORY_ALARM, CATEGORY_WARNING = 1, 2
KPI_NAMES: dict[str, str] = {
    "oee": "OEE",
    "availability": "Availability",
    "performance": "Performance",
    "quality": "Quality",
    "mtbf": "MTBF",
    "mttr": "MTTR",
    "mean_cycle_time": "MeanCycleTime",
    "p95_cycle_time": "P95CycleTime",
    "parts": "Parts",
    "scrap": "Scrap",
    "throughput_per_hour": "ThroughputPerHour",
    "downtime": "Downtime",
}
STOPPING_STATES = ("Holding", "Suspending", "Stopping", "Aborting")
STOPPED_STATES = ("Held", "Suspended", "Stopped", "Aborted")
SPEED_WINDOW = 5  # parts over which CurMachSpeed is measured


@dataclass(frozen=True)
class CellTags:
    """Every value of a cell's PackML object at one moment."""

    state: str
    state_number: int
    machines: dict[str, str | None]
    available: dict[str, list[str]]
    unit_mode: int
    mach_speed: float
    cur_mach_speed: float
    blocked: bool
    starved: bool
    job: str
    product_id: int
    parts_target: int
    parts_done: int
    processed: tuple[Count, ...]
    defective: tuple[Count, ...]
    stop_reason: Alarm
    warnings: tuple[Alarm, ...]
    alarms: tuple[Alarm, ...]
    state_current_time: int
    mode_current_time: int
    state_cumulative_time: tuple[int, ...]  # indexed by state number 0..17
    mode_cumulative_time: int
    kpis: dict[str, float]
    authority: str


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _bool(text: str | None) -> bool:
    return str(text).lower() == "true"


@dataclass
class _FaultSeen:
    id: int
    code: str
    message: str
    first_seen: float
    ack_seen: float | None = None
    cleared: bool = False


@dataclass
class CellTracker:
    """Follows one cell (state, status, cycle reports, faults, KPIs) and computes its tags.

    Times of alarms and state durations are wall-clock seconds of this process (`clock`); counts are
    incremental (each cycle report is counted once, by run and part).
    """

    cell: str
    jobs: tuple[str, ...] = ()
    mach_speed: float = 0.0
    clock: Callable[[], float] = time.time
    state: str = "Stopped"
    status: dict[str, str] = field(default_factory=dict)
    kpis: dict[str, float] = field(default_factory=dict)
    authority: str = "local"
    _entered: float = 0.0
    _started: float = 0.0
    _cumulative: list[float] = field(default_factory=lambda: [0.0] * (max(STATE_NUMBERS.values()) + 1))
    _counted: set[tuple[str, int]] = field(default_factory=set)
    _run_counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, status) this run
    _acc_counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, status) since start
    _run_id: str = ""
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=SPEED_WINDOW))
    _faults: dict[str, _FaultSeen] = field(default_factory=dict)
    _stop_reason: Alarm = NO_ALARM

    def __post_init__(self) -> None:
        self._started = self._entered = self.clock()

    def job_id(self, job: str) -> int:
        """ProductID of a job: its 1-based position in the cell file's jobs (0 if unknown)."""
        return self.jobs.index(job) + 1 if job in self.jobs else 0

    def on_state(self, state: str) -> None:
        """The cell entered `state`."""
        if state not in STATE_NUMBERS or state == self.state:
            return
        now = self.clock()
        self._cumulative[STATE_NUMBERS[self.state]] += now - self._entered
        self.state, self._entered = state, now
        # the acting state may pass between two status updates: its resting state counts as well
        if state in STOPPING_STATES + STOPPED_STATES and not self._stop_reason.trigger:
            first = self._first_active()
            if first is not None:
                self._stop_reason = first
        elif state in ("Resetting", "Clearing"):
            self._stop_reason = NO_ALARM

    def on_status(self, status: Mapping[str, str]) -> None:
        """A status from the planner (key/values)."""
        self.status = dict(status)
        run = self.status.get("run_id", "")
        if run and run != self._run_id:
            self._run_id = run
            self._run_counts.clear()
        if "state" in status:
            self.on_state(status["state"])

    def on_report(self, report: CycleReport) -> bool:
        """A cycle report; False if it was already counted."""
        key = (report.run_id, report.part)
        if key in self._counted:
            return False
        self._counted.add(key)
        if report.run_id != self._run_id:
            self._run_id = report.run_id
            self._run_counts.clear()
        k = (report.job, report.status)
        self._run_counts[k] = self._run_counts.get(k, 0) + 1
        self._acc_counts[k] = self._acc_counts.get(k, 0) + 1
        if report.status == "done":
            self._recent.append(report.cycle_time)
        return True

    def on_fault(self, key: str, kv: Mapping[str, str]) -> None:
        """A fault life-cycle update (the planner's key/values, plus 'message')."""
        now = self.clock()
        seen = self._faults.get(key)
        if seen is None:
            try:
                fid = int(kv.get("id", "0"))
            except ValueError:
                fid = 0
            seen = self._faults[key] = _FaultSeen(fid, kv.get("code", ""), kv.get("message", ""), now)
        if kv.get("acknowledged") and seen.ack_seen is None:
            seen.ack_seen = now
        if kv.get("cleared"):
            seen.cleared = True
        if self._stop_reason.trigger and self._stop_reason.id == seen.id:
            self._stop_reason = self._alarm(seen)
        if not seen.cleared and self.state in STOPPING_STATES + STOPPED_STATES and self._stop_reason is NO_ALARM:
            self._stop_reason = self._alarm(seen)  # the fault came just after the stop it caused

    def on_kpis(self, kv: Mapping[str, str]) -> None:
        """The supervisor's KPI key/values for this cell."""
        self.kpis = {name: _float(kv.get(name)) for name in KPI_NAMES}

    def _alarm(self, f: _FaultSeen) -> Alarm:
        value = FAULT_CODES.index(f.code) + 1 if f.code in FAULT_CODES else 0
        category = CATEGORY_WARNING if f.ack_seen is not None else CATEGORY_ALARM
        return Alarm(
            f.id,
            value,
            f"{f.code}: {f.message}" if f.message else f.code,
            category,
            f.first_seen,
            f.ack_seen,
            not f.cleared,
        )

    def _first_active(self) -> Alarm | None:
        active = [f for f in self._faults.values() if not f.cleared]
        return self._alarm(min(active, key=lambda f: (f.first_seen, f.id))) if active else None

    def _counts(self, statuses: tuple[str, ...]) -> tuple[Count, ...]:
        jobs = list(self.jobs) + sorted({j for j, _ in self._acc_counts} - set(self.jobs))
        return tuple(
            Count(
                self.job_id(j),
                j,
                sum(self._run_counts.get((j, s), 0) for s in statuses),
                sum(self._acc_counts.get((j, s), 0) for s in statuses),
            )
            for j in jobs
        )

    def tags(self) -> CellTags:
        """The tags now."""
        now = self.clock()
        machines = state_path(self.state)
        cumulative = list(self._cumulative)
        cumulative[STATE_NUMBERS[self.state]] += now - self._entered
        executing = self.state == "Execute" and self._recent
        cur_speed = 3600.0 / (sum(self._recent) / len(self._recent)) if executing else 0.0
        active = [f for f in sorted(self._faults.values(), key=lambda f: (f.first_seen, f.id)) if not f.cleared]

        def whole(text: str | None) -> int:
            try:
                return int(text or 0)
            except ValueError:
                return 0

        job = self.status.get("job", "")
        return CellTags(
            state=self.state,
            state_number=STATE_NUMBERS[self.state],
            machines=machines,
            available={m: available_transitions(m, s) for m, s in machines.items()},
            unit_mode=PRODUCE,
            mach_speed=float(self.mach_speed),
            cur_mach_speed=cur_speed,
            blocked=_bool(self.status.get("blocked")),
            starved=_bool(self.status.get("starved")),
            job=job,
            product_id=self.job_id(job),
            parts_target=whole(self.status.get("parts")),
            parts_done=whole(self.status.get("parts_done")),
            processed=self._counts(("done", "scrap")),
            defective=self._counts(("scrap",)),
            stop_reason=self._stop_reason,
            warnings=tuple(self._alarm(f) for f in active if f.ack_seen is not None),
            alarms=tuple(self._alarm(f) for f in active if f.ack_seen is None),
            state_current_time=int(now - self._entered),
            mode_current_time=int(now - self._started),
            state_cumulative_time=tuple(int(v) for v in cumulative),
            mode_cumulative_time=int(now - self._started),
            kpis=dict(self.kpis) or {name: math.nan for name in KPI_NAMES},
            authority=self.authority,
        )
