"""Faults: what went wrong, where, and its life cycle (raised -> acknowledged -> cleared), plus fault policies.

A fault is raised by detection (driver health, stale joint states, motion timeout, IO, grip confirmation,
skill errors), acknowledged by the operator, and cleared when the cell leaves the state the fault put it in
(reset or unhold after recovery). The supervisor uses raised/cleared times for MTBF and MTTR.
"""

from __future__ import annotations

import logging
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
    PROCESS_TOOL_ON = "PROCESS_TOOL_ON"        # a process tool (the arc) not confirmed off when it must be
    PLANNER_RESTARTED = "PLANNER_RESTARTED"    # the planner came back with a part in progress (it had crashed)


# Faults of the robot itself: never retried automatically, the operator must act on the robot first.
DRIVER_CODES = frozenset({Code.PROTECTIVE_STOP, Code.ESTOP, Code.DRIVER_ERROR, Code.STALE_JOINT_STATES})

Action = Literal["hold", "abort", "scrap"]


@dataclass(frozen=True, kw_only=True)
class FaultPolicy(Checked):
    """What the cell does when a step fails: retry from a safe point, then hold, abort or scrap the part."""

    retries: Annotated[int, Ge(0), Le(10)] = 1
    then: Action = "hold"


# What driver faults do whatever the step policy says (documented in docs/faults.md).
DRIVER_ACTIONS: dict[Code, Action] = {
    Code.PROTECTIVE_STOP: "hold",
    Code.ESTOP: "abort",
    Code.DRIVER_ERROR: "abort",
    Code.STALE_JOINT_STATES: "abort",
}


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

    def to_key_values(self, cell: str) -> list[tuple[str, str]]:
        """Flatten for a diagnostic_msgs/DiagnosticStatus."""
        return [("cell", cell), ("id", str(self.id)), ("code", self.code.value), ("source", self.source),
                ("cobot", self.cobot), ("step", self.step), ("skill", self.skill), ("time", repr(self.raised)),
                ("raised", repr(self.raised)),
                ("acknowledged", "" if self.acknowledged is None else repr(self.acknowledged)),
                ("cleared", "" if self.cleared is None else repr(self.cleared))]


class FaultBook:
    """The cell's faults: raise, acknowledge, clear; ids increase from 1."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def raise_(self, code: Code, message: str, time: float, cobot: str = "", step: str = "", skill: str = "",
               severity: str = "ERROR") -> Fault:
        """Record a new fault."""
        fault = Fault(id=len(self.faults) + 1, code=code, message=message, raised=time, cobot=cobot, step=step,
                      skill=skill, severity=severity)
        self.faults.append(fault)
        log.error("fault %d %s on %s: %s", fault.id, code.value, fault.source, message)
        return fault

    @property
    def active(self) -> list[Fault]:
        """Faults not yet cleared."""
        return [f for f in self.faults if f.active]

    def get(self, fault_id: int) -> Fault:
        """A fault by id; ValueError naming the known ids otherwise."""
        if not 1 <= fault_id <= len(self.faults):
            known = ", ".join(str(f.id) for f in self.active) or "none active"
            raise ValueError(f"no fault {fault_id}: active faults are {known}")
        return self.faults[fault_id - 1]

    def acknowledge(self, fault_id: int | None, time: float) -> list[Fault]:
        """Acknowledge one fault (or every unacknowledged active one); ValueError if there is none."""
        targets = [self.get(fault_id)] if fault_id is not None else \
            [f for f in self.active if f.acknowledged is None]
        if fault_id is not None and (not targets[0].active or targets[0].acknowledged is not None):
            raise ValueError(f"fault {fault_id} is already {'cleared' if not targets[0].active else 'acknowledged'}")
        if not targets:
            raise ValueError("no active fault to acknowledge")
        done = []
        for f in targets:
            self.faults[f.id - 1] = replace(f, acknowledged=time)
            done.append(self.faults[f.id - 1])
        return done

    def clear(self, fault_id: int, time: float) -> Fault | None:
        """Clear one fault (its policy recovered it); None if it was not active."""
        f = self.get(fault_id)
        if not f.active:
            return None
        self.faults[f.id - 1] = replace(f, acknowledged=f.acknowledged if f.acknowledged is not None else time,
                                        cleared=time)
        return self.faults[f.id - 1]

    def clear_all(self, time: float) -> list[Fault]:
        """Clear every active fault (recovery done); acknowledges those not acknowledged."""
        done = []
        for f in self.active:
            self.faults[f.id - 1] = replace(f, acknowledged=f.acknowledged if f.acknowledged is not None else time,
                                            cleared=time)
            done.append(self.faults[f.id - 1])
        return done
