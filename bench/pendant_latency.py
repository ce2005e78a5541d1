"""Pendant latency: command frame on the serial line -> cell state change -> STATE frame back, through real nodes.

Runs the demo cell's node set (sim drivers, task_planner, supervisor) plus the pendant_bridge on a pty pair,
then sends N commands from a virtual pendant, alternating RESET (Stopped -> Idle) and STOP (Idle -> Stopped),
and times each until the first STATE frame with the new state (and until the OK reply). For comparison the
same commands go straight to the planner's services from a CellClient (service call -> state topic).
Prints median / p90 / p99 / max and the bridge-over-direct ratio. Then how the bridge answers under load, against a
plain STATUS round trip measured in the same run: STATUS sent right after 10,000 random bytes (the ERR replies are
rate-limited), and 1,000 STATUS frames in one write (each answered once).

    .venv/bin/python bench/pendant_latency.py [--count 200]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cobot_cell.pendant.link import FdChannel, PendantLink, create_pty  # noqa: E402
from cobot_cell.pendant.protocol import Frame, encode  # noqa: E402
from cobot_cell.ros.bringup import BringupOptions, NodeSpec, node_specs  # noqa: E402
from cobot_cell.ros.client import CellClient  # noqa: E402
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env  # noqa: E402
from cobot_cell.skills import load_cell  # noqa: E402

CELL_FILE = REPO / "config" / "demo_cell.yaml"
SEQUENCE = (("RESET", "reset", "Idle"), ("STOP", "stop", "Stopped"))


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def row(name: str, ms: list[float]) -> str:
    return (
        f"{name:<47} n={len(ms):<4} median {statistics.median(ms):6.2f}  p90 {pct(ms, 0.90):6.2f}  "
        f"p99 {pct(ms, 0.99):6.2f}  max {max(ms):6.2f} ms"
    )


def via_pendant(link: PendantLink, count: int) -> tuple[list[float], list[float]]:
    """(command -> STATE frame, command -> reply) latencies in ms."""
    to_state, to_reply = [], []
    for i in range(count):
        kind, _, target = SEQUENCE[i % 2]
        before = link.view.state
        mark = len(link.received)
        t0 = time.perf_counter()
        seq = link.send(kind)

        def state_frame(mark: int = mark, before: str | None = before):
            return next(
                (
                    r
                    for r in link.received[mark:]
                    if isinstance(r.item, Frame) and r.item.kind == "STATE" and r.item.args[0] != before
                ),
                None,
            )

        link.wait_for(lambda seq=seq: state_frame() is not None and seq in link.replies, 10, f"{kind} done")
        reply = next(
            r
            for r in link.received[mark:]
            if isinstance(r.item, Frame) and r.item.seq == seq and r.item.kind in ("OK", "ERR")
        )
        if reply.item.kind != "OK":
            raise RuntimeError(f"{kind} refused: {reply.item.args}")
        to_state.append((state_frame().t - t0) * 1e3)
        to_reply.append((reply.t - t0) * 1e3)
        link.wait_state(target, 10)
    return to_state, to_reply


def direct_calls(client: CellClient, count: int) -> list[float]:
    """Service call -> state topic latencies in ms, from a CellClient in this process."""
    from std_srvs.srv import Trigger

    clients = {svc: client.node.create_client(Trigger, f"/{client.cell}/{svc}") for _, svc, _ in SEQUENCE}
    for c in clients.values():
        client.wait_for(c.service_is_ready, 10, c.srv_name)
    out = []
    for i in range(count):
        _, service, target = SEQUENCE[i % 2]
        before = client.state
        t0 = time.perf_counter()
        future = clients[service].call_async(Trigger.Request())
        client.wait_for(lambda before=before: client.state != before, 10, f"{service} state change")
        out.append((time.perf_counter() - t0) * 1e3)
        client.wait_for(
            lambda future=future, target=target: future.done() and client.state == target, 10, f"{service} done"
        )
        if not future.result().success:
            raise RuntimeError(f"{service} refused: {future.result().message}")
    return out


def status_round_trips(link: PendantLink, count: int) -> list[float]:
    """STATUS -> OK reply latencies in ms."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        link.command("STATUS", timeout=10)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def status_after_noise(link: PendantLink, count: int, size: int = 10_000) -> list[float]:
    """ms from the start of writing `size` random bytes (+ CRLF) to the OK of a STATUS sent right after them."""
    noise = random.Random(20240605)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        link.write(noise.randbytes(size) + b"\r\n")
        link.command("STATUS", timeout=10)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def status_burst(link: PendantLink, frames: int = 1000) -> float:
    """Seconds from writing `frames` STATUS frames in one write to the last of their replies."""
    seqs = [link.next_seq() for _ in range(frames)]
    wanted = set(seqs)
    mark = len(link.received)
    link.channel.write_timeout = 60.0  # the bridge may pause reading while the pendant reads its replies
    t0 = time.perf_counter()
    writer = threading.Thread(target=link.write, args=(b"".join(encode(Frame(s, "STATUS")) for s in seqs),))
    writer.start()

    def answered() -> int:
        return len(
            {
                r.item.seq
                for r in link.received[mark:]
                if isinstance(r.item, Frame) and r.item.kind in ("OK", "ERR") and r.item.seq in wanted
            }
        )

    try:
        link.wait_for(lambda: answered() == frames, 120, f"a reply to each of {frames} STATUS frames")
    finally:
        writer.join(60)
        link.channel.write_timeout = 5.0
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="commands per measurement (default 200)")
    ap.add_argument("--out", help="work dir (default: a new temp dir)")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    work = Path(args.out or tempfile.mkdtemp(prefix="pendant_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_cell(str(CELL_FILE))
    pty = create_pty(work / "pendant")
    with DomainLease() as lease:
        options = BringupOptions(rate=20.0, parts=2, db=str(work / "p.db"), journal=str(work / "journal.db"))
        specs = node_specs(cfg, CELL_FILE, options)
        specs.append(
            NodeSpec(
                "pendant_bridge",
                "cobot_cell.ros.pendant_node",
                "pendant_bridge",
                f"/{cfg.cell.name}",
                {"port": str(work / "pendant")},
            )
        )
        nodes = NodeSet(specs, work / "nodes", ros_env(lease.domain_id, work / "log"))
        link = client = None
        try:
            nodes.start()
            link = PendantLink(FdChannel(pty.master), device="bench")
            link.start_heartbeat(0.25)
            link.wait_for(lambda: bool(link.view.hellos) and link.view.state is not None, 60, "the bridge")
            link.hello()
            if link.view.state != "Stopped":
                raise RuntimeError(f"cell starts in state {link.view.state}, expected Stopped")
            via_pendant(link, 10)  # warm-up: discovery, first calls
            to_state, to_reply = via_pendant(link, args.count)
            rounds = max(3, args.count // 10)
            plain = status_round_trips(link, rounds)
            noisy = status_after_noise(link, rounds)
            plain += status_round_trips(link, rounds)  # before and after: the floor sees the same conditions
            burst = status_burst(link)
            client = CellClient(cfg.cell.name, domain_id=lease.domain_id, node_name="bench_client")
            client.wait_for(lambda: client.state == "Stopped", 30, "the planner's state")
            direct_calls(client, 10)
            base = direct_calls(client, args.count)
        finally:
            if link is not None:
                link.close()
            if client is not None:
                client.close()
            nodes.stop()
            pty.close()
    print(
        f"pendant bridge latency, {args.count} commands (RESET/STOP alternating), cell '{cfg.cell.name}', "
        f"real node processes, pty line"
    )
    print(row("pendant command -> STATE frame back", to_state))
    print(row("pendant command -> OK reply", to_reply))
    print(row("direct: Trigger call -> state topic (baseline)", base))
    print(f"ratio bridge / direct (median): {statistics.median(to_state) / statistics.median(base):.2f}")
    print(row("STATUS -> OK reply (floor for the two below)", plain))
    print(row("10,000 random bytes, then STATUS -> OK reply", noisy))
    print(f"ratio after noise / plain STATUS (median): {statistics.median(noisy) / statistics.median(plain):.2f}")
    per_frame = burst / 1000 * 1e3
    print(
        f"1,000 STATUS frames in one write: last reply after {burst:.2f} s = {per_frame:.2f} ms per frame, "
        f"{per_frame / statistics.median(plain):.2f}x a plain STATUS round trip"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
