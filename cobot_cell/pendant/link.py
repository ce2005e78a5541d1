"""The pendant's end of the serial line: channels (a pty, a serial device), the link that sends commands and
follows what the bridge reports, and scripted runs (demo, tests, bench). No rclpy: it speaks only the serial
protocol (docs/pendant-protocol.md). The terminal UI and the `cobot-cell pendant` command are in virtual.py.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..waiting import wait_until
from .protocol import (
    BRIDGE_MESSAGES,
    PROTOCOL_VERSION,
    Decoder,
    Frame,
    FrameError,
    encode,
    next_seq,
)
from .transport import open_serial


class LinkClosed(ConnectionError):
    """The other end of the line is gone."""


class Channel(Protocol):
    """A byte channel to the bridge."""

    def read(self, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class FdChannel:
    """A raw file descriptor, e.g. the master side of a pty."""

    def __init__(self, fd: int, write_timeout: float = 5.0):
        self.fd = fd
        self.write_timeout = write_timeout
        os.set_blocking(fd, False)

    def read(self, timeout: float) -> bytes:
        """Bytes available within `timeout` s (b'' if none)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise LinkClosed("the other end of the line is closed") from exc
            raise
        if not data:
            raise LinkClosed("end of file")
        return data

    def write(self, data: bytes) -> None:
        """Write everything, waiting at most `write_timeout` s for room."""
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"line blocked: {len(view)} bytes not written") from None
                select.select([], [self.fd], [], min(left, 0.1))

    def close(self) -> None:
        """Close the descriptor."""
        try:
            os.close(self.fd)
        except OSError:
            pass


class SerialChannel:
    """A serial device or pyserial URL."""

    def __init__(self, url: str, baud: int = 115200, parity: str = "N"):
        self.ser = open_serial(url, baud, parity, timeout=0.0, write_timeout=5.0)

    def read(self, timeout: float) -> bytes:
        """Bytes available within `timeout` s (b'' if none)."""
        self.ser.timeout = max(0.0, timeout)
        data = self.ser.read(max(1, self.ser.in_waiting))
        if data and self.ser.in_waiting:
            data += self.ser.read(self.ser.in_waiting)
        return data

    def write(self, data: bytes) -> None:
        """Write everything."""
        self.ser.write(data)

    def close(self) -> None:
        """Close the device."""
        self.ser.close()


@dataclass
class PtyPair:
    """A pty pair standing in for a USB-serial cable: the pendant keeps `master`, the bridge opens `path`."""

    master: int
    slave: int
    device: str
    path: str

    def close(self) -> None:
        """Close both sides (the bridge sees its device fail); the link path is left in place."""
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def create_pty(link: str | os.PathLike | None = None) -> PtyPair:
    """Open a raw pty pair; if `link` is given, (re)point that symlink at the slave device."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo or line editing before the bridge configures the port
    device = os.ttyname(slave)
    path = device
    if link is not None:
        path = os.fspath(link)
        tmp = f"{path}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(device, tmp)
        os.replace(tmp, path)
    return PtyPair(master, slave, device, path)


@dataclass
class Received:
    """A frame (or undecodable input) from the bridge and when it arrived (time.perf_counter)."""

    t: float
    item: Frame | FrameError


@dataclass
class CellView:
    """What the pendant knows about the cell."""

    cell: str = ""
    state: str | None = None
    stat: dict[str, str] = field(default_factory=dict)
    cycles: list[Frame] = field(default_factory=list)
    faults: list[Frame] = field(default_factory=list)
    errors: list[Frame] = field(default_factory=list)  # unsolicited ERR (seq 0): noise the bridge rejected
    hellos: list[Frame] = field(default_factory=list)


STAT_FIELDS = [a.name for a in BRIDGE_MESSAGES["STAT"].args]


class PendantLink:
    """The pendant's protocol engine: numbered commands, replies by sequence number, the cell's view, HB."""

    def __init__(self, channel: Channel, device: str = "virtual-pendant"):
        self.channel = channel
        self.device = device
        self.decoder = Decoder(BRIDGE_MESSAGES)
        self.seq = 0
        self.replies: dict[int, Frame] = {}
        self.received: list[Received] = []
        self.view = CellView()
        self.last_rx = -float("inf")
        self.on_frame: Callable[[Frame | FrameError], None] | None = None
        self._wlock = threading.Lock()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ sending
    def next_seq(self) -> int:
        """Take the next command sequence number."""
        self.seq = next_seq(self.seq)
        return self.seq

    def write(self, data: bytes) -> None:
        """Send raw bytes (tests use it for malformed input)."""
        with self._wlock:
            self.channel.write(data)

    def send(self, kind: str, *args: str, seq: int | None = None) -> int:
        """Send a command frame; returns its sequence number."""
        if seq is None:
            seq = 0 if kind == "HB" else self.next_seq()
        self.write(encode(Frame(seq, kind, tuple(str(a) for a in args))))
        return seq

    def start_heartbeat(self, period: float = 0.25) -> None:
        """Send HB every `period` s from a background thread (as a pendant's firmware timer would)."""
        self.stop_heartbeat()
        self._hb_stop.clear()

        def beat() -> None:
            while not self._hb_stop.wait(period):
                try:
                    self.send("HB")
                except (OSError, TimeoutError):
                    pass

        self._hb_thread = threading.Thread(target=beat, name="pendant-hb", daemon=True)
        self._hb_thread.start()

    @property
    def heartbeating(self) -> bool:
        """HB frames are being sent."""
        return self._hb_thread is not None

    def stop_heartbeat(self) -> None:
        """Stop sending HB."""
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(2.0)
            self._hb_thread = None

    # ------------------------------------------------------------------ receiving
    def pump(self, timeout: float = 0.0) -> list[Frame | FrameError]:
        """Read what arrives within `timeout` s and update the view; returns the decoded items."""
        data = self.channel.read(timeout)
        if not data:
            return []
        t = time.perf_counter()
        items = self.decoder.feed(data)
        for item in items:
            self.received.append(Received(t, item))
            if isinstance(item, Frame):
                self.last_rx = time.monotonic()
                self._apply(item)
            if self.on_frame is not None:
                self.on_frame(item)
        return items

    def _apply(self, f: Frame) -> None:
        v = self.view
        if f.kind in ("OK", "ERR"):
            if f.seq:
                self.replies[f.seq] = f
            else:
                v.errors.append(f)
        elif f.kind == "STATE":
            v.state = f.args[0]
        elif f.kind == "STAT":
            v.stat = dict(zip(STAT_FIELDS, f.args + ("",) * (len(STAT_FIELDS) - len(f.args))))
            v.state = v.stat["state"] or v.state
        elif f.kind == "CYCLE":
            v.cycles.append(f)
        elif f.kind == "FAULT":
            v.faults.append(f)
        elif f.kind == "HELLO":
            v.hellos.append(f)
            v.cell = f.arg(1)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Pump until predicate() holds; TimeoutError naming `what` after `timeout` s."""
        wait_until(
            predicate,
            timeout,
            what,
            step=self.pump,
            poll=0.05,
            detail=lambda: f" (pendant sees state {self.view.state})",
        )

    def reply(self, seq: int, timeout: float = 5.0) -> Frame:
        """Wait for the reply to command `seq`."""
        self.wait_for(lambda: seq in self.replies, timeout, f"the reply to command {seq}")
        return self.replies[seq]

    def command(self, kind: str, *args: str, timeout: float = 5.0) -> Frame:
        """Send a command and wait for its OK or ERR."""
        return self.reply(self.send(kind, *args), timeout)

    def hello(self, timeout: float = 5.0) -> Frame:
        """Start a session."""
        return self.command("HELLO", str(PROTOCOL_VERSION), self.device, timeout=timeout)

    def wait_state(self, state: str, timeout: float = 10.0) -> None:
        """Wait until the bridge reports `state`."""
        self.wait_for(lambda: self.view.state == state, timeout, f"state {state}")

    def close(self) -> None:
        """Stop the heartbeat and close the channel."""
        self.stop_heartbeat()
        self.channel.close()


# ------------------------------------------------------------------------------------------ scripted pendant
class ScriptError(RuntimeError):
    """A scripted step failed."""


def parse_script(text: str) -> list[list[str]]:
    """Steps of a pendant script: one per line or `;`-separated, words split on blanks, `#` comments."""
    steps = []
    for line in text.replace(";", "\n").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            steps.append(line.split())
    return steps


def run_script(
    link: PendantLink, steps: list[list[str]], timeout: float = 10.0, echo: Callable[[str], None] | None = None
) -> None:
    """Run script steps; raise ScriptError on the first failure.

    Steps: `CMD [ARG]` sends a command and requires OK (`-CMD` accepts ERR too); `WAIT <State> [s]`
    waits for a state; `PARTS_DONE <n> [s]` waits for n finished parts; `SLEEP <s>` pumps for s seconds.
    """
    say = echo or (lambda _: None)
    for words in steps:
        op, args = words[0], words[1:]
        try:
            if op.upper() == "WAIT":
                link.wait_state(args[0], float(args[1]) if len(args) > 1 else timeout)
                say(f"state {args[0]}")
            elif op.upper() == "PARTS_DONE":
                n = int(args[0])
                link.wait_for(
                    functools.partial(_parts_done_at_least, link, n),
                    float(args[1]) if len(args) > 1 else timeout,
                    f"{n} parts done",
                )
                say(f"{n} parts done")
            elif op.upper() == "SLEEP":
                end = time.monotonic() + float(args[0])
                while time.monotonic() < end:
                    link.pump(min(0.05, max(0.0, end - time.monotonic())))
            else:
                tolerate = op.startswith("-")
                kind = op.lstrip("-").upper()
                reply = (
                    link.hello(timeout) if kind == "HELLO" and not args else link.command(kind, *args, timeout=timeout)
                )
                say(f"{' '.join([kind, *args])} -> {reply.kind} {' '.join(reply.args)}")
                if reply.kind != "OK" and not tolerate:
                    raise ScriptError(f"{' '.join(words)}: {' '.join(reply.args)}")
        except (TimeoutError, IndexError, ValueError) as exc:
            raise ScriptError(f"{' '.join(words)}: {exc}") from exc


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _parts_done_at_least(link: PendantLink, n: int) -> bool:
    return _int(link.view.stat.get("parts_done")) >= n
