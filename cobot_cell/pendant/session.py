"""The pendant bridge's session with one teach pendant, without ROS: what it decides, on injected clocks.

It decodes the bytes from the serial line, admits or refuses frames (sequence numbers, versions), maps pendant
commands to cell commands (`cell_request`) and runs them one at a time from a bounded queue with a timeout,
rate-limits its ERR replies to malformed input, sends heartbeats and the cell's state, status, cycles and
faults to the pendant, and watches the pendant's heartbeat when it is the cell's enabling device (holding the
cell and raising a HEARTBEAT_LOST fault when it is lost during Execute). The adapter (ros/pendant_node.py)
moves bytes and calls services through a `CellLink`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .protocol import (
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

logger = logging.getLogger(__name__)

HEARTBEAT_LOST = "HEARTBEAT_LOST"
SOURCE = "pendant_bridge"
RESUME_SERVICES = {"Held": "unhold", "Suspended": "unsuspend"}


def word(text: str) -> str:
    """`text` as a protocol word (letters, digits, _ . : / -)."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "_", text)


@dataclass(frozen=True)
class SessionParams:
    """How the session behaves (the pendant_bridge node's parameters); times in wall seconds."""

    cell: str
    version: str = ""  # the bridge's version, in its HELLO
    enabling_device: bool = False  # hold the cell when the pendant's heartbeat is lost during Execute
    heartbeat_timeout: float = 1.0
    heartbeat_period: float = 0.5
    command_timeout: float = 5.0
    frame_timeout: float = 1.0
    error_rate: int = 20  # most ERR replies per second to malformed input
    max_queued: int = 16

    def __post_init__(self) -> None:
        for name in ("heartbeat_timeout", "heartbeat_period", "command_timeout", "frame_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"parameter {name}: must be > 0, got {value}")
        if self.error_rate < 1:
            raise ValueError(f"parameter error_rate: must be >= 1, got {self.error_rate}")
        if self.max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {self.max_queued}")


@dataclass(frozen=True)
class CellRequest:
    """The cell command a pendant command maps to: a std_srvs/Trigger service of the planner, or one planner
    parameter set. `refused`: the ERR reason when the cell says no."""

    service: str = ""
    parameter: str = ""
    value: str | int = ""
    refused: Reason = Reason.REFUSED

    def describe(self) -> str:
        """The service, or `parameter=value`."""
        return self.service or f"{self.parameter}={self.value}"


def cell_request(frame: Frame, state: str | None) -> CellRequest | str:
    """The cell command a pendant command frame maps to, or why it cannot be run in cell state `state`."""
    kind = frame.kind
    if kind == "JOB":
        return CellRequest(parameter="job", value=frame.args[0])
    if kind == "PARTS":
        return CellRequest(parameter="parts", value=int(frame.args[0]))
    if kind == "RESUME":
        service = RESUME_SERVICES.get(state or "")
        if service is None:
            return f"nothing to resume in state {state or 'unknown'}: RESUME works in Held or Suspended"
        return CellRequest(service=service)
    if kind == "ACK":
        return CellRequest(service="acknowledge", refused=Reason.NOFAULT)
    if kind == "PALLET":
        return CellRequest(service="pallet_changed")
    if kind == "REMOVED":
        return CellRequest(service="parts_removed")
    return CellRequest(service=kind.lower())


@dataclass(frozen=True)
class CallResult:
    """How a cell call ended: the cell's answer (`ok`, its message), or `failed` (no answer: the error)."""

    ok: bool
    message: str
    failed: bool = False


@dataclass(frozen=True)
class PendantFault:
    """The session's fault: the pendant's heartbeat was lost (raised), and came back (cleared); cell seconds."""

    key: str
    message: str
    raised: float
    cleared: float | None = None
    code: str = HEARTBEAT_LOST
    source: str = SOURCE
    severity: str = "WARN"


class CellLink(Protocol):
    """What the session needs of its surroundings (the ROS adapter: the serial line, services, /diagnostics)."""

    def write(self, data: bytes) -> None:
        """Send bytes to the pendant."""

    def call(self, request: CellRequest, done: Callable[[CallResult], None]) -> object | None:
        """Start a cell call, `done` when it ends; a handle, or None while its service is not available."""

    def cancel(self, handle: object) -> None:
        """Forget a call that timed out."""

    def service_name(self, request: CellRequest) -> str:
        """The full name of the service a request calls (for messages)."""

    def hold(self) -> None:
        """Hold the cell (the enabling device's heartbeat was lost)."""

    def fault(self, fault: PendantFault) -> None:
        """Publish a fault update (to /diagnostics, so the production log has it)."""


@dataclass
class InFlight:
    """The command being executed: its frame and request, since when, and its call (None while not started)."""

    frame: Frame
    request: CellRequest
    started: float
    handle: object | None = None


@dataclass
class Counters:
    """What the session refused or dropped so far."""

    dropped_errors: int = 0
    busy_replies: int = 0
    holds: int = 0
    faults: int = 0


@dataclass
class _Watchdog:
    last_rx: float = -math.inf  # wall time of the last valid frame (the heartbeat)
    held_at: float = -math.inf
    fault: PendantFault | None = None
    raised: int = 0
    seen: set[tuple[str, ...]] = field(default_factory=set)


class PendantSession:
    """One pendant on one serial line: frames in, replies and cell news out, cell calls through the link."""

    def __init__(
        self,
        params: SessionParams,
        link: CellLink,
        wall: Callable[[], float],
        cell_time: Callable[[], float],
        session_id: str = "",
    ) -> None:
        self.params = params
        self.link = link
        self._wall = wall
        self._cell_time = cell_time
        self.session_id = session_id
        self.decoder = Decoder(PENDANT_MESSAGES)
        self.guard = SequenceGuard()
        self.connected = False
        self.state: str | None = None
        self.status: dict[str, str] = {}
        self.counters = Counters()
        self._out_seq = 0
        self._sent_stat: tuple[str, ...] | None = None
        self._queue: deque[Frame] = deque()
        self._inflight: InFlight | None = None
        self._last_byte = -math.inf
        self._next_hb = 0.0
        self._tokens = float(params.error_rate)
        self._tokens_at = wall()
        self._reported_drops, self._reported_at = 0, -math.inf
        self._busy_logged_at = -math.inf
        self._dog = _Watchdog()

    # ------------------------------------------------------------------ serial side
    def opened(self) -> None:
        """The serial device was (re)opened."""
        self.connected = True
        self.decoder.reset()
        self.guard.restart()
        self._next_hb = self._wall() + self.params.heartbeat_period
        self._send_hello()

    def closed(self) -> None:
        """The serial device went away."""
        self.connected = False
        self.decoder.reset()
        self._dog.last_rx = -math.inf  # no device, no heartbeat
        self._watch()

    def received(self, data: bytes) -> None:
        """Bytes from the pendant."""
        self._last_byte = self._wall()
        for result in self.decoder.feed(data):
            if isinstance(result, FrameError):
                self._error(result.seq, result.reason, result.text)
            else:
                self._on_frame(result)

    def heartbeat_age(self) -> float:
        """Wall seconds since the last valid frame from the pendant (inf if none, or the device is gone)."""
        return self._wall() - self._dog.last_rx

    @property
    def busy(self) -> bool:
        """A command is being executed."""
        return self._inflight is not None

    @property
    def queued(self) -> int:
        """Commands waiting behind the one being executed."""
        return len(self._queue)

    def _on_frame(self, frame: Frame) -> None:
        self._dog.last_rx = self._wall()
        if self._dog.fault is not None:
            self._clear_fault()
        kind = frame.kind
        if kind == "HB":
            return
        if kind == "HELLO":
            version = int(frame.args[0])
            if version != PROTOCOL_VERSION:
                self._error(
                    frame.seq,
                    Reason.VERSION,
                    f"protocol version {version} not supported: the bridge speaks {PROTOCOL_VERSION}",
                )
                return
            self.guard.restart(frame.seq)
            device = frame.arg(1)
            logger.info("pendant HELLO%s", f" from {device!r}" if device else "")
            self._reply(frame.seq, True, f"cobot_cell pendant bridge {self.params.version} for cell {self.params.cell}")
            self._send_hello()
            return
        verdict, why = self.guard.admit(frame)
        if verdict is Admit.REPEAT:
            if self.guard.reply is not None:
                self.link.write(self.guard.reply)
            return
        if verdict is Admit.STALE:
            self._error(frame.seq, Reason.SEQ, why)
            return
        if kind == "STATUS":
            self._reply(frame.seq, True, f"state {self.state or 'unknown'}")
            self._send_snapshot()
            return
        limit = self.params.max_queued
        if len(self._queue) >= limit:
            self.counters.busy_replies += 1
            self._reply(frame.seq, False, f"{limit} commands already waiting", Reason.BUSY)
            now = self._wall()
            if now - self._busy_logged_at >= 1.0:
                self._busy_logged_at = now
                logger.warning(
                    "ERR BUSY to %s (seq %d): %d commands already waiting; %d BUSY replies so far",
                    kind,
                    frame.seq,
                    limit,
                    self.counters.busy_replies,
                )
            return
        self._queue.append(frame)
        self._run_queue()

    # ------------------------------------------------------------------ frames out
    def _send(self, seq: int | None, kind: str, *args: str) -> bytes | None:
        if seq is None:
            self._out_seq = next_seq(self._out_seq)
            seq = self._out_seq
        try:
            data = encode_fitted(Frame(seq, kind, tuple(args)), BRIDGE_MESSAGES)
        except ValueError as exc:
            logger.error("cannot encode %s frame: %s", kind, exc)
            return None
        self.link.write(data)
        return data

    def _reply(self, seq: int, ok: bool, text: str, reason: Reason = Reason.REFUSED) -> None:
        """Answer an admitted command (the answer is kept to resend on a retransmission)."""
        data = self._send(seq, "OK", text) if ok else self._send(seq, "ERR", reason.value, text)
        if data is not None:
            self.guard.answered(seq, data)

    def _error(self, seq: int, reason: Reason, text: str) -> None:
        """Answer input that was not admitted (rate-limited; never replaces the last command's answer)."""
        now = self._wall()
        rate = self.params.error_rate
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            self.counters.dropped_errors += 1
            return
        self._tokens -= 1
        self._send(seq, "ERR", reason.value, text)

    def _send_hello(self) -> None:
        self._send(None, "HELLO", str(PROTOCOL_VERSION), self.params.cell, self.params.version)
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
        fields = (
            s.get("state", self.state or ""),
            s.get("job", ""),
            s.get("parts_done", "0"),
            s.get("parts", "0"),
            s.get("part", ""),
            s.get("last_cycle_time", ""),
            word(s.get("fault_code", "")),
            ack,
            s.get("fault", ""),
        )
        if force or fields != self._sent_stat:
            self._sent_stat = fields
            self._send(None, "STAT", *fields)

    # ------------------------------------------------------------------ commands
    def _run_queue(self) -> None:
        while self._inflight is None and self._queue:
            frame = self._queue.popleft()
            request = cell_request(frame, self.state)
            if isinstance(request, str):
                self._reply(frame.seq, False, request)
                continue
            self._inflight = InFlight(frame, request, self._wall())
            self._try_call(self._inflight)

    def _try_call(self, job: InFlight) -> None:
        """Call the service if it is available (else the tick retries until command_timeout)."""
        if job.handle is None:
            job.handle = self.link.call(job.request, lambda result: self._done(job, result))

    def _done(self, job: InFlight, result: CallResult) -> None:
        if self._inflight is not job:
            return  # timed out and answered already
        self._inflight = None
        if result.failed:
            self._reply(job.frame.seq, False, f"call failed: {result.message}", Reason.UNAVAILABLE)
        elif not result.ok:
            self._reply(job.frame.seq, False, result.message, job.request.refused)
        elif job.request.parameter:
            self._reply(job.frame.seq, True, f"{job.request.parameter} {job.request.value}")
        else:
            self._reply(job.frame.seq, True, result.message)
        self._run_queue()

    # ------------------------------------------------------------------ cell side
    def cell_state(self, state: str) -> None:
        """The cell's PackML state changed."""
        self.state = state
        self._send(None, "STATE", state)
        self._watch()

    def cell_status(self, status: Mapping[str, str]) -> None:
        """The cell's status (key/values)."""
        self.status = dict(status)
        self._send_stat()

    def cell_cycle(self, part: str, status: str, cycle_time: float | None, job: str, run_id: str) -> None:
        """A part was finished."""
        self._send(None, "CYCLE", part, status, "0" if cycle_time is None else f"{cycle_time:.3f}", job, run_id)

    def cell_fault(self, level: str, key: tuple[str, ...], code: str, source: str, message: str) -> None:
        """A fault of the cell: shown on the pendant once per `key` (its later updates reach it in STAT)."""
        if key in self._dog.seen:
            return
        self._dog.seen.add(key)
        self._send(None, "FAULT", level, word(code), source, message)

    # ------------------------------------------------------------------ timers
    def tick(self) -> None:
        """Timers: partial frames, command timeouts and retries, heartbeats, the watchdog."""
        now = self._wall()
        p = self.params
        if self.decoder.partial and now - self._last_byte > p.frame_timeout:
            err = self.decoder.expire()
            if err is not None:
                self._error(err.seq, err.reason, err.text)
        job = self._inflight
        if job is not None and job.handle is None:
            self._try_call(job)
        if job is not None and self._inflight is job and now - job.started > p.command_timeout:
            self._inflight = None
            name = self.link.service_name(job.request)
            if job.handle is None:
                text = f"planner service {name} not available"
            else:
                self.link.cancel(job.handle)
                text = f"no reply from {name} within {p.command_timeout:g} s"
            self._reply(job.frame.seq, False, text, Reason.UNAVAILABLE)
            self._run_queue()
        if self.connected and now >= self._next_hb:
            self._next_hb = now + p.heartbeat_period
            self._send(None, "HB")
        dropped = self.counters.dropped_errors
        if dropped != self._reported_drops and now - self._reported_at > 5.0:
            self._reported_drops, self._reported_at = dropped, now
            logger.warning("%d ERR replies to malformed input dropped so far (more than %d/s)", dropped, p.error_rate)
        self._watch()

    def _watch(self) -> None:
        """The enabling-device watchdog: hold the cell when the heartbeat is lost during Execute."""
        p = self.params
        if not p.enabling_device or self.state != "Execute":
            return
        age = self.heartbeat_age()
        now = self._wall()
        if age <= p.heartbeat_timeout or now - self._dog.held_at < p.heartbeat_timeout:
            return
        self._dog.held_at = now
        why = (
            "no pendant connected"
            if not self.connected
            else "no frame from the pendant yet"
            if math.isinf(age)
            else f"no frame from the pendant for {age:.2f} s"
        )
        text = f"pendant heartbeat lost ({why}): holding the cell"
        logger.warning(text)
        if self._dog.fault is None:
            self._dog.raised += 1
            self.counters.faults += 1
            key = f"{self.session_id}-hb{self._dog.raised}" if self.session_id else f"hb{self._dog.raised}"
            self._dog.fault = PendantFault(key, text, self._cell_time())
            self.link.fault(self._dog.fault)
        self.counters.holds += 1
        self.link.hold()

    def _clear_fault(self) -> None:
        fault, self._dog.fault = self._dog.fault, None
        if fault is not None:
            self.link.fault(PendantFault(fault.key, fault.message, fault.raised, cleared=self._cell_time()))
