"""Serial transport for the pendant: pyserial in a reader and a writer thread, reconnecting with backoff.

Callers never block: `write()` queues bytes, `poll()` drains what the reader thread received. The owner is
told that events are waiting through `notify` (the bridge triggers a guard condition with it). No rclpy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import serial

log = logging.getLogger(__name__)

PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


@dataclass(frozen=True)
class LinkEvent:
    """Something the line did: 'open' (device opened), 'data' (bytes received) or 'closed' (device lost)."""

    kind: str
    data: bytes = b""
    text: str = ""


def open_serial(url: str, baud: int = 115200, parity: str = "N", timeout: float | None = 0.1,
                write_timeout: float | None = 1.0) -> serial.SerialBase:
    """Open a device path or pyserial URL (`loop://`, `/dev/ttyUSB0`, a pty) as 8 data bits, 1 stop bit."""
    if parity not in PARITIES:
        raise ValueError(f"parity must be one of {', '.join(PARITIES)}, got {parity!r}")
    return serial.serial_for_url(url, baudrate=baud, parity=PARITIES[parity], bytesize=serial.EIGHTBITS,
                                 stopbits=serial.STOPBITS_ONE, timeout=timeout, write_timeout=write_timeout)


class SerialTransport:
    """Keeps a serial line open: reopens it with exponential backoff when it fails, until `stop()`."""

    def __init__(self, url: str, baud: int = 115200, parity: str = "N", notify: Callable[[], None] | None = None,
                 reconnect_min: float = 0.2, reconnect_max: float = 5.0, max_pending_writes: int = 256):
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}, got {parity!r}")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError(f"reconnect delays must satisfy 0 < min <= max, got {reconnect_min}, {reconnect_max}")
        self.url, self.baud, self.parity = url, baud, parity
        self.notify = notify
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.opens = 0
        self.dropped_writes = 0
        self._events: deque[LinkEvent] = deque()
        self._out: queue.Queue[bytes | None] = queue.Queue(max_pending_writes)
        self._ser: serial.SerialBase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def connected(self) -> bool:
        """The device is open."""
        return self._ser is not None

    def start(self) -> "SerialTransport":
        """Start the reader (which opens the device) and the writer thread."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._read_loop, name="pendant-reader", daemon=True),
                         threading.Thread(target=self._write_loop, name="pendant-writer", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop both threads and close the device."""
        self._stop.set()
        try:
            self._out.put_nowait(None)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(timeout)
        self._close()

    def poll(self) -> list[LinkEvent]:
        """Events received since the last call (never blocks)."""
        out = []
        while self._events:
            out.append(self._events.popleft())
        return out

    def write(self, data: bytes) -> bool:
        """Queue bytes for the device; False (and dropped) when it is not open or the queue is full."""
        if self._ser is None:
            return False
        try:
            self._out.put_nowait(bytes(data))
        except queue.Full:
            self.dropped_writes += 1
            return False
        return True

    # ------------------------------------------------------------------ threads
    def _emit(self, event: LinkEvent) -> None:
        self._events.append(event)
        if self.notify is not None:
            try:
                self.notify()
            except Exception:  # noqa: BLE001 - the owner is shutting down; the event stays queued
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
                ser = open_serial(self.url, self.baud, self.parity)
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

    def _pump(self, ser: serial.SerialBase) -> str:
        while not self._stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                return str(exc) or type(exc).__name__
            if data:
                self._emit(LinkEvent("data", data=data))
        return "stopped"

    def _drain_writes(self) -> None:
        while True:
            try:
                self._out.get_nowait()
            except queue.Empty:
                return

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
                self.dropped_writes += 1
                continue
            try:
                ser.write(data)
            except serial.SerialTimeoutException:
                self.dropped_writes += 1  # nobody reads the other end: drop rather than stall
            except (serial.SerialException, OSError, TypeError, AttributeError):
                self.dropped_writes += 1  # the reader notices the failure and reopens
