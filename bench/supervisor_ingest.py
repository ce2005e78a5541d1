"""Supervisor ingest: cycle reports per second written to SQLite by the real supervisor node, none lost.

--cells publisher processes (bare rclpy, one per cell) each publish --count cycle reports (DiagnosticStatus with
the key/values of a 3-step part, `cobot_cell.core.wire.encode_cycle`) on `/<cell>/cycle` with the planner's QoS
(common.REPORTS: reliable, transient local, depth 1000) as fast as they can, all starting together once each has
matched its subscriber. Two phases in the same run, in this order: the floor, a bare rclpy subscriber process
that only counts what arrives (no parsing, no writing), then the supervisor node (cobot_cell.ros.supervisor_node,
started like bringup does, following the cells) writing to a fresh SQLite production log.

rate = reports / (last one received, or last one visible in the log - first one published), wall clock
(CLOCK_MONOTONIC across processes; the log is polled every 10 ms). Proof nothing was lost: the log's parts and
steps are read back and compared field by field with what was published (count and content; duplicates would be
ignored by the log's primary key and show as a short count). Target (issue 6): >= 2,000 reports/s.

    .venv/bin/python bench/supervisor_ingest.py [--cells 4] [--count 1000] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DATE,
    PYTHON,
    Children,
    Figure,
    install_sigterm,
    machine_line,
    profile_summary,
    start_profile,
    table,
    wait_until,
    write_atomic,
    write_json,
)

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.core.wire import encode_cycle
from cobot_cell.ros.processes import DomainLease, ros_env

# Experiment (--dds-defaults): Fast DDS's own writer defaults (3 s heartbeat) instead of the package's profile
# (config/fastdds.xml, 50 ms heartbeat, which ros_env sets for every node): an empty default profile file.
EMPTY_PROFILE_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles/></dds>
"""

STEPS = (
    ("load_blank", "pick", "picker", 9.8),
    ("weld_seams", "weld", "welder", 20.88),
    ("palletise", "palletise", "picker", 8.92),
)


def make_report(cell: str, run_id: str, part: int) -> CycleReport:
    """The part-th report of a cell: deterministic, with distinct times per part."""
    t = 1000.0 + 39.6 * part + 0.001 * (sum(map(ord, cell)) % 1000)
    steps, s = [], t
    for name, skill, cobot, d in STEPS:
        steps.append(StepTiming(name, skill, cobot, s, s + d + part * 1e-6))
        s = s + d + part * 1e-6
    return CycleReport(
        cell=cell, job="bracket", run_id=run_id, part=part, start=t, end=s, status="done", steps=tuple(steps)
    )


# ---------------------------------------------------------------------------------------------- child roles
def _stop_flag() -> dict:
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag


def role_cell(cell: str, run_id: str, count: int, go: str, out: str) -> int:
    """Publish `count` reports on /<cell>/cycle as fast as possible once `go` exists; serve them until SIGINT."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.executors import SingleThreadedExecutor

    from cobot_cell.ros.common import REPORTS, status_msg

    flag = _stop_flag()
    rclpy.init()
    node = rclpy.create_node(f"bench_cell_{cell}")
    pub = node.create_publisher(DiagnosticStatus, f"/{cell}/cycle", REPORTS)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    msgs = []
    for part in range(1, count + 1):
        r = make_report(cell, run_id, part)
        msgs.append(
            status_msg(
                f"{cell}/cycle",
                DiagnosticStatus.OK,
                f"part {part} done in {r.cycle_time:.3f} s",
                encode_cycle(r),
                hardware_id=cell,
            )
        )
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < 1:
        ex.spin_once(timeout_sec=0.02)
        if time.monotonic() > deadline or flag["stop"]:
            print("no subscriber matched", file=sys.stderr)
            return 1
    Path(out + ".ready").write_text("1")
    while not Path(go).exists():
        ex.spin_once(timeout_sec=0.002)
        if time.monotonic() > deadline or flag["stop"]:
            print("no go", file=sys.stderr)
            return 1
    t_first = time.monotonic()
    for m in msgs:
        pub.publish(m)
    t_last = time.monotonic()
    write_atomic(out, json.dumps({"t_first": t_first, "t_last": t_last, "count": count}))
    end = time.monotonic() + 300
    while not flag["stop"] and time.monotonic() < end:  # keep the writer (and its history) alive
        ex.spin_once(timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_floor(cells: list[str], total: int, out: str) -> int:
    """Bare subscriber to every cell's cycle topic: count receipts, note first and last; JSON when all are in."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.executors import SingleThreadedExecutor

    from cobot_cell.ros.common import REPORTS

    flag = _stop_flag()
    rclpy.init()
    node = rclpy.create_node("bench_floor_subscriber")
    got = {"n": 0, "first": None, "last": None}

    def cb(msg):
        t = time.monotonic()
        got["n"] += 1
        if got["first"] is None:
            got["first"] = t
        got["last"] = t

    for c in cells:
        node.create_subscription(DiagnosticStatus, f"/{c}/cycle", cb, REPORTS)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + 300
    while got["n"] < total and not flag["stop"] and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.1)
    write_atomic(out, json.dumps(got))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ---------------------------------------------------------------------------------------------- phases
def publish_phase(
    kids: Children, script: str, work: Path, cells: list[str], run_id: str, count: int, tag: str
) -> float:
    """Start the cell publishers, wait until each matched a subscriber, let them go; first publish time."""
    go = work / f"go_{tag}"
    go.unlink(missing_ok=True)
    outs = [work / f"cell_{tag}_{c}.json" for c in cells]
    for c, o in zip(cells, outs):
        for f in (o, Path(str(o) + ".ready")):
            f.unlink(missing_ok=True)
        kids.start(
            f"cell_{tag}_{c}",
            [
                script,
                "--role",
                "cell",
                "--cell",
                c,
                "--run-id",
                run_id,
                "--count",
                str(count),
                "--go",
                str(go),
                "--file",
                str(o),
            ],
        )
    wait_until(lambda: all(Path(str(o) + ".ready").exists() for o in outs), 90, "publishers matched", check=kids.check)
    go.write_text("1")
    wait_until(lambda: all(o.exists() for o in outs), 120, "publishers done", check=kids.check)
    data = [json.loads(o.read_text()) for o in outs]
    return min(d["t_first"] for d in data), max(d["t_last"] for d in data)


def verify(db: Path, cells: list[str], run_id: str, count: int) -> tuple[int, int, list[str]]:
    """(parts, steps, problems) of the log against what was published."""
    problems: list[str] = []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        parts = {
            (c, p): (s, e, ct, st)
            for c, p, s, e, ct, st in con.execute(
                'SELECT cell, part, "start", "end", cycle_time, status FROM parts WHERE run_id = ?', (run_id,)
            )
        }
        steps = {
            (c, p, n): (sk, cb, s, e)
            for c, p, n, sk, cb, s, e in con.execute(
                'SELECT cell, part, step, skill, cobot, "start", "end" FROM steps WHERE run_id = ?', (run_id,)
            )
        }
    finally:
        con.close()
    for c in cells:
        for part in range(1, count + 1):
            r = make_report(c, run_id, part)
            row = parts.get((c, part))
            if row is None:
                problems.append(f"{c} part {part}: missing")
                continue
            if row != (r.start, r.end, r.cycle_time, r.status):
                problems.append(f"{c} part {part}: logged {row}, published {(r.start, r.end, r.cycle_time, r.status)}")
            for s in r.steps:
                if steps.get((c, part, s.step)) != (s.skill, s.cobot, s.start, s.end):
                    problems.append(f"{c} part {part} step {s.step}: logged {steps.get((c, part, s.step))}")
    return len(parts), len(steps), problems


def run(args: argparse.Namespace) -> list[Figure]:
    from cobot_cell.ros.bringup import NodeSpec
    from cobot_cell.ros.processes import NodeSet

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    cells = [f"ingest_cell_{i}" for i in range(1, args.cells + 1)]
    total = args.cells * args.count
    script = str(Path(__file__).resolve())
    print(machine_line())
    print(
        f"supervisor ingest: {args.cells} cells x {args.count} cycle reports = {total}, published as fast as "
        f"possible (REPORTS QoS); work dir {work}"
    )
    if args.dds_defaults:
        xml = work / "fastdds_defaults.xml"
        xml.write_text(EMPTY_PROFILE_XML)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(xml)
        print(f"  experiment: Fast DDS defaults (3 s writer heartbeat) in every process, through the empty {xml}")
    else:
        print(f"  DDS profile: {ros_env()['FASTDDS_DEFAULT_PROFILES_FILE']}")
    floor_rates, sup_rates, lost, problems_all = [], [], [], []
    pub_rates = []
    for rnd in range(args.rounds):
        # ------------------------------------------------------------------ floor: bare subscriber
        lease = DomainLease()
        kids = Children(ros_env(lease.domain_id, work / "ros_log"), work)
        try:
            fout = work / f"floor_{rnd}.json"
            fout.unlink(missing_ok=True)
            kids.start(
                f"floor_{rnd}",
                [
                    script,
                    "--role",
                    "floor",
                    "--cell-names",
                    ",".join(cells),
                    "--total",
                    str(total),
                    "--file",
                    str(fout),
                ],
            )
            t_first, t_pub_end = publish_phase(kids, script, work, cells, f"floor{rnd}", args.count, f"f{rnd}")
            wait_until(fout.exists, 120, "the floor subscriber to receive every report", check=kids.check)
            got = json.loads(fout.read_text())
        finally:
            kids.stop()
            lease.release()
        if got["n"] < total:
            raise RuntimeError(f"floor subscriber got {got['n']} of {total} reports")
        floor_rates.append(total / (got["last"] - t_first))
        pub_rates.append(total / (t_pub_end - t_first))
        # ------------------------------------------------------------------ the supervisor node
        db = work / f"production_{rnd}.db"
        for f in work.glob(f"production_{rnd}.db*"):
            f.unlink()
        run_id = f"ingest{rnd}"
        lease = DomainLease()
        env = ros_env(lease.domain_id, work / "ros_log")
        kids = Children(env, work)
        nodes = None
        try:
            spec = NodeSpec(
                "supervisor",
                "cobot_cell.ros.supervisor_node",
                "supervisor",
                "/",
                {"db": str(db), "cells": cells, "use_sim_time": False},
            )
            nodes = NodeSet([spec], work / f"sup_{rnd}", env, python=PYTHON).start()
            wait_until(db.exists, 60, "the supervisor's log")
            prof = None
            if args.profile and rnd == 0:
                prof = start_profile(nodes.procs[0].popen.pid, 15, work / "supervisor.pyspy.txt")
            t_first, _ = publish_phase(kids, script, work, cells, run_id, args.count, f"s{rnd}")
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            n = 0
            t_end = time.monotonic() + 120
            try:
                while time.monotonic() < t_end:
                    try:
                        n = con.execute("SELECT count(*) FROM parts WHERE run_id = ?", (run_id,)).fetchone()[0]
                    except sqlite3.OperationalError:
                        n = 0
                    if n >= total:
                        break
                    if nodes.dead():
                        raise RuntimeError(f"supervisor died (log {nodes.procs[0].log_path})")
                    time.sleep(0.01)
                t_done = time.monotonic()
            finally:
                con.close()
            if prof is not None:
                try:
                    prof.wait(30)
                except Exception:  # noqa: BLE001
                    prof.kill()
        finally:
            kids.stop()
            if nodes is not None:
                nodes.stop()
            lease.release()
        parts, steps, problems = verify(db, cells, run_id, args.count)
        lost.append(total - parts)
        problems_all += problems
        sup_rates.append(total / (t_done - t_first) if n >= total else math.nan)
        print(
            f"  round {rnd + 1}: floor {floor_rates[-1]:,.0f} reports/s received; supervisor "
            f"{sup_rates[-1]:,.0f} reports/s written; log holds {parts}/{total} parts, {steps}/{total * 3} steps, "
            f"{len(problems)} content mismatches; publishers alone {pub_rates[-1]:,.0f} reports/s"
        )
    for p in problems_all[:10]:
        print(f"    {p}")
    sup = min(sup_rates)
    flo = max(floor_rates)
    ok_all = sum(lost) == 0 and not problems_all
    tag = " (Fast DDS defaults, 3 s heartbeat)" if args.dds_defaults else ""
    figs = [
        Figure(
            f"supervisor ingest{tag}: reports/s written to SQLite",
            sup,
            flo,
            "/s",
            "(info)" if args.dds_defaults else ">= 2,000/s",
            None if args.dds_defaults else sup >= 2000 and ok_all,
            note=f"floor: bare rclpy subscriber receiving the same reports without writing; worst of "
            f"{args.rounds} round(s) vs best floor",
        ),
        Figure(
            f"supervisor ingest{tag}: reports lost or altered",
            float(sum(lost) + len(problems_all)),
            0.0,
            "",
            "0",
            ok_all,
            ratio=math.nan,
            note=f"{args.rounds} x {total} reports read back from the log and compared",
        ),
    ]
    print()
    print(table(figs, f"supervisor ingest ({DATE})"))
    if args.profile:
        print("\nsupervisor profile during round 1 (py-spy, inclusive share of non-idle samples):")
        print(profile_summary(work / "supervisor.pyspy.txt", top=args.profile_top))
    write_json(
        args.json,
        figs,
        {"floor_rates": floor_rates, "supervisor_rates": sup_rates, "lost": lost, "publish_rates": pub_rates},
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cells", type=int, default=4, help="publishing cells (processes), default 4")
    ap.add_argument("--count", type=int, default=1000, help="reports per cell, <= 1000 (the QoS depth)")
    ap.add_argument("--rounds", type=int, default=2, help="floor + supervisor rounds (default 2)")
    ap.add_argument("--quick", action="store_true", help="3 cells x 400 reports, 1 round")
    ap.add_argument("--profile", action="store_true", help="record the supervisor with py-spy (round 1)")
    ap.add_argument(
        "--dds-defaults",
        action="store_true",
        help="experiment: Fast DDS's default 3 s writer heartbeat instead of the package's profile",
    )
    ap.add_argument("--profile-top", type=int, default=30)
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    ap.add_argument("--role", choices=("cell", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    ap.add_argument("--cell-names", help=argparse.SUPPRESS)
    ap.add_argument("--run-id", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "cell":
        return role_cell(args.cell, args.run_id, args.count, args.go, args.file)
    if args.role == "floor":
        return role_floor(args.cell_names.split(","), args.total, args.file)
    if args.quick:
        args.cells, args.count, args.rounds = 3, 400, 1
    if not 1 <= args.count <= 1000:
        ap.error("--count must be 1..1000 (beyond the QoS depth a KEEP_LAST writer may drop reports)")
    install_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
