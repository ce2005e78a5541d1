"""Journal (cobot_cell.core.journal): runs, the part ledger and step progress in SQLite, durable across reopening.

Every test writes to a file in tmp_path and reads it back through a second Journal on the same file (the first
one is left open, as a killed planner would leave it), so what is checked is what is on disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cobot_cell.core.journal import SCHEMA_VERSION, Interrupted, Journal
from cobot_cell.core.reports import StepTiming

Q_HOME = [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]
Q_FIXTURE = [0.25, -1.0, 1.25, -1.75, -1.5708, 0.25]


def timing(step: str, cobot: str, start: float, end: float, skill: str = "pick") -> StepTiming:
    return StepTiming(step=step, skill=skill, cobot=cobot, start=start, end=end)


def reopen(path: Path) -> Journal:
    """A second connection to the file, as a restarted planner opens it."""
    return Journal(path)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "planner.journal.db"


def runs(path: Path) -> list[tuple[str, str, int, str, float, float | None]]:
    with sqlite3.connect(path) as db:
        return [tuple(r) for r in db.execute("SELECT * FROM runs ORDER BY started")]


# ---------------------------------------------------------------------------------------------- file


def test_a_new_file_is_in_wal_mode_with_the_schema_version(path: Path) -> None:
    j = Journal(path)
    assert j.interrupted() is None and j.ledger() == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    Journal(path)  # opening it again neither fails nor adds a second version row
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_another_schema_version_is_refused(path: Path) -> None:
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 7")
    with pytest.raises(ValueError) as err:
        Journal(path)
    assert str(err.value) == f"journal {path}: schema version 7 is not supported (expected {SCHEMA_VERSION})"


def test_in_memory_journal_works_without_a_file() -> None:
    j = Journal(":memory:")
    j.begin_run("r1", "bracket", 2, 0.0)
    assert j.interrupted() == Interrupted(run_id="r1", job="bracket", parts_target=2, parts_finished=0, part=None)


# ---------------------------------------------------------------------------------------------- runs


def test_begin_run_opens_a_run_that_interrupted_reports(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 3, 10.0)
    assert runs(path) == [("r1", "bracket", 3, "open", 10.0, None)]
    i = reopen(path).interrupted()
    assert i == Interrupted(run_id="r1", job="bracket", parts_target=3, parts_finished=0, part=None)
    assert i.describe() == "run r1 of job 'bracket': 0/3 parts finished"


def test_begin_run_abandons_an_open_run(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 3, 10.0)
    j.part_started("r1", 1, 10.0)
    j.begin_run("r2", "weld_only", 5, 20.0)
    assert runs(path) == [("r1", "bracket", 3, "abandoned", 10.0, 20.0), ("r2", "weld_only", 5, "open", 20.0, None)]
    i = reopen(path).interrupted()
    assert (i.run_id, i.job, i.parts_target, i.part) == ("r2", "weld_only", 5, None)


def test_end_run_closes_it_so_nothing_is_interrupted(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_HOME)
    assert reopen(path).interrupted() is not None
    j.part_finished("r1", 1, "done", 9.0)
    j.end_run("r1", "complete", 9.0)
    assert reopen(path).interrupted() is None
    assert runs(path) == [("r1", "bracket", 1, "complete", 0.0, 9.0)]
    assert reopen(path).ledger() == [("r1", 1, "done")]


# ---------------------------------------------------------------------------------------------- ledger


def test_every_part_is_in_the_ledger_exactly_once(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 3, 0.0)
    j.part_started("r1", 1, 0.0)
    j.part_started("r1", 1, 5.0)  # resuming the part: no second row, the first start stands
    assert j.part_finished("r1", 1, "done", 9.0) is True
    assert j.part_finished("r1", 1, "done", 9.5) is False  # already closed: nothing written
    assert j.part_finished("r1", 1, "scrap", 9.5, "late") is False  # nor turned into scrap
    j.part_started("r1", 1, 12.0)  # a closed part does not come back in progress
    j.part_started("r1", 2, 9.0)
    assert j.part_finished("r1", 2, "scrap", 11.0, "grip missed") is True
    assert j.part_finished("r1", 2, "done", 12.0) is False
    assert j.part_finished("r1", 3, "done", 12.0) is False  # never started
    assert reopen(path).ledger() == [("r1", 1, "done"), ("r1", 2, "scrap")]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT part, status, started, ended, reason FROM ledger ORDER BY part").fetchall() == [
            (1, "done", 0.0, 9.0, ""),
            (2, "scrap", 9.0, 11.0, "grip missed"),
        ]


def test_part_status_must_be_done_or_scrap(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    for bad in ("in_progress", "failed"):
        with pytest.raises(ValueError) as err:
            j.part_finished("r1", 1, bad, 1.0)
        assert str(err.value) == f"part status must be done or scrap, got {bad!r}"
    assert j.ledger() == [("r1", 1, "in_progress")]


def test_ledger_orders_by_run_start_then_part_and_filters_by_run(path: Path) -> None:
    j = Journal(path)
    j.begin_run("b", "bracket", 2, 0.0)
    for part in (2, 1):
        j.part_started("b", part, float(part))
        j.part_finished("b", part, "done", float(part) + 0.5)
    j.end_run("b", "complete", 3.0)
    j.begin_run("a", "bracket", 1, 10.0)
    j.part_started("a", 1, 10.0)
    k = reopen(path)
    assert k.ledger() == [("b", 1, "done"), ("b", 2, "done"), ("a", 1, "in_progress")]
    assert k.ledger("a") == [("a", 1, "in_progress")]
    assert k.ledger("nope") == []


# ---------------------------------------------------------------------------------------------- steps


def test_step_done_stores_timing_pose_and_skill_state_together(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 2, 0.0)
    j.record_poses("r1", {"picker": Q_HOME, "welder": Q_HOME})
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"pallet.pallet.next": 0})
    j.step_done("r1", 1, timing("weld_seams", "welder", 4.0, 11.0, "weld"), None, {"weld.fixture.next_seam": 0})
    i = reopen(path).interrupted()
    assert i.part == 1 and i.parts_finished == 0
    assert i.steps_done == {
        "load_blank": timing("load_blank", "picker", 0.0, 4.0),
        "weld_seams": timing("weld_seams", "welder", 4.0, 11.0, "weld"),
    }
    assert list(i.steps_done) == ["load_blank", "weld_seams"]  # in the order they ended
    assert i.cobot_q == {"picker": Q_FIXTURE, "welder": Q_HOME}  # no q: the welder's pose is left as it was
    assert i.skill_state == {"pallet.pallet.next": 0, "weld.fixture.next_seam": 0}
    assert i.describe() == (
        "run r1 of job 'bracket': part 1 interrupted after load_blank, weld_seams (0/2 parts finished)"
    )


def test_step_done_is_all_or_nothing(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.record_poses("r1", {"picker": Q_HOME})
    j.part_started("r1", 1, 0.0)
    with pytest.raises(TypeError):  # the skill state cannot be stored: neither is the rest
        j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"bad": object()})
    i = reopen(path).interrupted()
    assert (i.part, i.steps_done, i.cobot_q, i.skill_state) == (1, {}, {"picker": Q_HOME}, {})
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"ok": [1, 2]})  # still usable
    assert reopen(path).interrupted().skill_state == {"ok": [1, 2]}


def test_deferred_step_boundaries_reach_the_file_at_the_next_flush_in_order(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"seam": 0}, defer=True)
    j.checkpoint("r1", {"seam": 1}, defer=True)
    j.step_done("r1", 1, timing("weld_seams", "welder", 4.0, 11.0, "weld"), None, {"seam": 2}, defer=True)
    assert j.deferred == 3
    i = reopen(path).interrupted()  # what a planner killed now would find: none of it
    assert (i.steps_done, i.cobot_q, i.skill_state) == ({}, {}, {})
    j.flush()
    assert j.deferred == 0
    i = reopen(path).interrupted()
    assert list(i.steps_done) == ["load_blank", "weld_seams"]
    assert i.cobot_q == {"picker": Q_FIXTURE} and i.skill_state == {"seam": 2}  # the last write wins


def test_any_other_journal_call_writes_the_deferred_ones_first(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 2, 0.0)
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, defer=True)
    j.part_finished("r1", 1, "done", 4.0)  # one transaction: the step, then the part
    assert j.deferred == 0 and reopen(path).ledger("r1") == [("r1", 1, "done")]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT step FROM steps_done").fetchall() == [("load_blank",)]
    j.checkpoint("r1", {"pallet.next": 3}, defer=True)
    assert j.skill_state("r1") == {"pallet.next": 3}  # reads see deferred writes
    j.step_done("r1", 2, timing("load_blank", "picker", 4.0, 8.0), Q_HOME, defer=True)
    j.close()
    assert reopen(path).interrupted().cobot_q == {"picker": Q_HOME}


def test_a_value_that_cannot_be_stored_fails_the_deferring_call(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    with pytest.raises(TypeError):
        j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"bad": object()}, defer=True)
    with pytest.raises(TypeError):
        j.checkpoint("r1", {"bad": object()}, defer=True)
    assert j.deferred == 0
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, {"ok": 1}, defer=True)
    j.flush()
    assert reopen(path).skill_state("r1") == {"ok": 1}


def test_a_failed_flush_keeps_the_deferred_writes(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_FIXTURE, defer=True)
    blocker = sqlite3.connect(path, timeout=0.0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
    j._db.execute("PRAGMA busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        j.flush()
    assert j.deferred == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    j.flush()
    assert j.deferred == 0 and list(reopen(path).interrupted().steps_done) == ["load_blank"]


def test_step_done_again_replaces_the_step(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_HOME)
    j.step_done("r1", 1, timing("load_blank", "picker", 0.0, 6.0), Q_FIXTURE)  # redone after a restart
    i = reopen(path).interrupted()
    assert i.steps_done == {"load_blank": timing("load_blank", "picker", 0.0, 6.0)}
    assert i.cobot_q == {"picker": Q_FIXTURE}


def test_checkpoint_stores_skill_state_inside_a_step(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.part_started("r1", 1, 0.0)
    j.checkpoint("r1", {"weld.fixture.next_seam": 1})
    assert reopen(path).interrupted().skill_state == {"weld.fixture.next_seam": 1}
    j.checkpoint("r1", {"weld.fixture.next_seam": 0, "pallet.pallet.next": 3})
    assert reopen(path).skill_state("r1") == {"weld.fixture.next_seam": 0, "pallet.pallet.next": 3}
    assert reopen(path).skill_state("other") == {}


def test_poses_and_skill_state_belong_to_their_run(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 1, 0.0)
    j.record_poses("r1", {"picker": Q_FIXTURE})
    j.checkpoint("r1", {"pallet.pallet.next": 5})
    j.begin_run("r2", "bracket", 1, 1.0)
    j.record_poses("r2", {"picker": Q_HOME})
    i = reopen(path).interrupted()
    assert (i.run_id, i.cobot_q, i.skill_state) == ("r2", {"picker": Q_HOME}, {})


# ---------------------------------------------------------------------------------------------- interrupted


def test_interrupted_names_the_part_in_progress_and_only_its_steps(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 3, 0.0)
    j.record_poses("r1", {"picker": Q_HOME, "welder": Q_HOME})
    j.part_started("r1", 1, 0.0)
    for name, cobot, s, e in (
        ("load_blank", "picker", 0.0, 4.0),
        ("weld_seams", "welder", 4.0, 11.0),
        ("palletise", "picker", 11.0, 15.0),
    ):
        j.step_done("r1", 1, timing(name, cobot, s, e), Q_HOME, {"pallet.pallet.next": 1})
    j.part_finished("r1", 1, "done", 15.0)
    j.part_started("r1", 2, 15.0)
    j.step_done("r1", 2, timing("load_blank", "picker", 15.0, 19.0), Q_FIXTURE, {"pallet.pallet.next": 1})
    # killed here: a new planner opens the file
    i = reopen(path).interrupted()
    assert i == Interrupted(
        run_id="r1",
        job="bracket",
        parts_target=3,
        parts_finished=1,
        part=2,
        steps_done={"load_blank": timing("load_blank", "picker", 15.0, 19.0)},
        cobot_q={"picker": Q_FIXTURE, "welder": Q_HOME},
        skill_state={"pallet.pallet.next": 1},
        in_progress={2: {"load_blank": timing("load_blank", "picker", 15.0, 19.0)}},
        last_part=2,
    )
    assert i.describe() == "run r1 of job 'bracket': part 2 interrupted after load_blank (1/3 parts finished)"


def test_interrupted_between_parts_and_before_any_step(path: Path) -> None:
    j = Journal(path)
    j.begin_run("r1", "bracket", 2, 0.0)
    j.part_started("r1", 1, 0.0)
    assert reopen(path).interrupted().describe() == (
        "run r1 of job 'bracket': part 1 interrupted after no step (0/2 parts finished)"
    )
    j.part_finished("r1", 1, "scrap", 3.0)
    i = reopen(path).interrupted()
    assert (i.part, i.parts_finished, i.steps_done) == (None, 1, {})  # scrap counts as finished
    assert i.describe() == "run r1 of job 'bracket': 1/2 parts finished"


def test_a_restarted_planner_writing_the_same_file_continues_the_run(path: Path) -> None:
    old = Journal(path)
    old.begin_run("r1", "bracket", 2, 0.0)
    old.part_started("r1", 1, 0.0)
    old.step_done("r1", 1, timing("load_blank", "picker", 0.0, 4.0), Q_HOME)
    new = reopen(path)  # the old connection is still open, as a killed process leaves it
    new.part_started("r1", 1, 30.0)
    new.step_done("r1", 1, timing("weld_seams", "welder", 30.0, 37.0, "weld"), Q_HOME)
    assert new.part_finished("r1", 1, "done", 40.0) is True
    assert old.part_finished("r1", 1, "done", 41.0) is False
    new.end_run("r1", "complete", 50.0)
    assert reopen(path).ledger() == [("r1", 1, "done")] and reopen(path).interrupted() is None
