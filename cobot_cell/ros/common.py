"""Shared rclpy plumbing: QoS profiles, diagnostics conversions, logging bridge and the node main loop."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Latched topics (cell state): a late subscriber gets the last value.
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE,
                     history=HistoryPolicy.KEEP_LAST)
# Cell state: every change kept for a moment so a slow subscriber (the pendant) misses no transition;
# transient local, so a late subscriber gets the recent changes, the current state last.
STATE_CHANGES = QoSProfile(depth=20, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                           reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Cycle reports: reliable and kept for late joiners, so a supervisor started late still logs every part.
REPORTS = QoSProfile(depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
STATES = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

LEVELS = {b"\x00": "OK", b"\x01": "WARN", b"\x02": "ERROR", b"\x03": "STALE"}


def split_seconds(t: float) -> tuple[int, int]:
    """Seconds as (sec, nanosec) for builtin_interfaces Time/Duration, carrying a rounded-up second."""
    sec, nanosec = divmod(int(round(t * 1e9)), 1_000_000_000)
    return int(sec), int(nanosec)


def level_name(level: bytes | int) -> str:
    """'OK', 'WARN', 'ERROR' or 'STALE' for a DiagnosticStatus level."""
    if isinstance(level, int):
        level = bytes([level])
    return LEVELS.get(level, "UNKNOWN")


def status_msg(name: str, level: bytes, message: str, pairs: Sequence[tuple[str, str]],
               hardware_id: str = "") -> DiagnosticStatus:
    """Build a DiagnosticStatus from (key, value) strings."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in pairs])


def key_values(msg: DiagnosticStatus) -> list[tuple[str, str]]:
    """(key, value) strings of a DiagnosticStatus."""
    return [(kv.key, kv.value) for kv in msg.values]


class RosLogHandler(logging.Handler):
    """Routes the core's `logging` records to a node's ROS logger."""

    def __init__(self, node: Node):
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        msg = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(msg)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(msg)
        elif record.levelno >= logging.INFO:
            self._logger.info(msg)
        else:
            self._logger.debug(msg)


def route_core_logging(node: Node, level: int = logging.INFO) -> None:
    """Send the pure layers' log records (logger 'cobot_cell') to the node's logger."""
    root = logging.getLogger("cobot_cell")
    root.handlers[:] = [RosLogHandler(node)]
    root.setLevel(level)
    root.propagate = False


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None,
             spin: Callable[[Node], None] | None = None) -> int:
    """rclpy.init, spin one node on a single-threaded executor (or run `spin(node)`), and clean up on Ctrl-C or
    shutdown."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        if spin is not None:
            spin(node)
            return code
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad parameters or cell file: say why and exit 2
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code
