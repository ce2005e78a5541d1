"""Memory: resident set size (VmRSS) of every node of the demo cell after N parts, against a bare rclpy node.

Runs the demo cell through its real node set (sim drivers, task_planner, supervisor) for --parts parts at
--rate, reads VmRSS (and VmHWM, the peak) of each node process from /proc/<pid>/status after the first part
and after the last, and, in the same run, the VmRSS of a bare rclpy node (rclpy.init + one Node + one
subscription, spinning; nothing of cobot_cell imported) started with the same interpreter and environment:
the floor. Target (issue 6):
<= 80 MB per node after 100 parts.

    .venv/bin/python bench/memory.py [--parts 100] [--rate 20] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DATE,
    REPO,
    Children,
    Figure,
    install_sigterm,
    machine_line,
    proc_rss_kb,
    run_cell,
    short_fqn,
    table,
    wait_until,
    write_json,
)

from cobot_cell.ros.processes import DomainLease, ros_env

CELL_FILE = REPO / "config" / "demo_cell.yaml"
TARGET_MB = 80.0


# The floor runs as `python -c BARE_NODE ready_file`: only rclpy and std_msgs imported, nothing of cobot_cell.
BARE_NODE = """
import sys, pathlib, rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("bench_bare_node")
node.create_subscription(String, "bench_bare_topic", lambda m: None, 10)
for _ in range(10):
    rclpy.spin_once(node, timeout_sec=0.05)
pathlib.Path(sys.argv[1]).write_text("1")
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
finally:
    node.destroy_node()
    rclpy.try_shutdown()
"""


def bare_rss_kb(work: Path) -> int:
    """VmRSS of a bare rclpy node process, measured now (the node is started and stopped here)."""
    lease = DomainLease()
    kids = Children(ros_env(lease.domain_id, work / "ros_log"), work)
    try:
        ready = work / "bare.ready"
        ready.unlink(missing_ok=True)
        child = kids.start("bare_node", ["-c", BARE_NODE, str(ready)])
        wait_until(lambda: ready.exists(), 60, "the bare node", check=kids.check)
        time.sleep(1.0)
        return proc_rss_kb(child.popen.pid) or 0
    finally:
        kids.stop()
        lease.release()


def run(args: argparse.Namespace) -> list[Figure]:
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(f"memory: demo cell, {args.parts} parts at {args.rate:g}x, VmRSS of every node; work dir {work}")
    floor_before = bare_rss_kb(work)
    r = run_cell(CELL_FILE, args.rate, args.parts, work / "cell", rss_at_parts=(1,))
    floor_after = bare_rss_kb(work)
    floor = max(floor_before, floor_after)
    print(
        f"  run: {r.parts} parts in {r.wall:.1f} s wall ({r.speed:.1f}x), all done: "
        f"{all(x.status == 'done' for x in r.reports)}"
    )
    print(f"  bare rclpy node (floor): {floor_before / 1024:.1f} MB before, {floor_after / 1024:.1f} MB after the run")
    after1 = r.rss_at.get(1, {})
    print(f"  {'node':<24} {'after part 1':>12} {f'after {r.parts}':>12} {'peak (HWM)':>11}")
    for fqn in r.pids:
        a1 = after1.get(fqn)
        print(
            f"  {short_fqn(fqn):<24} {(f'{a1 / 1024:.1f} MB' if a1 else '-'):>12} "
            f"{r.rss_kb[fqn] / 1024:>9.1f} MB {r.hwm_kb[fqn] / 1024:>8.1f} MB"
        )
    figs = [
        Figure(
            f"memory: {short_fqn(fqn)} RSS after {r.parts} parts",
            r.rss_kb[fqn] / 1024,
            floor / 1024,
            "MB",
            f"<= {TARGET_MB:g} MB",
            r.rss_kb[fqn] / 1024 <= TARGET_MB,
        )
        for fqn in r.pids
    ]
    figs[0].note = "floor: bare rclpy node (init + Node + 1 subscription) measured in this run"
    print()
    print(table(figs, f"memory ({DATE})"))
    write_json(
        args.json,
        figs,
        {"rss_kb": r.rss_kb, "hwm_kb": r.hwm_kb, "rss_after_part_1": after1, "bare_kb": [floor_before, floor_after]},
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", type=int, default=100, help="parts (default 100)")
    ap.add_argument("--rate", type=float, default=20.0, help="sim rate (default 20)")
    ap.add_argument("--quick", action="store_true", help="20 parts")
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    args = ap.parse_args(argv)
    if args.quick:
        args.parts = min(args.parts, 20)
    install_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
