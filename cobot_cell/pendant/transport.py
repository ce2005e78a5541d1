"""Serial transport for the pendant: pyserial in a reader and a writer thread, reconnecting with backoff.

Callers never block: `write()` queues bytes, `poll()` drains what the reader thread received. The owner is
told that events are waiting through `notify` (the bridge triggers a guard condition with it). No rclpy.

Back-pressure instead of loss: the reader stops reading the device while `max_pending_writes` frames wait to be
written or `max_pending_read` received bytes wait to be polled, so a burst of commands waits in the line (the
OS buffer, then the sender) rather than having its replies thrown away. Bytes are only dropped when the device
is gone or does not take them for `stall_timeout` seconds (nobody reads the other end), and that is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import serial

log = logging.getLogger(__name__)

READ_CHUNK = 1024  # most bytes taken from the device at once (about 50 short frames)
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


@dataclass(frozen=True)
class LinkEvent:
    """Something the line did: 'open' (device opened), 'data' (bytes received) or 'closed' (device lost)."""

    kind: str
    data: bytes = b""
    text: str = ""


class SerialDevice(Protocol):
    """What the pendant link uses of an open pyserial port (every pyserial URL handler has it)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int:
        """Bytes received and not read yet."""

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes, waiting at most `timeout`."""

    def write(self, b: bytes, /) -> int | None:
        """Send bytes."""

    def close(self) -> None:
        """Close the port."""


def open_serial(
    url: str, baud: int = 115200, parity: str = "N", timeout: float | None = 0.1, write_timeout: float | None = 1.0
) -> SerialDevice:
    """Open a device path or pyserial URL (`loop://`, `/dev/ttyUSB0`, a pty) as 8 data bits, 1 stop bit."""
    if parity not in PARITIES:
        raise ValueError(f"parity must be one of {', '.join(PARITIES)}, got {parity!r}")
    port = serial.serial_for_url(
        url,
        baudrate=baud,
        parity=PARITIES[parity],
        bytesize=serial.EIGHTBITS,
        stopbits=serial.STOPBITS_ONE,
        timeout=timeout,
        write_timeout=write_timeout,
    )
    return cast(SerialDevice, port)  # the stubs declare in_waiting only on the OS port classes


class SerialTransport:
    """Keeps a serial line open: reopens it with exponential backoff when it fails, until `stop()`."""

    def __init__(
        self,
        url: str,
        baud: int = 115200,
        parity: str = "N",
        notify: Callable[[], None] | None = None,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
        max_pending_writes: int = 256,
        max_pending_read: int = 4096,
        stall_timeout: float = 10.0,
    ):
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}, got {parity!r}")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError(f"reconnect delays must satisfy 0 < min <= max, got {reconnect_min}, {reconnect_max}")
        if max_pending_writes < 1 or max_pending_read < 1 or stall_timeout <= 0:
            raise ValueError(
                f"max_pending_writes and max_pending_read must be >= 1 and stall_timeout > 0, got "
                f"{max_pending_writes}, {max_pending_read}, {stall_timeout}"
            )
        self.url, self.baud, self.parity = url, baud, parity
        self.max_pending_writes, self.max_pending_read = max_pending_writes, max_pending_read
        self.stall_timeout = stall_timeout
        self.notify = notify
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.opens = 0
        self.dropped_writes = 0
        self.paused = 0  # times the reader waited for the writer or the owner to catch up
        self._reported_drops, self._reported_at = 0, -float("inf")
        self._events: deque[LinkEvent] = deque()
        self._pending_read = 0  # received bytes not yet polled
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._ser: SerialDevice | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def connected(self) -> bool:
        """The device is open."""
        return self._ser is not None

    def start(self) -> SerialTransport:
        """Start the reader (which opens the device) and the writer thread."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._read_loop, name="pendant-reader", daemon=True),
            threading.Thread(target=self._write_loop, name="pendant-writer", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop both threads and close the device."""
        self._stop.set()
        self._out.put_nowait(None)
        for t in self._threads:
            t.join(timeout)
        self._close()

    def poll(self) -> list[LinkEvent]:
        """Events received since the last call (never blocks)."""
        out = []
        while self._events:
            ev = self._events.popleft()
            with self._lock:
                self._pending_read -= len(ev.data)
            out.append(ev)
        return out

    def write(self, data: bytes) -> bool:
        """Queue bytes for the device (never dropped for lack of room); False when the device is not open."""
        if self._ser is None:
            return False
        self._out.put_nowait(bytes(data))
        return True

    @property
    def pending_writes(self) -> int:
        """Writes queued and not yet taken by the writer thread."""
        return self._out.qsize()

    def _backlogged(self) -> bool:
        """Replies or received bytes are piling up: the reader should wait."""
        return self._out.qsize() >= self.max_pending_writes or self._pending_read >= self.max_pending_read

    def _dropped(self, n: int, why: str) -> None:
        self.dropped_writes += n
        now = time.monotonic()
        if now - self._reported_at >= 5.0:
            self._reported_at = now
            log.warning("pendant port %s: %s; %d writes dropped so far", self.url, why, self.dropped_writes)

    # ------------------------------------------------------------------ threads
    def _emit(self, event: LinkEvent) -> None:
        with self._lock:
            self._pending_read += len(event.data)
        self._events.append(event)
        if self.notify is not None:
            try:
                self.notify()
            except Exception:  # the owner is shutting down; the event stays queued
                log.debug("notify failed", exc_info=True)

    def _close(self) -> None:
        with self._lock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a device that already failed
                pass

    def _read_loop(self) -> None:
        delay = self.reconnect_min
        failing_since_report = False
        while not self._stop.is_set():
            try:
                ser = open_serial(self.url, self.baud, self.parity, write_timeout=self.stall_timeout)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not failing_since_report:
                    log.warning("cannot open pendant port %s: %s (retrying)", self.url, exc)
                    failing_since_report = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            failing_since_report = False
            with self._lock:
                self._ser = ser
            self.opens += 1
            self._drain_writes()
            log.info("pendant port %s open", self.url)
            self._emit(LinkEvent("open", text=self.url))
            reason = self._pump(ser)
            self._close()
            if self._stop.is_set():
                break
            log.warning("pendant port %s lost: %s", self.url, reason)
            self._emit(LinkEvent("closed", text=reason))
            delay = self.reconnect_min
            self._stop.wait(delay)
            delay = min(delay * 2, self.reconnect_max)

    def _pump(self, ser: SerialDevice) -> str:
        while not self._stop.is_set():
            if self._backlogged():
                self.paused += 1
                while self._backlogged() and not self._stop.wait(0.002):
                    pass
                continue
            try:
                data = ser.read(min(max(1, ser.in_waiting), READ_CHUNK))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                return str(exc) or type(exc).__name__
            if data:
                self._emit(LinkEvent("data", data=data))
        return "stopped"

    def _drain_writes(self) -> None:
        n = 0
        while True:
            try:
                if self._out.get_nowait() is not None:
                    n += 1
            except queue.Empty:
                break
        if n:
            self._dropped(n, f"{n} writes queued for the lost device dropped")

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._out.get(timeout=0.2)
            except queue.Empty:
                continue
            if data is None:
                continue
            with self._lock:
                ser = self._ser
            if ser is None:
                self._dropped(1, "the device is closed")
                continue
            try:
                ser.write(data)
            except serial.SerialTimeoutException:
                self._dropped(1, f"nobody reads the other end: a write waited {self.stall_timeout:g} s")
            except (serial.SerialException, OSError, TypeError, AttributeError):
                self._dropped(1, "the device failed")  # the reader notices the failure and reopens
