"""supervisor: logs every part and fault of any number of cells to SQLite and publishes KPIs.

It finds cells by their `<cell>/cycle` topics (diagnostic_msgs/DiagnosticStatus cycle reports, reliable and
transient-local, so a late supervisor still receives the parts already made), records the planners' fault
life-cycle updates from `/diagnostics` (statuses carrying a `fault_key`; driver health statuses are left out, the
planner already turns them into faults and recording both would count a failure twice), and publishes per-cell
KPIs on `~/kpis` (diagnostic_msgs/DiagnosticArray, transient-local).

Callbacks only parse and queue: a writer thread takes everything queued since its last write and writes it in one
transaction, in arrival order, so a slow disk (SQLite commits are fsynced) never stops the node from draining its
DDS readers. KPIs are kept per cell incrementally (each part and fault update is added as it is written; the log
is read once, at start) and published on their own timer, only for cells that changed.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from ..core.reports import CycleReport
from ..core.wire import FaultUpdate, decode_cycle, decode_fault
from ..plant.authority import AuditRecord
from ..supervisor.kpi import KpiAccumulator
from ..supervisor.log import ProductionLog
from ..supervisor.tally import Tally
from .common import LATCHED, REPORTS, key_values, route_core_logging, run_node, status_msg

CYCLE_TYPE = "diagnostic_msgs/msg/DiagnosticStatus"
MAX_BATCH = 2000  # records per transaction of the writer thread
_STOP = object()  # tells the writer thread to finish


@dataclass(frozen=True)
class SupervisorParams:
    """Parameters of the supervisor node."""

    db: str
    cells: tuple[str, ...]
    discovery_period: float
    kpi_period: float
    ideal_cycle_time: float


def fault_update(msg: DiagnosticStatus) -> FaultUpdate | None:
    """The fault update a status carries (cobot_cell.core.wire); None if it has no fault_key; ValueError if
    malformed."""
    return decode_fault(
        key_values(msg), msg.message, cell=msg.hardware_id or msg.name.strip("/").split("/")[0], source=msg.name
    )


@dataclass(frozen=True)
class PlannerBoot:
    """A cell's planner started (boot id); faults of its dead predecessors close at `last_alive`."""

    cell: str
    boot: str
    last_alive: float | None

    @classmethod
    def from_status(cls, msg: DiagnosticStatus) -> PlannerBoot | None:
        """The boot announcement in a planner status; None if it is not one; ValueError if malformed."""
        kv = dict(key_values(msg))
        if not msg.name.endswith("/task_planner/boot") or "boot" not in kv:
            return None
        raw = kv.get("last_alive", "")
        try:
            alive = float(raw) if raw else None
        except ValueError:
            raise ValueError(f"planner boot {kv['boot']}: last_alive is not a number: {raw!r}") from None
        return cls(cell=kv.get("cell") or msg.hardware_id, boot=kv["boot"], last_alive=alive)


class SupervisorNode(Node):
    """Production log and KPIs for every cell on the ROS graph."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("supervisor", **node_kwargs)
        route_core_logging(self)
        d = self._declare
        self.params = SupervisorParams(
            db=d("db", "production.db", "SQLite production log path"),
            cells=tuple(c for c in d("cells", [""], "cells to follow at once (others are discovered)") if c),
            discovery_period=d("discovery_period", 0.5, "seconds (wall) between looks for new cell topics"),
            kpi_period=d("kpi_period", 1.0, "seconds (wall) between KPI publications"),
            ideal_cycle_time=d(
                "ideal_cycle_time",
                0.0,
                "ideal cycle time of a part in clock seconds, for OEE performance (0 = unknown)",
            ),
        )
        ict = self.params.ideal_cycle_time
        if not (math.isfinite(ict) and ict >= 0.0):
            raise ValueError(f"ideal_cycle_time must be >= 0 s (0 = unknown), got {ict!r}")
        self.log = ProductionLog(self.params.db)
        self._acc: dict[str, KpiAccumulator] = {}  # per-cell KPIs, written by the writer thread
        self._acc_lock = threading.Lock()
        self._queue: queue.SimpleQueue[CycleReport | FaultUpdate | object] = queue.SimpleQueue()
        self._idle = threading.Condition()  # notified after each write; guards _queued, _written and _dirty
        self._queued = 0  # records put on the queue
        self._written = 0  # records the writer has dealt with (logged or refused)
        self._dirty: set[str] = set()  # cells whose KPIs are out of date
        self._bounds: dict[str, float] = {}  # cell -> its takt bound, from its latest cycle report
        self._load_kpis()
        self._subscribed: set[str] = set()
        self._kpi_status: dict[str, DiagnosticStatus] = {}
        self.cells: set[str] = set()
        # the executor's callbacks and the writer thread both count refusals
        self.counts = Tally("received", "rejected", "faults_rejected")
        self.kpi_pub = self.create_publisher(DiagnosticArray, "~/kpis", LATCHED)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        for cell in self.params.cells:
            self._follow(f"/{cell}/cycle")
            self._follow_audit(f"/{cell}/audit")
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.params.discovery_period, self._discover, clock=steady)
        self.create_timer(self.params.kpi_period, self._publish_kpis, clock=steady)
        self._writer = threading.Thread(target=self._write_loop, name="production-log-writer", daemon=True)
        self._writer.start()
        self._discover()
        self.get_logger().info(f"supervisor logging to {self.params.db}")

    @property
    def received(self) -> int:
        """Cycle reports received."""
        return self.counts["received"]

    @property
    def rejected(self) -> int:
        """Cycle reports refused (malformed, or refused by the log)."""
        return self.counts["rejected"]

    @property
    def faults_rejected(self) -> int:
        """Fault updates refused (malformed, or refused by the log)."""
        return self.counts["faults_rejected"]

    def _load_kpis(self) -> None:
        """Start the per-cell KPIs from what the log already holds (the only full read of it)."""
        for r in self.log.parts(with_steps=False):
            self._cell_kpis(r.cell).add_report(r)
        for f in self.log.faults():
            self._cell_kpis(f.cell).set_fault(f)
        self._dirty |= set(self._acc)

    def _cell_kpis(self, cell: str) -> KpiAccumulator:
        with self._acc_lock:
            return self._acc.setdefault(cell, KpiAccumulator())

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _follow(self, topic: str) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        self.create_subscription(DiagnosticStatus, topic, self._on_cycle, REPORTS)
        self.get_logger().info(f"following cycle reports on {topic}")
        # the cell's fault updates, transient local: those raised before this supervisor came up arrive too
        self._subscribed.add(topic.removesuffix("/cycle") + "/faults")
        self.create_subscription(
            DiagnosticStatus, topic.removesuffix("/cycle") + "/faults", self._on_fault_status, REPORTS
        )

    def _follow_audit(self, topic: str) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        self.create_subscription(DiagnosticStatus, topic, self._on_audit, REPORTS)

    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name.endswith("/cycle") and CYCLE_TYPE in types:
                self._follow(name)
            elif name.endswith("/audit") and CYCLE_TYPE in types:
                self._follow_audit(name)

    def _on_audit(self, msg: DiagnosticStatus) -> None:
        try:
            record = AuditRecord.from_key_values(key_values(msg))
        except ValueError as exc:
            self.get_logger().warning(f"bad audit record '{msg.name}' ignored: {exc}")
            return
        self._put(record)

    def _on_fault_status(self, msg: DiagnosticStatus) -> None:
        try:
            record = PlannerBoot.from_status(msg) or fault_update(msg)
        except ValueError as exc:
            self.counts.add("faults_rejected")
            self.get_logger().warning(f"bad fault status '{msg.name}' ignored: {exc}")
            return
        if record is not None:
            self._put(record)

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        self.counts.add("received")
        try:
            report = decode_cycle(key_values(msg))
        except ValueError as exc:
            self.counts.add("rejected")
            self.get_logger().warning(f"bad cycle report '{msg.name}' ignored: {exc}")
            return
        self.cells.add(report.cell)
        if report.bound is not None and report.bound > 0:
            self._bounds[report.cell] = report.bound
        self._put(report)

    def _put(self, record: CycleReport | FaultUpdate | PlannerBoot | AuditRecord) -> None:
        with self._idle:
            self._queued += 1
        self._queue.put(record)

    def _write_loop(self) -> None:
        """Writer thread: write whatever is queued, a transaction per run of cycle reports, until told to stop."""
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is _STOP for r in batch)
            records = [r for r in batch if r is not _STOP]
            try:
                dirty = self._write(records)
            except Exception as exc:  # noqa: BLE001 - a failing disk must not end the thread silently
                self.get_logger().error(f"writing {len(records)} records to {self.params.db} failed: {exc}")
                dirty = set()
            with self._idle:
                self._written += len(records)
                self._dirty |= dirty
                self._idle.notify_all()
            if stop:
                return

    def _write(self, records: list) -> set[str]:
        """Write records in arrival order; the cells whose KPIs changed."""
        dirty: set[str] = set()
        run: list[CycleReport] = []
        for r in records + [None]:
            if isinstance(r, CycleReport):
                run.append(r)
                continue
            if run:
                dirty |= self._write_cycles(run)
                run = []
            if isinstance(r, FaultUpdate) and self._write_fault(r):
                dirty.add(r.cell)
            if isinstance(r, PlannerBoot) and r.last_alive is not None:
                closed = self.log.close_orphaned_faults(r.cell, r.boot, r.last_alive)
                if closed:
                    self.get_logger().warning(
                        f"cell {r.cell}: {closed} fault(s) left open by a planner that died "
                        f"closed at {r.last_alive:.3f}"
                    )
                    acc = self._cell_kpis(r.cell)
                    faults = self.log.faults(cell=r.cell)  # a planner start is rare: one read of its faults
                    with self._acc_lock:
                        for f in faults:
                            acc.set_fault(f)
                    dirty.add(r.cell)
            elif isinstance(r, AuditRecord):
                try:
                    self.log.record_audits([r])
                except ValueError as exc:
                    self.get_logger().warning(f"audit record refused: {exc}")
        return dirty

    def _write_cycles(self, batch: list[CycleReport]) -> set[str]:
        logged = batch
        try:
            self.log.record_cycles(batch)
        except ValueError as exc:  # one bad report: keep the others
            self.get_logger().warning(f"batch refused ({exc}); writing one by one")
            logged = []
            for r in batch:
                try:
                    self.log.record_cycle(r)
                    logged.append(r)
                except ValueError as one:
                    self.counts.add("rejected")
                    self.get_logger().warning(f"cycle report refused: {one}")
        for r in logged:  # a part already logged is not counted twice
            acc = self._cell_kpis(r.cell)
            with self._acc_lock:
                acc.add_report(r)
        return {r.cell for r in batch}

    def _write_fault(self, f: FaultUpdate) -> bool:
        # in arrival order: a later update only fills what an earlier one left unset
        try:
            fault_id = self.log.record_fault(
                f.cell,
                f.raised,
                f.severity,
                f.source,
                f.code,
                f.message,
                fault_key=f.fault_key,
                acknowledged=f.acknowledged,
                cleared=f.cleared,
            )
        except ValueError as exc:
            self.counts.add("faults_rejected")
            self.get_logger().warning(f"fault {f.fault_key} refused: {exc}")
            return False
        acc = self._cell_kpis(f.cell)
        with self._acc_lock:
            acc.update_fault(
                fault_id,
                f.cell,
                f.raised,
                f.severity,
                f.source,
                f.code,
                f.message,
                f.fault_key,
                f.acknowledged,
                f.cleared,
            )
        self.cells.add(f.cell)
        return True

    def wait_written(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is written (or refused); False on timeout."""
        with self._idle:
            target = self._queued
            return self._idle.wait_for(lambda: self._written >= target, timeout)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            try:
                update = fault_update(st)
            except ValueError as exc:
                self.counts.add("faults_rejected")
                self.get_logger().warning(f"bad fault status '{st.name}' ignored: {exc}")
                continue
            # The status level follows the life cycle (raised, acknowledged, cleared); the log keeps the fault's
            # severity, whichever update is seen first.
            if update is not None:
                self._put(update)

    def _publish_kpis(self) -> None:
        with self._idle:
            dirty, self._dirty = self._dirty, set()
        for cell in sorted(dirty):
            acc = self._cell_kpis(cell)
            # the ideal cycle: the parameter if set, else the cell's own takt bound (its planner sends it)
            ict = self.params.ideal_cycle_time or self._bounds.get(cell)
            with self._acc_lock:
                k = acc.kpis(ict)
            pairs = [(name, "nan" if math.isnan(v) else f"{v:g}") for name, v in k.items()]
            self._kpi_status[cell] = status_msg(
                f"{cell}/kpis", DiagnosticStatus.OK, f"{int(k['parts'])} parts", pairs, hardware_id=cell
            )
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [self._kpi_status[cell] for cell in sorted(self._kpi_status)]
        self.kpi_pub.publish(arr)

    def destroy_node(self) -> None:
        """Write what is queued, then close the log."""
        self._queue.put(_STOP)
        self._writer.join()
        self.log.close()
        super().destroy_node()


def main(args=None) -> int:
    """Run the supervisor node."""
    return run_node(SupervisorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
