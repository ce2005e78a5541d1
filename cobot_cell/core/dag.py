"""Walks of a job's step graph (the `after` DAG) and of the parts' routes between stations: cycles, an order that
respects `after`, the steps ready to start, when each step ends, and which steps run while a part is on a station.
The loader, the sequencer, the skills' checks and the estimate all use these.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import Job, Step


@dataclass(frozen=True)
class Route:
    """The stations a step takes its part from and puts it down on (a group: any one of them)."""

    source: tuple[str, ...] = ()
    dest: tuple[str, ...] = ()


def graph_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in a directed graph, as the nodes along it with the first repeated at the end, or None. Nodes are
    visited in the mapping's order and edges in their given order, so the cycle found is deterministic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in edges.get(n, ()):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in edges:
        if n not in state and (found := visit(n)):
            return found
    return None


def find_cycle(job: Job) -> list[str] | None:
    """A cycle of step names in the `after` graph (first name repeated at the end), or None."""
    deps = {s.name: [d for d in s.after if d != s.name] for s in job.steps}
    cycle = graph_cycle(deps)
    return list(reversed(cycle)) if cycle else None


def ready_steps(job: Job, done: Collection[str], running: Collection[str] = ()) -> list[Step]:
    """Steps neither done nor running whose `after` steps are all done, in file order."""
    return [s for s in job.steps if s.name not in done and s.name not in running and all(d in done for d in s.after)]


def topological_order(job: Job) -> list[str]:
    """Step names in an order where every step follows its `after` steps (file order among equals)."""
    order: list[str] = []
    while len(order) < len(job.steps):
        ready = ready_steps(job, set(order))
        if not ready:
            raise ValueError(f"cycle in 'after': {' -> '.join(find_cycle(job) or [])}")
        order += [s.name for s in ready]
    return order


def ancestors(job: Job) -> dict[str, set[str]]:
    """Each step's ancestors: the steps it comes `after`, directly or through others."""
    steps = {s.name: s for s in job.steps}
    out: dict[str, set[str]] = {}

    def up(name: str) -> set[str]:
        if name not in out:
            out[name] = set()
            for dep in steps[name].after:
                out[name] |= {dep} | (up(dep) if dep in steps else set())
        return out[name]

    for s in job.steps:
        up(s.name)
    return out


def step_ends(job: Job, durations: Mapping[str, float]) -> dict[str, float]:
    """When each step of one part ends, every cobot free at 0: a step starts once its `after` steps have ended and
    its cobot is free (the sequencer's rule), and lasts its duration; the latest end is the part's cycle time."""
    end: dict[str, float] = {}
    free: dict[str, float] = {}
    for name in topological_order(job):
        step = job.step(name)
        start = max([end[d] for d in step.after] + [free.get(step.cobot, 0.0)])
        end[name] = start + durations[name]
        free[step.cobot] = end[name]
    return end


def station_group(value: Any) -> tuple[str, ...]:
    """A station parameter as a group: one name, or a list of names (any one of them)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


def routes_of(job: Job) -> dict[str, Route]:
    """Each step's route: the stations its `from` and `to` parameters name (a step that moves a part)."""
    return {
        s.name: Route(source=station_group(s.params.get("from")), dest=station_group(s.params.get("to")))
        for s in job.steps
        if "to" in s.params or "from" in s.params
    }


def occupancy_windows(job: Job) -> dict[str, set[str]]:
    """For each station parts are put on and taken off: the steps that run while a part is on it (after the step
    that put it there, up to and including the step that takes it off). A cobot that waits for a place there waits
    for the cobots of these steps."""
    routes = routes_of(job)
    up = ancestors(job)
    out: dict[str, set[str]] = {}
    for take, r in routes.items():
        for station in r.source:
            for put, r2 in routes.items():
                if station in r2.dest and put in up[take]:
                    out.setdefault(station, set()).update({n for n in up[take] if put in up[n]} | {take})
    return out
