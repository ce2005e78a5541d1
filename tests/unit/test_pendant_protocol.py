"""Pendant line protocol (cobot_cell.pendant.protocol): framing, exact error reasons, replay protection."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cobot_cell.pendant.protocol import (
    BRIDGE_MESSAGES,
    FIELD_CHARS,
    MAX_BODY,
    MAX_FRAME,
    PENDANT_MESSAGES,
    SEQ_MAX,
    Admit,
    Decoder,
    Frame,
    FrameError,
    MessageSpec,
    Reason,
    SequenceGuard,
    checksum,
    decode_all,
    encode,
    encode_fitted,
    next_seq,
    sanitize,
)
from cobot_cell.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
P = PENDANT_MESSAGES


def frame_bytes(body: str, crc: int | None = None) -> bytes:
    """A frame around `body` with its correct CRC (or the given one)."""
    b = body.encode("latin-1")
    return b"$" + b + b"*%04X\r\n" % (checksum(b) if crc is None else crc)


def one(data: bytes, table=P):
    results = decode_all(data, table)
    assert len(results) == 1, results
    return results[0]


# ------------------------------------------------------------------------------------------ encoding
def test_checksum_is_crc16_ccitt_false() -> None:
    assert checksum(b"123456789") == 0x29B1
    assert checksum(b"") == 0xFFFF


def test_encode_exact_bytes() -> None:
    assert encode(Frame(7, "START")) == b"$7,START*93F7\r\n"
    assert encode(Frame(12, "PARTS", ("2",)), P) == frame_bytes("12,PARTS,2")
    assert encode(Frame(1, "OK", ("",))) == frame_bytes("1,OK,")


@pytest.mark.parametrize(
    "frame, table, message",
    [
        (Frame(10000, "HB"), None, "sequence number must be 0-9999, got 10000"),
        (Frame(-1, "HB"), None, "sequence number must be 0-9999, got -1"),
        (Frame(True, "HB"), None, "sequence number must be 0-9999, got True"),
        (Frame(1, "start"), None, "message type 'start': expected 1-16 upper-case letters and digits"),
        (Frame(1, ""), None, "message type '': expected 1-16 upper-case letters and digits"),
        (
            Frame(1, "JOB", ("a,b",)),
            None,
            "argument 1 'a,b': character ',' is not allowed in a field (printable ASCII without '$', '*', ',')",
        ),
        (
            Frame(1, "JOB", ("caf\u00e9",)),
            None,
            "argument 1 'caf\u00e9': character '\u00e9' is not allowed in a "
            "field (printable ASCII without '$', '*', ',')",
        ),
        (Frame(1, "JOB", ("x" * 130,)), None, "frame of 144 bytes is longer than 128"),
        (Frame(1, "JUMP"), P, "unknown message type 'JUMP'"),
        (Frame(1, "PARTS"), P, "PARTS: expected 1 argument (parts) but got 0"),
        (Frame(1, "PARTS", ("two",)), P, "PARTS: argument parts 'two' is not a whole number"),
        (Frame(1, "START", ("now",)), P, "START: expected 0 arguments but got 1"),
        (Frame(1, "HELLO", ()), P, "HELLO: expected 1 to 2 arguments (version/device) but got 0"),
        (Frame(1, "JOB", ("",)), P, "JOB: argument job is empty"),
    ],
)
def test_encode_refuses_invalid_frames(frame: Frame, table, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        encode(frame, table)
    assert str(exc.value) == message


def test_sanitize_and_fit_free_text() -> None:
    assert (
        sanitize("cannot start in state Stopped: allowed commands are reset, abort")
        == "cannot start in state Stopped: allowed commands are reset; abort"
    )
    assert sanitize("a*b$c\r\nd\u00e9") == "a?b?c  d?"
    long = "motion of 'welder' did not arrive " * 10
    data = encode_fitted(Frame(42, "ERR", ("REFUSED", long)), BRIDGE_MESSAGES)
    assert len(data) == MAX_FRAME
    frame = one(data, BRIDGE_MESSAGES)
    assert frame.args[1].endswith("~") and long.startswith(frame.args[1][:-1])
    assert encode_fitted(Frame(1, "OK", ("short, text",))) == encode(Frame(1, "OK", ("short; text",)))


# ------------------------------------------------------------------------------------------ decoding
def test_decode_valid_frames() -> None:
    assert one(encode(Frame(3, "PARTS", ("-2",)))) == Frame(3, "PARTS", ("-2",))
    assert one(frame_bytes("4,JOB,bracket")) == Frame(4, "JOB", ("bracket",))
    assert one(b"$5,HOLD*%04x\n" % checksum(b"5,HOLD")) == Frame(5, "HOLD")  # bare LF, lower-case hex
    assert one(frame_bytes("0005,HB")) == Frame(5, "HB")
    assert decode_all(b"  \r\n\r\n\t") == []  # blank bytes between frames are silent


@pytest.mark.parametrize(
    "data, reason, text, seq",
    [
        (b"$7,START*2FCE\r\n", Reason.CHECKSUM, "checksum 2FCE does not match the frame (expected 93F7)", 0),
        (b"$7,START\r\n", Reason.FORMAT, "no checksum before CRLF", 0),
        (b"$7,START*93F\r\n", Reason.FORMAT, "checksum '93F' is not 4 hex digits", 0),
        (b"$7,START*93FG\r\n", Reason.FORMAT, "checksum '93FG' is not 4 hex digits", 0),
        (frame_bytes("7,ST*ART"), Reason.FORMAT, "asterisk inside a field", 0),
        (frame_bytes("x7,START"), Reason.FORMAT, "sequence number 'x7': expected 0-9999", 0),
        (frame_bytes("12345,START"), Reason.FORMAT, "sequence number '12345': expected 0-9999", 0),
        (frame_bytes(",START"), Reason.FORMAT, "sequence number '': expected 0-9999", 0),
        (frame_bytes("7"), Reason.FORMAT, "no message type", 7),
        (frame_bytes("7,"), Reason.FORMAT, "no message type", 7),
        (frame_bytes("7,JUMP"), Reason.UNKNOWN, "unknown command 'JUMP'", 7),
        (frame_bytes("7,start"), Reason.UNKNOWN, "unknown command 'start'", 7),
        (frame_bytes("7,PARTS,two"), Reason.BADARG, "PARTS: argument parts 'two' is not a whole number", 7),
        (
            frame_bytes("7,PARTS,1234567890"),
            Reason.BADARG,
            "PARTS: argument parts '1234567890' is not a whole number",
            7,
        ),
        (frame_bytes("7,PARTS"), Reason.BADARG, "PARTS: expected 1 argument (parts) but got 0", 7),
        (frame_bytes("7,PARTS,1,2"), Reason.BADARG, "PARTS: expected 1 argument (parts) but got 2", 7),
        (frame_bytes("7,JOB,"), Reason.BADARG, "JOB: argument job is empty", 7),
        (frame_bytes("7,JOB," + "j" * 65), Reason.BADARG, "JOB: argument job is longer than 64 characters", 7),
        (frame_bytes("7,HELLO,v1"), Reason.BADARG, "HELLO: argument version 'v1' is not a whole number >= 0", 7),
        (frame_bytes("7,JOB,caf\xe9"), Reason.ASCII, "byte 0xE9 at offset 10 is not printable ASCII", 0),
        (b"$7,ST\x00ART*93F7\r\n", Reason.ASCII, "byte 0x00 at offset 5 is not printable ASCII", 0),
        (b"$7,ST\rART*93F7\r\n", Reason.ASCII, "byte 0x0D at offset 5 is not printable ASCII", 0),
        (b"$" + b"A" * 200 + b"\r\n", Reason.TOOLONG, "frame longer than 128 bytes", 0),
        (b"start\r\n", Reason.FORMAT, "5 bytes outside a frame ignored", 0),
        (b"\xff\xfe\r\n", Reason.ASCII, "2 bytes outside a frame ignored", 0),
        (b"$7,STA", Reason.FORMAT, "incomplete frame: 6 bytes and no CRLF", 0),
    ],
)
def test_decode_error_reasons(data: bytes, reason: Reason, text: str, seq: int) -> None:
    assert one(data) == FrameError(reason, text, seq)


def test_frame_of_exactly_max_length_is_accepted_one_more_is_toolong() -> None:
    for n in (MAX_FRAME, MAX_FRAME + 1):
        body = "1,JOB,"
        data = frame_bytes(body + "j" * (n - len(body) - 8))
        assert len(data) == n
        result = one(data, None)
        assert (
            isinstance(result, Frame)
            if n == MAX_FRAME
            else result == FrameError(Reason.TOOLONG, "frame longer than 128 bytes")
        )


def test_toolong_is_reported_before_the_end_and_resyncs_on_dollar() -> None:
    dec = Decoder(P)
    assert dec.feed(b"$" + b"9" * (MAX_FRAME - 2)) == []
    assert dec.feed(b"9") == [FrameError(Reason.TOOLONG, "frame longer than 128 bytes")]
    assert dec.feed(b"9" * 500) == []  # the rest of the overlong line is dropped silently
    assert dec.feed(encode(Frame(2, "HOLD"))) == [Frame(2, "HOLD")]


def test_partial_frame_cut_by_new_frame_and_expiry() -> None:
    dec = Decoder(P)
    assert dec.feed(b"$3,STA") == [] and dec.partial
    assert dec.feed(encode(Frame(4, "STOP"))) == [
        FrameError(Reason.FORMAT, "incomplete frame: 6 bytes before a new frame start"),
        Frame(4, "STOP"),
    ]
    assert dec.feed(b"$5,HO") == []
    assert dec.expire() == FrameError(Reason.FORMAT, "incomplete frame: 5 bytes and no CRLF")
    assert dec.expire() is None and not dec.partial
    dec.feed(b"$6,HO")
    dec.reset()
    assert dec.feed(b"LD*0000\r\n") == [FrameError(Reason.FORMAT, "7 bytes outside a frame ignored")]


def test_long_junk_without_newline_is_reported_per_128_bytes() -> None:
    assert Decoder().feed(b"x" * 300) == [FrameError(Reason.FORMAT, "128 bytes outside a frame ignored")] * 2


def test_frames_split_anywhere_decode_the_same() -> None:
    data = encode(Frame(1, "JOB", ("bracket",))) + b"noise\r\n" + encode(Frame(2, "PARTS", ("2",)))
    expected = decode_all(data, P)
    for cut in range(len(data)):
        dec = Decoder(P)
        assert dec.feed(data[:cut]) + dec.feed(data[cut:]) == expected


# ------------------------------------------------------------------------------------------ sequencing
def test_sequence_guard_at_most_once() -> None:
    g = SequenceGuard()
    assert g.admit(Frame(5, "START")) == (Admit.NEW, "")  # first command of a session: any number
    g.answered(5, b"reply5")
    assert g.admit(Frame(5, "START")) == (Admit.REPEAT, "") and g.reply == b"reply5"
    assert g.admit(Frame(5, "STOP")) == (Admit.STALE, "sequence number 5 already used")
    assert g.admit(Frame(4, "STOP")) == (Admit.STALE, "stale sequence number 4 (last 5)")
    assert g.admit(Frame(0, "STOP")) == (Admit.STALE, "STOP needs a sequence number 1-9999")
    assert g.admit(Frame(7, "STOP")) == (Admit.NEW, "") and g.reply is None  # gaps are fine
    assert g.admit(Frame(7 + 4999, "STOP")) == (Admit.NEW, "")
    assert g.admit(Frame(7, "HOLD")) == (Admit.STALE, "stale sequence number 7 (last 5006)")
    g.restart(9998)  # HELLO with seq 9998
    assert g.admit(Frame(9998, "HOLD")) == (Admit.STALE, "sequence number 9998 already used")
    assert g.admit(Frame(9999, "HOLD")) == (Admit.NEW, "")
    assert g.admit(Frame(next_seq(9999), "UNHOLD")) == (Admit.NEW, "")  # wraps to 1
    assert g.admit(Frame(9999, "HOLD")) == (Admit.STALE, "stale sequence number 9999 (last 1)")
    g.restart()
    assert g.admit(Frame(3, "HOLD")) == (Admit.NEW, "")
    g.answered(2, b"late reply to an older command")
    assert g.reply is None


# ------------------------------------------------------------------------------------------ properties
@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=12), table=st.sampled_from([None, P, BRIDGE_MESSAGES]))
def test_decoding_any_byte_stream_never_raises(chunks: list[bytes], table) -> None:
    dec = Decoder(table)
    for c in chunks:
        for r in dec.feed(c):
            assert isinstance(r, (Frame, FrameError))
            if isinstance(r, FrameError):  # the text goes into an ERR field as it is
                assert isinstance(r.reason, Reason) and r.text and all(ord(c) in FIELD_CHARS for c in r.text)
    tail = dec.expire()
    assert tail is None or tail.reason is Reason.FORMAT


_FIELD = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$*,"), max_size=40)


@st.composite
def generic_frames(draw) -> Frame:
    return Frame(
        draw(st.integers(0, SEQ_MAX)),
        draw(st.from_regex(r"[A-Z][A-Z0-9]{0,15}", fullmatch=True)),
        tuple(draw(st.lists(_FIELD, max_size=6))),
    )


_ARG_VALUES = {
    "int": st.integers(-999_999_999, 999_999_999).map(str),
    "uint": st.integers(0, 999_999_999).map(str),
    "num": st.decimals(min_value=-999, max_value=999, places=3, allow_nan=False).map(lambda d: f"{d:.3f}"),
    "word": st.from_regex(r"[A-Za-z0-9_.:/-]{1,20}", fullmatch=True),
}


@st.composite
def table_frames(draw, table: dict[str, MessageSpec]) -> Frame:
    spec = table[draw(st.sampled_from(sorted(table)))]
    n = draw(st.integers(spec.min_args, len(spec.args)))
    args = []
    for a in spec.args[:n]:
        value = draw(_ARG_VALUES.get(a.kind, _FIELD.map(lambda s, m=a.max_len: s[:m])))
        if a.optional and draw(st.booleans()):
            value = ""
        if not a.optional and value == "":
            value = "x"
        args.append(value)
    return Frame(draw(st.integers(0, SEQ_MAX)), spec.kind, tuple(args))


@settings(max_examples=400, deadline=None)
@given(frame=st.one_of(generic_frames(), table_frames(PENDANT_MESSAGES), table_frames(BRIDGE_MESSAGES)))
def test_encode_decode_round_trips_every_valid_frame(frame: Frame) -> None:
    body_len = len(",".join((str(frame.seq), frame.kind, *frame.args)))
    assume(body_len <= MAX_BODY)
    data = encode(frame)
    assert len(data) <= MAX_FRAME
    assert decode_all(data) == [frame]
    for t in (PENDANT_MESSAGES, BRIDGE_MESSAGES):
        if _fits(frame, t):
            assert decode_all(data, t) == [frame]


def _fits(frame: Frame, table) -> bool:
    try:
        encode(frame, table)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=400), frame=table_frames(PENDANT_MESSAGES), cut=st.integers(0, 200))
def test_decoder_resynchronises_after_any_garbage(garbage: bytes, frame: Frame, cut: int) -> None:
    data = garbage + b"\r\n" + encode_fitted(frame)
    dec = Decoder(PENDANT_MESSAGES)
    cut = min(cut, len(data))
    results = dec.feed(data[:cut]) + dec.feed(data[cut:])
    assert results[-1] == Frame(frame.seq, frame.kind, tuple(sanitize(a) for a in frame.args))


@settings(max_examples=300, deadline=None)
@given(frame=table_frames(PENDANT_MESSAGES), data=st.data())
def test_a_flipped_bit_never_yields_another_frame(frame: Frame, data) -> None:
    raw = bytearray(encode_fitted(frame))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    frames = [r for r in decode_all(bytes(raw), PENDANT_MESSAGES) if isinstance(r, Frame)]
    assert frames in ([], [Frame(frame.seq, frame.kind, tuple(sanitize(a) for a in frame.args))])


def test_protocol_imports_no_rclpy() -> None:
    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "import cobot_cell.pendant.protocol, cobot_cell.pendant.transport, cobot_cell.pendant.link, "
        "cobot_cell.pendant.virtual, cobot_cell.pendant.session\n"
        "bad = sorted(m for m in sys.modules if m.startswith('rclpy') or m.endswith('_msgs'))\n"
        "assert bad == ['rclpy'], bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------------------ transport, pendant
def test_transport_reopens_a_lost_pty_with_backoff(tmp_path: Path) -> None:
    from cobot_cell.pendant.link import create_pty
    from cobot_cell.pendant.transport import SerialTransport

    events: list = []
    pty = create_pty(tmp_path / "pendant")
    t = SerialTransport(str(tmp_path / "pendant"), reconnect_min=0.05, reconnect_max=0.2).start()
    try:

        def seen(kind: str, n: int = 1) -> bool:
            events.extend(t.poll())
            return sum(e.kind == kind for e in events) >= n

        wait_until(lambda: seen("open"), 5, "the device open")
        os.write(pty.master, b"$1,HB*0000\r\n")
        wait_until(lambda: seen("data") and b"".join(e.data for e in events) == b"$1,HB*0000\r\n", 5, "the HB bytes")
        assert t.write(b"reply")
        got = bytearray()
        wait_until(
            lambda: (
                bool(select.select([pty.master], [], [], 0.05)[0])
                and got.extend(os.read(pty.master, 100))
                or got == b"reply"
            ),
            5,
            "the reply bytes",
        )
        pty.close()
        wait_until(lambda: seen("closed"), 5, "the device closed")
        assert not t.connected and not t.write(b"lost")  # writes while away are refused, never block
        pty = create_pty(tmp_path / "pendant")
        wait_until(lambda: seen("open", 2), 5, "the device reopened")
        assert t.opens == 2
    finally:
        t.stop()
        pty.close()


def test_transport_stops_reading_while_the_owner_lags_and_loses_nothing(tmp_path: Path) -> None:
    from cobot_cell.pendant.link import FdChannel, create_pty
    from cobot_cell.pendant.transport import READ_CHUNK, SerialTransport

    pty = create_pty(tmp_path / "pendant")
    t = SerialTransport(str(tmp_path / "pendant"), reconnect_min=0.05, max_pending_read=2048).start()
    sent = bytes(range(32, 127)) * 400  # 38,000 bytes, far beyond what the reader may hold
    received = bytearray()
    channel = FdChannel(pty.master, write_timeout=30.0)
    writer = threading.Thread(target=channel.write, args=(sent,))
    try:
        wait_until(lambda: any(e.kind == "open" for e in t.poll()), 5, "the device open")
        writer.start()
        wait_until(lambda: t.paused > 0, 5, "the reader to pause")  # nobody polls: the reader stopped reading
        received.extend(b"".join(e.data for e in t.poll()))
        assert 2048 <= len(received) < 2048 + READ_CHUNK
        wait_until(
            lambda: received.extend(b"".join(e.data for e in t.poll())) or len(received) >= len(sent), 30, "every byte"
        )
        writer.join(30)
        assert bytes(received) == sent
        for _ in range(1000):  # the write queue never refuses while the device is open
            assert t.write(b"$0,HB*B76D\r\n")
    finally:
        t.stop()
        pty.close()


def test_transport_refuses_bad_settings() -> None:
    from cobot_cell.pendant.transport import SerialTransport

    with pytest.raises(ValueError, match="parity must be one of N, E, O, got 'X'"):
        SerialTransport("loop://", parity="X")
    with pytest.raises(ValueError, match="reconnect delays must satisfy 0 < min <= max, got 2.0, 1.0"):
        SerialTransport("loop://", reconnect_min=2.0, reconnect_max=1.0)
    with pytest.raises(ValueError) as err:
        SerialTransport("loop://", max_pending_writes=0)
    assert str(err.value) == (
        "max_pending_writes and max_pending_read must be >= 1 and stall_timeout > 0, got 0, 4096, 10.0"
    )


def test_pendant_script_and_cli() -> None:
    import argparse

    from cobot_cell.pendant.link import parse_script
    from cobot_cell.pendant.virtual import register_cli

    assert parse_script("HELLO; PARTS 2  # two\n\nRESET;WAIT Idle 5; -ACK") == [
        ["HELLO"],
        ["PARTS", "2"],
        ["RESET"],
        ["WAIT", "Idle", "5"],
        ["-ACK"],
    ]
    p = argparse.ArgumentParser(prog="cobot-cell")
    register_cli(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["pendant", "--create-pty", "/tmp/x", "--script", "STATUS", "--parity", "E"])
    assert (args.create_pty, args.port, args.script, args.parity, args.heartbeat) == (
        "/tmp/x",
        None,
        "STATUS",
        "E",
        0.25,
    )
    assert args.func.__name__ == "cmd_pendant"
    with pytest.raises(SystemExit):
        p.parse_args(["pendant", "--port", "loop://", "--create-pty", "/tmp/x"])  # one line only


def test_the_part_count_bound_is_what_the_pendant_fields_hold() -> None:
    from cobot_cell.core.limits import MAX_PARTS

    def stat(parts: int) -> Frame:
        return Frame(1, "STAT", ("Execute", "bracket", "0", str(parts)))

    assert encode(stat(MAX_PARTS), BRIDGE_MESSAGES).startswith(b"$1,STAT,Execute,bracket,0,999999999*")
    with pytest.raises(ValueError) as err:
        encode(stat(MAX_PARTS + 1), BRIDGE_MESSAGES)
    assert str(err.value) == "STAT: argument parts '1000000000' is not a whole number >= 0"
    assert encode(Frame(2, "PARTS", (str(MAX_PARTS),)), PENDANT_MESSAGES) == encode(Frame(2, "PARTS", ("999999999",)))
