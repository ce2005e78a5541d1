"""Dispatch overhead: how long the planner takes from seeing a step complete to the next trajectory at a driver.

A generated cell (two sim cobots, each in its own process, sim at 1x real time) runs one part of a job of N
near-zero pick steps (stations 3 mm apart, 1 mm approach, no settle, no return home) chained
a -> b -> a -> ... so every step starts when the other cobot's step has ended. A probe process subscribes to
both cobots' `joint_states` and `joint_trajectory_controller/joint_trajectory` and timestamps every receipt
with time.monotonic() (CLOCK_MONOTONIC, shared by all processes of the machine).

What is measured, per transition between two consecutive trajectories P -> T:
  seen    = the probe's receipt of the first joint state of P's cobot stamped at or after P's planned end
            (P's header stamp + its last time_from_start): the sample that lets the planner see P complete
            (the planner and the probe receive the same DDS sample; the planner also checks the tolerance,
            which a sim arm meets exactly at the planned end);
  arrived = the probe's receipt of T, i.e. when T reaches the drivers' topic (the driver is one hop away like
            the probe).
  latency = arrived - seen.
Transitions are classed: step boundary (T is the first trajectory of the next step, on the other cobot: the
planner ends the step, starts the next one from the plan it made ahead and publishes; the step's journal
write follows the publish), move -> move inside a step, and
move -> IO call -> move inside a step (a SetBool round trip to the driver in between). The first two steps
(moves from home) are left out.

Floor, measured in the same run while the cell's nodes are up and idle (before and after the job): a bare rclpy
`source` process publishes sensor_msgs/JointState at 100 Hz, a bare `relay` process replies to each with a
JointTrajectory (6 points x 6 joints, the size of a tiny move), the source times publish -> reply (the
publisher -> subscriber -> reply round trip between two processes of the issue), and the same probe times
its receipt of the JointState -> its receipt of the reply, exactly like the real measurement (like for like).

Target (issue 6): median step-boundary latency <= 1.2 x the round-trip floor.

    .venv/bin/python bench/dispatch_overhead.py [--steps 200] [--quick] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
    median,
    proc_cpu_s,
    profile_summary,
    start_profile,
    summary_ms,
    table,
    wait_until,
    write_atomic,
    write_json,
)

from cobot_cell.ros.processes import DomainLease, ros_env

FLOOR_JS = "/bench_floor/joint_states"
FLOOR_REPLY = "/bench_floor/reply"
HOME = [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]


# ---------------------------------------------------------------------------------------------- cell file
def dispatch_cell(steps: int) -> dict:
    """Two cobots facing each other, each with two fixtures 3 mm apart; `steps` tiny picks chained a, b, a..."""
    cobots, stations = {}, {}
    for name, x, yaw, sx in (("a", 0.0, 0.0, 0.45), ("b", 1.1, 3.14159265, 0.65)):
        cobots[name] = {
            "model": "ur5e",
            "joints": [f"{name}_joint_{k}" for k in range(1, 7)],
            "base": {"xyz": [x, 0.0, 0.0], "rpy": [0.0, 0.0, yaw]},
            "home": HOME,
            "limits": {"velocity": [1.2, 1.2, 1.5, 2.0, 2.0, 2.0], "acceleration": [2.5, 2.5, 3.0, 4.0, 4.0, 4.0]},
            "tools": {"gripper": {"kind": "gripper", "io": "gripper/grip", "tcp": [0.0, 0.0, 0.15]}},
        }
        stations[f"{name}_here"] = {"kind": "fixture", "pose": {"xyz": [sx, 0.300, 0.10], "rpy": [0, 0, 0]}}
        stations[f"{name}_there"] = {"kind": "fixture", "pose": {"xyz": [sx, 0.303, 0.10], "rpy": [0, 0, 0]}}
    job = []
    for k in range(steps):
        c = "ab"[k % 2]
        step = {
            "name": f"s{k:03d}",
            "skill": "pick",
            "cobot": c,
            "params": {
                "from": f"{c}_here",
                "to": f"{c}_there",
                "approach": 0.001,
                "approach_speed": 0.25,
                "settle": 0.0,
                "return_home": False,
            },
        }
        if k:
            step["after"] = [f"s{k - 1:03d}"]
        job.append(step)
    return {
        "cell": {"name": "dispatch", "description": "bench: near-zero pick steps, chained across two cobots"},
        "cobots": cobots,
        "stations": stations,
        "jobs": {"tiny": {"steps": job}},
    }


# ---------------------------------------------------------------------------------------------- child roles
def _spin_until_signal(node, executor, on_exit) -> None:
    stop = {"flag": False}

    def handler(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop["flag"]:
            executor.spin_once(timeout_sec=0.1)
    finally:
        on_exit()


def role_probe(out: str, cobots: list[str]) -> int:
    """Timestamp every joint state and trajectory of the cobots and of the floor topics; dump JSON on SIGINT."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from cobot_cell.ros.common import STATES

    rclpy.init()
    node = Node("bench_dispatch_probe")
    now = time.monotonic
    js: dict[str, list] = {c: [] for c in cobots}
    tr: dict[str, list] = {c: [] for c in cobots}
    floor_js: list = []
    floor_reply: list = []

    def on_js(c):
        rec = js[c]
        return lambda m: rec.append((now(), m.header.stamp.sec, m.header.stamp.nanosec))

    def on_tr(c):
        rec = tr[c]

        def cb(m):
            t = now()
            last = m.points[-1].time_from_start if m.points else None
            rec.append(
                (
                    t,
                    m.header.stamp.sec,
                    m.header.stamp.nanosec,
                    (last.sec + last.nanosec * 1e-9) if last else 0.0,
                    len(m.points),
                )
            )

        return cb

    for c in cobots:
        node.create_subscription(JointState, f"/{c}/joint_states", on_js(c), STATES)
        node.create_subscription(JointTrajectory, f"/{c}/joint_trajectory_controller/joint_trajectory", on_tr(c), 10)
    node.create_subscription(JointState, FLOOR_JS, lambda m: floor_js.append((now(), m.header.stamp.sec)), STATES)
    node.create_subscription(
        JointTrajectory, FLOOR_REPLY, lambda m: floor_reply.append((now(), m.header.stamp.sec)), 10
    )
    ex = SingleThreadedExecutor()
    ex.add_node(node)

    def dump():
        write_atomic(out, json.dumps({"js": js, "tr": tr, "floor_js": floor_js, "floor_reply": floor_reply}))
        node.destroy_node()
        rclpy.try_shutdown()

    Path(out + ".ready").write_text("1")
    _spin_until_signal(node, ex, dump)
    return 0


def role_relay() -> int:
    """Bare rclpy relay: reply to each floor JointState with a JointTrajectory carrying its stamp."""
    import rclpy
    from builtin_interfaces.msg import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from cobot_cell.ros.common import STATES

    rclpy.init()
    node = Node("bench_relay")
    pub = node.create_publisher(JointTrajectory, FLOOR_REPLY, 10)
    names = [f"j{k}" for k in range(6)]
    points = [
        JointTrajectoryPoint(
            positions=[0.1 * k] * 6, velocities=[0.0] * 6, time_from_start=Duration(sec=0, nanosec=20_000_000 * k)
        )
        for k in range(6)
    ]

    def on_js(msg):
        reply = JointTrajectory(joint_names=names, points=points)
        reply.header.stamp = msg.header.stamp
        pub.publish(reply)

    node.create_subscription(JointState, FLOOR_JS, on_js, STATES)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    _spin_until_signal(node, ex, lambda: (node.destroy_node(), rclpy.try_shutdown()))
    return 0


def role_source(out: str, count: int, hz: float, seq0: int = 0) -> int:
    """Bare rclpy publisher: `count` JointStates at `hz`, timing publish -> relay reply; JSON to `out`."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from cobot_cell.ros.common import STATES

    rclpy.init()
    node = Node("bench_source")
    pub = node.create_publisher(JointState, FLOOR_JS, STATES)
    sent: dict[int, float] = {}
    rtt: list[float] = []

    def on_reply(msg):
        t = time.monotonic()
        t0 = sent.pop(msg.header.stamp.sec, None)
        if t0 is not None:
            rtt.append(t - t0)

    node.create_subscription(JointTrajectory, FLOOR_REPLY, on_reply, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    names = [f"j{k}" for k in range(6)]
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() < 2 or node.count_publishers(FLOOR_REPLY) < 1:  # relay + probe
        ex.spin_once(timeout_sec=0.05)
        if time.monotonic() > deadline:
            print("no relay/probe matched", file=sys.stderr)
            return 1
    for _ in range(20):
        ex.spin_once(timeout_sec=0.01)
    period = 1.0 / hz
    nxt = time.monotonic()
    for seq in range(seq0 + 1, seq0 + count + 1):
        while True:
            left = nxt - time.monotonic()
            if left <= 0:
                break
            ex.spin_once(timeout_sec=left)
        msg = JointState(name=names, position=[0.01 * seq] * 6)
        msg.header.stamp.sec = seq
        sent[seq] = time.monotonic()
        pub.publish(msg)
        nxt += period
    end = time.monotonic() + 1.0
    while sent and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)
    write_atomic(out, json.dumps({"rtt": rtt, "lost": len(sent)}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def instrumented_planner(out: str) -> int:
    """The real task_planner with timestamps around its dispatch path (bench --decompose; no product change).

    Records, with time.monotonic(): entry into RosCobotPort._on_joint_states (cobot, stamp), the return of
    RosCobotPort.move (cobot, trajectory stamp: the publish is done), and the duration of each journal flush
    (the deferred step writes, after the publish) and of each skill plan. Written to `out` as JSON on exit.
    """
    import atexit

    import cobot_cell.skills as skills
    from cobot_cell.core.journal import Journal
    from cobot_cell.ros import planner_node

    now = time.monotonic
    rec: dict[str, list] = {"js": [], "move": [], "journal": [], "plan": []}
    port_cls = planner_node.RosCobotPort
    on_js, move = port_cls._on_joint_states, port_cls.move

    def _on_joint_states(self, msg):
        rec["js"].append((now(), self.name, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
        return on_js(self, msg)

    def _move(self, trajectory, start=None):
        p = move(self, trajectory, start)
        rec["move"].append((now(), self.name, p.started, float(trajectory.duration)))
        return p

    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = now()
            try:
                return fn(*a, **k)
            finally:
                rec[key].append((t0, now() - t0))

        return wrapper

    port_cls._on_joint_states, port_cls.move = _on_joint_states, _move
    Journal.flush = timed(Journal.flush, "journal")
    skills.plan_step = timed(skills.plan_step, "plan")
    atexit.register(lambda: write_atomic(out, json.dumps(rec)))
    return planner_node.main(sys.argv)


# ---------------------------------------------------------------------------------------------- analysis
def analyse(probe: dict, warmup_steps: int = 2) -> dict:
    """Latencies per transition class from the probe's records (see the module docstring)."""
    trajs = []
    for c, recs in probe["tr"].items():
        for wall, sec, nsec, dur, npts in recs:
            if npts == 0:
                continue
            trajs.append({"cobot": c, "wall": wall, "start": sec + nsec * 1e-9, "dur": dur})
    trajs.sort(key=lambda t: t["wall"])
    js = {c: [(w, s + n * 1e-9) for w, s, n in recs] for c, recs in probe["js"].items()}
    out: dict[str, list[float]] = {"boundary": [], "move_move": [], "move_io_move": []}
    step = 0
    index = 0
    prev = None
    unmatched = 0
    for t in trajs:
        if prev is not None and t["cobot"] != prev["cobot"]:
            step += 1
            index = 0
        elif prev is not None:
            index += 1
        if prev is not None and step >= warmup_steps:
            end = prev["start"] + prev["dur"]
            if abs(end - t["start"]) > 1e-6:
                unmatched += 1  # not the event-time successor of the previous trajectory
            else:
                seen = next((w for w, s in js[prev["cobot"]] if s >= end - 1e-9), None)
                if seen is None:
                    unmatched += 1
                else:
                    kind = "boundary" if index == 0 else "move_io_move" if index in (2, 5) else "move_move"
                    out[kind].append(t["wall"] - seen)
        prev = t
    return {"lat": out, "steps_seen": step + 1, "trajectories": len(trajs), "unmatched": unmatched}


def decompose(probe: dict, inst: dict, warmup_steps: int = 2) -> dict[str, list[float]]:
    """Split each step-boundary latency: probe seen -> planner callback entry -> publish done -> probe receipt."""
    js_entry: dict[tuple[str, float], float] = {}
    for t, c, stamp in inst["js"]:
        js_entry.setdefault((c, round(stamp, 6)), t)
    moves = {(c, round(start, 6)): t for t, c, start, _ in inst["move"]}
    trajs = sorted(
        ((w, c, s + n * 1e-9, d) for c, recs in probe["tr"].items() for w, s, n, d, k in recs if k), key=lambda x: x[0]
    )
    js = {c: [(w, s + n * 1e-9) for w, s, n in recs] for c, recs in probe["js"].items()}
    out: dict[str, list[float]] = {"queue": [], "process": [], "transport": [], "total": []}
    step, prev = 0, None
    for w, c, start, dur in trajs:
        if prev is not None and c != prev[1]:
            step += 1
            if step >= warmup_steps and abs(prev[2] + prev[3] - start) < 1e-6:
                end = prev[2] + prev[3]
                seen = next(((wj, sj) for wj, sj in js[prev[1]] if sj >= end - 1e-9), None)
                pub = moves.get((c, round(start, 6)))
                if seen is not None and pub is not None:
                    entry = js_entry.get((prev[1], round(seen[1], 6)))
                    if entry is not None:
                        out["queue"].append(entry - seen[0])
                        out["process"].append(pub - entry)
                        out["transport"].append(w - pub)
                        out["total"].append(w - seen[0])
        prev = (w, c, start, dur)
    return out


def floor_from_probe(probe: dict) -> list[float]:
    """Probe receipt of a floor JointState -> probe receipt of its reply."""
    got = {}
    for w, seq in probe["floor_js"]:
        got.setdefault(seq, w)
    lat = []
    seen_reply = set()
    for w, seq in probe["floor_reply"]:
        if seq in got and seq not in seen_reply:
            seen_reply.add(seq)
            lat.append(w - got[seq])
    return lat


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> list[Figure]:
    import yaml

    from cobot_cell.ros.bringup import BringupOptions, node_specs
    from cobot_cell.ros.client import CellClient
    from cobot_cell.ros.processes import NodeSet
    from cobot_cell.skills import load_cell

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_dispatch_"))
    work.mkdir(parents=True, exist_ok=True)
    cell_file = work / "dispatch_cell.yaml"
    cell_file.write_text(yaml.safe_dump(dispatch_cell(args.steps), sort_keys=False))
    cfg = load_cell(cell_file)
    print(machine_line())
    print(f"dispatch overhead: {args.steps} near-zero pick steps chained over 2 sim cobots (1x), work dir {work}")
    lease = DomainLease()
    env = ros_env(lease.domain_id, work / "ros_log")
    kids = Children(env, work)
    nodes = client = None
    rtt: list[float] = []
    script = str(Path(__file__).resolve())
    probe_out = work / "probe.json"
    try:
        specs = node_specs(
            cfg,
            cell_file,
            BringupOptions(rate=1.0, parts=1, db=str(work / "production.db"), journal=str(work / "journal.db")),
        )
        node_env = env
        if args.decompose:  # the planner runs as `python -m dispatch_overhead` with timestamps added
            from cobot_cell.ros.bringup import NodeSpec

            specs = [
                NodeSpec(s.executable, "dispatch_overhead", s.name, s.namespace, s.parameters)
                if s.name == "task_planner"
                else s
                for s in specs
            ]
            node_env = {
                **env,
                "BENCH_INSTRUMENTED_PLANNER": str(work / "planner_timestamps.json"),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
                ),
            }
        nodes = NodeSet(specs, work / "nodes", node_env, python=PYTHON)
        nodes.start()
        probe = kids.start("probe", [script, "--role", "probe", "--file", str(probe_out), "--cobots", "a,b"])
        relay = kids.start("relay", [script, "--role", "relay"])
        client = CellClient(cfg.cell.name, domain_id=lease.domain_id, use_sim_time=True, node_name="bench_operator")

        def check():
            kids.check()
            dead = nodes.dead()
            if dead:
                raise RuntimeError(f"node {dead[0].spec.fqn} ended early (log {dead[0].log_path})")

        client.wait_for(lambda: check() or client.state is not None, 90, "the planner's state")
        wait_until(lambda: Path(str(probe_out) + ".ready").exists(), 60, "the probe", check=check)

        def floor_phase(tag: str, seq0: int) -> None:
            f = work / f"source_{tag}.json"
            src = kids.start(
                f"source_{tag}",
                [script, "--role", "source", "--file", str(f), "--count", str(args.floor_count), "--seq0", str(seq0)],
            )
            if kids.wait(src, 60 + args.floor_count / 50) != 0:
                kids.check()
            rtt.extend(json.loads(f.read_text())["rtt"][10:])  # first replies: discovery warm-up

        planner_pid = nodes.proc(f"/{cfg.cell.name}/task_planner").popen.pid
        c0, w0 = proc_cpu_s(planner_pid) or 0.0, time.monotonic()
        floor_phase("before", 0)
        cpu_idle = ((proc_cpu_s(planner_pid) or 0.0) - c0) / (time.monotonic() - w0)
        for cmd, target in (("reset", "Idle"), ("start", None)):
            ok, msg = client.command(cmd)
            if not ok:
                raise RuntimeError(f"{cmd} refused: {msg}")
            if target:
                client.wait_for(lambda target=target: check() or client.state == target, 30, f"state {target}")
        t0, c0 = time.monotonic(), proc_cpu_s(planner_pid) or 0.0
        prof = None
        if args.profile:
            prof = start_profile(planner_pid, args.steps * 0.4, work / "planner.pyspy.txt")
        client.wait_for(
            lambda: check() or client.state in ("Complete", "Aborted", "Held", "Stopped"),
            60 + args.steps * 2.0,
            "the job to complete",
        )
        wall = time.monotonic() - t0
        cpu_job = ((proc_cpu_s(planner_pid) or 0.0) - c0) / wall
        if client.state != "Complete":
            raise RuntimeError(f"job ended in state {client.state}: {client.status.get('fault')}")
        if prof is not None:
            try:
                prof.wait(args.steps * 0.4 + 30)
            except Exception:  # noqa: BLE001
                prof.kill()
        floor_phase("after", 1_000_000)
        kids.stop(probe, timeout=20)
        kids.stop(relay)
    finally:
        if client is not None:
            client.close()
        kids.stop()
        if nodes is not None:
            nodes.stop()
        lease.release()
    data = json.loads(probe_out.read_text())
    res = analyse(data)
    relay_lat = floor_from_probe(data)[10:]
    lat = res["lat"]
    print(
        f"job: {res['steps_seen']} steps seen, {res['trajectories']} trajectories, {wall:.1f} s wall; "
        f"{res['unmatched']} transitions without a matching predecessor"
    )
    print(
        f"planner CPU: {cpu_idle * 100:.0f}% of a core while the cell is idle (sim drivers publishing), "
        f"{cpu_job * 100:.0f}% during the job"
    )
    print("latency, completion seen -> next trajectory at the drivers (probe receipts, CLOCK_MONOTONIC):")
    print(f"  step boundary (end step, start next, publish)       {summary_ms(lat['boundary'])}")
    print(f"  move -> move inside a step                          {summary_ms(lat['move_move'])}")
    print(f"  move -> IO call -> move inside a step               {summary_ms(lat['move_io_move'])}")
    print("floor (bare rclpy, same run, cell idle):")
    print(f"  source publish -> relay reply (round trip, 2 procs) {summary_ms(rtt)}")
    print(f"  probe: JointState seen -> reply seen (like for like) {summary_ms(relay_lat)}")
    b, f_rtt, f_like = median(lat["boundary"]), median(rtt), median(relay_lat)
    figs = [
        Figure(
            "dispatch: step boundary latency (median)",
            b * 1e3,
            f_rtt * 1e3,
            "ms",
            "<= 1.2x floor",
            b <= 1.2 * f_rtt,
            note="floor: bare rclpy pub -> sub -> reply round trip between 2 processes",
        ),
        Figure(
            "dispatch: step boundary latency, like-for-like floor",
            b * 1e3,
            f_like * 1e3,
            "ms",
            "(info)",
            None,
            note="floor: bare relay timed at the same probe points (seen -> reply seen)",
        ),
        Figure(
            "dispatch: move -> move in a step (median)",
            median(lat["move_move"]) * 1e3,
            f_rtt * 1e3,
            "ms",
            "(info)",
            None,
        ),
        Figure(
            "dispatch: move -> IO -> move in a step (median)",
            median(lat["move_io_move"]) * 1e3,
            f_rtt * 1e3,
            "ms",
            "(info)",
            None,
        ),
    ]
    print()
    print(table(figs, f"dispatch overhead ({DATE}), ratio = value / floor measured in this run"))
    if args.profile:
        print("\nplanner profile during the job (py-spy, inclusive share of non-idle samples):")
        print(profile_summary(work / "planner.pyspy.txt", top=args.profile_top))
    if args.decompose and (work / "planner_timestamps.json").exists():
        inst = json.loads((work / "planner_timestamps.json").read_text())
        d = decompose(data, inst)
        print("\nstep boundary, decomposed with the instrumented planner (--decompose):")
        print(f"  probe seen -> planner's joint-state callback starts (queueing)  {summary_ms(d['queue'])}")
        print(f"  callback -> next trajectory published (processing)            {summary_ms(d['process'])}")
        print(f"  published -> probe receipt (transport)                         {summary_ms(d['transport'])}")
        flushes = [x[1] for x in inst["journal"] if x[1] > 1e-5]  # a flush with nothing deferred returns at once
        print(f"  journal write after the publish (Journal.flush with writes)   {summary_ms(flushes)}")
        plans = [x[1] for x in inst["plan"]]
        print(f"  skill plan made ahead (plan_step, per step, off the boundary) {summary_ms(plans)}")
    write_json(
        args.json,
        figs,
        {
            "latencies_s": lat,
            "rtt_s": rtt,
            "relay_s": relay_lat,
            "wall": wall,
            "planner_cpu_idle": cpu_idle,
            "planner_cpu_job": cpu_job,
        },
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=200, help="steps in the job (default 200; --quick: 60)")
    ap.add_argument("--floor-count", type=int, default=300, help="floor round trips per floor phase (two phases)")
    ap.add_argument("--quick", action="store_true", help="60 steps, 150 floor round trips per phase")
    ap.add_argument("--profile", action="store_true", help="record the planner with py-spy during the job")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument(
        "--decompose",
        action="store_true",
        help="run the planner with timestamps around its dispatch path and split the latency",
    )
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    ap.add_argument("--role", choices=("probe", "relay", "source"), help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--cobots", default="a,b", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=300, help=argparse.SUPPRESS)
    ap.add_argument("--seq0", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "probe":
        return role_probe(args.file, args.cobots.split(","))
    if args.role == "relay":
        return role_relay()
    if args.role == "source":
        return role_source(args.file, args.count, 100.0, args.seq0)
    if args.quick:
        args.steps, args.floor_count = min(args.steps, 60), min(args.floor_count, 150)
    if args.steps < 4:
        ap.error("--steps must be >= 4")
    install_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    if os.environ.get("BENCH_INSTRUMENTED_PLANNER"):
        raise SystemExit(instrumented_planner(os.environ["BENCH_INSTRUMENTED_PLANNER"]))
    raise SystemExit(main())
