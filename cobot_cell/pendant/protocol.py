"""Pendant line protocol (docs/pendant-protocol.md): frame encoding, a streaming decoder, replay protection.

A frame is `$<seq>,<TYPE>[,<arg>...]*<CRC16>\\r\\n`: printable ASCII, at most MAX_FRAME bytes from `$` to LF,
CRC-16/CCITT-FALSE of the bytes between `$` and `*` as four hex digits. Pure Python, no rclpy: the bridge
node, the virtual pendant and the tests share it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from ..core.limits import MAX_PARTS

PROTOCOL_VERSION = 1
MAX_FRAME = 128
"""Longest frame in bytes, from `$` through the terminating LF."""
SEQ_MAX = 9999
"""Sequence numbers run 1..SEQ_MAX and wrap to 1; 0 means unsequenced (HB, and errors about unreadable frames)."""
SEQ_WINDOW = 4999
"""A command is new when it is 1..SEQ_WINDOW ahead of the last one (modulo SEQ_MAX); behind is stale."""

START, STAR, SEP, CR, LF = ord("$"), ord("*"), ord(","), 0x0D, 0x0A
_OVERHEAD = len("$*XXXX\r\n")
MAX_BODY = MAX_FRAME - _OVERHEAD
"""Longest body (between `$` and `*`) of a frame."""


class Reason(str, Enum):
    """Reason codes of ERR replies."""

    FORMAT = "FORMAT"  # not a frame: no checksum, bad sequence field, data outside a frame, cut short
    CHECKSUM = "CHECKSUM"  # checksum does not match
    TOOLONG = "TOOLONG"  # more than MAX_FRAME bytes before LF
    ASCII = "ASCII"  # a byte outside printable ASCII (0x20-0x7E) inside a frame
    UNKNOWN = "UNKNOWN"  # unknown message type
    BADARG = "BADARG"  # wrong number of arguments or a malformed argument
    SEQ = "SEQ"  # stale or reused sequence number
    VERSION = "VERSION"  # HELLO with an unsupported protocol version
    REFUSED = "REFUSED"  # the cell refused the command (the planner's reason follows)
    NOFAULT = "NOFAULT"  # ACK with no fault to acknowledge
    BUSY = "BUSY"  # command queue full
    UNAVAILABLE = "UNAVAILABLE"  # the cell's services did not answer


@dataclass(frozen=True)
class Frame:
    """A decoded (or to-be-encoded) frame: sequence number, message type and argument strings."""

    seq: int
    kind: str
    args: tuple[str, ...] = ()

    def arg(self, i: int, default: str = "") -> str:
        """Argument i, or `default` when the frame has fewer arguments."""
        return self.args[i] if i < len(self.args) else default


@dataclass(frozen=True)
class FrameError:
    """Why some received bytes are not an acceptable frame; `seq` is the frame's when it could be trusted."""

    reason: Reason
    text: str
    seq: int = 0


# ------------------------------------------------------------------------------------------ message tables
@dataclass(frozen=True)
class Arg:
    """One argument of a message type: name, kind and whether it may be empty or omitted."""

    name: str
    kind: str  # "int", "uint", "num", "word", "text"
    optional: bool = False
    max_len: int = MAX_BODY


@dataclass(frozen=True)
class MessageSpec:
    """The arguments of one message type; optional arguments may only trail."""

    kind: str
    args: tuple[Arg, ...] = ()

    @property
    def min_args(self) -> int:
        """How many arguments must be present."""
        n = len(self.args)
        while n and self.args[n - 1].optional:
            n -= 1
        return n


def _table(*specs: MessageSpec) -> dict[str, MessageSpec]:
    return {s.kind: s for s in specs}


CELL_COMMANDS = (
    "START",
    "STOP",
    "HOLD",
    "UNHOLD",
    "RESUME",
    "SUSPEND",
    "UNSUSPEND",
    "RESET",
    "ABORT",
    "CLEAR",
    "ACK",
    "REAPPROACH",
    "PALLET",
    "REMOVED",
)
"""Argument-less commands that act on the cell."""

PENDANT_MESSAGES: dict[str, MessageSpec] = _table(
    MessageSpec("HELLO", (Arg("version", "uint"), Arg("device", "text", optional=True, max_len=32))),
    MessageSpec("HB"),
    MessageSpec("STATUS"),
    MessageSpec("JOB", (Arg("job", "text", max_len=64),)),
    MessageSpec("PARTS", (Arg("parts", "int"),)),
    *(MessageSpec(c) for c in CELL_COMMANDS),
)
"""Pendant -> bridge: what the bridge decodes."""

BRIDGE_MESSAGES: dict[str, MessageSpec] = _table(
    MessageSpec("HELLO", (Arg("version", "uint"), Arg("cell", "text"), Arg("software", "text", optional=True))),
    MessageSpec("OK", (Arg("text", "text", optional=True),)),
    MessageSpec("ERR", (Arg("code", "word"), Arg("text", "text", optional=True))),
    MessageSpec("HB"),
    MessageSpec("STATE", (Arg("state", "word"),)),
    MessageSpec(
        "STAT",
        (
            Arg("state", "word"),
            Arg("job", "text", optional=True),
            Arg("parts_done", "uint"),
            Arg("parts", "uint"),
            Arg("part", "uint", optional=True),
            Arg("last_cycle_time", "num", optional=True),
            Arg("fault_code", "word", optional=True),
            Arg("fault_ack", "uint", optional=True),
            Arg("fault", "text", optional=True),
        ),
    ),
    MessageSpec(
        "CYCLE",
        (
            Arg("part", "uint"),
            Arg("status", "word"),
            Arg("cycle_time", "num"),
            Arg("job", "text", optional=True),
            Arg("run_id", "text", optional=True),
        ),
    ),
    MessageSpec(
        "FAULT",
        (
            Arg("level", "word"),
            Arg("code", "word", optional=True),
            Arg("source", "text", optional=True),
            Arg("text", "text", optional=True),
        ),
    ),
)
"""Bridge -> pendant: what a pendant decodes."""

DIGITS = len(str(MAX_PARTS))
"""Most digits of a whole-number field (and of each part of a decimal): the part count bound fits."""
_ARG_RE = {
    "int": re.compile(rf"-?[0-9]{{1,{DIGITS}}}"),
    "uint": re.compile(rf"[0-9]{{1,{DIGITS}}}"),
    "num": re.compile(rf"-?[0-9]{{1,{DIGITS}}}(\.[0-9]{{1,{DIGITS}}})?"),
    "word": re.compile(r"[A-Za-z0-9_.:/-]+"),
}
_ARG_WHAT = {
    "int": "a whole number",
    "uint": "a whole number >= 0",
    "num": "a decimal number",
    "word": "a word (letters digits _ . : / -)",
}
_KIND_RE = re.compile(r"[A-Z][A-Z0-9]{0,15}")
FIELD_CHARS = frozenset(range(0x20, 0x7F)) - {START, STAR, SEP}
"""Bytes allowed inside a field: printable ASCII without `$`, `*` and `,`."""


def check_args(spec: MessageSpec, args: tuple[str, ...]) -> str | None:
    """None when `args` fit `spec`, else the reason (for a BADARG reply)."""
    n, lo, hi = len(args), spec.min_args, len(spec.args)
    if not lo <= n <= hi:
        if lo == hi:
            expected = f"{hi} argument{'s' if hi != 1 else ''}"
        else:
            expected = f"{lo} to {hi} arguments"
        names = f" ({'/'.join(a.name for a in spec.args)})" if spec.args else ""
        return f"{spec.kind}: expected {expected}{names} but got {n}"
    for a, value in zip(spec.args, args):
        if value == "":
            if a.optional:
                continue
            return f"{spec.kind}: argument {a.name} is empty"
        if len(value) > a.max_len:
            return f"{spec.kind}: argument {a.name} is longer than {a.max_len} characters"
        if a.kind in _ARG_RE and not _ARG_RE[a.kind].fullmatch(value):
            return f"{spec.kind}: argument {a.name} {value!r} is not {_ARG_WHAT[a.kind]}"
    return None


# ------------------------------------------------------------------------------------------ encoding
def checksum(body: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of a frame body."""
    return binascii.crc_hqx(body, 0xFFFF)


def _check_field(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    for ch in value:
        if ord(ch) not in FIELD_CHARS:
            raise ValueError(
                f"{what} {value!r}: character {ch!r} is not allowed in a field (printable ASCII without '$', '*', ',')"
            )


def encode(frame: Frame, table: Mapping[str, MessageSpec] | None = None) -> bytes:
    """The frame's bytes; ValueError with the reason if it is not a valid frame (of `table`, if given)."""
    if isinstance(frame.seq, bool) or not isinstance(frame.seq, int) or not 0 <= frame.seq <= SEQ_MAX:
        raise ValueError(f"sequence number must be 0-{SEQ_MAX}, got {frame.seq!r}")
    if not isinstance(frame.kind, str) or not _KIND_RE.fullmatch(frame.kind):
        raise ValueError(f"message type {frame.kind!r}: expected 1-16 upper-case letters and digits")
    for i, a in enumerate(frame.args):
        _check_field(a, f"argument {i + 1}")
    if table is not None:
        spec = table.get(frame.kind)
        if spec is None:
            raise ValueError(f"unknown message type '{frame.kind}'")
        problem = check_args(spec, tuple(frame.args))
        if problem:
            raise ValueError(problem)
    body = ",".join((str(frame.seq), frame.kind, *frame.args)).encode("ascii")
    if len(body) > MAX_BODY:
        raise ValueError(f"frame of {len(body) + _OVERHEAD} bytes is longer than {MAX_FRAME}")
    return b"$" + body + b"*%04X\r\n" % checksum(body)


def sanitize(text: str) -> str:
    """Free text made fit for a field: ',' -> ';', line breaks -> ' ', other disallowed characters -> '?'."""
    out = []
    for ch in str(text):
        if ch == ",":
            out.append(";")
        elif ch in "\r\n\t":
            out.append(" ")
        elif ord(ch) in FIELD_CHARS:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def encode_fitted(frame: Frame, table: Mapping[str, MessageSpec] | None = None) -> bytes:
    """Encode after sanitizing the arguments and shortening the last one (ending in '~') to fit MAX_FRAME."""
    args = [sanitize(a) for a in frame.args]
    if args:
        fixed = len(",".join((str(frame.seq), frame.kind, *args[:-1]))) + 1
        room = MAX_BODY - fixed
        if room < 1:
            raise ValueError(f"{frame.kind}: the arguments before the last do not fit in {MAX_FRAME} bytes")
        if len(args[-1]) > room:
            args[-1] = args[-1][: room - 1] + "~"
    return encode(Frame(frame.seq, frame.kind, tuple(args)), table)


# ------------------------------------------------------------------------------------------ decoding
Result = Frame | FrameError


class Decoder:
    """Turns a byte stream into frames and frame errors; never raises on input.

    Bytes outside a frame are skipped (one FORMAT error per run of non-blank bytes); `$` always starts a
    new frame; LF ends one (a CR before it is optional); a frame longer than MAX_FRAME is reported as
    TOOLONG at once and the rest up to LF is skipped. With a `table`, message types and arguments are
    checked too (UNKNOWN, BADARG).
    """

    def __init__(self, table: Mapping[str, MessageSpec] | None = None):
        self.table = table
        self._buf: bytearray | None = None  # inside a frame: the bytes after '$'
        self._skipping = False  # after TOOLONG: drop bytes up to LF
        self._junk = 0  # non-blank bytes outside a frame since the last report
        self._junk_non_ascii = False
        self._bad: tuple[int, int] | None = None  # (offset, byte) of the first non-printable byte in the frame

    @property
    def partial(self) -> bool:
        """A frame has started and not yet ended."""
        return self._buf is not None

    def reset(self) -> None:
        """Forget any partial frame (the device was reopened)."""
        self._buf, self._skipping, self._junk, self._junk_non_ascii, self._bad = None, False, 0, False, None

    def expire(self) -> FrameError | None:
        """End a partial frame that stopped arriving: a FORMAT error, or None if there was none."""
        if self._buf is None:
            self._skipping = False
            return None
        n = len(self._buf) + 1
        self._buf, self._bad = None, None
        return FrameError(Reason.FORMAT, f"incomplete frame: {n} bytes and no CRLF")

    def feed(self, data: bytes) -> list[Result]:
        """Consume bytes; return the frames and errors they complete, in order."""
        out: list[Result] = []
        for b in bytes(data):
            if b == START:
                self._flush_junk(out)
                if self._buf is not None:
                    n = len(self._buf) + 1
                    out.append(FrameError(Reason.FORMAT, f"incomplete frame: {n} bytes before a new frame start"))
                self._buf, self._bad, self._skipping = bytearray(), None, False
            elif self._buf is not None:
                if b == LF:
                    buf, bad = self._buf, self._bad
                    self._buf, self._bad = None, None
                    out.append(self._parse(buf, bad))
                    continue
                if not 0x20 <= b <= 0x7E and self._bad is None and b != CR:
                    self._bad = (len(self._buf) + 1, b)
                self._buf.append(b)
                if len(self._buf) + 2 > MAX_FRAME:
                    self._buf, self._bad, self._skipping = None, None, True
                    out.append(FrameError(Reason.TOOLONG, f"frame longer than {MAX_FRAME} bytes"))
            elif self._skipping:
                if b == LF:
                    self._skipping = False
            elif b == LF:
                self._flush_junk(out)
            elif b not in (CR, 0x20, 0x09):
                self._junk += 1
                self._junk_non_ascii |= not 0x20 <= b <= 0x7E
                if self._junk >= MAX_FRAME:
                    self._flush_junk(out)
        return out

    def _flush_junk(self, out: list[Result]) -> None:
        if self._junk:
            reason = Reason.ASCII if self._junk_non_ascii else Reason.FORMAT
            out.append(FrameError(reason, f"{self._junk} bytes outside a frame ignored"))
        self._junk, self._junk_non_ascii = 0, False

    def _parse(self, buf: bytearray, bad: tuple[int, int] | None) -> Result:
        if buf.endswith(b"\r"):
            del buf[-1]
        if bad is not None or CR in buf:
            off, byte = bad if bad is not None else (buf.index(CR) + 1, CR)
            return FrameError(Reason.ASCII, f"byte 0x{byte:02X} at offset {off} is not printable ASCII")
        star = buf.rfind(b"*")
        if star < 0:
            return FrameError(Reason.FORMAT, "no checksum before CRLF")
        given = bytes(buf[star + 1 :])
        if len(given) != 4 or any(c not in b"0123456789ABCDEFabcdef" for c in given):
            return FrameError(Reason.FORMAT, f"checksum {given.decode('ascii')!r} is not 4 hex digits")
        body = bytes(buf[:star])
        expected = checksum(body)
        if int(given, 16) != expected:
            return FrameError(
                Reason.CHECKSUM,
                f"checksum {given.decode('ascii').upper()} does not match the frame (expected {expected:04X})",
            )
        if b"*" in body:
            return FrameError(Reason.FORMAT, "asterisk inside a field")
        fields = body.decode("ascii").split(",")
        if not fields[0].isdigit() or len(fields[0]) > 4:
            return FrameError(Reason.FORMAT, f"sequence number {fields[0]!r}: expected 0-{SEQ_MAX}")
        seq = int(fields[0])
        if len(fields) < 2 or not fields[1]:
            return FrameError(Reason.FORMAT, "no message type", seq)
        kind, args = fields[1], tuple(fields[2:])
        if self.table is not None:
            spec = self.table.get(kind)
            if spec is None:
                return FrameError(Reason.UNKNOWN, f"unknown command '{kind}'", seq)
            problem = check_args(spec, args)
            if problem:
                return FrameError(Reason.BADARG, problem, seq)
        elif not _KIND_RE.fullmatch(kind):
            return FrameError(Reason.UNKNOWN, f"unknown command '{kind}'", seq)
        return Frame(seq, kind, args)


def decode_all(data: bytes, table: Mapping[str, MessageSpec] | None = None) -> list[Result]:
    """Decode a complete byte string (a partial frame at the end is reported as incomplete)."""
    dec = Decoder(table)
    out = dec.feed(data)
    tail = dec.expire()
    return out + ([tail] if tail else [])


# ------------------------------------------------------------------------------------------ sequencing
def next_seq(seq: int) -> int:
    """The sequence number after `seq` (1..SEQ_MAX, wrapping to 1)."""
    return 1 if seq >= SEQ_MAX else seq + 1


class Admit(str, Enum):
    """What to do with a sequenced command."""

    NEW = "new"  # execute it
    REPEAT = "repeat"  # a retransmission of the last command: resend its reply, do not execute again
    STALE = "stale"  # refuse with ERR SEQ


class SequenceGuard:
    """At-most-once execution: remembers the last command's sequence number, content and reply."""

    def __init__(self) -> None:
        self.last: int | None = None
        self._content: tuple[str, tuple[str, ...]] | None = None
        self.reply: bytes | None = None

    def restart(self, seq: int | None = None) -> None:
        """A new session (HELLO with `seq`, or the device reopened): any next sequence number is accepted."""
        self.last = seq if seq else None
        self._content, self.reply = None, None

    def admit(self, frame: Frame) -> tuple[Admit, str]:
        """Classify a command frame; the text is the reason when STALE."""
        if frame.seq == 0:
            return Admit.STALE, f"{frame.kind} needs a sequence number 1-{SEQ_MAX}"
        content = (frame.kind, frame.args)
        if self.last is not None:
            if frame.seq == self.last:
                if content == self._content:
                    return Admit.REPEAT, ""
                return Admit.STALE, f"sequence number {frame.seq} already used"
            ahead = (frame.seq - self.last) % SEQ_MAX
            if ahead > SEQ_WINDOW:
                return Admit.STALE, f"stale sequence number {frame.seq} (last {self.last})"
        self.last, self._content, self.reply = frame.seq, content, None
        return Admit.NEW, ""

    def answered(self, seq: int, reply: bytes) -> None:
        """Remember the reply to the last command, to resend it on a retransmission."""
        if seq == self.last:
            self.reply = reply
