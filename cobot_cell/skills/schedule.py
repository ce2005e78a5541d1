"""The cell's steady state without ROS: the real controller and sequencer (same scheduling rules) over simulated
cobots on a virtual clock, event by event. `estimate` gives per-part cycle times, the takt, parts per hour, each
resource's busy time per part and utilisation, and the bottleneck, whose busy time per part is the takt's lower
bound; `gantt` draws the timeline.

Busy time of a resource: a cobot is busy while it runs a step, less the time it waits in it for a station or a
zone (a wait is not work); a station while parts hold its places (divided by its capacity), and, for a one-place
station whose parts one cobot both takes away and brings, while it is empty because that cobot is making the trip
in between (work the station cannot overlap); a zone while a cobot is inside it. Measured over the steady-state
window (the parts after the first quarter), so a start-up does not count. A resource cannot be busy for more than
the takt, so the busiest one bounds it; work a resource cannot overlap (a single gripper that unloads a fixture
before it loads it) shows as that resource's busy time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.cell import CellController
from ..core.dag import routes_of
from ..core.model import CellConfig, Step
from ..core.packml import State
from ..core.plan import MISSING, PART_STATE_PREFIX, SkillPlan, SkillState, part_key, part_prefix
from ..core.ports import FakeCobot, VirtualClock
from ..core.reports import CycleReport
from ..core.sequencer import Wait
from . import make_planner, pallet_places, validated_params
from .infeed import InfeedSim
from .zones import CellZones

log = logging.getLogger(__name__)


@dataclass
class Timeline:
    """What happened in a simulated run, in clock seconds."""

    reports: list[CycleReport] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    holds: list[tuple[str, str, float, float]] = field(default_factory=list)  # (resource, holder, start, end)
    end: float = 0.0

    def steps(self) -> list[tuple[str, int, str, float, float]]:
        """(cobot, part, step, start, end) of every step of every finished part."""
        return [(s.cobot, r.part, s.step, s.start, s.end) for r in self.reports for s in r.steps]


@dataclass(frozen=True)
class Estimate:
    """The steady state of a cell running a job."""

    job: str
    parts: int
    max_parts_in_flight: int
    cycle_times: tuple[float, ...]
    takt: float
    busy: dict[str, float]  # resource -> busy seconds per part (a station's divided by its capacity)
    utilisation: dict[str, float]  # resource -> busy fraction of the window
    kinds: dict[str, str]  # resource -> cobot, station or zone
    timeline: Timeline
    window: tuple[int, int]  # the parts the steady state is measured over (first, last)

    @property
    def parts_per_hour(self) -> float:
        return 3600.0 / self.takt if self.takt > 0 else float("inf")

    @property
    def bottleneck(self) -> str:
        return max(self.busy, key=lambda r: self.busy[r])

    @property
    def bound(self) -> float:
        """The takt's lower bound: the bottleneck's busy time per part."""
        return self.busy[self.bottleneck]


def simulate(
    cfg: CellConfig,
    job: str,
    parts: int,
    max_parts_in_flight: int | None = None,
    io_delay: float = 0.0,
    params: Any = None,
    port_class: type[FakeCobot] = FakeCobot,
    on_plan: Callable[[Step, int, SkillPlan], None] | None = None,
) -> Timeline:
    """Run `parts` parts of `job` through the controller with simulated cobots on a virtual clock (`params`: the
    steps' validated parameters, see `skills.validated_params`; validated here if not given). The simulated
    controller's own log (a full pallet, state changes) is kept quiet: it is a model, not the cell."""
    core_log = logging.getLogger("cobot_cell.core")
    level = core_log.level
    core_log.setLevel(logging.CRITICAL)
    try:
        return _simulate(cfg, job, parts, max_parts_in_flight, io_delay, params, port_class, on_plan)
    finally:
        core_log.setLevel(level)


def _simulate(
    cfg: CellConfig,
    job: str,
    parts: int,
    max_parts_in_flight: int | None,
    io_delay: float,
    params: Any,
    port_class: type[FakeCobot],
    on_plan: Callable[[Step, int, SkillPlan], None] | None,
) -> Timeline:
    clock = VirtualClock(0.0)
    ports = {n: port_class(n, clock, np.asarray(c.home, dtype=float), io_delay=io_delay) for n, c in cfg.cobots.items()}
    state = SkillState()
    planner = make_planner(cfg, state, params if params is not None else validated_params(cfg))
    memo: dict[Any, list[tuple[SkillPlan, dict[str, Any]]]] = {}

    def plan(step: Step, part: int, q: np.ndarray) -> SkillPlan:  # deterministic in (step, start, state read)
        key = (step.name, np.round(q, 12).tobytes())
        for p, reads in memo.get(key, []):  # reads by part-relative key: the same for every part
            if all(dict.get(state, part_key(k, part), MISSING) == v for k, v in reads.items()):
                for k in reads:  # read them again, for whoever records what this plan depends on
                    state.get(part_key(k, part))
                if on_plan:
                    on_plan(step, part, p)
                return p
        with state.recording() as reads:
            p = planner(step, part, q)
        own = part_prefix(part)
        memo.setdefault(key, []).append(
            (p, {(PART_STATE_PREFIX + k[len(own) :] if k.startswith(own) else k): v for k, v in reads.items()})
        )
        if on_plan:
            on_plan(step, part, p)
        return p

    tl = Timeline()
    open_holds: dict[tuple[str, str], float] = {}

    def on_resource(resource: str, holder: str, t: float, taken: bool) -> None:
        if taken:
            open_holds[(resource, holder)] = t
        else:
            tl.holds.append((resource, holder, open_holds.pop((resource, holder), t), t))

    cell = CellController(
        cfg,
        ports,
        plan,
        clock,
        job=job,
        parts=parts,
        skill_state=state,
        zones=CellZones(cfg) if cfg.zones else None,
        on_cycle=tl.reports.append,
        on_wait=tl.waits.append,
        on_resource=on_resource,
        max_parts_in_flight=max_parts_in_flight,
        process_off_timeout=float("inf"),
        pallets=pallet_places(cfg),
    )
    # sensed infeeds: the estimate assumes parts are always there (the next one arrives as the last is taken)
    feed = InfeedSim(cfg, interval=0.0) if cfg.infeed_sensors else None

    def sense() -> bool:
        """The infeed sensors' edges since the last update, in order; True if there were any."""
        edges = feed.observe(ports, clock.now()) if feed is not None else []
        for name, present in edges:
            cell.infeed_sensed(name, present)
        return bool(edges)

    for name in feed.feeds if feed is not None else ():
        cell.infeed_sensed(name, True)
    cell.command("reset")
    cell.command("start")
    stuck = 0
    for _ in range(200 * parts * len(cfg.jobs[job].steps) + 1000):
        if cell.state != State.EXECUTE:
            break
        now = clock.now()
        due = [t for t in (p.next_event() for p in ports.values()) if t is not None]
        seq = cell._seq
        nxt = seq.next_event() if seq is not None else None
        if nxt is not None:
            due.append(nxt)
        later = [t for t in due if t > now + 1e-12]
        if due and min(due) <= now + 1e-12 and stuck < 3:
            stuck += 1  # something is due now: update without moving the clock
        elif later:
            stuck = 0
            clock.advance(min(later) - now)
        else:
            raise RuntimeError(
                f"the simulated cell stopped making progress at t = {now:.3f} s "
                f"(state {cell.state.value}, {cell.status().waiting or 'no waits'})"
            )
        cell.update()
        if sense():
            cell.update()
        if cell.full_pallets():  # the model's operator changes a full pallet at once
            cell.pallet_changed()
    if cell.state != State.COMPLETE:
        fault = cell.fault
        raise RuntimeError(
            f"the simulated run ended {cell.state.value}" + (f": {fault.code} {fault.message}" if fault else "")
        )
    for (resource, holder), t in open_holds.items():
        tl.holds.append((resource, holder, t, clock.now()))
    tl.end = clock.now()
    return tl


def _overlap(a0: float, a1: float, w0: float, w1: float) -> float:
    return max(0.0, min(a1, w1) - max(a0, w0))


def _refills(cfg: CellConfig, job: str, tl: Timeline) -> list[tuple[str, float, float]]:
    """Gaps in a one-place station's holds that its loader could not close: the cobot that takes the next part
    there is the one that took the last part away (it makes that trip first). (station, start, end) of each."""
    routes = routes_of(cfg.jobs[job])
    by_step = {s.name: s.cobot for s in cfg.jobs[job].steps}
    loader = {st: by_step[n] for n, r in routes.items() for st in r.dest}
    unloader = {st: by_step[n] for n, r in routes.items() for st in r.source}
    out = []
    for name, st in cfg.stations.items():
        if st.slots != 1 or name not in loader or loader[name] != unloader.get(name):
            continue
        holds = sorted((h0, h1) for r, _, h0, h1 in tl.holds if r == name)
        out += [(name, a1, b0) for (_, a1), (b0, _) in zip(holds, holds[1:]) if b0 > a1]
    return out


def estimate(
    cfg: CellConfig, job: str, parts: int | None = None, max_parts_in_flight: int | None = None, params: Any = None
) -> Estimate:
    """Simulate `parts` parts (default: enough for the steady state and a full pallet) and measure it."""
    from .palletise import pallet_plan

    places = max((len(pallet_plan(st)) for st in cfg.stations.values() if st.kind == "pallet"), default=1)
    n = parts or max(12, min(places + places // 2, 48))
    wip = max_parts_in_flight or cfg.max_parts_in_flight
    tl = simulate(cfg, job, n, wip, params=params)
    # the window: from the end of the first quarter's last part to the end of the last part but one (the last part
    # only ends the run: nothing after it is started)
    done = [r for r in tl.reports if r.status == "done"]
    ends = [r.end for r in done]
    first, last = (len(done) // 4, len(done) - 2) if len(done) >= 4 else (0, len(done) - 1)
    w0, w1 = ends[first], ends[last]
    count = last - first
    window = (done[first].part + 1, done[last].part)
    if count <= 0:  # one part: the takt is its cycle
        w0, w1, count = done[0].start, done[0].end, 1
        window = (done[0].part, done[0].part)
    span = w1 - w0
    takt = span / count
    busy: dict[str, float] = {}
    kinds: dict[str, str] = {}
    steps = {(p, st): (c, s0, s1) for c, p, st, s0, s1 in tl.steps()}
    for cobot in cfg.cobots:
        if not any(s.cobot == cobot for s in cfg.jobs[job].steps):
            continue
        work = sum(_overlap(s0, s1, w0, w1) for c, _, _, s0, s1 in tl.steps() if c == cobot)
        for w in tl.waits:  # waiting inside a step is not work
            c, s0, s1 = steps.get((w.part, w.step), (None, 0.0, 0.0))
            if c == cobot:
                work -= _overlap(max(w.start, s0), min(w.end, s1), w0, w1)
        busy[cobot], kinds[cobot] = work, "cobot"
    for resource, _, h0, h1 in tl.holds:
        kinds.setdefault(resource, "zone" if resource in cfg.zones else "station")
        busy[resource] = busy.get(resource, 0.0) + _overlap(h0, h1, w0, w1)
    for station, gap0, gap1 in _refills(cfg, job, tl):
        busy[station] = busy.get(station, 0.0) + _overlap(gap0, gap1, w0, w1)
    for name, st in cfg.stations.items():
        if name in busy and st.slots:
            busy[name] /= st.slots
    per_part = {r: b / count for r, b in busy.items()}
    util = {r: (b / span if span > 0 else 0.0) for r, b in busy.items()}
    return Estimate(
        job=job,
        parts=n,
        max_parts_in_flight=wip,
        cycle_times=tuple(r.cycle_time for r in tl.reports),
        takt=takt,
        busy=per_part,
        utilisation=util,
        kinds=kinds,
        timeline=tl,
        window=window,
    )


def gantt(est: Estimate, path: str | Path, cell: str = "", parts: int | None = None) -> Path:
    """A Gantt chart (PNG): a lane per cobot (steps, parts coloured, resource waits hatched) and per station and
    zone (who holds it). `parts`: how many parts to show from the start of the steady-state window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tl = est.timeline
    first, last = est.window
    show = parts or min(6, last - first + 1)
    wanted = set(range(first, first + show))
    reps = [r for r in tl.reports if r.part in wanted]
    t0 = min(r.start for r in reps)
    t1 = max(r.end for r in reps)
    cobots = [r for r in est.busy if est.kinds[r] == "cobot"]
    others = [r for r in est.busy if est.kinds[r] != "cobot"]
    lanes = cobots + others
    cmap = plt.get_cmap("tab10")
    colour = {p: cmap(i % 10) for i, p in enumerate(sorted(wanted))}
    fig, ax = plt.subplots(figsize=(12, 1.0 + 0.55 * len(lanes)), dpi=110)
    y = {lane: len(lanes) - 1 - i for i, lane in enumerate(lanes)}
    for cobot, part, step, s0, s1 in tl.steps():
        if part in wanted and cobot in y:
            ax.barh(y[cobot], s1 - s0, left=s0 - t0, height=0.6, color=colour[part], edgecolor="black", lw=0.4)
            if s1 - s0 > 0.06 * (t1 - t0):
                ax.text((s0 + s1) / 2 - t0, y[cobot], f"{part}:{step}", ha="center", va="center", fontsize=7)
    for w in tl.waits:
        if w.part in wanted and w.cobot in y:
            ax.barh(
                y[w.cobot],
                w.end - w.start,
                left=w.start - t0,
                height=0.6,
                color="white",
                hatch="///",
                edgecolor="red",
                lw=0.6,
            )
    for resource, holder, h0, h1 in tl.holds:
        if resource in y and h1 >= t0 and h0 <= t1:
            held_by = int(holder.split()[1]) if holder.startswith("part ") else None
            c = colour.get(held_by, "lightgrey") if held_by is not None else "lightgrey"
            ax.barh(y[resource], h1 - h0, left=h0 - t0, height=0.5, color=c, edgecolor="black", lw=0.4)
            if held_by is None and h1 - h0 > 0.05 * (t1 - t0):
                ax.text((h0 + h1) / 2 - t0, y[resource], holder, ha="center", va="center", fontsize=7)
    ax.set_yticks([y[lane] for lane in lanes])
    ax.set_yticklabels([f"{lane} ({est.kinds[lane]}, {est.utilisation[lane]:.0%})" for lane in lanes])
    ax.set_xlim(0, t1 - t0)
    ax.set_xlabel("time [s] from the start of the window")
    ax.set_title(
        f"{cell + ': ' if cell else ''}job '{est.job}', parts {first}-{first + show - 1}: takt "
        f"{est.takt:.2f} s, bound {est.bound:.2f} s ({est.bottleneck})",
        fontsize=10,
    )
    handles = [Patch(color=colour[p], label=f"part {p}") for p in sorted(wanted)]
    handles.append(Patch(facecolor="white", edgecolor="red", hatch="///", label="waiting for a resource"))
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncol=min(8, len(handles)),
        fontsize=8,
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
