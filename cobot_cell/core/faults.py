"""Faults: what went wrong, where, and its life cycle (raised -> acknowledged -> cleared), plus fault policies.

A fault is raised by detection (driver health, stale joint states, motion timeout, IO, grip confirmation,
skill errors), acknowledged by the operator, and cleared when the cell leaves the state the fault put it in
(reset or unhold after recovery). The supervisor uses raised/cleared times for MTBF and MTTR.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated, Literal

from annotated_types import Ge, Le

from .validation import Checked

log = logging.getLogger(__name__)


class Code(str, Enum):
    """Fault codes, as shown to the operator and logged."""

    PROTECTIVE_STOP = "PROTECTIVE_STOP"
    ESTOP = "ESTOP"
    DRIVER_ERROR = "DRIVER_ERROR"
    STALE_JOINT_STATES = "STALE_JOINT_STATES"
    MOTION_TIMEOUT = "MOTION_TIMEOUT"
    IO_MISSING = "IO_MISSING"
    IO_FAILED = "IO_FAILED"
    GRIP_MISSED = "GRIP_MISSED"
    SKILL_ERROR = "SKILL_ERROR"
    NOT_READY = "NOT_READY"
    PROCESS_TOOL_ON = "PROCESS_TOOL_ON"  # a process tool (the arc) not confirmed off when it must be
    PLANNER_RESTARTED = "PLANNER_RESTARTED"  # the planner came back with a part in progress (it had crashed)
    RESOURCE_TIMEOUT = "RESOURCE_TIMEOUT"  # a step waited too long for a station place or a shared zone
    SCRAP_TO_REMOVE = "SCRAP_TO_REMOVE"  # a scrapped part is still on a station or in a gripper
    PALLET_FULL = "PALLET_FULL"  # a pallet is full: the operator changes it and confirms
    COLLISION = "COLLISION"  # the physics sim saw two bodies touch that must not (a cobot stopped)


# Faults of the robot itself: never retried automatically, the operator must act on the robot first.
DRIVER_CODES = frozenset({Code.PROTECTIVE_STOP, Code.ESTOP, Code.DRIVER_ERROR, Code.STALE_JOINT_STATES, Code.COLLISION})

Action = Literal["hold", "abort", "scrap"]

DRIVER_FAULT_KEYS: dict[str, Code] = {
    "protective_stop": Code.PROTECTIVE_STOP,
    "estop": Code.ESTOP,
    "collision": Code.COLLISION,
}
"""A sim driver's `fault` diagnostic value -> the code the planner raises (any other ERROR: DRIVER_ERROR)."""


@dataclass(frozen=True, kw_only=True)
class FaultPolicy(Checked):
    """What the cell does when a step fails: retry from a safe point, then hold, abort or scrap the part."""

    retries: Annotated[int, Ge(0), Le(10)] = 1
    then: Action = "hold"


# What driver faults do whatever the step policy says (documented in docs/faults.md).
DRIVER_ACTIONS: dict[Code, Action] = {
    Code.PROTECTIVE_STOP: "hold",
    Code.COLLISION: "hold",
    Code.ESTOP: "abort",
    Code.DRIVER_ERROR: "abort",
    Code.STALE_JOINT_STATES: "abort",
}
# Faults whose action is fixed whatever the step policy says: the driver faults, and a resource wait that timed
# out (waiting longer or retrying does not help: the operator finds out what holds the resource).
FIXED_ACTIONS: dict[Code, Action] = {**DRIVER_ACTIONS, Code.RESOURCE_TIMEOUT: "hold"}


@dataclass(frozen=True)
class Fault:
    """One fault with its source and life cycle times (clock seconds)."""

    id: int
    code: Code
    message: str
    raised: float
    cobot: str = ""
    step: str = ""
    skill: str = ""
    severity: str = "ERROR"
    acknowledged: float | None = None
    cleared: float | None = None

    @property
    def source(self) -> str:
        """`cobot/step` (or the cobot, or 'cell')."""
        if self.cobot and self.step:
            return f"{self.cobot}/{self.step}"
        return self.cobot or "cell"

    @property
    def active(self) -> bool:
        """Not cleared yet."""
        return self.cleared is None

    def to_key_values(self, cell: str, fault_key: str = "") -> list[tuple[str, str]]:
        """Flatten for a diagnostic_msgs/DiagnosticStatus (cobot_cell.core.wire; the message is the status's)."""
        from .wire import FaultUpdate, encode_fault

        return encode_fault(FaultUpdate.of(self, cell, fault_key))


KEEP_CLEARED = 200  # cleared faults a FaultBook keeps (the most recent ones), besides every active one


class FaultBook:
    """The cell's faults: raise, acknowledge, clear; ids increase from 1 and are never reused.

    Bounded: it keeps every active fault and the `keep_cleared` most recently cleared ones (the production log
    has them all); a status call looks only at the active ones.
    """

    def __init__(self, keep_cleared: int = KEEP_CLEARED) -> None:
        if keep_cleared < 0:
            raise ValueError(f"keep_cleared must be >= 0, got {keep_cleared}")
        self.keep_cleared = keep_cleared
        self._next_id = 1
        self._active: dict[int, Fault] = {}
        self._cleared: OrderedDict[int, Fault] = OrderedDict()  # oldest clearance first

    @property
    def faults(self) -> list[Fault]:
        """The kept faults (every active one and the recently cleared ones), by id."""
        return sorted([*self._active.values(), *self._cleared.values()], key=lambda f: f.id)

    def raise_(
        self,
        code: Code,
        message: str,
        time: float,
        cobot: str = "",
        step: str = "",
        skill: str = "",
        severity: str = "ERROR",
    ) -> Fault:
        """Record a new fault."""
        fault = Fault(
            id=self._next_id,
            code=code,
            message=message,
            raised=time,
            cobot=cobot,
            step=step,
            skill=skill,
            severity=severity,
        )
        self._next_id += 1
        self._active[fault.id] = fault
        log.error("fault %d %s on %s: %s", fault.id, code.value, fault.source, message)
        return fault

    @property
    def active(self) -> list[Fault]:
        """Faults not yet cleared."""
        return list(self._active.values())

    def get(self, fault_id: int) -> Fault:
        """A kept fault by id; ValueError naming the active ids otherwise."""
        fault = self._active.get(fault_id) or self._cleared.get(fault_id)
        if fault is None:
            known = ", ".join(str(f) for f in self._active) or "none active"
            forgotten = " (cleared long ago, no longer kept)" if 1 <= fault_id < self._next_id else ""
            raise ValueError(f"no fault {fault_id}{forgotten}: active faults are {known}")
        return fault

    def _update(self, fault: Fault) -> Fault:
        if fault.active:
            self._active[fault.id] = fault
            return fault
        del self._active[fault.id]
        self._cleared[fault.id] = fault
        while len(self._cleared) > self.keep_cleared:
            self._cleared.popitem(last=False)
        return fault

    def acknowledge(self, fault_id: int | None, time: float) -> list[Fault]:
        """Acknowledge one fault (or every unacknowledged active one); ValueError if there is none."""
        targets = [self.get(fault_id)] if fault_id is not None else [f for f in self.active if f.acknowledged is None]
        if fault_id is not None and (not targets[0].active or targets[0].acknowledged is not None):
            raise ValueError(f"fault {fault_id} is already {'cleared' if not targets[0].active else 'acknowledged'}")
        if not targets:
            raise ValueError("no active fault to acknowledge")
        return [self._update(replace(f, acknowledged=time)) for f in targets]

    def clear(self, fault_id: int, time: float) -> Fault | None:
        """Clear one fault (its policy recovered it); None if it was not active."""
        f = self.get(fault_id)
        if not f.active:
            return None
        return self._update(
            replace(f, acknowledged=f.acknowledged if f.acknowledged is not None else time, cleared=time)
        )

    def clear_all(self, time: float) -> list[Fault]:
        """Clear every active fault (recovery done); acknowledges those not acknowledged."""
        return [
            self._update(replace(f, acknowledged=f.acknowledged if f.acknowledged is not None else time, cleared=time))
            for f in self.active
        ]
