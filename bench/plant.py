"""Plant bench: one supervisor and one OPC UA server for --cells cells at --rate x real time.

One real simulated cell (the demo cell: sim drivers + planner at --rate) and --cells - 1 synthetic cells: one
helper process publishes, for each of them, the cell-level traffic a cell makes at that rate (a cycle report
per part every 39.6 s / rate, a state change and a status with it, a fault raised and cleared every 10th part)
on the planner's topics and QoS. The real supervisor (all cells) writes the production log and the real
opcua_bridge (all cells) serves the PackML objects. Measured in the same run:

- ingest: parts in the production log per cell == parts published (synthetic) / reported (real): nothing lost;
- OPC UA update latency: a state change published at t (CLOCK_MONOTONIC, shared by the processes) to its
  notification on an asyncua subscription (10 ms publishing interval) to every cell's Status.StateCurrent;
  floor: the same changes received by a bare rclpy subscriber (DDS alone); target p99 <= 100 ms;
- supervisor and bridge CPU (CPU s per wall s) and memory (VmRSS growth over idle) per cell.

    .venv/bin/python bench/plant.py [--cells 20] [--rate 10] [--duration 60] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DATE,
    Children,
    Figure,
    install_sigterm,
    machine_line,
    pct,
    proc_cpu_s,
    proc_rss_kb,
    summary_ms,
    table,
    wait_until,
    write_json,
)

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.core.wire import VERSION_KEY, WIRE_VERSION, FaultUpdate, encode_cycle, encode_fault
from cobot_cell.ros.processes import DomainLease, ros_env

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config" / "demo_cell.yaml"
CYCLE = 39.6  # sim seconds per part of the demo cell
STATES = ("Execute", "Suspended")


# ---------------------------------------------------------------------------------------------- synthetic cells
def synthetic(args: argparse.Namespace) -> int:
    """Helper process: publish the cell-level traffic of --names cells for --duration wall seconds."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from std_msgs.msg import String

    from cobot_cell.ros.common import LATCHED, REPORTS, STATE_CHANGES, status_msg

    names = args.names.split(",")
    rclpy.init()
    node = rclpy.create_node("synthetic_cells")
    pubs = {
        c: (
            node.create_publisher(String, f"/{c}/state", STATE_CHANGES),
            node.create_publisher(DiagnosticStatus, f"/{c}/status", LATCHED),
            node.create_publisher(DiagnosticStatus, f"/{c}/cycle", REPORTS),
        )
        for c in names
    }
    diag = node.create_publisher(DiagnosticArray, "/diagnostics", 100)
    # subscribers: the supervisor, the bridge and the bench's own rclpy floor
    wait_until(
        lambda: all(p[2].get_subscription_count() >= 2 and p[0].get_subscription_count() >= 2 for p in pubs.values()),
        60,
        "the supervisor and the bridge to match",
    )
    time.sleep(0.5)  # the bench's floor subscriber and the OPC UA subscription settle (not a synchronisation)
    period = CYCLE / args.rate
    start = time.monotonic()
    nxt = {c: start + period * i / len(names) for i, c in enumerate(names)}
    part = {c: 0 for c in names}
    events = open(args.events, "w")
    sim0 = 1000.0
    while time.monotonic() - start < args.duration:
        c = min(nxt, key=nxt.get)
        delay = nxt[c] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        part[c] += 1
        p = part[c]
        t = sim0 + p * CYCLE
        report = CycleReport(
            c,
            "bracket",
            f"{c}-run",
            p,
            t - CYCLE,
            t,
            "done",
            (
                StepTiming("load_blank", "pick", "picker", t - CYCLE, t - CYCLE + 9.8),
                StepTiming("weld_seams", "weld", "welder", t - CYCLE + 9.8, t - 8.9),
                StepTiming("palletise", "palletise", "picker", t - 8.9, t),
            ),
        )
        state_pub, status_pub, cycle_pub = pubs[c]
        state = STATES[p % 2]
        sent = time.monotonic()
        state_pub.publish(String(data=state))
        events.write(json.dumps({"cell": c, "state": state, "t": sent}) + "\n")
        status_pub.publish(
            status_msg(
                f"{c}/status",
                DiagnosticStatus.OK,
                state,
                [
                    (VERSION_KEY, str(WIRE_VERSION)),
                    ("state", state),
                    ("job", "bracket"),
                    ("parts", "1000"),
                    ("parts_done", str(p)),
                    ("run_id", f"{c}-run"),
                ],
                hardware_id=c,
            )
        )
        cycle_pub.publish(
            status_msg(f"{c}/cycle", DiagnosticStatus.OK, f"part {p}", encode_cycle(report), hardware_id=c)
        )
        if p % 10 == 0:
            for cleared in ("", repr(t + 2.0)):
                pairs = encode_fault(
                    FaultUpdate(
                        c,
                        f"syn-{c}-{p}",
                        "grip missed",
                        t - 1.0,
                        "GRIP_MISSED",
                        "picker",
                        id=p,
                        cleared=float(cleared) if cleared else None,
                    )
                )
                diag.publish(
                    DiagnosticArray(
                        status=[
                            status_msg(
                                f"{c}/task_planner/faults", DiagnosticStatus.ERROR, "grip missed", pairs, hardware_id=c
                            )
                        ]
                    )
                )
        nxt[c] += period
    events.close()
    Path(args.events + ".done").write_text(json.dumps(part))
    time.sleep(2.0)  # keep the writers alive while late readers catch up (transient local)
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------------------------------- measurement
class Floor:
    """A bare rclpy subscriber to the synthetic cells' state topics (DDS alone), in a thread."""

    def __init__(self, domain: int, cells: list[str]) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from cobot_cell.ros.common import STATE_CHANGES

        self.seen: list[tuple[str, str, float]] = []
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("plant_bench_floor", context=self.context)
        for c in cells:
            self.node.create_subscription(
                String, f"/{c}/state", lambda m, c=c: self.seen.append((c, m.data, time.monotonic())), STATE_CHANGES
            )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def latencies(events: list[dict], seen: list[tuple[str, str, float]]) -> tuple[list[float], int]:
    """Per published state change, the delay to the first matching reception after it; and how many had none."""
    by_cell: dict[str, list[tuple[str, float]]] = {}
    for c, v, t in seen:
        by_cell.setdefault(c, []).append((v, t))
    out, missing = [], 0
    for e in events:
        got = [t for v, t in by_cell.get(e["cell"], []) if v == e["state"] and t >= e["t"]]
        if got:
            out.append(min(got) - e["t"])
        else:
            missing += 1
    return out, missing


async def opcua_watch(url: str, cells: list[str], seen: list, ready: threading.Event, done: threading.Event) -> None:
    """Subscribe to every cell's Status.StateCurrent; record (cell, state name, time) per notification."""
    from asyncua import Client

    from cobot_cell.plant.opcua_server import PACKML_URI
    from cobot_cell.plant.packml import STATE_NUMBERS

    names = {n: s for s, n in STATE_NUMBERS.items()}
    client = Client(url, timeout=30)
    end = time.monotonic() + 60
    while True:
        try:
            await client.connect()
            break
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)
    try:
        ns = await client.get_namespace_index(PACKML_URI)
        nodes = {}
        for c in cells:
            n = await client.nodes.objects.get_child(
                [f"{ns}:PackMLObjects", f"{ns}:{c}", f"{ns}:Status", f"{ns}:StateCurrent"]
            )
            nodes[n.nodeid] = c

        class Handler:
            def datachange_notification(self, node, val, data) -> None:
                seen.append((nodes[node.nodeid], names.get(val, ""), time.monotonic()))

        sub = await client.create_subscription(10, Handler())
        # queue 10 per item: under load a late publish must not fold two state changes into one notification
        await sub.subscribe_data_change([client.get_node(n) for n in nodes], queuesize=10)
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.05)
    finally:
        try:
            await client.disconnect()
        except ConnectionError:  # the server went first
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> list[Figure]:
    from cobot_cell.ros.bringup import BringupOptions, node_specs, plant_specs, supervisor_spec
    from cobot_cell.ros.client import CellClient
    from cobot_cell.ros.processes import NodeSet
    from cobot_cell.skills import load_cell

    work = Path(tempfile.mkdtemp(prefix="plant_bench_"))
    lease = DomainLease()
    env = ros_env(lease.domain_id, work / "ros_log")
    synthetic_cells = [f"syn{i:02d}" for i in range(1, args.cells)]
    cells = ["demo", *synthetic_cells]
    url = f"opc.tcp://127.0.0.1:{free_port()}/plant/"
    db = work / "production.db"
    cfg = load_cell(DEMO)
    parts = math.ceil(args.duration * args.rate / CYCLE) + 2
    specs = node_specs(
        cfg, DEMO, BringupOptions(rate=args.rate, parts=parts, supervisor=False, journal=str(work / "demo.journal.db"))
    )
    specs.append(supervisor_spec(db, cells))
    bridge = plant_specs(cells, [], BringupOptions(opcua=url, allow_none=True))[0]
    bridge.parameters["pki_dir"] = str(work / "pki")
    specs.append(bridge)
    nodes = NodeSet(specs, work, env)
    helpers = Children(env, work)
    client = floor = None
    opc_seen: list = []
    ready, done = threading.Event(), threading.Event()
    watcher = None
    try:
        nodes.start()
        client = CellClient("demo", domain_id=lease.domain_id, use_sim_time=True, node_name="plant_bench")
        client.wait_for(lambda: client.state == "Stopped", 60, "the demo cell")
        sup, brg = nodes.proc("/supervisor").popen.pid, nodes.proc("/opcua_bridge").popen.pid
        floor = Floor(lease.domain_id, synthetic_cells)
        watcher = threading.Thread(
            target=lambda: asyncio.run(opcua_watch(url, cells, opc_seen, ready, done)), daemon=True
        )
        watcher.start()
        wait_until(ready.is_set, 120, "the OPC UA subscription")
        idle_rss = {pid: proc_rss_kb(pid) for pid in (sup, brg)}
        cpu0 = {pid: proc_cpu_s(pid) for pid in (sup, brg)}
        assert client.command("reset")[0]
        client.wait_for(lambda: client.state == "Idle", 30, "Idle")
        assert client.command("start")[0]
        client.wait_for(lambda: client.state == "Execute", 30, "Execute")
        t0 = time.monotonic()
        events = work / "events.jsonl"
        helpers.start(
            "synthetic",
            [
                __file__,
                "--synthetic",
                "--names",
                ",".join(synthetic_cells),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--events",
                str(events),
            ],
        )
        wait_until(
            lambda: Path(str(events) + ".done").exists(),
            args.duration + 120,
            "the synthetic cells",
            check=lambda: (helpers.check(), client.spin_once(0.0)),
        )
        t1 = time.monotonic()
        cpu1 = {pid: proc_cpu_s(pid) for pid in (sup, brg)}
        end_rss = {pid: proc_rss_kb(pid) for pid in (sup, brg)}
        published = json.loads(Path(str(events) + ".done").read_text())
        real_parts = len(client.reports)

        def logged() -> dict[str, int]:
            with sqlite3.connect(db) as conn:
                return dict(conn.execute("SELECT cell, count(*) FROM parts GROUP BY cell").fetchall())

        try:
            wait_until(lambda: all(logged().get(c, 0) >= n for c, n in published.items()), 30, "ingest")
        except TimeoutError:
            pass
        counts = logged()
        lost = sum(max(0, n - counts.get(c, 0)) for c, n in published.items())
        lost += max(0, real_parts - counts.get("demo", 0))
        time.sleep(0.5)  # the last notifications (a measurement window, not a synchronisation)
        done.set()
        evs = [json.loads(line) for line in events.read_text().splitlines()]
        opc, opc_missing = latencies(evs, opc_seen)
        dds, dds_missing = latencies(evs, list(floor.seen))
        (work / "seen.json").write_text(json.dumps({"opcua": opc_seen, "dds": list(floor.seen)}))
    finally:
        done.set()
        if watcher is not None:
            watcher.join(10)
        if floor is not None:
            floor.close()
        if client is not None:
            client.close()
        helpers.stop()
        nodes.stop()
        lease.release()
    wall = t1 - t0
    total = sum(published.values()) + real_parts
    print(f"work dir {work} (events.jsonl: state changes published, seen.json: received)")
    print(
        f"{args.cells} cells ({len(synthetic_cells)} synthetic) at {args.rate:g}x for {wall:.1f} s wall: "
        f"{total} parts published ({real_parts} by the real cell), {sum(counts.values())} logged, lost {lost}"
    )
    print(f"OPC UA state updates   {summary_ms(opc)}  (no notification: {opc_missing})")
    print(f"DDS floor (rclpy sub)  {summary_ms(dds)}  (not received: {dds_missing})")
    per_cell = {}
    for name, pid in (("supervisor", sup), ("opcua_bridge", brg)):
        cpu = (cpu1[pid] - cpu0[pid]) / wall
        mem = (end_rss[pid] - idle_rss[pid]) / 1024 / args.cells
        per_cell[name] = (cpu / args.cells, mem)
        print(
            f"{name:13s} CPU {cpu * 100:5.1f} % of a core ({cpu / args.cells * 100:.2f} %/cell), "
            f"RSS {idle_rss[pid] / 1024:.1f} -> {end_rss[pid] / 1024:.1f} MB ({mem:.2f} MB/cell)"
        )
    p99, floor99 = pct(opc, 0.99), pct(dds, 0.99)
    return [
        Figure(
            "plant: parts lost (ingest)",
            float(lost),
            0.0,
            "parts",
            "= 0",
            lost == 0,
            note=f"{total} parts of {args.cells} cells at {args.rate:g}x",
        ),
        Figure(
            "plant: OPC UA state update p99",
            p99 * 1e3,
            floor99 * 1e3,
            "ms",
            "<= 100 ms",
            p99 <= 0.1,
            note=f"floor: DDS alone; median {pct(opc, 0.5) * 1e3:.1f} ms, {opc_missing} without notification",
        ),
        Figure("plant: supervisor CPU per cell", per_cell["supervisor"][0] * 100, math.nan, "% core", "", None),
        Figure("plant: supervisor memory per cell", per_cell["supervisor"][1], math.nan, "MB", "", None),
        Figure("plant: OPC UA bridge CPU per cell", per_cell["opcua_bridge"][0] * 100, math.nan, "% core", "", None),
        Figure("plant: OPC UA bridge memory per cell", per_cell["opcua_bridge"][1], math.nan, "MB", "", None),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=20)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=60.0, help="wall seconds of synthetic traffic")
    p.add_argument("--quick", action="store_true", help="20 s of traffic")
    p.add_argument("--json")
    p.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--names", help=argparse.SUPPRESS)
    p.add_argument("--events", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.synthetic:
        return synthetic(args)
    if args.quick:
        args.duration = 20.0
    install_sigterm()
    print(f"plant bench ({DATE}), {machine_line()}")
    figures = run(args)
    print(table(figures, "plant"))
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
