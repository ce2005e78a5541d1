"""Soak: many parts through the real node set at a high sim rate, with random injected faults and crashes.

Starts the cell's node set (sim drivers, task_planner with a journal, supervisor with a production log) as
processes in --out, an operator CellClient, reset + start, and while the run goes on injects a fault roughly
every --fault-every parts (seeded): protective stop, e-stop, IO failure (welder torch), grip miss (picker),
and a kill -9 + restart of the welder's sim driver and of the planner. It recovers like an operator would
(the documented actions of tests/ros/test_fault_matrix.py), every wait with a deadline, and counts the faults
raised and recovered. At the end it checks that the journal's part ledger holds parts 1..N exactly once, each
done or scrap, and that the supervisor's production log says the same; it prints one table with the parts,
the faults by kind, wall and sim time, and the RSS of every node process (both incarnations of a restarted one)
at the start (after the first part) and at the end.

    .venv/bin/python bench/soak.py --parts 1000 --rate 25 --fault-every 20 --seed 1 --out /tmp/soak

Exit code 0 when the ledger check passes and every injected fault was recovered, 1 otherwise.
A script, not a test (bench/ prints numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import proc_cpu_s, proc_rss_kb  # noqa: E402

from cobot_cell.ros.bringup import BringupOptions, node_specs  # noqa: E402
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env  # noqa: E402
from cobot_cell.skills import estimate, load_cell  # noqa: E402

CELL_FILE = REPO / "bench" / "soak_cell.yaml"
FAULT_KINDS = ("protective_stop", "estop", "io_fail", "grip_miss")
KILL_KINDS = ("kill_welder", "kill_planner")
WELDER = "/welder/sim_cobot"
RUNNING = ("Execute", "Complete")
# Files of an earlier soak in --out that would change this one (a journal with an open run would be resumed).
STALE = (
    "journal.db",
    "journal.db-wal",
    "journal.db-shm",
    "production.db",
    "production.db-wal",
    "production.db-shm",
    "events.json",
    "summary.json",
)


class SoakError(RuntimeError):
    """The soak cannot go on (a deadline passed, a node died unexpectedly, the cell stalled)."""


@dataclass
class Incarnation:
    """One process of a node: its pid and RSS (kB) / CPU (s) samples."""

    fqn: str
    pid: int
    rss_start: int | None = None
    rss_end: int | None = None
    rss_max: int = 0
    cpu_end: float | None = None
    ended: str = "running"  # running | killed | stopped


@dataclass
class Event:
    """One injected fault or crash, what it raised and how the cell came back."""

    kind: str
    part: int
    target: str
    t_wall: float
    detail: str = ""
    outcome: str = ""
    faults: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    fault_keys: list[str] = field(default_factory=list)
    recovered: bool = False
    recovery_s: float = math.nan
    error: str = ""


class Soak:
    """The node set, the operator client and the bookkeeping of one soak run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.out = Path(args.out).resolve()
        self.cell_file = Path(args.cell).resolve()
        self.cfg = load_cell(self.cell_file)
        self.cell = self.cfg.cell.name
        self.job = next(iter(self.cfg.jobs))
        self.planner_fqn = f"/{self.cell}/task_planner"
        self.planned_cycle = sum(e.duration for e in estimate(self.cfg, self.job))
        self.journal = self.out / "journal.db"
        self.db = self.out / "production.db"
        self.lease: DomainLease | None = None
        self.nodes: NodeSet | None = None
        self.client = None
        self.events: list[Event] = []
        self.incarnations: list[Incarnation] = []
        self.need_start_sample: set[str] = set()
        self.expect_dead: set[str] = set()
        self.notes: list[str] = []
        self.health_seen: dict[str, float] = {}  # diagnostics status name -> last seen (monotonic)
        self.client_faults_seen: list[tuple[str, str]] = []  # CellClient.faults_seen at the end
        self.diag_faults: dict[str, dict] = {}  # fault_key -> code, source, first_seen (wall), cleared
        self.t0 = time.monotonic()
        self.t_run0: float | None = None
        self.t_run1: float | None = None
        self.sim_t0: float | None = None
        self.sim_t1: float | None = None
        self.deadline = self.t0 + args.deadline
        self._last_progress = (0, time.monotonic())
        self._last_part = 0

    # ------------------------------------------------------------------ plumbing
    def now(self) -> float:
        """Wall seconds since the soak began."""
        return time.monotonic() - self.t0

    def log(self, text: str) -> None:
        print(f"[{self.now():7.1f} s] {text}", flush=True)

    def start(self) -> None:
        """Start the node set and the operator client."""
        from diagnostic_msgs.msg import DiagnosticArray

        from cobot_cell.ros.client import CellClient

        self.out.mkdir(parents=True, exist_ok=True)
        for name in STALE:
            (self.out / name).unlink(missing_ok=True)
        for log_file in self.out.glob("*.log"):
            log_file.unlink()
        self.lease = DomainLease()
        specs = node_specs(
            self.cfg,
            self.cell_file,
            BringupOptions(rate=self.args.rate, parts=self.args.parts, db=str(self.db), journal=str(self.journal)),
        )
        self.nodes = NodeSet(specs, self.out, ros_env(self.lease.domain_id, self.out / "ros_log"))
        self.log(
            f"cell '{self.cell}' job '{self.job}' (planned {self.planned_cycle:.2f} s/part from home), "
            f"{len(specs)} nodes, rate {self.args.rate:g}x, ROS_DOMAIN_ID {self.lease.domain_id}, out {self.out}"
        )
        self.nodes.start()
        for p in self.nodes.procs:
            self.incarnations.append(Incarnation(p.spec.fqn, p.popen.pid))
        self.client = CellClient(
            self.cell, domain_id=self.lease.domain_id, use_sim_time=True, node_name="soak_operator"
        )
        self.client.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 200)

    def close(self) -> None:
        """Stop everything; safe to call more than once."""
        try:
            if self.client is not None:
                self.client.close()
                self.client = None
        finally:
            try:
                if self.nodes is not None:
                    self.nodes.stop()
            finally:
                if self.lease is not None:
                    self.lease.release()
                    self.lease = None

    def _on_diagnostics(self, msg) -> None:
        for st in msg.status:
            if not st.name.endswith("task_planner/faults"):
                self.health_seen[st.name] = time.monotonic()  # a driver's health: it is up
                continue
            kv = {v.key: v.value for v in st.values}
            key = kv.get("fault_key")
            if not key:
                continue
            f = self.diag_faults.setdefault(
                key,
                {
                    "code": kv.get("code", ""),
                    "source": kv.get("source", ""),
                    "message": st.message,
                    "seen": self.now(),
                    "part": self.client.status.get("part", ""),
                    "cleared": False,
                    "acknowledged": False,
                },
            )
            f["cleared"] = f["cleared"] or bool(kv.get("cleared"))
            f["acknowledged"] = f["acknowledged"] or bool(kv.get("acknowledged"))

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise SoakError(
                f"soak deadline of {self.args.deadline:g} s passed (state {self.client.state}, "
                f"status {self.client.status})"
            )
        for p in self.nodes.dead():
            if p.spec.fqn not in self.expect_dead:
                raise SoakError(f"node {p.spec.fqn} died (exit {p.popen.returncode}); log {p.log_path}")

    def wait(self, predicate, what: str, timeout: float) -> None:
        """Spin until predicate() holds (SoakError after `timeout` wall s, or when a node dies)."""
        end = time.monotonic() + timeout
        while not predicate():
            self._check()
            if time.monotonic() > end:
                raise SoakError(
                    f"timed out after {timeout:g} s waiting for {what} (state {self.client.state}, "
                    f"fault {self.client.status.get('fault', '')!r})"
                )
            self.client.spin_once(0.02)

    def pause(self, seconds: float) -> None:
        """Spin for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._check()
            self.client.spin_once(min(0.02, max(0.0, end - time.monotonic())))

    def command(self, name: str, ev: Event | None = None, timeout: float = 10.0) -> tuple[bool, str]:
        """A cell service call; a lost reply (planner gone) counts as refused."""
        try:
            ok, msg = self.client.command(name, timeout=timeout)
        except TimeoutError as exc:
            ok, msg = False, str(exc)
            self.note(f"'{name}': no reply within {timeout:g} s ({exc})")
        if ev is not None:
            entry = name if ok else f"{name}: refused ({msg[:90]})"
            if not ev.actions or ev.actions[-1] != entry:
                ev.actions.append(entry)
        return ok, msg

    def inject(self, cobot: str, fault: str, tries: int = 4) -> None:
        """Give a sim driver a fault ('' clears it); a request without reply is sent again (and noted)."""
        for attempt in range(1, tries + 1):
            try:
                ok, reason = self.client.set_parameter("fault", fault, node=f"/{cobot}/sim_cobot", timeout=3.0)
            except TimeoutError as exc:
                self.note(f"setting fault {fault!r} on /{cobot}/sim_cobot: no reply (attempt {attempt}/{tries}): {exc}")
                continue
            if not ok:
                raise SoakError(f"setting fault {fault!r} on {cobot} refused: {reason}")
            return
        raise SoakError(f"setting fault {fault!r} on {cobot}: no reply after {tries} attempts")

    def note(self, text: str) -> None:
        """Something that went wrong on the way (printed at the end)."""
        self.notes.append(f"[{self.now():.1f} s] {text}")
        self.log(f"NOTE: {text}")

    def state(self) -> str | None:
        return self.client.state

    def part(self) -> int:
        p = self.client.status.get("part", "")
        return int(p) if p.isdigit() else 0

    def parts_done(self) -> int:
        p = self.client.status.get("parts_done", "")
        return int(p) if p.isdigit() else 0

    def new_faults(self, since: float, code: str | None = None) -> list[dict]:
        return [f for f in self.diag_faults.values() if f["seen"] >= since and (code is None or f["code"] == code)]

    # ------------------------------------------------------------------ RSS
    def _live(self, fqn: str) -> Incarnation:
        return [i for i in self.incarnations if i.fqn == fqn][-1]

    def sample_rss(self, start: bool = False, only: set[str] | None = None) -> None:
        for inc in self.incarnations:
            if inc.ended != "running" or (only is not None and inc.fqn not in only):
                continue
            rss = proc_rss_kb(inc.pid)
            if rss is None:
                continue
            inc.rss_max = max(inc.rss_max, rss)
            if start and inc.rss_start is None:
                inc.rss_start = rss
            inc.rss_end = rss
            inc.cpu_end = proc_cpu_s(inc.pid)

    def _ended(self, fqn: str, how: str) -> None:
        inc = self._live(fqn)
        self.sample_rss(only={fqn})
        inc.ended = how

    def kill(self, fqn: str) -> None:
        self._ended(fqn, "killed")
        self.expect_dead.add(fqn)
        self.nodes.kill(fqn)

    def restart(self, fqn: str) -> None:
        p = self.nodes.restart(fqn)
        self.expect_dead.discard(fqn)
        self.incarnations.append(Incarnation(fqn, p.popen.pid))
        self.need_start_sample.add(fqn)

    # ------------------------------------------------------------------ operator recovery
    def recover(self, ev: Event, clear: tuple[str, ...] = (), timeout: float | None = None) -> None:
        """The documented operator actions until the cell produces again (Execute or Complete).

        Held: acknowledge, unhold (reapproach first if unhold says so). Aborted: clear. Stopped: reset.
        Idle: start (reapproach first if start says so). Acting states: wait.
        """
        timeout = timeout or self.args.recover_timeout
        end = time.monotonic() + timeout
        for cobot in clear:
            self.inject(cobot, "")
            ev.actions.append(f"clear {cobot} fault")
        last_cmd = 0.0
        while self.state() not in RUNNING:
            self._check()
            if time.monotonic() > end:
                raise SoakError(
                    f"{ev.kind} at part {ev.part}: cell not back in production after {timeout:g} s "
                    f"(state {self.state()}, fault {self.client.status.get('fault', '')!r}, "
                    f"actions {ev.actions})"
                )
            st = self.state()
            if time.monotonic() - last_cmd < 0.25:
                self.client.spin_once(0.02)
                continue
            last_cmd = time.monotonic()
            if st == "Held":
                if self.client.status.get("fault_acknowledged") == "false":
                    self.command("acknowledge", ev)
                ok, msg = self.command("unhold", ev)
                if not ok and "call reapproach" in msg:
                    self.command("reapproach", ev)
            elif st == "Suspended":
                self.command("unsuspend", ev)
            elif st == "Aborted":
                self.command("clear", ev)
            elif st == "Stopped":
                self.command("reset", ev)
            elif st == "Idle":
                ok, msg = self.command("start", ev)
                if not ok and "call reapproach" in msg:
                    self.command("reapproach", ev)
            # acting states (Holding, Unholding, Aborting, Clearing, Resetting, Starting, Stopping) and None
            # (a planner restarting): wait for the next state
            before = st
            try:
                self.wait(lambda before=before: self.state() != before, f"a state after {before}", 2.0)
            except SoakError:
                pass

    # ------------------------------------------------------------------ events
    def _run_event(self, ev: Event) -> None:
        t0 = self.now()
        k = ev.kind
        if k == "protective_stop":
            self.inject(ev.target, k)
            self.wait(lambda: self.state() not in ("Execute",), "the cell to react to the protective stop", 30)
            self.wait(lambda: self.state() in ("Held", "Aborted"), "Held", 30)
            ev.outcome = self.state()
            self.recover(ev, clear=(ev.target,))
        elif k == "estop":
            self.inject(ev.target, k)
            self.wait(lambda: self.state() in ("Aborted", "Held"), "Aborted", 30)
            ev.outcome = self.state()
            self.recover(ev, clear=(ev.target,))
        elif k == "io_fail":
            self.inject(ev.target, k)
            self.wait(lambda: self.new_faults(t0, "IO_FAILED") or self.state() not in ("Execute",), "an IO failure", 60)
            if ev.detail == "transient":  # the robot recovers by itself: the retry should succeed
                self.inject(ev.target, "")
                ev.actions.append(f"clear {ev.target} fault (transient)")
                goal = ev.part
                self.wait(
                    lambda: self.parts_done() >= goal or self.state() not in ("Execute",),
                    f"part {goal} to finish after the retry",
                    60,
                )
                ev.outcome = "retried" if self.state() in RUNNING else self.state()
                self.recover(ev)
            else:
                self.wait(lambda: self.state() in ("Held", "Aborted"), "Held after the failed retry", 60)
                ev.outcome = self.state()
                self.recover(ev, clear=(ev.target,))
        elif k == "grip_miss":
            self.inject(ev.target, k)
            scrap0 = int(self.client.status.get("scrap", "0") or 0)
            self.wait(lambda: self.new_faults(t0, "GRIP_MISSED") or self.state() not in ("Execute",), "a grip miss", 60)
            self.inject(ev.target, "")
            ev.actions.append(f"clear {ev.target} fault")
            goal = self.part()
            self.wait(lambda: self.parts_done() >= goal or self.state() not in ("Execute",), f"part {goal} to end", 60)
            scrap1 = int(self.client.status.get("scrap", "0") or 0)
            ev.outcome = (
                f"scrap (+{scrap1 - scrap0})"
                if scrap1 > scrap0
                else ("retried" if self.state() in RUNNING else self.state())
            )
            self.recover(ev)
        elif k == "kill_welder":
            self.kill(WELDER)
            ev.actions.append("kill -9 welder driver")
            self.wait(lambda: self.state() in ("Aborted", "Held", "Stopped"), "Aborted (stale joint states)", 60)
            ev.outcome = self.state()
            t_restart = time.monotonic()
            self.restart(WELDER)
            ev.actions.append("restart welder driver")
            # as an operator would: see the driver report its health before clearing the cell
            self.wait(lambda: self.health_seen.get(WELDER, 0.0) > t_restart, "the restarted welder's health", 60)
            self.recover(ev)
        elif k == "kill_planner":
            interrupted = self.part() or self._last_part
            self.kill(self.planner_fqn)
            ev.actions.append("kill -9 planner")
            self.client.state = None
            self.client.status = {}
            self.restart(self.planner_fqn)
            ev.actions.append("restart planner")
            self.wait(lambda: self.state() is not None, "the restarted planner's state", 60)
            ev.outcome = f"{self.state()}"
            self.wait(lambda: bool(self.client.status.get("resume")), "the interrupted run in the status", 30)
            resume = self.client.status["resume"]
            ev.detail = f"resume: {resume}"
            # the part under way when it died (or the next one, if it had just been journalled as started)
            if not any(f"part {p} interrupted" in resume for p in (interrupted, interrupted + 1)):
                ev.error = f"expected part {interrupted} interrupted, status says {resume!r}"
            self.recover(ev)
        else:
            raise ValueError(f"unknown event {k}")

    def run_event(self, ev: Event) -> None:
        self.log(
            f"part {ev.part}: inject {ev.kind}{' on ' + ev.target if ev.target else ''}"
            f"{' (' + ev.detail + ')' if ev.detail else ''}"
        )
        t0 = self.now()
        try:
            self._run_event(ev)
        finally:
            ev.recovery_s = self.now() - t0
            self.pause(0.3)  # late fault life-cycle updates
            ev.faults = [f"{f['code']}@{f['source']}" for f in self.new_faults(t0)]
            ev.fault_keys = [key for key, f in self.diag_faults.items() if f["seen"] >= t0]
            self.events.append(ev)
        keys = ev.fault_keys
        try:
            self.wait(
                lambda: all(self.diag_faults[key]["cleared"] for key in keys) or self.state() == "Complete",
                "the event's faults to be cleared",
                10,
            )
        except SoakError:
            left = [
                f"{self.diag_faults[k]['code']}: {self.diag_faults[k]['message']}"
                for k in keys
                if not self.diag_faults[k]["cleared"]
            ]
            ev.error = f"back in {self.state()} but fault(s) left active: {'; '.join(left)}"
            self.note(f"{ev.kind} at part {ev.part}: {ev.error}")
        ev.recovered = self.state() in RUNNING and not ev.error
        self.log(
            f"  -> {ev.outcome}; faults {', '.join(ev.faults) or 'none'}; back in {self.state()} after "
            f"{ev.recovery_s:.1f} s ({'; '.join(ev.actions)})"
        )

    def schedule(self) -> list[Event]:
        """Random faults about every --fault-every parts, with the kills spread evenly among them."""
        n_every = self.args.fault_every
        if n_every <= 0:
            return []
        slots = []
        part = n_every
        while part <= self.args.parts - 2:
            slots.append(max(2, int(round(part + self.rng.uniform(-0.3, 0.3) * n_every))))
            part += n_every
        events = [Event(kind=self.rng.choice(FAULT_KINDS), part=p, target="", t_wall=0.0) for p in slots]
        kills = [k for _ in range(self.args.kills) for k in KILL_KINDS]
        for m, k in enumerate(kills):
            if not events:
                break
            i = min(len(events) - 1, round((m + 1) * len(events) / (len(kills) + 1)))
            events[i].kind = k
        for ev in events:
            if ev.kind in ("protective_stop", "estop"):
                ev.target = self.rng.choice(sorted(self.cfg.cobots))
            elif ev.kind == "io_fail":
                ev.target = "welder"
                ev.detail = self.rng.choice(("persistent", "transient"))
            elif ev.kind == "grip_miss":
                ev.target = "picker"
            elif ev.kind == "kill_welder":
                ev.target = "welder"
            elif ev.kind == "kill_planner":
                ev.target = "task_planner"
        return events

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        self.start()
        c = self.client
        self.wait(lambda: self.state() == "Stopped", "the planner (Stopped)", 90)
        self.wait(lambda: c.status.get("job") == self.job, "the planner's status", 30)
        schedule = self.schedule()
        self.log(f"{len(schedule)} events planned: " + ", ".join(f"{e.part}:{e.kind}" for e in schedule))
        self.t_run0 = time.monotonic()
        ev0 = Event("start", 0, "", self.now())
        ok, msg = self.command("reset", ev0)
        if not ok:
            raise SoakError(f"reset refused: {msg}")
        self.wait(lambda: self.state() == "Idle", "Idle", 30)
        ok, msg = self.command("start", ev0)
        if not ok:
            raise SoakError(f"start refused: {msg}")
        self.wait(lambda: self.state() == "Execute", "Execute", 60)
        self.sim_t0 = c.node.get_clock().now().nanoseconds * 1e-9
        self.wait(lambda: self.parts_done() >= 1, "the first part", 120)
        self.sample_rss(start=True)
        self.log(
            "first part done: RSS start sampled "
            + ", ".join(f"{i.fqn} {i.rss_start / 1024:.1f} MB" for i in self.incarnations if i.rss_start)
        )
        queue = list(schedule)
        next_rss = 50
        while self.state() != "Complete":
            self._check()
            c.spin_once(0.02)
            done = self.parts_done()
            c.change_full_pallet()  # the operator changes a full pallet as soon as the cell says so
            if self.part():
                self._last_part = self.part()
            if done != self._last_progress[0]:
                self._last_progress = (done, time.monotonic())
                if self.need_start_sample:
                    self.sample_rss(start=True, only=set(self.need_start_sample))
                    self.need_start_sample.clear()
                if done >= next_rss:
                    self.sample_rss()
                    self.log(
                        f"{done}/{self.args.parts} parts, scrap {c.status.get('scrap')}, "
                        f"sim t {c.node.get_clock().now().nanoseconds * 1e-9:.0f} s, RSS "
                        + ", ".join(
                            f"{i.fqn.split('/')[1]} {i.rss_end / 1024:.0f}"
                            for i in self.incarnations
                            if i.ended == "running" and i.rss_end
                        )
                        + " MB"
                    )
                    next_rss += 50
            elif self.state() == "Execute" and time.monotonic() - self._last_progress[1] > self.args.stall:
                # the planner waits for something that will not come: an operator holds and unholds
                ev = Event(
                    "unplanned", self.part(), "", self.now(), detail=f"stalled in Execute for {self.args.stall:g} s"
                )
                self.note(
                    f"part {ev.part}: no part finished for {self.args.stall:g} s in Execute "
                    f"(status {c.status}); hold + unhold"
                )
                t0 = self.now()
                try:
                    self.command("hold", ev)
                    self.wait(lambda: self.state() != "Execute", "Holding", 10)
                    self.recover(ev)
                finally:
                    ev.recovery_s = self.now() - t0
                    ev.faults = [f"{f['code']}@{f['source']}" for f in self.new_faults(t0)]
                    ev.fault_keys = [k for k, f in self.diag_faults.items() if f["seen"] >= t0]
                    ev.outcome = "stall"
                    ev.recovered = self.state() in RUNNING
                    self.events.append(ev)
                self._last_progress = (self.parts_done(), time.monotonic())
                continue
            st = self.state()
            if st not in ("Execute", "Complete"):
                if st in ("Completing",):
                    continue
                self.pause(0.2)
                if self.state() in RUNNING or self.state() == "Completing":
                    continue
                ev = Event(
                    "unplanned",
                    self.part() or self._last_part,
                    "",
                    self.now(),
                    detail=f"cell went {self.state()}: {c.status.get('fault', '')}",
                )
                self.log(f"UNPLANNED: part {ev.part}: {ev.detail}")
                t0 = self.now()
                try:
                    self.recover(ev)
                finally:
                    ev.recovery_s = self.now() - t0
                    ev.faults = [f"{f['code']}@{f['source']}" for f in self.new_faults(t0 - 5)]
                    ev.fault_keys = [k for k, f in self.diag_faults.items() if f["seen"] >= t0 - 5]
                    ev.outcome = ev.detail
                    ev.recovered = self.state() in RUNNING
                    self.events.append(ev)
                continue
            if queue and st == "Execute" and self.part() >= queue[0].part and self.parts_done() < self.part():
                ev = queue.pop(0)
                ev.part = self.part()
                ev.t_wall = self.now()
                if ev.kind == "grip_miss":
                    # the pick grips early in a part: inject as soon as the next part starts
                    current = self.part()
                    self.wait(
                        lambda current=current: self.part() > current or self.state() != "Execute", "the next part", 60
                    )
                else:
                    # somewhere into the part (a part takes about planned_cycle / rate wall seconds)
                    self.pause(self.rng.uniform(0.0, 0.8) * self.planned_cycle / self.args.rate)
                if self.state() != "Execute":
                    queue.insert(0, ev)
                    continue
                ev.part = self.part() or self._last_part
                self.run_event(ev)
                self._last_progress = (self.parts_done(), time.monotonic())
        self.t_run1 = time.monotonic()
        self.sim_t1 = c.node.get_clock().now().nanoseconds * 1e-9
        self.log(
            f"Complete: {self.parts_done()} parts in {self.t_run1 - self.t_run0:.1f} s wall; "
            f"{len(queue)} planned event(s) not reached"
        )
        self.wait(lambda: self._logged_parts() >= self.args.parts, "the supervisor to log every part", 60)
        self.pause(1.5)  # last fault updates to the supervisor
        self.sample_rss()

    def _logged_parts(self) -> int:
        if not self.db.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0) as db:
                return db.execute("SELECT COUNT(*) FROM parts WHERE cell = ?", (self.cell,)).fetchone()[0]
        except sqlite3.Error:
            return 0

    def stop(self) -> None:
        """Stop the nodes (SIGINT, then SIGKILL) and note how each ended."""
        for inc in self.incarnations:
            if inc.ended == "running":
                inc.ended = "stopped"
        self.close()


# ---------------------------------------------------------------------- checks and report
def check_ledger(journal: Path, db: Path, cell: str, parts: int) -> tuple[bool, list[str], dict]:
    """PASS when the journal ledger holds parts 1..N once each (done or scrap) and the production log matches."""
    problems: list[str] = []
    info: dict = {}
    if not journal.exists():
        return False, [f"no journal at {journal}"], info
    with sqlite3.connect(journal) as j:
        ledger = j.execute("SELECT run_id, part, status, reason FROM ledger ORDER BY run_id, part").fetchall()
        runs = j.execute("SELECT run_id, status FROM runs").fetchall()
    run_ids = sorted({r for r, _, _, _ in ledger})
    info["runs"] = runs
    if len(run_ids) != 1:
        problems.append(f"ledger has {len(run_ids)} runs: {run_ids}")
    part_list = [p for _, p, _, _ in ledger]
    counts = Counter(part_list)
    missing = sorted(set(range(1, parts + 1)) - set(part_list))
    extra = sorted(set(part_list) - set(range(1, parts + 1)))
    dup = sorted(p for p, n in counts.items() if n > 1)
    bad = [(p, s) for _, p, s, _ in ledger if s not in ("done", "scrap")]
    if missing:
        problems.append(f"ledger misses parts {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    if extra:
        problems.append(f"ledger has parts beyond {parts}: {extra[:20]}")
    if dup:
        problems.append(f"ledger has parts more than once: {dup[:20]}")
    if bad:
        problems.append(f"ledger parts neither done nor scrap: {bad[:20]}")
    info["ledger_status"] = dict(Counter(s for _, _, s, _ in ledger))
    info["scrap_parts"] = [(p, reason) for _, p, s, reason in ledger if s == "scrap"]
    if not db.exists():
        problems.append(f"no production log at {db}")
        return not problems, problems, info
    with sqlite3.connect(db) as d:
        logged = d.execute(
            "SELECT run_id, part, status FROM parts WHERE cell = ? ORDER BY run_id, part", (cell,)
        ).fetchall()
        info["supervisor_faults"] = d.execute(
            "SELECT code, COUNT(*), SUM(acknowledged IS NOT NULL), SUM(cleared IS NOT NULL) FROM faults "
            "WHERE cell = ? GROUP BY code ORDER BY code",
            (cell,),
        ).fetchall()
    lset = {(r, p, s) for r, p, s, _ in ledger}
    pset = set(logged)
    if lset != pset:
        only_l = sorted(lset - pset)
        only_p = sorted(pset - lset)
        problems.append(
            f"production log differs from the ledger: only in ledger {only_l[:10]}, "
            f"only in production log {only_p[:10]}"
        )
    info["logged_parts"] = len(logged)
    return not problems, problems, info


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def report(s: Soak, ok_ledger: bool, problems: list[str], info: dict, error: str | None, version: str = "") -> str:
    a = s.args
    lines = []
    w = lines.append
    rule = "-" * 96
    w(rule)
    w(
        f"SOAK  cell {s.cell} / job {s.job}   parts {a.parts}   rate {a.rate:g}x   fault every {a.fault_every}   "
        f"seed {a.seed}   kills {a.kills} each"
    )
    if version:
        w(f"code            {version}")
    w(rule)
    status = info.get("ledger_status", {})
    w(
        f"parts           done {status.get('done', 0)}   scrap {status.get('scrap', 0)}   "
        f"in_progress {status.get('in_progress', 0)}   (production log: {info.get('logged_parts', '-')} parts)"
    )
    if info.get("scrap_parts"):
        w("scrapped        " + ", ".join(f"{p}{' (' + r + ')' if r else ''}" for p, r in info["scrap_parts"][:30]))
    wall = (s.t_run1 or time.monotonic()) - (s.t_run0 or time.monotonic())
    sim = (s.sim_t1 or 0.0) - (s.sim_t0 or 0.0) if s.sim_t1 else math.nan
    w(
        f"time            wall {wall:.1f} s   sim {sim:.1f} s   speed-up {sim / wall if wall > 0 else math.nan:.1f}x "
        f"(sim rate {a.rate:g}x)   wall/part {wall / max(1, a.parts):.2f} s   "
        f"sim/part {sim / max(1, a.parts):.2f} s (planned {s.planned_cycle:.2f} s from home)"
    )
    w(rule)
    w(f"{'injected':<16}{'events':>7}{'raised':>8}{'recovered':>10}{'recov. s mean/max':>19}   outcomes / fault codes")
    kinds = list(FAULT_KINDS) + list(KILL_KINDS) + ["unplanned"]
    tot = [0, 0, 0]
    for k in kinds:
        evs = [e for e in s.events if e.kind == k]
        if not evs:
            continue
        raised = sum(1 for e in evs if e.faults)
        rec = sum(1 for e in evs if e.recovered)
        tot[0] += len(evs)
        tot[1] += raised
        tot[2] += rec
        rs = [e.recovery_s for e in evs if not math.isnan(e.recovery_s)]
        outcomes = Counter(e.outcome for e in evs)
        codes = Counter(f.split("@")[0] for e in evs for f in e.faults)
        w(
            f"{k:<16}{len(evs):>7}{raised:>8}{rec:>10}{(sum(rs) / len(rs) if rs else 0):>10.1f} /{max(rs or [0]):>6.1f}"
            f"   {', '.join(f'{o} x{n}' for o, n in outcomes.items())} | "
            f"{', '.join(f'{c} x{n}' for c, n in sorted(codes.items()))}"
        )
    w(f"{'total':<16}{tot[0]:>7}{tot[1]:>8}{tot[2]:>10}")
    diag = list(s.diag_faults.values())
    w(
        "faults (planner /diagnostics, by code): "
        + ", ".join(
            f"{code} {n}/{sum(1 for f in diag if f['code'] == code and f['cleared'])}"
            for code, n in sorted(Counter(f["code"] for f in diag).items())
        )
        + "   (raised/cleared)"
    )
    attributed = {k for e in s.events for k in e.fault_keys}
    stray = [f for k, f in s.diag_faults.items() if k not in attributed]
    w(f"faults outside injected events (retried or scrapped by policy, cell kept running): {len(stray)}")
    for f in stray:
        w(
            f"    at {f['seen']:.1f} s, part {f.get('part') or '?'}: {f['code']} on {f['source']}: {f['message'][:110]}"
            f"{'' if f['cleared'] else ' (NOT cleared)'}"
        )
    sup = info.get("supervisor_faults") or []
    w(
        "faults (supervisor table, by code):     "
        + ", ".join(f"{code} {n}/{int(cl or 0)}" for code, n, ack, cl in sup)
        + "   (raised/cleared)"
    )
    seen = s.client_faults_seen
    w(
        f"faults (CellClient.faults_seen):        {len(seen)} "
        + ("(" + ", ".join(f"{c} {n}" for c, n in sorted(Counter(c for c, _ in seen).items())) + ")" if seen else "")
    )
    w(rule)
    w(
        f"{'node process':<24}{'pid':>8}{'RSS start MB':>14}{'RSS end MB':>12}{'growth MB':>11}{'max MB':>9}"
        f"{'CPU s':>8}   ended"
    )
    for inc in s.incarnations:
        growth = "-" if inc.rss_start is None or inc.rss_end is None else f"{(inc.rss_end - inc.rss_start) / 1024:+.1f}"
        w(
            f"{inc.fqn:<24}{inc.pid:>8}{mb(inc.rss_start):>14}{mb(inc.rss_end):>12}{growth:>11}{mb(inc.rss_max):>9}"
            f"{(f'{inc.cpu_end:.0f}' if inc.cpu_end is not None else '-'):>8}   {inc.ended}"
        )
    w(rule)
    for n in s.notes:
        w(f"note: {n}")
    if error:
        w(f"SOAK ERROR: {error}")
    w(f"ledger check: {'PASS' if ok_ledger else 'FAIL'}" + ("" if ok_ledger else " - " + "; ".join(problems)))
    w(rule)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", type=int, default=1000, help="parts in the run (default 1000)")
    ap.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="sim rate (x real time). Default 25: on a 2-core host the highest at which the planner "
        "keeps up (sim time per part = cycle time); at 30-40 it falls behind the sim by more than "
        "the sequencer's MAX_BACKDATE and cycle times jump, and parts per wall second do not rise",
    )
    ap.add_argument("--fault-every", type=int, default=20, help="inject a fault about every N parts (0: none)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and timing")
    ap.add_argument("--out", default="", help="work dir: node logs, journal.db, production.db, summary.json")
    ap.add_argument("--cell", default=str(CELL_FILE), help="cell file (default bench/soak_cell.yaml)")
    ap.add_argument(
        "--kills",
        type=int,
        default=None,
        help="kill -9 + restart of the welder driver and of the planner, each this many times "
        "(default 1, 2 from 500 parts)",
    )
    ap.add_argument(
        "--deadline", type=float, default=None, help="wall seconds for the whole soak (default 300 + 2 s per part)"
    )
    ap.add_argument("--recover-timeout", type=float, default=120.0, help="wall seconds per recovery")
    ap.add_argument(
        "--stall", type=float, default=30.0, help="hold + unhold when no part finishes for this many wall s in Execute"
    )
    args = ap.parse_args(argv)
    if args.parts < 1 or args.rate <= 0:
        ap.error("--parts must be >= 1 and --rate > 0")
    if args.kills is None:
        args.kills = 2 if args.parts >= 500 else 1
    if args.deadline is None:
        args.deadline = 300.0 + 2.0 * args.parts
    if not args.out:
        import tempfile

        args.out = tempfile.mkdtemp(prefix="cobot_cell_soak_")
    return args


def code_version() -> str:
    """The commit the nodes run and the product files changed since (read-only git, no index refresh)."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", "-C", str(REPO), *a], capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--", "cobot_cell", "bench/soak_cell.yaml").splitlines()
        if len(line) > 3
    ]
    return f"HEAD {head}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]), flush=True)
    version = code_version()
    print(f"code: {version}", flush=True)
    s = Soak(args)
    error = None
    try:
        s.run()
    except (SoakError, TimeoutError) as exc:
        error = str(exc)
        s.log(f"SOAK ERROR: {error}")
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        if s.client is not None:
            s.client_faults_seen = list(s.client.faults_seen)
            s.sample_rss()
        s.stop()
    ok, problems, info = check_ledger(s.journal, s.db, s.cell, args.parts)
    text = report(s, ok, problems, info, error, version)
    print(text, flush=True)
    (s.out / "report.txt").write_text(text + "\n")
    (s.out / "events.json").write_text(json.dumps([asdict(e) for e in s.events], indent=1))
    (s.out / "summary.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "code": version,
                "ledger_pass": ok,
                "problems": problems,
                "error": error,
                "notes": s.notes,
                "incarnations": [asdict(i) for i in s.incarnations],
                "faults": s.diag_faults,
                "info": {k: v for k, v in info.items() if k != "runs"},
            },
            indent=1,
            default=str,
        )
    )
    all_recovered = all(e.recovered for e in s.events if e.kind != "unplanned")
    return 0 if ok and not error and all_recovered else 1


if __name__ == "__main__":
    raise SystemExit(main())
