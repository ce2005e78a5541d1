"""Follows many cells on one node for the plant bridges (OPC UA, MQTT): every update becomes an event.

A `CellFollower` is the operator client (`CellClient`) on a shared node that hands each state, status, cycle
report (once per run and part), fault update, KPI set, authority change and audit record to a callback
instead of keeping lists, so a bridge that runs for months does not grow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import String

from ..core.wire import decode_cycle
from .client import CellClient
from .common import key_values

logger = logging.getLogger(__name__)

# on_event(cell, kind, data): kind is state (str), status (dict), cycle (CycleReport), fault ((key, dict)),
# kpis (dict), authority (str) or audit (dict).
OnEvent = Callable[[str, str, Any], None]


class CellFollower(CellClient):
    """One cell followed on a shared node; updates go to `on_event`."""

    def __init__(self, cell: str, node: Node, on_event: OnEvent) -> None:
        self.on_event = on_event
        self._reported: set[tuple[str, int]] = set()
        super().__init__(cell, node=node)

    def _on_state(self, msg: String) -> None:
        super()._on_state(msg)
        self.on_event(self.cell, "state", msg.data)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        super()._on_status(msg)
        self.on_event(self.cell, "status", dict(self.status))

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        try:
            report = decode_cycle(key_values(msg))
        except ValueError as exc:
            logger.warning("bad cycle report of cell '%s' ignored: %s", self.cell, exc)
            return
        key = (report.run_id, report.part)
        if key in self._reported:
            return
        self._reported.add(key)
        self.on_event(self.cell, "cycle", report)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for key, kv in self._fault_updates(msg):
            self.faults[key] = kv
            self.on_event(self.cell, "fault", (key, kv))

    def _on_kpis(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.hardware_id == self.cell:
                self.kpis[st.hardware_id] = kv = dict(key_values(st))
                self.on_event(self.cell, "kpis", kv)

    def _on_authority(self, msg: String) -> None:
        super()._on_authority(msg)
        self.on_event(self.cell, "authority", msg.data)

    def _on_audit(self, msg: DiagnosticStatus) -> None:
        self.on_event(self.cell, "audit", dict(key_values(msg)))
