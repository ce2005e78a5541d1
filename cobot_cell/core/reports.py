"""Cycle reports: what the planner tells the supervisor about each finished part."""

from __future__ import annotations

from dataclasses import dataclass, field

STATUSES = ("done", "scrap")


@dataclass(frozen=True)
class StepTiming:
    """Start and end (clock seconds) of one step of one part."""

    step: str
    skill: str
    cobot: str
    start: float
    end: float
    wait: float = 0.0  # clock seconds within the step spent waiting for a station or a zone

    @property
    def duration(self) -> float:
        """Step duration in clock seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class CycleReport:
    """One finished part: who made it, when, and how long each step took."""

    cell: str
    job: str
    run_id: str
    part: int
    start: float
    end: float
    status: str = "done"
    steps: tuple[StepTiming, ...] = field(default_factory=tuple)
    takt: float | None = None  # clock seconds since the run's previous part was finished (none for the first)
    bound: float | None = None  # the cell's takt lower bound when the part was made (the OEE's ideal cycle)

    @property
    def cycle_time(self) -> float:
        """Part cycle time in clock seconds."""
        return self.end - self.start

    def to_key_values(self) -> list[tuple[str, str]]:
        """Flatten into (key, value) strings for a diagnostic_msgs/DiagnosticStatus (cobot_cell.core.wire)."""
        from .wire import encode_cycle

        return encode_cycle(self)

    @classmethod
    def from_key_values(cls, pairs: list[tuple[str, str]]) -> CycleReport:
        """Rebuild a report from (key, value) strings; ValueError names a missing or bad key."""
        from .wire import decode_cycle

        return decode_cycle(pairs, cls)
