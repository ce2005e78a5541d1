"""Production log: finished parts, their steps and faults (with their life cycle), kept in SQLite."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from cobot_cell.core.reports import STATUSES, CycleReport, StepTiming
from cobot_cell.plant.authority import AuditRecord

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FAULT_LEVELS = ("WARN", "ERROR", "STALE")

# "start" and "end" are quoted everywhere: END is an SQL keyword.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS parts (
        cell TEXT NOT NULL, job TEXT NOT NULL, run_id TEXT NOT NULL, part INTEGER NOT NULL,
        status TEXT NOT NULL, "start" REAL NOT NULL, "end" REAL NOT NULL, cycle_time REAL NOT NULL,
        PRIMARY KEY (cell, run_id, part))""",
    """CREATE TABLE IF NOT EXISTS steps (
        cell TEXT NOT NULL, run_id TEXT NOT NULL, part INTEGER NOT NULL, step TEXT NOT NULL,
        skill TEXT NOT NULL, cobot TEXT NOT NULL,
        "start" REAL NOT NULL, "end" REAL NOT NULL, duration REAL NOT NULL,
        PRIMARY KEY (cell, run_id, part, step),
        FOREIGN KEY (cell, run_id, part) REFERENCES parts (cell, run_id, part))""",
    # time is when the fault was raised; fault_key (NULL for one-off records) identifies a fault across the
    # life-cycle updates that fill acknowledged and cleared.
    """CREATE TABLE IF NOT EXISTS faults (
        id INTEGER PRIMARY KEY AUTOINCREMENT, cell TEXT NOT NULL, time REAL NOT NULL,
        level TEXT NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
        fault_key TEXT UNIQUE, acknowledged REAL, cleared REAL)""",
    "CREATE INDEX IF NOT EXISTS faults_by_cell_time ON faults (cell, time)",
    # every command a cell's authority saw (time: Unix seconds); a record delivered twice is kept once
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, cell TEXT NOT NULL, time REAL NOT NULL, source TEXT NOT NULL,
        user TEXT NOT NULL, command TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL,
        UNIQUE (cell, time, source, user, command, outcome))""",
)

_TABLES = ("schema_version", "parts", "steps", "faults", "audit")

_INSERT_PART = (
    'INSERT INTO parts (cell, job, run_id, part, status, "start", "end", cycle_time) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cell, run_id, part) DO NOTHING"
)
_INSERT_STEP = (
    'INSERT INTO steps (cell, run_id, part, step, skill, cobot, "start", "end", duration) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# An update of a known fault only fills the life-cycle times still missing; everything else keeps its first value.
_UPSERT_FAULT = (
    "INSERT INTO faults (cell, time, level, source, code, message, fault_key, acknowledged, cleared) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fault_key) DO UPDATE SET "
    "acknowledged = coalesce(faults.acknowledged, excluded.acknowledged), "
    "cleared = coalesce(faults.cleared, excluded.cleared) "
    "RETURNING id"
)
_FAULT_COLUMNS = "id, cell, time, level, source, code, message, fault_key, acknowledged, cleared"
_INSERT_AUDIT = (
    "INSERT INTO audit (cell, time, source, user, command, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class FaultRecord:
    """One logged fault; `time` (raised), `acknowledged` and `cleared` are in clock seconds, None if not yet."""

    id: int
    cell: str
    time: float
    level: str
    source: str
    code: str
    message: str
    fault_key: str | None = None
    acknowledged: float | None = None
    cleared: float | None = None


def _key(report: CycleReport) -> str:
    return f"{report.cell}/{report.run_id}/{report.part}"


def _validate(report: CycleReport) -> None:
    """Raise ValueError naming the report and the problem if it cannot be logged as is."""
    if report.status not in STATUSES:
        raise ValueError(
            f"cycle report {_key(report)}: status must be one of {', '.join(STATUSES)}, got {report.status!r}"
        )
    times = [("start", report.start), ("end", report.end)]
    times += [(f"step '{s.step}' {name}", t) for s in report.steps for name, t in (("start", s.start), ("end", s.end))]
    for what, t in times:
        if not math.isfinite(t):
            raise ValueError(f"cycle report {_key(report)}: {what} is not finite: {t!r}")


class ProductionLog:
    """Log of finished parts (append-only) and faults (filled in as they are acknowledged and cleared) in SQLite.

    Files are opened in WAL mode so readers (CLI reports) do not block the writer. Every write is one
    transaction; a connection is shared across threads behind a lock, so an executor may call in from any thread.
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        """Open (creating if missing) the log at `path`; ':memory:' gives a private in-memory log. `read_only`:
        open an existing log without changing it; ValueError if the file is missing or not a production log."""
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        if read_only:
            self._conn = self._open_read_only()
            return
        # isolation_level=None: transactions are explicit BEGIN/COMMIT below, never implicit.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise
        logger.debug("production log open: %s", self.path)

    def _open_read_only(self) -> sqlite3.Connection:
        if not os.path.isfile(self.path):
            raise ValueError(f"{self.path}: no such file")
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                raise ValueError(
                    f"{self.path} is not a production log (it has no {', '.join(missing)} "
                    f"table{'s' if len(missing) > 1 else ''})"
                )
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise ValueError(
                    f"production log {self.path}: schema version {version} is not supported (expected {SCHEMA_VERSION})"
                )
        except sqlite3.DatabaseError as exc:  # not an SQLite file at all
            conn.close()
            raise ValueError(f"{self.path} is not a production log ({exc})") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("production log %s: journal mode is %s, not WAL", self.path, mode)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise ValueError(
                    f"production log {self.path}: schema version {row[0]} is not supported (expected {SCHEMA_VERSION})"
                )
            columns = {r[1] for r in conn.execute("PRAGMA table_info(faults)")}
            if "fault_key" not in columns:  # a file from before fault life cycles, still labelled version 1
                raise ValueError(
                    f"production log {self.path}: faults table has no life-cycle columns (a pre-release "
                    "version 1 file); start a new log"
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database; later calls raise sqlite3.ProgrammingError. Closing twice is harmless."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ProductionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record_cycle(self, report: CycleReport) -> bool:
        """Log one part and its steps atomically; False (nothing written) if that part is already logged."""
        return self.record_cycles((report,)) == 1

    def record_cycles(self, reports: Iterable[CycleReport]) -> int:
        """Log many parts in one transaction and return how many were new; all or nothing on error."""
        batch = list(reports)
        for report in batch:
            _validate(report)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                new = sum(self._insert(report) for report in batch)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if new < len(batch):
            logger.debug("production log: %d of %d cycle reports already logged", len(batch) - new, len(batch))
        return new

    def _insert(self, r: CycleReport) -> int:
        """Insert one part (inside the caller's transaction); 0 if it is a duplicate."""
        part = (r.cell, r.job, r.run_id, r.part, r.status, r.start, r.end, r.cycle_time)
        cur = self._conn.execute(_INSERT_PART, part)
        if cur.rowcount == 0:
            return 0
        rows = [(r.cell, r.run_id, r.part, s.step, s.skill, s.cobot, s.start, s.end, s.duration) for s in r.steps]
        try:
            self._conn.executemany(_INSERT_STEP, rows)
        except sqlite3.IntegrityError as exc:
            repeated = sorted(name for name, n in Counter(s.step for s in r.steps).items() if n > 1)
            if not repeated:
                raise
            names = ", ".join(repr(name) for name in repeated)
            raise ValueError(f"cycle report {_key(r)}: step names must be unique, repeated: {names}") from exc
        return 1

    def record_fault(
        self,
        cell: str,
        time: float,
        level: str,
        source: str,
        code: str,
        message: str,
        *,
        fault_key: str | None = None,
        acknowledged: float | None = None,
        cleared: float | None = None,
    ) -> int:
        """Log a fault raised at `time` and return its id; `level` is one of WARN, ERROR, STALE.

        With a `fault_key` the call is a life-cycle update: the first one for a key inserts the fault, later ones
        only fill `acknowledged` and `cleared` where still unset (a time once set is kept) and return the same id.
        """
        if level not in FAULT_LEVELS:
            raise ValueError(f"fault level must be one of {', '.join(FAULT_LEVELS)}, got {level!r}")
        if not math.isfinite(time):
            raise ValueError(f"fault time must be finite, got {time!r}")
        for name, t in (("acknowledged", acknowledged), ("cleared", cleared)):
            if t is None:
                continue
            if not math.isfinite(t):
                raise ValueError(f"fault {name} time must be finite, got {t!r}")
            if t < time:
                raise ValueError(f"fault {name} time {t!r} is before its raised time {time!r}")
        row = (cell, time, level, source, code, message, fault_key, acknowledged, cleared)
        with self._lock:
            if fault_key is None:
                cur = self._conn.execute(
                    "INSERT INTO faults (cell, time, level, source, code, message, fault_key, acknowledged, "
                    "cleared) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                assert cur.lastrowid is not None  # set by a successful INSERT
                return cur.lastrowid
            return int(self._conn.execute(_UPSERT_FAULT, row).fetchone()[0])

    def close_orphaned_faults(self, cell: str, boot: str, time: float) -> int:
        """A cell's planner restarted as `boot`: faults of earlier incarnations still open are cleared at `time`
        (the last moment the old one was alive; never before a fault's own raise). Returns how many."""
        if not math.isfinite(time):
            raise ValueError(f"fault cleared time must be finite, got {time!r}")
        with self._lock:
            cur = self._conn.execute(
                "UPDATE faults SET cleared = max(time, ?) WHERE cell = ? AND cleared IS NULL AND fault_key IS NOT NULL "
                "AND substr(fault_key, 1, ?) != ?",
                (time, cell, len(boot) + 1, boot + "-"),
            )
            return cur.rowcount

    def parts(
        self, cell: str | None = None, run_id: str | None = None, *, with_steps: bool = True
    ) -> list[CycleReport]:
        """Logged parts, optionally of one cell and/or run, ordered by (cell, run_id, part).

        Steps come back ordered by start time (ties in the order they were logged); with_steps=False leaves
        them out (empty), which is all KPIs need and much cheaper on a long log.
        """
        where, params = [], []
        for column, value in (("cell", cell), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")  # one snapshot for both queries
            try:
                part_rows = conn.execute(
                    f'SELECT cell, job, run_id, part, status, "start", "end" FROM parts {clause} '
                    "ORDER BY cell, run_id, part",
                    params,
                ).fetchall()
                step_rows = (
                    conn.execute(
                        f'SELECT cell, run_id, part, step, skill, cobot, "start", "end" FROM steps {clause} '
                        'ORDER BY cell, run_id, part, "start", rowid',
                        params,
                    ).fetchall()
                    if with_steps
                    else []
                )
            finally:
                conn.execute("COMMIT")
        steps: dict[tuple[str, str, int], list[StepTiming]] = {}
        for c, run, part, step, skill, cobot, start, end in step_rows:
            steps.setdefault((c, run, part), []).append(StepTiming(step, skill, cobot, start, end))
        return [
            CycleReport(
                cell=c,
                job=job,
                run_id=run,
                part=part,
                start=start,
                end=end,
                status=status,
                steps=tuple(steps.get((c, run, part), ())),
            )
            for c, job, run, part, status, start, end in part_rows
        ]

    def faults(self, cell: str | None = None) -> list[FaultRecord]:
        """Logged faults, optionally of one cell, ordered by time (ties by id)."""
        return [FaultRecord(*row) for row in self._rows_by_time(f"SELECT {_FAULT_COLUMNS} FROM faults", cell)]

    def _rows_by_time(self, sql: str, cell: str | None) -> list[tuple[Any, ...]]:
        """Rows of `sql` (a SELECT without WHERE), optionally of one cell, ordered by (time, id)."""
        params: tuple[str, ...] = ()
        if cell is not None:
            sql += " WHERE cell = ?"
            params = (cell,)
        with self._lock:
            return self._conn.execute(sql + " ORDER BY time, id", params).fetchall()

    def record_audits(self, records: Iterable[AuditRecord]) -> int:
        """Log command audit records in one transaction; returns how many were new (repeats are kept once)."""
        rows = []
        for r in records:
            if not math.isfinite(r.time):
                raise ValueError(f"audit record of {r.command!r}: time must be finite, got {r.time!r}")
            rows.append((r.cell, r.time, r.source, r.user, r.command, r.outcome, r.detail))
        with self._lock:
            conn = self._conn
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT_AUDIT, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return conn.total_changes - before

    def audit(self, cell: str | None = None) -> list[AuditRecord]:
        """Logged command audit records, optionally of one cell, in time order."""
        sql = "SELECT time, cell, source, user, command, outcome, detail FROM audit"
        return [AuditRecord(*row) for row in self._rows_by_time(sql, cell)]
