"""ProductionLog: exact round-trips, duplicate refusal, atomic writes, faults and their life cycle, schema."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.supervisor.log import FaultRecord, ProductionLog

REPO = Path(__file__).resolve().parents[2]


def make_report(
    part: int,
    *,
    cell: str = "cell_a",
    run_id: str = "run-1",
    job: str = "bracket",
    t0: float | None = None,
    status: str = "done",
    steps: tuple[tuple[str, float, float], ...] = (("pick", 0.0, 2.5), ("weld", 2.5, 9.125)),
) -> CycleReport:
    """A report whose step (name, start offset, end offset) pairs are relative to its start t0."""
    t0 = 10.0 * part if t0 is None else t0
    timings = tuple(StepTiming(name, name, "ur5e_left", t0 + a, t0 + b) for name, a, b in steps)
    end = max((t.end for t in timings), default=t0 + 1.0)
    return CycleReport(cell=cell, job=job, run_id=run_id, part=part, start=t0, end=end, status=status, steps=timings)


def table_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "production.db"


def test_supervisor_modules_import_no_ros() -> None:
    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "import cobot_cell.supervisor.log, cobot_cell.supervisor.kpi, cobot_cell.supervisor.report\n"
        "bad = sorted(m for m in sys.modules if m.startswith('rclpy') or m.endswith('_msgs'))\n"
        "assert bad == ['rclpy'], bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_new_file_has_schema_version_1_and_wal(db: Path) -> None:
    ProductionLog(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "parts", "steps", "faults"} <= tables


def test_reopening_keeps_a_single_schema_version_row(db: Path) -> None:
    for _ in range(3):
        ProductionLog(db).close()
    assert table_count(db, "schema_version") == 1


def test_unsupported_schema_version_is_refused(db: Path) -> None:
    ProductionLog(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 2")
    with pytest.raises(ValueError) as err:
        ProductionLog(db)
    assert str(err.value) == f"production log {db}: schema version 2 is not supported (expected 1)"


def test_round_trip_is_exact_across_reopen(db: Path) -> None:
    reports = [
        make_report(1),
        # awkward floats, parallel steps starting together, a scrapped part, a part with no steps
        make_report(
            2,
            t0=1_700_000_000.123456789,
            steps=(("pick", 0.1, 0.1 + 0.2), ("weld", 0.1, 7.0), ("place", 7.0, 8.5)),
        ),
        make_report(3, status="scrap", steps=(("pick", 0.0, 1.0 / 3.0),)),
        make_report(4, steps=()),
        make_report(1, cell="cell_b", job="pallet"),
    ]
    with ProductionLog(db) as log:
        assert [log.record_cycle(r) for r in reports] == [True] * 5
        assert log.parts() == sorted(reports, key=lambda r: (r.cell, r.run_id, r.part))
    with ProductionLog(db) as log:
        back = log.parts()
    assert back == sorted(reports, key=lambda r: (r.cell, r.run_id, r.part))
    assert back[1].start == 1_700_000_000.123456789
    assert [s.step for s in back[1].steps] == ["pick", "weld", "place"]


def test_stored_cycle_time_and_duration_columns(db: Path) -> None:
    report = make_report(7)
    with ProductionLog(db) as log:
        log.record_cycle(report)
    with sqlite3.connect(db) as conn:
        parts = conn.execute("SELECT job, status, cycle_time FROM parts").fetchall()
        durations = conn.execute("SELECT step, duration FROM steps ORDER BY step").fetchall()
    assert parts == [("bracket", "done", report.cycle_time)]
    assert durations == [("pick", 2.5), ("weld", 6.625)]


def test_steps_come_back_ordered_by_start(db: Path) -> None:
    report = make_report(1, steps=(("weld", 3.0, 5.0), ("pick", 0.0, 3.0)))
    with ProductionLog(db) as log:
        log.record_cycle(report)
        (back,) = log.parts()
    assert [s.step for s in back.steps] == ["pick", "weld"]
    assert set(back.steps) == set(report.steps)


def test_parts_filter_and_order_numerically() -> None:
    reports = [
        make_report(10, cell="b"),
        make_report(2, cell="b"),
        make_report(1, cell="b", run_id="run-0"),
        make_report(3, cell="a"),
    ]
    with ProductionLog(":memory:") as log:
        assert log.record_cycles(reports) == 4
        keys = [(r.cell, r.run_id, r.part) for r in log.parts()]
        assert keys == [("a", "run-1", 3), ("b", "run-0", 1), ("b", "run-1", 2), ("b", "run-1", 10)]
        assert [r.part for r in log.parts(cell="b")] == [1, 2, 10]
        assert [r.part for r in log.parts(run_id="run-1")] == [3, 2, 10]
        assert [r.part for r in log.parts(cell="b", run_id="run-1")] == [2, 10]
        assert log.parts(cell="nope") == []


def test_duplicate_part_is_refused_and_not_double_counted(db: Path) -> None:
    original = make_report(5)
    resent = dataclasses.replace(
        original, end=original.end + 1.0, status="scrap", steps=(StepTiming("x", "x", "c", 1.0, 2.0),)
    )
    with ProductionLog(db) as log:
        assert log.record_cycle(original) is True
        assert log.record_cycle(original) is False
        assert log.record_cycle(resent) is False
        assert log.parts() == [original]
        # same part number in another run or another cell is a different part
        assert log.record_cycle(dataclasses.replace(original, run_id="run-2")) is True
        assert log.record_cycle(dataclasses.replace(original, cell="cell_b")) is True
    assert table_count(db, "parts") == 3
    assert table_count(db, "steps") == 6


def test_failed_step_insert_leaves_no_part_row(db: Path) -> None:
    bad = make_report(1, steps=(("pick", 0.0, 1.0), ("weld", 1.0, 2.0), ("pick", 2.0, 3.0)))
    with ProductionLog(db) as log:
        with pytest.raises(ValueError) as err:
            log.record_cycle(bad)
        assert str(err.value) == "cycle report cell_a/run-1/1: step names must be unique, repeated: 'pick'"
        assert isinstance(err.value.__cause__, sqlite3.IntegrityError)
        assert log.parts() == []
        # the transaction was rolled back, not left open: the log still takes writes
        assert log.record_cycle(make_report(1)) is True
    assert table_count(db, "parts") == 1
    assert table_count(db, "steps") == 2


def test_batch_counts_only_new_parts() -> None:
    first = [make_report(p) for p in range(1, 4)]
    with ProductionLog(":memory:") as log:
        assert log.record_cycles(first) == 3
        batch = [make_report(p) for p in range(2, 8)] + [make_report(7)]  # 2, 3 logged; 7 twice in the batch
        assert log.record_cycles(batch) == 4
        assert [r.part for r in log.parts()] == list(range(1, 8))
        assert log.record_cycles([]) == 0
        assert log.record_cycles(iter([make_report(8)])) == 1


def test_batch_is_all_or_nothing(db: Path) -> None:
    batch = [make_report(1), make_report(2, steps=(("pick", 0.0, 1.0), ("pick", 1.0, 2.0))), make_report(3)]
    with ProductionLog(db) as log:
        with pytest.raises(ValueError, match="cycle report cell_a/run-1/2: step names must be unique"):
            log.record_cycles(batch)
        assert log.parts() == []
    assert table_count(db, "steps") == 0


def test_bad_status_is_refused_before_writing() -> None:
    with ProductionLog(":memory:") as log:
        with pytest.raises(ValueError) as err:
            log.record_cycles([make_report(1), make_report(2, status="ok")])
        assert str(err.value) == "cycle report cell_a/run-1/2: status must be one of done, scrap, got 'ok'"
        assert log.parts() == []


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (make_report(1, t0=float("nan")), "cycle report cell_a/run-1/1: start is not finite: nan"),
        (
            dataclasses.replace(make_report(1), steps=(StepTiming("pick", "pick", "ur5e_left", 10.0, float("inf")),)),
            "cycle report cell_a/run-1/1: step 'pick' end is not finite: inf",
        ),
    ],
)
def test_non_finite_times_are_refused(report: CycleReport, message: str) -> None:
    with ProductionLog(":memory:") as log:
        with pytest.raises(ValueError) as err:
            log.record_cycle(report)
        assert str(err.value) == message


def test_faults_round_trip_and_filter(db: Path) -> None:
    with ProductionLog(db) as log:
        ids = [
            log.record_fault("cell_a", 12.5, "ERROR", "ur5e_left", "E_STOP", "protective stop"),
            log.record_fault("cell_b", 3.0, "WARN", "pendant", "LINK", "pendant link lost"),
            log.record_fault("cell_a", 4.0, "STALE", "ur5e_right", "HB", "no joint_states for 0.5 s"),
        ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    with ProductionLog(db) as log:
        everything = log.faults()
        cell_a = log.faults(cell="cell_a")
    assert [f.id for f in everything] == [ids[1], ids[2], ids[0]]  # ordered by time
    assert cell_a == [
        FaultRecord(ids[2], "cell_a", 4.0, "STALE", "ur5e_right", "HB", "no joint_states for 0.5 s"),
        FaultRecord(ids[0], "cell_a", 12.5, "ERROR", "ur5e_left", "E_STOP", "protective stop"),
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cell_a[0].level = "WARN"  # type: ignore[misc]


@pytest.mark.parametrize("level", ["INFO", "error", "OK", ""])
def test_fault_level_is_validated(level: str) -> None:
    with ProductionLog(":memory:") as log:
        with pytest.raises(ValueError) as err:
            log.record_fault("cell_a", 1.0, level, "src", "C", "msg")
        assert str(err.value) == f"fault level must be one of WARN, ERROR, STALE, got {level!r}"
        assert log.faults() == []


def test_fault_time_must_be_finite() -> None:
    with ProductionLog(":memory:") as log:
        with pytest.raises(ValueError) as err:
            log.record_fault("cell_a", float("nan"), "WARN", "src", "C", "msg")
        assert str(err.value) == "fault time must be finite, got nan"


def fault_row(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT cell, time, level, source, code, message, fault_key, acknowledged, cleared FROM faults ORDER BY id"
        ).fetchall()


def test_faults_table_has_life_cycle_columns(db: Path) -> None:
    ProductionLog(db).close()
    with sqlite3.connect(db) as conn:
        columns = {r[1]: (r[2], r[3]) for r in conn.execute("PRAGMA table_info(faults)")}
        unique = [r for r in conn.execute("PRAGMA index_list(faults)") if r[2]]  # (seq, name, unique, ...)
        unique_columns = [conn.execute(f"PRAGMA index_info({r[1]!r})").fetchall()[0][2] for r in unique]
    assert columns["fault_key"] == ("TEXT", 0)
    assert columns["acknowledged"] == ("REAL", 0)
    assert columns["cleared"] == ("REAL", 0)
    assert unique_columns == ["fault_key"]


def test_pre_release_faults_table_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "CREATE TABLE faults (id INTEGER PRIMARY KEY AUTOINCREMENT, cell TEXT NOT NULL, time REAL NOT NULL, "
            "level TEXT NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL)"
        )
    with pytest.raises(ValueError) as err:
        ProductionLog(db)
    assert str(err.value) == (
        f"production log {db}: faults table has no life-cycle columns (a pre-release version 1 file); start a new log"
    )


def test_old_positional_fault_record_has_no_life_cycle() -> None:
    f = FaultRecord(3, "cell_a", 1.5, "ERROR", "ur5e_left", "E_STOP", "protective stop")
    assert (f.fault_key, f.acknowledged, f.cleared) == (None, None, None)


def test_fault_life_cycle_updates_one_row(db: Path) -> None:
    args = ("cell_a", 12.5, "ERROR", "ur5e_left/weld", "PROTECTIVE_STOP", "protective stop")
    with ProductionLog(db) as log:
        first = log.record_fault(*args, fault_key="boot-1")
        assert fault_row(db) == [(*args, "boot-1", None, None)]
        assert log.record_fault(*args, fault_key="boot-1") == first  # a re-send changes nothing
        assert log.record_fault(*args, fault_key="boot-1", acknowledged=14.0) == first
        assert fault_row(db) == [(*args, "boot-1", 14.0, None)]
        assert log.record_fault(*args, fault_key="boot-1", acknowledged=14.0, cleared=20.25) == first
        assert log.faults() == [FaultRecord(first, *args, fault_key="boot-1", acknowledged=14.0, cleared=20.25)]
    with ProductionLog(db) as log:  # survives a reopen
        assert log.faults() == [FaultRecord(first, *args, fault_key="boot-1", acknowledged=14.0, cleared=20.25)]


def test_fault_times_once_set_are_never_unset_or_moved() -> None:
    args = ("cell_a", 1.0, "ERROR", "src", "C", "msg")
    with ProductionLog(":memory:") as log:
        fid = log.record_fault(*args, fault_key="k", acknowledged=2.0, cleared=3.0)
        assert log.record_fault(*args, fault_key="k") == fid  # an older update arriving late
        assert log.record_fault(*args, fault_key="k", acknowledged=5.0, cleared=6.0) == fid
        # the rest of the fault keeps its first values too
        assert log.record_fault("cell_b", 0.5, "WARN", "other", "D", "changed", fault_key="k") == fid
        assert log.faults() == [FaultRecord(fid, *args, fault_key="k", acknowledged=2.0, cleared=3.0)]


def test_fault_cleared_without_acknowledged_then_acknowledged_fills_it() -> None:
    args = ("cell_a", 1.0, "ERROR", "src", "C", "msg")
    with ProductionLog(":memory:") as log:
        fid = log.record_fault(*args, fault_key="k", cleared=4.0)
        log.record_fault(*args, fault_key="k", acknowledged=3.0)
        assert log.faults() == [FaultRecord(fid, *args, fault_key="k", acknowledged=3.0, cleared=4.0)]


def test_first_update_seen_for_a_key_inserts_the_fault() -> None:
    # a supervisor started late may first see an acknowledged or even a cleared fault
    with ProductionLog(":memory:") as log:
        a = log.record_fault("cell_a", 1.0, "ERROR", "src", "C", "msg", fault_key="b1-1", acknowledged=2.0)
        b = log.record_fault("cell_a", 5.0, "ERROR", "src", "C", "msg", fault_key="b1-2", acknowledged=6.0, cleared=7.0)
        assert a != b
        assert [(f.fault_key, f.time, f.acknowledged, f.cleared) for f in log.faults()] == [
            ("b1-1", 1.0, 2.0, None),
            ("b1-2", 5.0, 6.0, 7.0),
        ]


def test_faults_without_a_key_are_separate_records() -> None:
    with ProductionLog(":memory:") as log:
        ids = [log.record_fault("cell_a", 1.0, "ERROR", "src", "C", "msg") for _ in range(2)]
        ids.append(log.record_fault("cell_a", 1.0, "ERROR", "src", "C", "msg", cleared=2.0))
        assert len(set(ids)) == 3
        assert [(f.fault_key, f.cleared) for f in log.faults()] == [(None, None), (None, None), (None, 2.0)]


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ({"acknowledged": float("nan")}, "fault acknowledged time must be finite, got nan"),
        ({"cleared": float("inf")}, "fault cleared time must be finite, got inf"),
        ({"acknowledged": 9.5}, "fault acknowledged time 9.5 is before its raised time 10.0"),
        ({"acknowledged": 11.0, "cleared": 9.0}, "fault cleared time 9.0 is before its raised time 10.0"),
    ],
)
def test_fault_life_cycle_times_are_validated(times: dict[str, float], message: str) -> None:
    with ProductionLog(":memory:") as log:
        with pytest.raises(ValueError) as err:
            log.record_fault("cell_a", 10.0, "ERROR", "src", "C", "msg", fault_key="k", **times)
        assert str(err.value) == message
        assert log.faults() == []


def test_parts_without_steps() -> None:
    with ProductionLog(":memory:") as log:
        log.record_cycles([make_report(1), make_report(2, cell="cell_b")])
        assert log.parts(with_steps=False) == [
            dataclasses.replace(make_report(1), steps=()),
            dataclasses.replace(make_report(2, cell="cell_b"), steps=()),
        ]
        bare = dataclasses.replace(make_report(2, cell="cell_b"), steps=())
        assert log.parts(cell="cell_b", with_steps=False) == [bare]


def test_context_manager_closes(db: Path) -> None:
    with ProductionLog(db) as log:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        log.parts()
    log.close()  # closing twice is harmless


def test_two_connections_see_each_others_writes(db: Path) -> None:
    with ProductionLog(db) as writer, ProductionLog(db) as reader:
        writer.record_cycle(make_report(1))
        assert reader.parts() == [make_report(1)]
        assert reader.record_cycle(make_report(1)) is False


names = st.text(min_size=1, max_size=12)
times = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@st.composite
def reports(draw: st.DrawFn) -> CycleReport:
    step_names = draw(st.lists(names, max_size=4, unique=True))
    steps = []
    for name in step_names:
        a, b = sorted((draw(times), draw(times)))
        steps.append(StepTiming(name, draw(names), draw(names), a, b))
    steps.sort(key=lambda s: s.start)  # the log returns steps by start; equal starts keep logged order
    return CycleReport(
        cell=draw(names),
        job=draw(names),
        run_id=draw(names),
        part=draw(st.integers(0, 2**63 - 1)),
        start=draw(times),
        end=draw(times),
        status=draw(st.sampled_from(["done", "scrap"])),
        steps=tuple(steps),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(reports(), max_size=6))
def test_round_trip_property(batch: list[CycleReport]) -> None:
    unique = {(r.cell, r.run_id, r.part): r for r in reversed(batch)}  # first of each key wins
    with ProductionLog(":memory:") as log:
        assert log.record_cycles(batch) == len(unique)
        assert log.parts() == sorted(unique.values(), key=lambda r: (r.cell, r.run_id, r.part))


def test_faults_a_dead_planner_left_open_are_closed_at_its_last_alive_time(db: Path) -> None:
    with ProductionLog(db) as log:
        log.record_fault("demo", 10.0, "ERROR", "welder", "STALE_JOINT_STATES", "x", fault_key="aaaa-1")
        log.record_fault("demo", 12.0, "ERROR", "welder", "ESTOP", "y", fault_key="aaaa-2", cleared=13.0)
        log.record_fault("demo", 30.0, "ERROR", "cell", "PLANNER_RESTARTED", "z", fault_key="bbbb-1")
        log.record_fault("other", 5.0, "ERROR", "x", "ESTOP", "w", fault_key="cccc-1")
        assert log.close_orphaned_faults("demo", "bbbb", 20.0) == 1
        by_key = {f.fault_key: f.cleared for f in log.faults()}
    # the old incarnation's open fault closes when it was last alive; closed ones, the new one's and other cells'
    # stay as they were
    assert by_key == {"aaaa-1": 20.0, "aaaa-2": 13.0, "bbbb-1": None, "cccc-1": None}


def test_audit_records_are_logged_once_and_read_back(tmp_path) -> None:
    from cobot_cell.plant.authority import AuditRecord

    recs = [
        AuditRecord(10.0, "c1", "remote", "alice", "start", "refused", "authority is local"),
        AuditRecord(11.0, "c1", "local", "", "hand_over", "accepted", "authority remote"),
        AuditRecord(10.5, "c2", "remote", "bob", "stop", "accepted", "stop: state Stopping"),
    ]
    with ProductionLog(tmp_path / "p.db") as log:
        assert log.record_audits(recs) == 3
        assert log.record_audits(recs[:2]) == 0  # delivered again (a late joiner's history): kept once
        assert log.audit(cell="c1") == recs[:2]
        assert [r.cell for r in log.audit()] == ["c1", "c2", "c1"]
        with pytest.raises(ValueError, match="audit record of 'start': time must be finite, got nan"):
            log.record_audits([AuditRecord(float("nan"), "c1", "local", "", "start", "accepted", "")])
        assert len(log.audit()) == 3


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_report_reads_a_production_log_without_changing_it(tmp_path: Path, capsys) -> None:
    from cobot_cell.cli import main as cli_main

    db = tmp_path / "production.db"
    with ProductionLog(db) as log:
        log.record_cycle(make_report(1))
    before = db.read_bytes()
    assert cli_main(["report", str(db)]) == 0
    assert "1 parts" in capsys.readouterr().out
    assert db.read_bytes() == before


def test_report_refuses_the_planner_journal_and_leaves_it_alone(tmp_path: Path, capsys) -> None:
    from cobot_cell.cli import main as cli_main
    from cobot_cell.core.journal import Journal

    path = tmp_path / "cell.journal.db"
    Journal(path).close()
    tables = _tables(path)
    assert "schema_version" in tables and "parts" not in tables  # the same version table, not a production log
    assert cli_main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path} is not a production log (it has no parts, steps, faults, audit tables)" in err
    assert _tables(path) == tables


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a database at all, just text\n" * 40, "is not a production log (file is not a database)"),
        (b"", "is not a production log (it has no schema_version, parts, steps, faults, audit tables)"),
    ],
)
def test_report_refuses_a_file_that_is_not_a_production_log(tmp_path: Path, capsys, content, reason) -> None:
    from cobot_cell.cli import main as cli_main

    path = tmp_path / "x.db"
    path.write_bytes(content)
    assert cli_main(["report", str(path)]) == 2
    assert f"error: {path} {reason}" in capsys.readouterr().err
    assert path.read_bytes() == content


def test_report_of_a_missing_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from cobot_cell.cli import main as cli_main

    assert cli_main(["report", str(tmp_path / "none.db")]) == 2
    assert f"no production log at {tmp_path / 'none.db'}" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_a_read_only_log_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        ProductionLog(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
