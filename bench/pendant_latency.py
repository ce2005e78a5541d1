"""Pendant latency: command frame on the serial line -> cell state change -> STATE frame back, through real nodes.

Runs the demo cell's node set (sim drivers, task_planner, supervisor) plus the pendant_bridge on a pty pair,
then sends N commands from a virtual pendant, alternating RESET (Stopped -> Idle) and STOP (Idle -> Stopped),
and times each until the first STATE frame with the new state (and until the OK reply). For comparison the
same commands go straight to the planner's services from a CellClient (service call -> state topic).
Prints median / p90 / p99 / max and the bridge-over-direct ratio.

    .venv/bin/python bench/pendant_latency.py [--count 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cobot_cell.pendant.link import FdChannel, PendantLink, create_pty  # noqa: E402
from cobot_cell.pendant.protocol import Frame  # noqa: E402
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
        specs = node_specs(cfg, CELL_FILE, BringupOptions(rate=20.0, parts=2, db=str(work / "p.db")))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
