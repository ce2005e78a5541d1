"""Durable job state: the planner journals every run, part and step boundary in SQLite (WAL, synchronous FULL).

After the planner process is killed or the PC reboots, `interrupted()` tells which run was under way, which
part was in progress, which of its steps were done, where each cobot was left, and the skills' own state
(pallet place index, weld seam index). The part ledger holds every part exactly once: in progress, done or
scrap.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .plan import AT_KEY, part_key, part_prefix
from .reports import StepTiming

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PART_STATUSES = ("in_progress", "done", "scrap")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, job TEXT NOT NULL, parts_target INTEGER NOT NULL,
        status TEXT NOT NULL, started REAL NOT NULL, ended REAL)""",
    """CREATE TABLE IF NOT EXISTS ledger (
        run_id TEXT NOT NULL, part INTEGER NOT NULL, status TEXT NOT NULL,
        started REAL NOT NULL, ended REAL, reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, part))""",
    """CREATE TABLE IF NOT EXISTS steps_done (
        run_id TEXT NOT NULL, part INTEGER NOT NULL, step TEXT NOT NULL, skill TEXT NOT NULL,
        cobot TEXT NOT NULL, "start" REAL NOT NULL, "end" REAL NOT NULL,
        PRIMARY KEY (run_id, part, step))""",
    """CREATE TABLE IF NOT EXISTS cobot_pose (
        run_id TEXT NOT NULL, cobot TEXT NOT NULL, q TEXT NOT NULL, PRIMARY KEY (run_id, cobot))""",
    """CREATE TABLE IF NOT EXISTS skill_state (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key))""",
    # the planner's incarnations: which boot wrote last, and the last clock time it was seen alive
    "CREATE TABLE IF NOT EXISTS planner (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Interrupted:
    """A run the planner did not finish: enough to resume it where it stopped."""

    run_id: str
    job: str
    parts_target: int
    parts_finished: int
    part: int | None
    parts_scrapped: int = 0
    steps_done: dict[str, StepTiming] = field(default_factory=dict)
    cobot_q: dict[str, list[float]] = field(default_factory=dict)
    skill_state: dict[str, Any] = field(default_factory=dict)
    in_progress: dict[int, dict[str, StepTiming]] = field(default_factory=dict)  # every part in flight
    last_part: int = 0  # the highest part number the run has started

    def station_of(self, part: int) -> str:
        """The limited station (a fixture) a part in flight was left on ('' if none)."""
        return str(self.skill_state.get(part_key(AT_KEY, part)) or "")

    def describe(self) -> str:
        """One line for the operator."""
        if not self.in_progress:
            return f"run {self.run_id} of job '{self.job}': {self.parts_finished}/{self.parts_target} parts finished"
        parts = []
        for part, steps in sorted(self.in_progress.items()):
            where = self.station_of(part)
            parts.append(
                f"part {part} interrupted after {', '.join(steps) or 'no step'}" + (f" (on {where})" if where else "")
            )
        return (
            f"run {self.run_id} of job '{self.job}': {'; '.join(parts)} "
            f"({self.parts_finished}/{self.parts_target} parts finished)"
        )


class Journal:
    """The planner's durable record of runs, the part ledger and step progress."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self._lock = threading.Lock()
        self._backlog: list[Callable[[sqlite3.Connection], None]] = []  # deferred writes, in order
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # small appends and one read at start: a 256 KiB page cache, not SQLite's 2 MiB default that a planner
            # running for weeks would fill
            self._db.execute("PRAGMA cache_size=-256")
        with self._tx() as db:
            for stmt in _SCHEMA:
                db.execute(stmt)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise ValueError(
                    f"journal {self.path}: schema version {row[0]} is not supported (expected {SCHEMA_VERSION})"
                )

    class _Tx:
        """One transaction under the lock; deferred writes go first, and leave the backlog only once committed."""

        def __init__(self, journal: Journal):
            self.j = journal
            self.taken = 0

        def __enter__(self) -> sqlite3.Connection:
            j = self.j
            j._lock.acquire()
            try:
                j._db.execute("BEGIN IMMEDIATE")
                try:
                    for write in j._backlog:
                        write(j._db)
                except BaseException:
                    j._db.execute("ROLLBACK")
                    raise
            except BaseException:
                j._lock.release()
                raise
            self.taken = len(j._backlog)
            return j._db

        def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
            try:
                self.j._db.execute("ROLLBACK" if exc_type else "COMMIT")
                if not exc_type:
                    del self.j._backlog[: self.taken]
            finally:
                self.j._lock.release()

    def _tx(self) -> Journal._Tx:
        return Journal._Tx(self)

    def close(self) -> None:
        """Write what is deferred and close the database."""
        self.flush()
        self._db.close()

    @property
    def deferred(self) -> int:
        """Writes deferred and not yet flushed."""
        return len(self._backlog)

    def flush(self) -> None:
        """Write the deferred writes (one transaction). Every other write and read flushes first, too."""
        if self._backlog:
            with self._tx():
                pass

    # ------------------------------------------------------------------ writes (one transaction each)
    def begin_run(self, run_id: str, job: str, parts_target: int, time: float) -> None:
        """A new run starts; any other open run is closed as abandoned."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'abandoned', ended = ? WHERE status = 'open'", (time,))
            db.execute("INSERT INTO runs VALUES (?, ?, ?, 'open', ?, NULL)", (run_id, job, parts_target, time))

    def part_started(self, run_id: str, part: int, time: float) -> None:
        """A part enters the ledger as in progress (idempotent when resuming it). A new part starts without any
        skill state of its own (keys `part.<n>.`)."""
        prefix = part_prefix(part)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO ledger (run_id, part, status, started) VALUES (?, ?, 'in_progress', ?) "
                "ON CONFLICT (run_id, part) DO NOTHING",
                (run_id, part, time),
            )
            if cur.rowcount == 1:
                db.execute(
                    "DELETE FROM skill_state WHERE run_id = ? AND substr(key, 1, ?) = ?", (run_id, len(prefix), prefix)
                )

    def step_done(
        self,
        run_id: str,
        part: int,
        timing: StepTiming,
        q: list[float] | None,
        skill_state: dict[str, Any] | None = None,
        defer: bool = False,
    ) -> None:
        """A step boundary: the step's timing, where its cobot is, and the skills' state, atomically.

        defer: queue it for the next `flush` (or any other journal call), so a caller can dispatch the next
        step before paying for the fsync; a crash in between loses only the deferred writes (the step is redone).
        """
        # serialised now, so a value that cannot be stored fails this call, not a later flush
        pose = None if q is None else json.dumps([float(v) for v in q])
        state = self._state_rows(run_id, skill_state or {})

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO steps_done VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, part, timing.step, timing.skill, timing.cobot, timing.start, timing.end),
            )
            if pose is not None:
                db.execute("INSERT OR REPLACE INTO cobot_pose VALUES (?, ?, ?)", (run_id, timing.cobot, pose))
            db.executemany("INSERT OR REPLACE INTO skill_state VALUES (?, ?, ?)", state)

        self._write(write, defer)

    def _write(self, write: Callable[[sqlite3.Connection], None], defer: bool) -> None:
        if defer:
            with self._lock:
                self._backlog.append(write)
            return
        with self._tx() as db:
            write(db)

    def record_poses(self, run_id: str, poses: dict[str, list[float]]) -> None:
        """Where the cobots are (at the start of a run)."""
        with self._tx() as db:
            for cobot, q in poses.items():
                db.execute(
                    "INSERT OR REPLACE INTO cobot_pose VALUES (?, ?, ?)",
                    (run_id, cobot, json.dumps([float(v) for v in q])),
                )

    def checkpoint(self, run_id: str, skill_state: dict[str, Any], defer: bool = False) -> None:
        """Skill state inside a step (e.g. the weld seam just finished); defer as for `step_done`."""
        state = self._state_rows(run_id, skill_state)

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO skill_state VALUES (?, ?, ?)", state)

        self._write(write, defer)

    @staticmethod
    def _state_rows(run_id: str, state: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(run_id, key, json.dumps(value)) for key, value in state.items()]

    def part_finished(self, run_id: str, part: int, status: str, time: float, reason: str = "") -> bool:
        """Close a part as done or scrap; False (nothing written) if it was already closed."""
        if status not in ("done", "scrap"):
            raise ValueError(f"part status must be done or scrap, got {status!r}")
        prefix = part_prefix(part)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE ledger SET status = ?, ended = ?, reason = ? "
                "WHERE run_id = ? AND part = ? AND status = 'in_progress'",
                (status, time, reason, run_id, part),
            )
            if cur.rowcount == 1 and status == "done":  # a scrapped part's place stays recorded until removed
                db.execute(
                    "DELETE FROM skill_state WHERE run_id = ? AND substr(key, 1, ?) = ?", (run_id, len(prefix), prefix)
                )
            return cur.rowcount == 1

    def end_run(self, run_id: str, status: str, time: float) -> None:
        """Close a run: 'complete' or 'abandoned' (a new run was started instead)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, ended = ? WHERE run_id = ?", (status, time, run_id))

    def alive(self, time: float, defer: bool = False) -> None:
        """The planner is alive at clock time `time` (written periodically: the time a crash is dated at)."""
        value = json.dumps(float(time))

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO planner VALUES ('last_alive', ?)", (value,))

        self._write(write, defer)

    def boot(self, boot_id: str) -> tuple[str | None, float | None]:
        """A planner incarnation starts: record its boot id; returns the previous one's (boot id, last alive)."""
        with self._tx() as db:
            rows = dict(db.execute("SELECT key, value FROM planner").fetchall())
            db.execute("INSERT OR REPLACE INTO planner VALUES ('boot', ?)", (json.dumps(boot_id),))
        prev = json.loads(rows["boot"]) if "boot" in rows else None
        alive = json.loads(rows["last_alive"]) if "last_alive" in rows else None
        return prev, alive

    # ------------------------------------------------------------------ reads
    def interrupted(self) -> Interrupted | None:
        """The open run, if the planner stopped before finishing it."""
        self.flush()
        with self._lock:
            db = self._db
            row = db.execute(
                "SELECT run_id, job, parts_target FROM runs WHERE status = 'open' ORDER BY started DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            run_id, job, target = row
            finished = db.execute(
                "SELECT COUNT(*) FROM ledger WHERE run_id = ? AND status != 'in_progress'", (run_id,)
            ).fetchone()[0]
            scrapped = db.execute(
                "SELECT COUNT(*) FROM ledger WHERE run_id = ? AND status = 'scrap'", (run_id,)
            ).fetchone()[0]
            parts = [
                r[0]
                for r in db.execute(
                    "SELECT part FROM ledger WHERE run_id = ? AND status = 'in_progress' ORDER BY part", (run_id,)
                )
            ]
            last = db.execute("SELECT MAX(part) FROM ledger WHERE run_id = ?", (run_id,)).fetchone()[0] or 0
            in_progress: dict[int, dict[str, StepTiming]] = {p: {} for p in parts}
            for p, step, skill, cobot, start, end in db.execute(
                'SELECT part, step, skill, cobot, "start", "end" FROM steps_done WHERE run_id = ? ORDER BY "end"',
                (run_id,),
            ):
                if p in in_progress:
                    in_progress[p][step] = StepTiming(step=step, skill=skill, cobot=cobot, start=start, end=end)
            part = parts[0] if parts else None
            steps = in_progress.get(part, {}) if part is not None else {}
            poses = {
                c: json.loads(q) for c, q in db.execute("SELECT cobot, q FROM cobot_pose WHERE run_id = ?", (run_id,))
            }
            state = {
                k: json.loads(v)
                for k, v in db.execute("SELECT key, value FROM skill_state WHERE run_id = ?", (run_id,))
            }
        return Interrupted(
            run_id=run_id,
            job=job,
            parts_target=target,
            parts_finished=finished,
            part=part,
            steps_done=steps,
            cobot_q=poses,
            skill_state=state,
            parts_scrapped=scrapped,
            in_progress=in_progress,
            last_part=last,
        )

    def ledger(self, run_id: str | None = None) -> list[tuple[str, int, str]]:
        """(run_id, part, status) rows, ordered by run start and part."""
        self.flush()
        with self._lock:
            sql = (
                "SELECT l.run_id, l.part, l.status FROM ledger l JOIN runs r USING (run_id) "
                + ("WHERE l.run_id = ? " if run_id else "")
                + "ORDER BY r.started, l.part"
            )
            return [tuple(r) for r in self._db.execute(sql, (run_id,) if run_id else ())]

    def last_skill_state(self) -> dict[str, Any]:
        """The skills' state of the most recent run (empty if there is none)."""
        self.flush()
        with self._lock:
            row = self._db.execute("SELECT run_id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
        return self.skill_state(row[0]) if row else {}

    def skill_state(self, run_id: str) -> dict[str, Any]:
        """The skills' state of a run."""
        self.flush()
        with self._lock:
            return {
                k: json.loads(v)
                for k, v in self._db.execute("SELECT key, value FROM skill_state WHERE run_id = ?", (run_id,))
            }
