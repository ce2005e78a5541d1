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

    @property
    def cycle_time(self) -> float:
        """Part cycle time in clock seconds."""
        return self.end - self.start

    def to_key_values(self) -> list[tuple[str, str]]:
        """Flatten into (key, value) strings for a diagnostic_msgs/DiagnosticStatus."""
        kv = [
            ("cell", self.cell),
            ("job", self.job),
            ("run_id", self.run_id),
            ("part", str(self.part)),
            ("status", self.status),
            ("start", repr(self.start)),
            ("end", repr(self.end)),
            ("cycle_time", repr(self.cycle_time)),
            ("steps", ",".join(s.step for s in self.steps)),
        ]
        for s in self.steps:
            kv += [
                (f"step.{s.step}.skill", s.skill),
                (f"step.{s.step}.cobot", s.cobot),
                (f"step.{s.step}.start", repr(s.start)),
                (f"step.{s.step}.end", repr(s.end)),
            ]
        return kv

    @classmethod
    def from_key_values(cls, pairs: list[tuple[str, str]]) -> CycleReport:
        """Rebuild a report from (key, value) strings; ValueError names a missing or bad key."""
        kv = dict(pairs)

        def get(key: str) -> str:
            if key not in kv:
                raise ValueError(f"cycle report: missing key '{key}'")
            return kv[key]

        def num(key: str) -> float:
            raw = get(key)
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"cycle report: key '{key}' is not a number: {raw!r}") from None

        def integer(key: str) -> int:
            raw = get(key)
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"cycle report: key '{key}' is not a number: {raw!r}") from None

        status = get("status")
        if status not in STATUSES:
            raise ValueError(f"cycle report: key 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        names = [n for n in get("steps").split(",") if n]
        steps = tuple(
            StepTiming(
                step=n,
                skill=get(f"step.{n}.skill"),
                cobot=get(f"step.{n}.cobot"),
                start=num(f"step.{n}.start"),
                end=num(f"step.{n}.end"),
            )
            for n in names
        )
        return cls(
            cell=get("cell"),
            job=get("job"),
            run_id=get("run_id"),
            part=integer("part"),
            start=num("start"),
            end=num("end"),
            status=status,
            steps=steps,
        )
