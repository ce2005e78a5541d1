"""Property tests of parts in flight (hypothesis): random jobs (transfers between fixtures with random capacities,
process steps at the fixtures, random cobots and durations), random shared zones and work-in-process limits,
through the real controller and sequencer with FakeCobots on a virtual clock and a stub step planner.

Station capacity and zone exclusivity are checked from what the cobots were told to do (the ports' logs: when each
move started and what it was, when each gripper closed and opened on which part), not from the scheduler's own
bookkeeping. Every generated cell that `cobot-cell validate`'s resource checks accept must finish every part
(no deadlock) with an exact ledger, and `max_parts_in_flight: 1` must give today's one-part-at-a-time schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rig import CellRig

from cobot_cell.core.config import CellConfig, Step, parse_cell
from cobot_cell.core.journal import Journal
from cobot_cell.core.packml import State
from cobot_cell.core.plan import Claim, Dwell, Move, SetIo, SkillPlan, SkillState, Vacate, part_key, route_key
from cobot_cell.core.ports import FakeCobot
from cobot_cell.skills.resources import check_places

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
PALLET = {
    "pallet": {"length": 0.40, "width": 0.30},
    "box": {"length": 0.20, "width": 0.15, "height": 0.06},
    "pattern": "column",
    "max_height": 0.12,
}
ZONE_SETS: list[frozenset[str]] = [frozenset()]  # a stub arm's pose: q[0] indexes this table


def pose(zones: frozenset[str]) -> np.ndarray:
    """A stub joint vector that stands for a pose inside `zones`."""
    if zones not in ZONE_SETS:
        ZONE_SETS.append(zones)
    q = np.zeros(6)
    q[0] = ZONE_SETS.index(zones)
    return q


@dataclass(frozen=True)
class Traj:
    duration: float
    final: np.ndarray
    zones: frozenset[str]  # zones any link enters along the move


class StubZones:
    """The ZoneMap of the stub arms: a move's zones are written on it, a pose's in its first joint."""

    def during(self, cobot: str, move: Move) -> frozenset[str]:
        return move.trajectory.zones | self.at(cobot, move.trajectory.final)

    def at(self, cobot: str, q: np.ndarray) -> frozenset[str]:
        return ZONE_SETS[int(round(float(q[0])))]


@dataclass
class Spec:
    cobots: int
    capacities: list[int]  # of fixtures f0, f1, ...
    stages: list[list[int]]  # fixture groups a part visits in order
    transfer_cobots: list[int]  # cobot of each transfer (len(stages) + 1: the last to the pallet)
    process: list[list[int]]  # per stage: cobots of the process steps there
    zoned: list[bool]  # per fixture: covered by a zone of its own
    detour: list[int]  # per transfer: -1 or a fixture whose zone the carry passes through
    durations: list[float]
    max_parts: int
    parts: int


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    cobots = draw(st.integers(1, 3))
    nf = draw(st.integers(1, 3))
    capacities = [draw(st.integers(1, 2)) for _ in range(nf)]
    order = draw(st.permutations(range(nf)))
    nstages = draw(st.integers(1, nf))
    stages = []
    rest = list(order)
    for _ in range(nstages):
        if not rest:
            break
        k = draw(st.integers(1, min(2, len(rest))))
        stages.append(sorted(rest[:k]))
        rest = rest[k:]
    transfer_cobots = [draw(st.integers(0, cobots - 1)) for _ in range(len(stages) + 1)]
    process = [[draw(st.integers(0, cobots - 1)) for _ in range(draw(st.integers(0, 2)))] for _ in stages]
    zoned = [draw(st.booleans()) for _ in range(nf)]
    detour = [draw(st.integers(-1, nf - 1)) for _ in range(len(stages) + 1)]
    durations = [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 5.0])) for _ in range(40)]
    return Spec(
        cobots,
        capacities,
        stages,
        transfer_cobots,
        process,
        zoned,
        detour,
        durations,
        draw(st.integers(1, 4)),
        draw(st.integers(1, 6)),
    )


def build(spec: Spec) -> CellConfig:
    """The cell file of a spec (steps named t<i> for transfers, p<i>_<k> for process steps)."""

    def station_ref(group: list[int]):
        return f"f{group[0]}" if len(group) == 1 else [f"f{i}" for i in group]

    cobots = {
        f"c{i}": {
            "model": "ur5e",
            "joints": [f"c{i}_{j}" for j in JOINTS],
            "home": [0.0] * 6,
            "tools": {"gripper": {"kind": "gripper", "io": "gripper/grip"}},
        }
        for i in range(spec.cobots)
    }
    stations = {
        "infeed": {"kind": "infeed", "pose": {"xyz": [0, 0, 0]}},
        "pallet": {"kind": "pallet", "pose": {"xyz": [1, 0, 0]}, "pallet": PALLET},
    }
    for i, cap in enumerate(spec.capacities):
        stations[f"f{i}"] = {"kind": "fixture", "pose": {"xyz": [0.3 * i, 0.5, 0]}, "capacity": cap}
    zones = {f"z{i}": {"stations": [f"f{i}"]} for i, z in enumerate(spec.zoned) if z}
    steps = []
    prev_done: list[str] = []
    src = "infeed"
    for i, group in enumerate(spec.stages + [None]):
        dest = station_ref(group) if group is not None else "pallet"
        name = f"t{i}"
        steps.append(
            {
                "name": name,
                "skill": "palletise" if group is None else "pick",
                "cobot": f"c{spec.transfer_cobots[i]}",
                "after": prev_done,
                "params": {"from": src, "to": dest},
            }
        )
        prev_done = [name]
        if group is not None:
            for k, c in enumerate(spec.process[i]):
                steps.append(
                    {
                        "name": f"p{i}_{k}",
                        "skill": "weld",
                        "cobot": f"c{c}",
                        "after": [name],
                        "params": {"station": station_ref(group)},
                    }
                )
                prev_done = prev_done + [f"p{i}_{k}"]
            src = dest
    doc = {
        "cell": {"name": "prop", "max_parts_in_flight": spec.max_parts, "resource_timeout": 1e6},
        "cobots": cobots,
        "stations": stations,
        "zones": zones,
        "jobs": {"job": {"steps": steps}},
    }
    return parse_cell(yaml.safe_dump(doc, sort_keys=False))[0]


class StubPlanner:
    """Plans a transfer as approach, grip, lift, vacate, carry, claim, descend, release, retreat; a process step as
    approach into the station, a dwell, and back out. Moves into a fixture enter its zone, if it has one."""

    def __init__(self, cfg: CellConfig, spec: Spec, state: dict):
        self.cfg, self.spec, self.state = cfg, spec, state
        self.k = 0

    def _zone(self, station: str) -> frozenset[str]:
        i = station[1:]
        return frozenset({f"z{i}"}) if station.startswith("f") and f"z{i}" in self.cfg.zones else frozenset()

    def _d(self) -> float:
        self.k += 1
        return self.spec.durations[self.k % len(self.spec.durations)]

    def _where(self, value, part: int, dest: bool) -> str:
        group = (value,) if isinstance(value, str) else tuple(value)
        if len(group) == 1:
            return group[0]
        key = part_key(route_key(group), part) if dest else part_key("part.at", part)
        got = self.state.get(key)
        assert got in group, f"part {part}: no station of {group} chosen ({key} = {got!r})"
        return got

    def __call__(self, step: Step, part: int, q: np.ndarray) -> SkillPlan:
        out = pose(frozenset())
        p = step.params
        if step.skill == "weld":
            at = self._where(p["station"], part, False)
            segs = [
                Move(Traj(self._d(), pose(self._zone(at)), frozenset()), "approach"),
                Dwell(self._d(), "work"),
                Move(Traj(self._d(), out, frozenset()), "leave"),
            ]
            return SkillPlan(tuple(segs), out)
        src, dest = self._where(p["from"], part, False), self._where(p["to"], part, True)
        i = int(step.name[1:])
        detour = self.spec.detour[i] if i < len(self.spec.detour) else -1
        passing = self._zone(f"f{detour}") if detour >= 0 else frozenset()
        segs = [
            Move(Traj(self._d(), pose(self._zone(src)), frozenset()), "approach"),
            SetIo("gripper", f"grip/{src}/{part}", True, "grip"),
            Move(Traj(self._d(), out, frozenset()), "lift"),
            Vacate(src),
            Move(Traj(self._d(), out, passing), "carry"),
            Claim(dest),
            Move(Traj(self._d(), pose(self._zone(dest)), frozenset()), "descend"),
            SetIo("gripper", f"release/{dest}/{part}", False, "release"),
            Move(Traj(self._d(), out, frozenset()), "retreat"),
        ]
        return SkillPlan(tuple(segs), out)


class LoggingCobot(FakeCobot):
    """A FakeCobot that also keeps every trajectory it was told to follow."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moves: list[tuple[float, Traj]] = []

    def move(self, trajectory, start=None):
        p = super().move(trajectory, start)
        self.moves.append((p.started, trajectory))
        return p


def run(cfg: CellConfig, spec: Spec, max_parts: int | None = None) -> CellRig:
    """The cell on the shared rig with LoggingCobots at zero, the stub planner and an in-memory journal, run from
    one event to the next until it leaves Execute."""
    state = SkillState()
    rig = CellRig(
        cfg,
        StubPlanner(cfg, spec, state),
        spec.parts,
        positions={n: np.zeros(6) for n in cfg.cobots},
        cobot=LoggingCobot,
        skill_state=state,
        zones=StubZones() if cfg.zones else None,
        journal=Journal(":memory:"),
        max_parts_in_flight=max_parts,
    )
    rig.cell.command("reset")
    rig.cell.command("start")
    rig.run_events()
    return rig


def zone_intervals(ports: dict[str, LoggingCobot]) -> dict[str, list[tuple[float, float, str]]]:
    """Per zone, (from, to, cobot) while the cobot's arm is in it, from the moves each cobot was sent."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    zones = StubZones()
    for name, port in ports.items():
        inside: dict[str, float] = {}
        for start, traj in port.moves:
            for z in zones.during(name, Move(traj)):
                inside.setdefault(z, start)
            end_in = zones.at(name, traj.final)
            for z in [z for z in inside if z not in end_in]:
                out.setdefault(z, []).append((inside.pop(z), start + traj.duration, name))
        for z, t in inside.items():
            out.setdefault(z, []).append((t, float("inf"), name))
    return out


def presence(ports: dict[str, LoggingCobot]) -> dict[str, list[tuple[float, float, int]]]:
    """Per station, (from, to, part) while a part lies on it: from its release there to its grip there."""
    events = sorted((t, what) for port in ports.values() for t, what, _ in port.log if what.startswith("io:"))
    on: dict[tuple[str, int], float] = {}
    out: dict[str, list[tuple[float, float, int]]] = {}
    for t, what in events:
        kind, station, part = what[3:].split("/")
        if kind == "release":
            on[(station, int(part))] = t
        elif (station, int(part)) in on:
            out.setdefault(station, []).append((on.pop((station, int(part))), t, int(part)))
    for (station, part), t in on.items():
        out.setdefault(station, []).append((t, float("inf"), part))
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    n = best = 0
    for _, d in events:
        n += d
        best = max(best, n)
    return best


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_parts_in_flight_respect_stations_and_zones_and_all_finish(spec: Spec) -> None:
    cfg = build(spec)
    issues: list = []
    check_places(cfg, "job", cfg.jobs["job"], lambda loc, msg: issues.append((loc, msg)))
    assume(not issues)  # a cell validate rejects (its cobots could wait for each other) is not run
    rig = run(cfg, spec)
    cell, ports, reports, journal = rig.cell, rig.ports, rig.cycles, rig.cell.journal
    assert cell.state == State.COMPLETE, (cell.state, cell.fault)
    assert sorted(r.part for r in reports) == list(range(1, spec.parts + 1))
    assert all(r.status == "done" for r in reports)
    assert journal.ledger() == [(cell.run_id, p, "done") for p in range(1, spec.parts + 1)]
    for zone, spans in zone_intervals(ports).items():
        spans.sort()
        for (_, a1, ca), (b0, _, cb) in zip(spans, spans[1:]):
            assert ca == cb or b0 >= a1 - 1e-9, f"{zone}: {ca} in it until {a1}, {cb} from {b0}"
    for station, spans in presence(ports).items():
        if station.startswith("f"):
            cap = cfg.stations[station].slots
            assert max_overlap([(a, b) for a, b, _ in spans]) <= cap, f"{station} over its capacity {cap}"
    # at most max_parts parts between their first step's start and their last step's end
    spans = [(r.start, r.end) for r in reports]
    assert max_overlap([(a + 1e-9, b - 1e-9) for a, b in spans]) <= spec.max_parts


def reference_schedule(cfg: CellConfig, durations: dict[str, float], parts: int) -> list[tuple[int, str, float, float]]:
    """One part at a time as before parts in flight: a step starts when its `after` steps and its cobot are done
    (file order among ready steps); the next part when the last step of the one before has ended."""
    job = cfg.jobs["job"]
    out = []
    t_part = 0.0
    free: dict[str, float] = {}
    for part in range(1, parts + 1):
        end: dict[str, float] = {}
        pending = list(job.steps)
        while pending:
            ready = [s for s in pending if all(d in end for d in s.after)]
            # the sequencer starts, in file order, each ready step whose cobot is free when the step can start
            s = min(
                ready,
                key=lambda s: (max([t_part, free.get(s.cobot, 0.0)] + [end[d] for d in s.after]), job.steps.index(s)),
            )
            start = max([t_part, free.get(s.cobot, 0.0)] + [end[d] for d in s.after])
            end[s.name] = start + durations[s.name]
            free[s.cobot] = end[s.name]
            out.append((part, s.name, start, end[s.name]))
            pending.remove(s)
        t_part = max(end.values())
    return sorted(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_one_part_in_flight_is_the_one_part_at_a_time_schedule(spec: Spec) -> None:
    spec.zoned = [False] * len(spec.zoned)
    spec.durations = [spec.durations[0]] * len(spec.durations)  # every segment alike: plans do not depend on order
    cfg = build(spec)
    rig = run(cfg, spec, max_parts=1)
    cell, reports = rig.cell, rig.cycles
    assert cell.state == State.COMPLETE
    d = spec.durations[0]
    durations = {s.name: (2 * d + d if s.skill == "weld" else 5 * d) for s in cfg.jobs["job"].steps}
    got = sorted((r.part, s.step, s.start, s.end) for r in reports for s in r.steps)
    want = reference_schedule(cfg, durations, spec.parts)
    assert [(p, n) for p, n, _, _ in got] == [(p, n) for p, n, _, _ in want]
    np.testing.assert_allclose([(a, b) for _, _, a, b in got], [(a, b) for _, _, a, b in want], atol=1e-9)
