"""pendant_bridge: connects a teach pendant on a serial line (docs/pendant-protocol.md) to the cell's planner.

The session (cobot_cell.pendant.session: queue, timeouts, ERR rate limit, heartbeat watchdog, the mapping of
pendant commands to cell commands) decides; this node moves bytes and calls services. Pendant commands become
calls of the planner's std_srvs/Trigger services and `job`/`parts` parameter sets (asynchronous, replies from
done-callbacks); the planner's `state`, `status`, `cycle` topics and the cell's faults on `/diagnostics` are
passed to the session. The serial line lives in reader and writer threads (cobot_cell.pendant.transport) that
wake the executor through a guard condition, so no callback ever waits for the device. Run it in the cell's
namespace (`/<cell>`): all names are relative.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.client import Client
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import Trigger

from .. import __version__
from ..core.packml import Command
from ..core.wire import FaultUpdate, decode_cycle, decode_fault, decode_status, encode_fault
from ..pendant.protocol import PROTOCOL_VERSION
from ..pendant.session import CallResult, CellRequest, PendantFault, PendantSession, SessionParams
from ..pendant.transport import PARITIES, SerialTransport
from .common import LATCHED, STATE_CHANGES, key_values, level_name, level_of, route_core_logging, run_node, status_msg

# New cycle reports only: the planner's topic keeps 1000 for late joiners, the pendant wants live ones.
LIVE_REPORTS = QoSProfile(
    depth=50,
    durability=DurabilityPolicy.VOLATILE,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
)
TICK = 0.05


EXTRA_SERVICES = ("acknowledge", "reapproach", "pallet_changed", "parts_removed")


@dataclass(frozen=True)
class BridgeParams:
    """Parameters of the pendant_bridge node, read once at start."""

    port: str
    baud: int
    parity: str
    cell: str
    enabling_device: bool
    heartbeat_timeout: float
    heartbeat_period: float
    reconnect_min: float
    reconnect_max: float
    command_timeout: float
    frame_timeout: float
    error_rate: int


class PendantBridge(Node):
    """Bridges one serial teach pendant to the cell's planner."""

    def __init__(self) -> None:
        super().__init__("pendant_bridge")
        route_core_logging(self)
        d = self._declare
        self.params = BridgeParams(
            port=d(
                "port",
                "",
                "serial device or pyserial URL of the pendant, e.g. /dev/ttyUSB0, /dev/serial/by-id/..., a pty path",
            ),
            baud=d("baud", 115200, "baud rate"),
            parity=d("parity", "N", "parity: N (none), E (even) or O (odd); 8 data bits, 1 stop bit"),
            cell=d("cell", "", "cell name shown on the pendant (default: the node's namespace)"),
            enabling_device=d(
                "enabling_device",
                False,
                "the pendant is the cell's enabling device: hold the cell when its heartbeat is lost during Execute",
            ),
            heartbeat_timeout=d(
                "heartbeat_timeout", 1.0, "seconds without a valid frame that count as a lost pendant heartbeat"
            ),
            heartbeat_period=d("heartbeat_period", 0.5, "seconds between the bridge's own HB frames"),
            reconnect_min=d("reconnect_min", 0.2, "first delay (s) before reopening a lost device"),
            reconnect_max=d("reconnect_max", 5.0, "longest delay (s) between reopening attempts"),
            command_timeout=d("command_timeout", 5.0, "seconds to wait for the planner's reply to a command"),
            frame_timeout=d("frame_timeout", 1.0, "seconds after which a partial frame is dropped with ERR"),
            error_rate=d("error_rate", 20, "most ERR replies per second to malformed input (excess dropped)"),
        )
        p = self.params
        if not p.port:
            raise ValueError("parameter port: a serial device or URL is required")
        if p.parity not in PARITIES:
            raise ValueError(f"parameter parity: expected one of {', '.join(PARITIES)}, got {p.parity!r}")
        if p.baud <= 0:
            raise ValueError(f"parameter baud: must be > 0, got {p.baud}")
        for name in ("reconnect_min", "reconnect_max"):
            if getattr(p, name) <= 0:
                raise ValueError(f"parameter {name}: must be > 0, got {getattr(p, name)}")
        if p.reconnect_min > p.reconnect_max:
            raise ValueError("parameter reconnect_min: must not exceed reconnect_max")
        self.cell = p.cell or self.get_namespace().strip("/").split("/")[-1] or "cell"
        session_params = SessionParams(
            cell=self.cell,
            version=__version__,
            enabling_device=p.enabling_device,
            heartbeat_timeout=p.heartbeat_timeout,
            heartbeat_period=p.heartbeat_period,
            command_timeout=p.command_timeout,
            frame_timeout=p.frame_timeout,
            error_rate=p.error_rate,
        )

        self._triggers: dict[str, Client] = {
            name: self.create_client(Trigger, name) for name in [c.value for c in Command] + list(EXTRA_SERVICES)
        }
        self._set_params: Client = self.create_client(SetParameters, "task_planner/set_parameters")
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.session = PendantSession(
            session_params, self, time.monotonic, self._cell_time, session_id=os.urandom(4).hex()
        )
        self.create_subscription(String, "state", self._on_state, STATE_CHANGES)
        self.create_subscription(DiagnosticStatus, "status", self._on_status, LATCHED)
        self.create_subscription(DiagnosticStatus, "cycle", self._on_cycle, LIVE_REPORTS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._wake = self.create_guard_condition(self._on_link)
        self.create_timer(TICK, self.session.tick)
        self.transport = SerialTransport(
            p.port,
            p.baud,
            p.parity,
            notify=self._wake.trigger,
            reconnect_min=p.reconnect_min,
            reconnect_max=p.reconnect_max,
        ).start()
        self.get_logger().info(
            f"pendant bridge for cell '{self.cell}' on {p.port} ({p.baud} 8{p.parity}1), protocol "
            f"{PROTOCOL_VERSION}" + (", enabling device" if p.enabling_device else "")
        )

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def destroy_node(self) -> None:
        """Close the serial line, then the node."""
        self.transport.stop()
        super().destroy_node()

    @property
    def dropped_errors(self) -> int:
        """ERR replies to malformed input dropped by the rate limit so far."""
        return self.session.counters.dropped_errors

    def heartbeat_age(self) -> float:
        """Seconds since the last valid frame from the pendant (inf if none, or the device is gone)."""
        return self.session.heartbeat_age()

    def _cell_time(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ serial side
    def _on_link(self) -> None:
        for ev in self.transport.poll():
            if ev.kind == "data":
                self.session.received(ev.data)
            elif ev.kind == "open":
                self.session.opened()
            elif ev.kind == "closed":
                self.session.closed()

    # ------------------------------------------------------------------ CellLink for the session
    def write(self, data: bytes) -> None:
        """Send bytes to the pendant."""
        self.transport.write(data)

    def service_name(self, request: CellRequest) -> str:
        """The full name of the service a request calls."""
        client = self._set_params if request.parameter else self._triggers[request.service]
        return client.service_name

    def call(self, request: CellRequest, done: Callable[[CallResult], None]) -> object | None:
        """Call the request's service if it is available; (client, future), or None."""
        if request.parameter:
            client = self._set_params
            if isinstance(request.value, int):
                value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=request.value)
            else:
                value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=request.value)
            msg: Any = SetParameters.Request(parameters=[ParameterMsg(name=request.parameter, value=value)])
        else:
            client = self._triggers[request.service]
            msg = Trigger.Request()
        if not client.service_is_ready():
            return None
        future = client.call_async(msg)

        def answered(fut: Future) -> None:
            exc = fut.exception()
            resp: Any = None if exc is not None or fut.cancelled() else fut.result()
            if resp is None:
                done(CallResult(False, str(exc), failed=True))
            elif request.parameter:
                done(CallResult(resp.results[0].successful, resp.results[0].reason))
            else:
                done(CallResult(resp.success, resp.message))

        future.add_done_callback(answered)
        return client, future

    def cancel(self, handle: object) -> None:
        """Forget a call that timed out."""
        client, future = cast("tuple[Client, Future]", handle)  # what call() returned
        client.remove_pending_request(future)

    def hold(self) -> None:
        """Hold the cell."""
        client = self._triggers["hold"]
        if not client.service_is_ready():
            self.get_logger().error(f"cannot hold: {client.service_name} not available")
            return
        client.call_async(Trigger.Request()).add_done_callback(self._on_hold_done)

    def fault(self, fault: PendantFault) -> None:
        """Publish the session's fault update on /diagnostics, keyed, so the production log has it."""
        update = FaultUpdate(
            cell=self.cell,
            fault_key=fault.key,
            message=fault.message,
            raised=fault.raised,
            code=fault.code,
            source=fault.source,
            severity=fault.severity,
            cleared=fault.cleared,
        )
        arr = DiagnosticArray(
            status=[
                status_msg(
                    f"{self.cell}/pendant_bridge",
                    level_of(update.level),
                    fault.message,
                    encode_fault(update),
                    hardware_id=self.cell,
                )
            ]
        )
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def _on_hold_done(self, future: Future) -> None:
        resp = future.result() if future.exception() is None else None
        if resp is None or not resp.success:
            self.get_logger().error(f"hold on heartbeat loss refused: {resp.message if resp else future.exception()}")

    # ------------------------------------------------------------------ cell side
    def _on_state(self, msg: String) -> None:
        self.session.cell_state(msg.data)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            self.session.cell_status(decode_status(key_values(msg)))
        except ValueError as exc:
            self.get_logger().warning(f"status '{msg.name}' ignored: {exc}")

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        try:
            r = decode_cycle(key_values(msg))
        except ValueError as exc:
            self.get_logger().warning(f"cycle report '{msg.name}' ignored: {exc}")
            return
        self.session.cell_cycle(str(r.part), r.status, r.cycle_time, r.job, r.run_id)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            level = level_name(st.level)
            if level not in ("WARN", "ERROR"):
                continue
            kv = dict(key_values(st))
            if self.cell not in (kv.get("cell"), st.hardware_id) and not st.name.startswith(f"{self.cell}/"):
                continue
            try:
                update = decode_fault(kv, st.message, self.cell, st.name)
            except ValueError as exc:
                self.get_logger().warning(f"fault update '{st.name}' ignored: {exc}")
                continue
            if update is not None:
                self.session.cell_fault(level, (update.fault_key,), update.code, update.source, st.message)
            else:  # a driver's health status: no key, once per message
                key = (st.name, st.message, kv.get("time", ""))
                self.session.cell_fault(level, key, kv.get("code", ""), kv.get("source", st.name), st.message)


def main(args: list[str] | None = None) -> int:
    """Run the pendant_bridge node."""
    return run_node(PendantBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
