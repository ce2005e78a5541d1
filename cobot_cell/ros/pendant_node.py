"""pendant_bridge: connects a teach pendant on a serial line (docs/pendant-protocol.md) to the cell's planner.

Pendant commands become calls of the planner's std_srvs/Trigger services and `job`/`parts` parameter sets
(run one at a time, asynchronously, replies from done-callbacks); the planner's `state`, `status`, `cycle`
topics and the cell's faults on `/diagnostics` are pushed to the pendant. The serial line lives in reader and
writer threads (cobot_cell.pendant.transport) that wake the executor through a guard condition, so no
callback ever waits for the device. Run it in the cell's namespace (`/<cell>`): all names are relative.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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
from ..pendant.protocol import (
    BRIDGE_MESSAGES,
    PENDANT_MESSAGES,
    PROTOCOL_VERSION,
    Admit,
    Decoder,
    Frame,
    FrameError,
    Reason,
    SequenceGuard,
    encode_fitted,
    next_seq,
)
from ..pendant.transport import PARITIES, SerialTransport
from .common import LATCHED, STATE_CHANGES, key_values, level_name, route_core_logging, run_node, status_msg

# New cycle reports only: the planner's topic keeps 1000 for late joiners, the pendant wants live ones.
LIVE_REPORTS = QoSProfile(depth=50, durability=DurabilityPolicy.VOLATILE, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST)
MAX_QUEUED = 16
TICK = 0.05


def _word(text: str) -> str:
    """`text` as a protocol word (letters, digits, _ . : / -)."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "_", text)


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


@dataclass
class InFlight:
    """The command being executed: its frame, the call (None while the service is not yet available)."""

    frame: Frame
    client: Client
    request: object
    started: float
    on_result: Callable[[object], tuple[bool, str, Reason]]
    future: Future | None = None


class PendantBridge(Node):
    """Bridges one serial teach pendant to the cell's planner."""

    def __init__(self) -> None:
        super().__init__("pendant_bridge")
        route_core_logging(self)
        d = self._declare
        self.params = BridgeParams(
            port=d("port", "", "serial device or pyserial URL of the pendant, e.g. /dev/ttyUSB0, "
                               "/dev/serial/by-id/..., a pty path"),
            baud=d("baud", 115200, "baud rate"),
            parity=d("parity", "N", "parity: N (none), E (even) or O (odd); 8 data bits, 1 stop bit"),
            cell=d("cell", "", "cell name shown on the pendant (default: the node's namespace)"),
            enabling_device=d("enabling_device", False,
                              "the pendant is the cell's enabling device: hold the cell when its heartbeat is "
                              "lost during Execute"),
            heartbeat_timeout=d("heartbeat_timeout", 1.0, "seconds without a valid frame that count as a lost "
                                                          "pendant heartbeat"),
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
        for name in ("heartbeat_timeout", "heartbeat_period", "reconnect_min", "reconnect_max",
                     "command_timeout", "frame_timeout"):
            if getattr(p, name) <= 0:
                raise ValueError(f"parameter {name}: must be > 0, got {getattr(p, name)}")
        if p.reconnect_min > p.reconnect_max:
            raise ValueError("parameter reconnect_min: must not exceed reconnect_max")
        if p.error_rate < 1:
            raise ValueError(f"parameter error_rate: must be >= 1, got {p.error_rate}")
        self.cell = p.cell or self.get_namespace().strip("/").split("/")[-1] or "cell"

        self.decoder = Decoder(PENDANT_MESSAGES)
        self.guard = SequenceGuard()
        self.state: str | None = None
        self.status: dict[str, str] = {}
        self._out_seq = 0
        self._sent_stat: tuple[str, ...] | None = None
        self._queue: deque[Frame] = deque()
        self._inflight: InFlight | None = None
        self._last_rx = -math.inf   # monotonic time of the last valid frame (the heartbeat)
        self._last_byte = -math.inf
        self._next_hb = 0.0
        self._hold_at = -math.inf
        self._tokens = float(p.error_rate)
        self._tokens_at = time.monotonic()
        self.dropped_errors = 0
        self.busy_replies = 0
        self._reported_drops, self._reported_at = 0, -math.inf
        self._faults_seen: set[tuple[str, ...]] = set()

        self._triggers: dict[str, Client] = {name: self.create_client(Trigger, name)
                          for name in [c.value for c in Command] + ["acknowledge", "reapproach"]}
        self._set_params: Client = self.create_client(SetParameters, "task_planner/set_parameters")
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(String, "state", self._on_state, STATE_CHANGES)
        self.create_subscription(DiagnosticStatus, "status", self._on_status, LATCHED)
        self.create_subscription(DiagnosticStatus, "cycle", self._on_cycle, LIVE_REPORTS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._wake = self.create_guard_condition(self._on_link)
        self.create_timer(TICK, self._on_tick)
        self.transport = SerialTransport(p.port, p.baud, p.parity, notify=self._wake.trigger,
                                         reconnect_min=p.reconnect_min, reconnect_max=p.reconnect_max).start()
        self.get_logger().info(
            f"pendant bridge for cell '{self.cell}' on {p.port} ({p.baud} 8{p.parity}1), protocol "
            f"{PROTOCOL_VERSION}" + (", enabling device" if p.enabling_device else ""))

    def _declare(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def destroy_node(self) -> None:
        """Close the serial line, then the node."""
        self.transport.stop()
        super().destroy_node()

    # ------------------------------------------------------------------ serial side
    def _on_link(self) -> None:
        for ev in self.transport.poll():
            if ev.kind == "data":
                self._last_byte = time.monotonic()
                for result in self.decoder.feed(ev.data):
                    if isinstance(result, FrameError):
                        self._error(result.seq, result.reason, result.text)
                    else:
                        self._on_frame(result)
            elif ev.kind == "open":
                self.decoder.reset()
                self.guard.restart()
                self._next_hb = time.monotonic() + self.params.heartbeat_period
                self._send_hello()
            elif ev.kind == "closed":
                self.decoder.reset()
                self._last_rx = -math.inf  # no device, no heartbeat
                self._watchdog()

    def _on_frame(self, frame: Frame) -> None:
        self._last_rx = time.monotonic()
        kind = frame.kind
        if kind == "HB":
            return
        if kind == "HELLO":
            version = int(frame.args[0])
            if version != PROTOCOL_VERSION:
                self._error(frame.seq, Reason.VERSION,
                            f"protocol version {version} not supported: the bridge speaks {PROTOCOL_VERSION}")
                return
            self.guard.restart(frame.seq)
            device = frame.arg(1)
            self.get_logger().info(f"pendant HELLO{f' from {device!r}' if device else ''}")
            self._reply(frame.seq, True, f"cobot_cell pendant bridge {__version__} for cell {self.cell}")
            self._send_hello()
            return
        verdict, why = self.guard.admit(frame)
        if verdict is Admit.REPEAT:
            if self.guard.reply is not None:
                self.transport.write(self.guard.reply)
            return
        if verdict is Admit.STALE:
            self._error(frame.seq, Reason.SEQ, why)
            return
        if kind == "STATUS":
            self._reply(frame.seq, True, f"state {self.state or 'unknown'}")
            self._send_snapshot()
            return
        if len(self._queue) >= MAX_QUEUED:
            self.busy_replies += 1
            self._reply(frame.seq, False, f"{MAX_QUEUED} commands already waiting", Reason.BUSY)
            self.get_logger().warning(f"ERR BUSY to {kind} (seq {frame.seq}): {MAX_QUEUED} commands already waiting; "
                                      f"{self.busy_replies} BUSY replies so far", throttle_duration_sec=1.0)
            return
        self._queue.append(frame)
        self._run_queue()

    def _send(self, seq: int | None, kind: str, *args: str) -> bytes | None:
        if seq is None:
            self._out_seq = next_seq(self._out_seq)
            seq = self._out_seq
        try:
            data = encode_fitted(Frame(seq, kind, tuple(args)), BRIDGE_MESSAGES)
        except ValueError as exc:
            self.get_logger().error(f"cannot encode {kind} frame: {exc}")
            return None
        self.transport.write(data)
        return data

    def _reply(self, seq: int, ok: bool, text: str, reason: Reason = Reason.REFUSED) -> None:
        """Answer an admitted command (the answer is kept to resend on a retransmission)."""
        data = self._send(seq, "OK", text) if ok else self._send(seq, "ERR", reason.value, text)
        if data is not None:
            self.guard.answered(seq, data)

    def _error(self, seq: int, reason: Reason, text: str) -> None:
        """Answer input that was not admitted (rate-limited; never replaces the last command's answer)."""
        now = time.monotonic()
        rate = self.params.error_rate
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            self.dropped_errors += 1
            return
        self._tokens -= 1
        self._send(seq, "ERR", reason.value, text)

    def _send_hello(self) -> None:
        self._send(None, "HELLO", str(PROTOCOL_VERSION), self.cell, __version__)
        self._send_snapshot()

    def _send_snapshot(self) -> None:
        if self.state is not None:
            self._send(None, "STATE", self.state)
        self._send_stat(force=True)

    def _send_stat(self, force: bool = False) -> None:
        s = self.status
        if not s:
            return
        ack = {"true": "1", "false": "0"}.get(s.get("fault_acknowledged", ""), "")
        fields = (s.get("state", self.state or ""), s.get("job", ""), s.get("parts_done", "0"),
                  s.get("parts", "0"), s.get("part", ""), s.get("last_cycle_time", ""),
                  _word(s.get("fault_code", "")), ack, s.get("fault", ""))
        if force or fields != self._sent_stat:
            self._sent_stat = fields
            self._send(None, "STAT", *fields)

    # ------------------------------------------------------------------ commands
    def _run_queue(self) -> None:
        while self._inflight is None and self._queue:
            self._start(self._queue.popleft())

    def _start(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == "JOB":
            self._set_parameter(frame, "job", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                             string_value=frame.args[0]))
        elif kind == "PARTS":
            self._set_parameter(frame, "parts", ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                                               integer_value=int(frame.args[0])))
        elif kind == "RESUME":
            service = {"Held": "unhold", "Suspended": "unsuspend"}.get(self.state or "")
            if service is None:
                self._reply(frame.seq, False, f"nothing to resume in state {self.state or 'unknown'}: "
                                              "RESUME works in Held or Suspended")
            else:
                self._call(frame, service)
        elif kind == "ACK":
            self._call(frame, "acknowledge", refused=Reason.NOFAULT)
        else:
            self._call(frame, kind.lower())

    def _dispatch(self, frame: Frame, client: Client, request,
                  on_result: Callable[[object], tuple[bool, str, Reason]]) -> None:
        self._inflight = InFlight(frame, client, request, time.monotonic(), on_result)
        self._try_call(self._inflight)

    def _try_call(self, job: InFlight) -> None:
        """Call the service if it is available (else the tick retries until command_timeout)."""
        if job.future is None and job.client.service_is_ready():
            job.future = job.client.call_async(job.request)
            job.future.add_done_callback(functools.partial(self._on_done, job))

    def _call(self, frame: Frame, service: str, refused: Reason = Reason.REFUSED) -> None:
        def result(resp) -> tuple[bool, str, Reason]:
            return resp.success, resp.message, refused

        self._dispatch(frame, self._triggers[service], Trigger.Request(), result)

    def _set_parameter(self, frame: Frame, name: str, value: ParameterValue) -> None:
        shown = value.string_value if value.type == ParameterType.PARAMETER_STRING else value.integer_value

        def result(resp) -> tuple[bool, str, Reason]:
            r = resp.results[0]
            return (True, f"{name} {shown}", Reason.REFUSED) if r.successful else (False, r.reason, Reason.REFUSED)

        self._dispatch(frame, self._set_params,
                       SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)]), result)

    def _on_done(self, job: InFlight, future: Future) -> None:
        if self._inflight is not job:
            return  # timed out and answered already
        self._inflight = None
        exc = future.exception()
        if exc is not None or future.cancelled():
            self._reply(job.frame.seq, False, f"call failed: {exc}", Reason.UNAVAILABLE)
        else:
            ok, text, reason = job.on_result(future.result())
            self._reply(job.frame.seq, ok, text, reason)
        self._run_queue()

    # ------------------------------------------------------------------ cell side
    def _on_state(self, msg: String) -> None:
        self.state = msg.data
        self._send(None, "STATE", msg.data)
        self._watchdog()

    def _on_status(self, msg: DiagnosticStatus) -> None:
        self.status = dict(key_values(msg))
        self._send_stat()

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        kv = dict(key_values(msg))
        try:
            cycle = f"{float(kv.get('cycle_time', '')):.3f}"
        except ValueError:
            cycle = ""
        self._send(None, "CYCLE", kv.get("part", "0"), kv.get("status", "done"), cycle or "0",
                   kv.get("job", ""), kv.get("run_id", ""))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            level = level_name(st.level)
            if level not in ("WARN", "ERROR"):
                continue
            kv = dict(key_values(st))
            if self.cell not in (kv.get("cell"), st.hardware_id) and not st.name.startswith(f"{self.cell}/"):
                continue
            # once per fault: later updates of the same fault (acknowledged, cleared) reach the pendant in STAT
            key = (kv["fault_key"],) if "fault_key" in kv else (st.name, st.message, kv.get("time", ""))
            if key in self._faults_seen:
                continue
            self._faults_seen.add(key)
            self._send(None, "FAULT", level, _word(kv.get("code", "")), kv.get("source", st.name), st.message)

    # ------------------------------------------------------------------ timers
    def _on_tick(self) -> None:
        now = time.monotonic()
        if self.decoder.partial and now - self._last_byte > self.params.frame_timeout:
            err = self.decoder.expire()
            if err is not None:
                self._error(err.seq, err.reason, err.text)
        job = self._inflight
        if job is not None and job.future is None:
            self._try_call(job)
        if job is not None and self._inflight is job and now - job.started > self.params.command_timeout:
            self._inflight = None
            if job.future is None:
                text = f"planner service {job.client.service_name} not available"
            else:
                job.client.remove_pending_request(job.future)
                text = f"no reply from {job.client.service_name} within {self.params.command_timeout:g} s"
            self._reply(job.frame.seq, False, text, Reason.UNAVAILABLE)
            self._run_queue()
        if self.transport.connected and now >= self._next_hb:
            self._next_hb = now + self.params.heartbeat_period
            self._send(None, "HB")
        if self.dropped_errors != self._reported_drops and now - self._reported_at > 5.0:
            self._reported_drops, self._reported_at = self.dropped_errors, now
            self.get_logger().warning(f"{self.dropped_errors} ERR replies to malformed input dropped so far "
                                      f"(more than {self.params.error_rate}/s)")
        self._watchdog()

    def heartbeat_age(self) -> float:
        """Seconds since the last valid frame from the pendant (inf if none, or the device is gone)."""
        return time.monotonic() - self._last_rx

    def _watchdog(self) -> None:
        p = self.params
        if not p.enabling_device or self.state != "Execute":
            return
        age = self.heartbeat_age()
        now = time.monotonic()
        if age <= p.heartbeat_timeout or now - self._hold_at < p.heartbeat_timeout:
            return
        self._hold_at = now
        why = "no pendant connected" if not self.transport.connected else \
            "no frame from the pendant yet" if math.isinf(age) else f"no frame from the pendant for {age:.2f} s"
        text = f"pendant heartbeat lost ({why}): holding the cell"
        self.get_logger().warning(text)
        arr = DiagnosticArray(status=[status_msg(
            f"{self.cell}/pendant_bridge", DiagnosticStatus.WARN, text,
            [("cell", self.cell), ("code", "HEARTBEAT_LOST"), ("source", "pendant_bridge"),
             ("time", repr(self.get_clock().now().nanoseconds * 1e-9))], hardware_id=self.cell)])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)
        client = self._triggers["hold"]
        if not client.service_is_ready():
            self.get_logger().error(f"cannot hold: {client.service_name} not available")
            return
        client.call_async(Trigger.Request()).add_done_callback(self._on_hold_done)

    def _on_hold_done(self, future: Future) -> None:
        resp = future.result() if future.exception() is None else None
        if resp is None or not resp.success:
            self.get_logger().error(f"hold on heartbeat loss refused: "
                                    f"{resp.message if resp else future.exception()}")


def main(args=None) -> int:
    """Run the pendant_bridge node."""
    return run_node(PendantBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
