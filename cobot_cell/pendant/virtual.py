"""Virtual pendant: the terminal UI (keys for the commands, a live status line) and the `cobot-cell pendant`
command, scripted or interactive, on cobot_cell.pendant.link.

`cobot-cell pendant --create-pty /tmp/pendant` makes a pty pair and links its device to /tmp/pendant for
the bridge's `port` parameter; `--port DEV` uses an existing serial device or pyserial URL instead.
No rclpy: it speaks only the serial protocol (docs/pendant-protocol.md).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
import tty

from .link import (
    Channel,
    FdChannel,
    LinkClosed,
    PendantLink,
    ScriptError,
    SerialChannel,
    create_pty,
    parse_script,
    run_script,
)
from .protocol import PROTOCOL_VERSION, Frame, FrameError
from .transport import PARITIES

# ------------------------------------------------------------------------------------------ interactive pendant
KEYS: dict[str, str] = {
    "s": "START",
    "h": "HOLD",
    "r": "RESUME",
    "x": "STOP",
    "z": "RESET",
    "a": "ACK",
    "u": "SUSPEND",
    "b": "ABORT",
    "c": "CLEAR",
    "e": "REAPPROACH",
    "i": "STATUS",
}
HELP = (
    "keys: s start  h hold  r resume  x stop  z reset  a ack fault  u suspend  b abort  c clear  "
    "e reapproach  i status  j job  p parts  q quit"
)


def status_line(link: PendantLink) -> str:
    """One line: link, cell, state, job, parts, last cycle, fault."""
    v, s = link.view, link.view.stat
    age = time.monotonic() - link.last_rx
    linked = "link ok" if age < 1.5 else "NO CELL"
    parts = f"{s.get('parts_done', '?')}/{s.get('parts', '?')}"
    cycle = f"{s['last_cycle_time']} s" if s.get("last_cycle_time") else "-"
    fault = "-"
    if s.get("fault"):
        fault = f"{s.get('fault_code') or 'FAULT'}{' (acknowledged)' if s.get('fault_ack') == '1' else ''} {s['fault']}"
    return (
        f"[{v.cell or '?'}] {v.state or '?':<12} job {s.get('job') or '?'}  parts {parts}  "
        f"last cycle {cycle}  fault {fault}  ({linked})"
    )


def run_interactive(link: PendantLink, out=sys.stdout, stdin=sys.stdin) -> int:
    """Keys for the commands and a live status line, until `q` or Ctrl-C."""
    import termios

    shown = ""  # the status line on screen

    def show(text: str) -> None:
        nonlocal shown
        out.write(f"\r\033[K{text}\r\n")
        shown = ""  # redraw the status line below the message

    def on_frame(item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            show(f"line noise: {item.reason.value} {item.text}")
        elif item.kind in ("OK", "ERR") or item.kind in ("CYCLE", "FAULT", "HELLO"):
            show(f"{item.kind} {' '.join(item.args)}")

    link.on_frame = on_frame
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    out.write(HELP + "\r\n")
    link.send("HELLO", str(PROTOCOL_VERSION), link.device)
    try:
        tty.setcbreak(fd)
        while True:
            link.pump(0.05)
            line = status_line(link)
            if line != shown:
                shown = line
                out.write("\r\033[K" + line)
                out.flush()
            ready, _, _ = select.select([fd], [], [], 0)
            if not ready:
                continue
            key = os.read(fd, 1).decode("ascii", "replace")
            if key in ("q", "\x04"):
                break
            if key in KEYS:
                link.send(KEYS[key])
            elif key in ("j", "p"):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
                out.write("\r\033[K")
                try:
                    value = input("job: " if key == "j" else "parts: ").strip()
                finally:
                    tty.setcbreak(fd)
                if value:
                    link.send("JOB" if key == "j" else "PARTS", value)
            elif key == "?":
                show(HELP)
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        out.write("\r\n")
    return 0


# ------------------------------------------------------------------------------------------ CLI
def cmd_pendant(args: argparse.Namespace) -> int:
    """`cobot-cell pendant`: a virtual pendant on a serial device or a new pty."""
    pty_pair = None
    try:
        if args.create_pty:
            pty_pair = create_pty(args.create_pty)
            print(f"pendant pty: bridge port {pty_pair.path} -> {pty_pair.device}", flush=True)
            channel: Channel = FdChannel(pty_pair.master)
        else:
            channel = SerialChannel(args.port, args.baud, args.parity)
    except (OSError, ValueError) as exc:
        print(f"error: cannot open the pendant line: {exc}", file=sys.stderr)
        return 2
    link = PendantLink(channel, device=args.device)
    try:
        if args.heartbeat > 0:
            link.start_heartbeat(args.heartbeat)
        script = args.script
        if args.script_file:
            with open(args.script_file, encoding="utf-8") as fh:
                script = fh.read()
        if script is None and not sys.stdin.isatty():
            script = sys.stdin.read()
        if script is not None:
            if args.wait_bridge > 0:
                link.wait_for(
                    lambda: bool(link.view.hellos) and bool(link.view.stat),
                    args.wait_bridge,
                    "the bridge's HELLO and the cell's status",
                )
            run_script(link, parse_script(script), args.timeout, echo=lambda s: print(s, flush=True))
            return 0
        return run_interactive(link)
    except (ScriptError, TimeoutError, LinkClosed) as exc:
        print(f"pendant script failed: {exc}", file=sys.stderr)
        return 1
    finally:
        link.close()
        if pty_pair is not None:
            pty_pair.close()
            if os.path.islink(pty_pair.path):
                os.unlink(pty_pair.path)


def register_cli(subparsers) -> None:
    """Add the `pendant` subcommand to the `cobot-cell` argparse subparsers."""
    text = (
        "virtual teach pendant on a serial line: interactive (keys for the commands, live status line) "
        "or scripted (--script)"
    )
    s = subparsers.add_parser(
        "pendant",
        help=text,
        description=text,
        epilog="Script steps: CMD [ARG] (must be OK; -CMD tolerates ERR), WAIT <State> [s], "
        "PARTS_DONE <n> [s], SLEEP <s>; separated by ';' or newlines. Example: "
        "'HELLO; PARTS 2; RESET; WAIT Idle; START; PARTS_DONE 2 120'",
    )
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device or pyserial URL of the line to the bridge")
    where.add_argument(
        "--create-pty",
        metavar="PATH",
        help="create a pty pair and link its device to PATH (set the bridge's port to PATH)",
    )
    s.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    s.add_argument("--parity", choices=sorted(PARITIES), default="N", help="parity (default N)")
    s.add_argument("--device", default="virtual-pendant", help="device name sent in HELLO")
    s.add_argument("--heartbeat", type=float, default=0.25, help="HB period in seconds, 0 to send none")
    s.add_argument("--script", help="run these steps instead of the interactive pendant")
    s.add_argument("--script-file", help="run the steps in this file")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply or state")
    s.add_argument(
        "--wait-bridge",
        type=float,
        default=0.0,
        help="scripted: first wait up to this many seconds for the bridge (HELLO) and the cell (STAT)",
    )
    s.set_defaults(func=cmd_pendant)
