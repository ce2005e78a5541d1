"""The cell file modules after the split: the step-graph helpers (core.dag) against independent computations, the
core.config facade, and the layering (core imports neither the skills layer nor pydantic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core import config, dag, loader, model, pallet_spec
from cobot_cell.core.dag import ancestors, graph_cycle, ready_steps, step_ends, topological_order
from cobot_cell.core.model import Job
from cobot_cell.core.validation import validate

REPO = Path(__file__).resolve().parents[2]
Dag = tuple[int, set[tuple[int, int]], list[int], list[str]]


def make_job(n: int, edges: set[tuple[int, int]], order: list[int], cobots: list[str]) -> Job:
    """Steps s0..s{n-1} in file order `order` on the given cobots; (a, b) in edges means s{b} comes after s{a}."""
    return validate(
        Job,
        {
            "steps": [
                {
                    "name": f"s{i}",
                    "skill": "pick",
                    "cobot": cobots[i],
                    "after": [f"s{a}" for a, b in sorted(edges) if b == i],
                }
                for i in order
            ]
        },
    )


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    """A random DAG (edges from a lower to a higher index) in a random file order, each step on one of 3 cobots."""
    n = draw(st.integers(min_value=1, max_value=10))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    order = draw(st.permutations(range(n)))
    cobots = draw(st.lists(st.sampled_from(["c1", "c2", "c3"]), min_size=n, max_size=n))
    return n, {p for p, k in zip(pairs, keep) if k}, list(order), cobots


def closure(n: int, edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """(a, b) for every path a -> ... -> b (Warshall)."""
    reach = {(a, b) for a, b in edges}
    for k in range(n):
        reach |= {(a, b) for a in range(n) for b in range(n) if (a, k) in reach and (k, b) in reach}
    return reach


@settings(max_examples=150, deadline=None)
@given(dags())
def test_ancestors_are_every_step_a_path_leads_from(d: Dag) -> None:
    n, edges, order, cobots = d
    up = ancestors(make_job(n, edges, order, cobots))
    reach = closure(n, edges)
    assert up == {f"s{b}": {f"s{a}" for a in range(n) if (a, b) in reach} for b in range(n)}


@settings(max_examples=150, deadline=None)
@given(dags())
def test_taking_ready_steps_one_at_a_time_runs_every_step_after_its_predecessors(d: Dag) -> None:
    n, edges, order, cobots = d
    job = make_job(n, edges, order, cobots)
    done: list[str] = []
    while ready := ready_steps(job, done):
        assert [s.name for s in ready] == [s.name for s in job.steps if s in ready]  # file order
        assert ready_steps(job, done, running={ready[0].name}) == ready[1:]
        done.append(ready[-1].name)
    assert sorted(done) == sorted(f"s{i}" for i in range(n))
    pos = {name: k for k, name in enumerate(done)}
    assert all(pos[f"s{a}"] < pos[f"s{b}"] for a, b in edges)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_step_ends_start_each_step_when_its_predecessors_and_its_cobot_are_done(d: Dag, data: st.DataObject) -> None:
    n, edges, order, cobots = d
    job = make_job(n, edges, order, cobots)
    durations = {f"s{i}": data.draw(st.floats(0.0, 10.0)) for i in range(n)}
    end = step_ends(job, durations)
    start = {name: end[name] - durations[name] for name in end}
    assert set(end) == set(durations)
    for a, b in edges:
        assert start[f"s{b}"] >= end[f"s{a}"] - 1e-9
    # one step at a time per cobot, in the topological order, each starting as early as these rules allow
    for cobot in set(cobots):
        mine = [s for s in topological_order(job) if job.step(s).cobot == cobot]
        for prev, nxt in zip(mine, mine[1:]):
            assert start[nxt] >= end[prev] - 1e-9
        for k, name in enumerate(mine):
            earliest = max([end[a] for a in job.step(name).after] + ([end[mine[k - 1]]] if k else [0.0]))
            assert start[name] == pytest.approx(earliest, abs=1e-9)


def test_step_ends_of_the_demo_job() -> None:
    job = validate(
        Job,
        {
            "steps": [
                {"name": "load", "skill": "pick", "cobot": "picker"},
                {"name": "weld", "skill": "weld", "cobot": "welder", "after": ["load"]},
                {"name": "stack", "skill": "palletise", "cobot": "picker", "after": ["weld"]},
                {"name": "tidy", "skill": "pick", "cobot": "picker"},
            ]
        },
    )
    # tidy has no predecessor but waits for the picker: after load (file order among ready steps)
    assert step_ends(job, {"load": 2.0, "weld": 5.0, "stack": 3.0, "tidy": 1.0}) == {
        "load": 2.0,
        "tidy": 3.0,
        "weld": 7.0,
        "stack": 10.0,
    }


def test_graph_cycle_follows_the_given_order() -> None:
    edges = {"a": ["b"], "b": ["c", "a"], "c": ["b"]}
    assert graph_cycle(edges) == ["b", "c", "b"]
    assert graph_cycle({"a": ["b", "c"], "b": ["a"], "c": []}) == ["a", "b", "a"]
    assert graph_cycle({"a": ["b"], "b": ["ghost"]}) is None


def test_the_config_facade_re_exports_the_split_modules() -> None:
    homes = (model, pallet_spec, loader, dag)
    for name in config.__all__:
        value = getattr(config, name)
        assert any(getattr(m, name, None) is value for m in homes), name
    public = {n for m in homes for n in vars(m) if not n.startswith("_") and getattr(config, n, None) is not None}
    assert {"CellConfig", "PalletSpec", "parse_cell", "CellFileError", "routes_of", "topological_order"} <= public
    assert config._LineIndex is loader.LineIndex and config._issues_from_pydantic is loader.issues_from_pydantic


def test_core_imports_neither_the_skills_nor_pydantic() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import cobot_cell.core as core\n"
        "for info in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('cobot_cell.core.' + info.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('cobot_cell.skills', 'pydantic')))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
