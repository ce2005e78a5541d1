"""Checks of a cell's resources that `cobot-cell validate` runs: places that never come free, and stations and
zones that could deadlock or starve (the rules are in docs/architecture.md, "Parts in flight").

- A step that puts parts on a fixture needs a step that takes them off it, and the other way round.
- A cobot waiting for a fixture place waits for the cobots of every step that runs while a part is there (the
  steps after the one that put it there, up to the one that takes it off). A cycle of such waits between cobots
  could deadlock: rejected. (A cobot never waits for itself: it does not take a part for a fixture whose part
  still needs it; the oldest part goes first.)
- Zones: a cobot moving into zones it does not hold yet acquires them all at once, keeping the ones it is in. A
  cobot that moves from one zone into another holds the first while it waits for the second; two cobots doing so
  in opposite orders could deadlock: rejected (acquire them in one order: a fixed global order). A cobot that waits
  for a fixture place inside a zone the fixture's emptier needs would deadlock: rejected. A cobot that rests inside
  a zone after its step (its home, or where its step ends) starves every other cobot needing it: rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.dag import graph_cycle, occupancy_windows, routes_of, topological_order
from ..core.model import CellConfig, Job
from ..core.plan import Claim, Move, SkillPlan
from ..core.sequencer import claim_position

Add = Callable[[tuple[Any, ...], str], None]


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in a directed graph (first node repeated at the end), or None; nodes and edges in name order."""
    return graph_cycle({n: sorted(edges[n]) for n in sorted(edges)})


def check_places(cfg: CellConfig, jname: str, job: Job, add: Add) -> None:
    """Fixtures that would fill up or never be filled, and cobots that could wait for each other in a cycle."""
    routes = routes_of(job)
    index = {s.name: i for i, s in enumerate(job.steps)}
    limited = {n for n, st in cfg.stations.items() if st.slots is not None}
    putters: dict[str, list[str]] = {}
    takers: dict[str, list[str]] = {}
    for name, r in routes.items():
        for st in r.dest:
            putters.setdefault(st, []).append(name)
        for st in r.source:
            takers.setdefault(st, []).append(name)
    for st in sorted(limited):
        for name in putters.get(st, []):
            if st not in takers:
                add(
                    ("jobs", jname, "steps", index[name], "params", "to"),
                    f"no step of job '{jname}' takes parts off fixture '{st}': it would be full after "
                    f"{cfg.stations[st].slots} part(s) and stay full",
                )
        for name in takers.get(st, []):
            if st not in putters:
                add(
                    ("jobs", jname, "steps", index[name], "params", "from"),
                    f"no step of job '{jname}' puts parts on fixture '{st}': this step would wait for ever",
                )
    cobot = {s.name: s.cobot for s in job.steps}
    windows = occupancy_windows(job)
    waits: dict[str, set[str]] = {}
    why: dict[tuple[str, str], str] = {}
    for name, r in routes.items():
        for st in r.dest:
            if st not in limited:
                continue
            for other in sorted(windows.get(st, ())):
                c, o = cobot[name], cobot[other]
                if o != c:  # a cobot never waits for itself: it does not take a part it could not put down
                    waits.setdefault(c, set()).add(o)
                    why.setdefault((c, o), f"{c} waits for a place on {st}, which needs {o} ({other}) to come free")
    cycle = _cycle(waits)
    if cycle:
        add(
            ("jobs", jname, "steps"),
            "these fixtures could deadlock: "
            + "; ".join(why[(a, b)] for a, b in zip(cycle, cycle[1:]))
            + " (give one of them a place more, or let one cobot "
            "both fill and empty the fixture)",
        )


def check_zones(cfg: CellConfig, jname: str, job: Job, plans: dict[str, SkillPlan], zones: Any, add: Add) -> None:
    """Zone acquisition that could deadlock or starve, from the job's steps planned from home."""
    index = {s.name: i for i, s in enumerate(job.steps)}
    routes = routes_of(job)
    needs: dict[str, set[str]] = {}  # zone -> cobots that need it
    order: dict[str, set[str]] = {}  # zone held -> zones acquired while holding it
    who: dict[tuple[str, str], str] = {}
    claims_in: list[tuple[str, str, frozenset[str]]] = []  # (step, station, zones held while waiting there)
    for cname, c in cfg.cobots.items():
        home = zones.at(cname, np.asarray(c.home, dtype=float))
        if home:
            add(
                ("cobots", cname, "home"),
                f"the home pose is inside zone(s) {', '.join(sorted(home))}: a cobot "
                "resting there keeps every other cobot out of them",
            )
    for name in topological_order(job):
        step = job.step(name)
        plan = plans.get(name)
        if plan is None:
            continue
        start = zones.at(step.cobot, np.asarray(cfg.cobots[step.cobot].home, dtype=float))
        held = start
        segs = list(plan.segments)
        for k, seg in enumerate(segs):
            if isinstance(seg, Move):
                during = zones.during(step.cobot, seg)
                new = during - held
                for z in during:
                    needs.setdefault(z, set()).add(step.cobot)
                for h in held:
                    for z in new:
                        order.setdefault(h, set()).add(z)
                        who[(h, z)] = f"{step.cobot} ({name}) moves from {h} into {z}"
                held = zones.at(step.cobot, seg.trajectory.final)  # after the move: the zones its end is in
            elif isinstance(seg, Claim):
                # where the sequencer waits for the place: before the moves into zones that lead to the Claim
                j = claim_position(segs, k, step.cobot, zones)
                prev = next((s for s in reversed(segs[:j]) if isinstance(s, Move)), None)
                inside = zones.at(step.cobot, prev.trajectory.final) if prev is not None else start
                if inside:
                    claims_in.append((name, seg.station, inside))
        last = next((s for s in reversed(segs) if isinstance(s, Move)), None)
        end = zones.at(step.cobot, last.trajectory.final) if last is not None else frozenset()
        if end:
            add(
                ("jobs", jname, "steps", index[name]),
                f"cobot '{step.cobot}' ends this step inside zone(s) "
                f"{', '.join(sorted(end))} and stays there until its next step: set return_home, or move the zone",
            )
    cycle = _cycle(order)
    if cycle:
        add(
            ("zones",),
            "these zones could deadlock: "
            + "; ".join(who[(a, b)] for a, b in zip(cycle, cycle[1:]))
            + " (change the zones so each cobot enters them in one order)",
        )
    takers = {st: {job.step(n).cobot for n, r in routes.items() if st in r.source} for st in cfg.stations}
    for name, station, inside in claims_in:
        blocked = sorted(z for z in inside if takers.get(station, set()) & needs.get(z, set()) - {job.step(name).cobot})
        if blocked:
            add(
                ("jobs", jname, "steps", index[name]),
                f"cobot '{job.step(name).cobot}' would wait for a place on "
                f"{station} inside zone(s) {', '.join(blocked)}, which the cobot emptying {station} needs: make the "
                "zone smaller, or the approach higher",
            )
