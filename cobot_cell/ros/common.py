"""Shared rclpy plumbing: QoS profiles, diagnostics conversions, logging bridge and the node main loop."""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

N = TypeVar("N", bound=Node)  # the node class run_node builds and spins

# Latched topics (cell state): a late subscriber gets the last value.
LATCHED = QoSProfile(
    depth=1,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
)
# Cell state: every change kept for a moment so a slow subscriber (the pendant) misses no transition;
# transient local, so a late subscriber gets the recent changes, the current state last.
STATE_CHANGES = QoSProfile(
    depth=20,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
)
# Cycle reports: reliable and kept for late joiners, so a supervisor started late still logs every part.
REPORTS = QoSProfile(
    depth=1000,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
)
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


def level_of(name: str) -> bytes:
    """The DiagnosticStatus level byte of 'OK', 'WARN', 'ERROR' or 'STALE'."""
    for byte, known in LEVELS.items():
        if known == name:
            return byte
    raise ValueError(f"unknown diagnostic level {name!r}: expected one of {', '.join(LEVELS.values())}")


def status_msg(
    name: str, level: bytes, message: str, pairs: Sequence[tuple[str, str]], hardware_id: str = ""
) -> DiagnosticStatus:
    """Build a DiagnosticStatus from (key, value) strings."""
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in pairs],
    )


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


class _StopSignals:
    """SIGINT and SIGTERM in a node process, handled once.

    rclpy.init installs its own handler over these and calls them after it: rclpy's shuts the context down,
    which ends the spin (ExternalShutdownException); this one only notes the request and ignores every later
    signal, so a second Ctrl-C (a terminal and `ros2 launch` each send one) never interrupts the clean-up with a
    KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        self.requested = True
        self.ignore()

    @staticmethod
    def ignore(final: bool = False) -> None:
        """Later signals do nothing. While the node shuts down, a Python no-op (a signal already pending must
        still find a handler, or Python reports it ignored 'due to race condition'); once it is done, SIG_IGN,
        because Python's finalisation puts back the default action (a signal then would end the process
        with -2 instead of 0)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN if final else _ignore)


def _ignore(signum: int, frame) -> None:
    """A stop signal after the first: nothing to do."""


def _end_with_runner() -> None:
    """Under `cobot-cell up`/`demo` (COBOT_CELL_RUNNER_PID set): get SIGTERM when the runner dies, even by
    SIGKILL, so no node outlives it (Linux's parent-death signal)."""
    from .processes import RUNNER_PID_VAR

    runner = os.environ.get(RUNNER_PID_VAR, "")
    if not runner.isdigit() or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != int(runner):  # the runner died before the call
        os.kill(os.getpid(), signal.SIGTERM)


class StartError(ValueError):
    """A configuration problem a node finds after its construction, while its `spin` sets up (a server that
    cannot listen on its endpoint): run_node ends with exit 2 and the message, like a bad parameter."""


def spin_once_alive(executor: SingleThreadedExecutor, timeout: float) -> bool:
    """Spin `executor` once from a thread of its own; False once its context is shut down. A signal can shut the
    context down between a check and the spin, and the spin then fails creating its timer: that is the shutdown."""
    context = executor.context
    try:
        executor.spin_once(timeout_sec=timeout)
    except ExternalShutdownException:
        return False
    except Exception:
        if rclpy.ok(context=context):
            raise
        return False
    return rclpy.ok(context=context)


class JointReader:
    """An arm's joint positions out of joint_states messages: its joints by name, in any order and among others
    (the columns found are kept for the next message)."""

    def __init__(self, joints: Sequence[str]) -> None:
        self.joints = list(joints)
        self._cols: list[int] | None = None

    def read(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray | None:
        """The positions in the arm's joint order, or None for a message without its joints or with fewer
        positions than names (malformed)."""
        cols = self._cols
        if cols is None or max(cols) >= len(names) or any(names[c] != j for c, j in zip(cols, self.joints)):
            try:
                cols = self._cols = [list(names).index(j) for j in self.joints]
            except ValueError:
                return None
        if len(positions) <= max(cols):
            return None
        return np.array([positions[c] for c in cols], dtype=float)


def run_node(
    factory: Callable[[], N], args: Sequence[str] | None = None, spin: Callable[[N], None] | None = None
) -> int:
    """rclpy.init, spin one node on a single-threaded executor (or run `spin(node)`), and clean up on Ctrl-C,
    SIGTERM or shutdown. A ValueError from `factory` (bad parameters or cell file) or a StartError ends with exit 2
    and "error: <reason>"; any other error while spinning, a ValueError in a callback too, with its traceback."""
    _end_with_runner()
    # a node that hangs can be asked where: SIGUSR1 writes every thread's stack to stderr (its log), as
    # NodeSet.stop does before it kills a node that did not stop
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    stop = _StopSignals()
    stop.install()  # before rclpy.init, which chains its handler to these
    rclpy.init(args=None if args is None else list(args))
    node = None
    code = 0
    try:
        executor = SingleThreadedExecutor()  # first: it cannot be built once a signal has shut rclpy down
        try:
            node = factory()
        except ValueError as exc:  # bad parameters or cell file: say why and exit 2
            if not stop.requested:
                print(f"error: {exc}", file=sys.stderr)
                code = 2
            return code
        # from here on a ValueError is a defect in a callback, not bad configuration: it ends with a traceback
        if spin is not None:
            if not stop.requested:
                spin(node)
            return code
        executor.add_node(node)
        if not stop.requested:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartError as exc:
        if not stop.requested:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
    except Exception:
        if not stop.requested and rclpy.ok():
            raise
        # stopped while starting or inside a callback: rclpy's signal handler shuts the context down at once
        # (before this process's handler has run), so creating or using an entity fails: it is the shutdown
    finally:
        stop.ignore()  # shutting down: nothing may interrupt the clean-up now
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
        stop.ignore(final=True)  # also replaces what rclpy's shutdown put back
    return code
