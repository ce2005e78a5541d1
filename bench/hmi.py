"""HMI: live-data lag of the web page behind the cell, and the hmi node's memory against a bare rclpy node.

Runs the demo cell with its HMI (real node set) at --rate for --parts parts, with 3 live-data clients (server-sent
events, read here) and one headless Chromium on the live page (Debian's chromium-driver; left out, and said so,
where it is not installed). A ROS subscriber in this process timestamps every status the planner publishes; the
lag of a status is the time from its arrival here to the first live event that shows it or a later one (the page
coalesces changes). Both clocks are this process's monotonic clock. Targets (issue 16): lag <= 250 ms p95 at
20x; hmi node RSS <= bare rclpy node (measured in this run, same interpreter and environment) + 30 MB.

    .venv/bin/python bench/hmi.py [--parts 10] [--rate 20] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DATE,
    REPO,
    Figure,
    install_sigterm,
    machine_line,
    pct,
    proc_rss_kb,
    summary_ms,
    table,
    wait_until,
    write_json,
)
from memory import bare_rss_kb

from cobot_cell.plant.users import Role, UserStore
from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell

CELL_FILE = REPO / "config" / "demo_cell.yaml"
LAG_TARGET_MS = 250.0
RSS_MARGIN_MB = 30.0
SSE_CLIENTS = 3
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_key(state: str, parts_done: int, steps: list[tuple[str, str, float]]) -> tuple:
    """What a status and a live snapshot have in common: state, parts done, and each running step with its start."""
    return state, parts_done, tuple(sorted((c, s, round(t, 6)) for c, s, t in steps))


class LiveReader(threading.Thread):
    """One live-data client: reads the event stream and timestamps each snapshot's key."""

    def __init__(self, port: int, seen: list[tuple[float, tuple]], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.seen, self.stop_event = port, seen, stop
        self.events = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", "/api/stream")
            resp = conn.getresponse()
            data = None
            while not self.stop_event.is_set():
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    data = line[6:]
                elif line == b"\n" and data is not None:
                    t = time.monotonic()
                    d = json.loads(data)
                    steps = [(s["cobot"], s["step"], s["since"]) for s in d["steps"] if s["step"]]
                    self.seen.append((t, status_key(d["state"], d["parts_done"], steps)))
                    self.events += 1
                    data = None
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported in the figures
            self.error = f"{type(exc).__name__}: {exc}"


def lags(ros: list[tuple[float, tuple]], page: list[tuple[float, tuple]]) -> tuple[list[float], int]:
    """Per ROS status change: time until the page showed it or a later one (0 when the HMI had it before this
    process did: both subscribe to the same messages); and how many changes the page never showed."""
    out: list[float] = []
    matched = -1
    for t_page, key in sorted(page):
        i = next((j for j in range(matched + 1, len(ros)) if ros[j][1] == key), None)
        if i is None:
            continue
        out += [max(0.0, t_page - t_ros) for t_ros, _ in ros[matched + 1 : i + 1]]
        matched = i
    return out, len(ros) - 1 - matched


def start_browser(url: str, work: Path):
    """Headless Chromium on the live page, or None (and why) where it is not installed."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return None, "no chromium/chromium-driver installed: browser left out"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={work / 'chromium-profile'}")
    opts.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.get(url)
    return driver, "headless Chromium on the live page"


def run(args: argparse.Namespace) -> list[Figure]:
    from diagnostic_msgs.msg import DiagnosticStatus
    from std_msgs.msg import String

    from cobot_cell.hmi.model import parse_running
    from cobot_cell.ros.client import CellClient
    from cobot_cell.ros.common import LATCHED, STATE_CHANGES

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_hmi_"))
    work.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(
        f"hmi: demo cell with its HMI, {args.parts} parts at {args.rate:g}x, {SSE_CLIENTS} live-data clients + a "
        f"browser; work dir {work}"
    )
    floor_before = bare_rss_kb(work)
    UserStore(work / "users.json").add("bench", "bench-pw-1", Role.OPERATOR)
    port = free_port()
    cfg = load_cell(CELL_FILE)
    specs = node_specs(
        cfg,
        CELL_FILE,
        BringupOptions(
            rate=args.rate,
            parts=args.parts,
            db=str(work / "production.db"),
            journal=str(work / "journal.db"),
            hmi=f"127.0.0.1:{port}",
        ),
    )
    lease = DomainLease()
    env = ros_env(lease.domain_id, work / "ros_log")
    env["COBOT_CELL_USERS"] = str(work / "users.json")
    nodes = NodeSet(specs, work, env)
    client = driver = None
    stop = threading.Event()
    ros_seen: list[tuple[float, tuple]] = []
    t_ready: list[float | None] = [None]
    page_seen: list[list[tuple[float, tuple]]] = [[] for _ in range(SSE_CLIENTS)]
    readers: list[LiveReader] = []
    try:
        nodes.start()
        client = CellClient(cfg.cell.name, domain_id=lease.domain_id, use_sim_time=True, node_name="bench_hmi")

        current: dict[str, object] = {"state": "", "parts_done": 0, "steps": []}

        def changed() -> None:
            key = status_key(str(current["state"]), int(current["parts_done"]), current["steps"])  # type: ignore
            if t_ready[0] is not None and (not ros_seen or ros_seen[-1][1] != key):  # a change the page shows
                ros_seen.append((time.monotonic(), key))

        def on_status(msg: DiagnosticStatus) -> None:
            kv = {k.key: k.value for k in msg.values}
            try:
                current["steps"] = [(x.cobot, x.step, x.start) for x in parse_running(kv.get("running", ""))]
            except ValueError:
                return
            current["parts_done"] = int(kv.get("parts_done") or 0)
            changed()

        def on_state(msg: String) -> None:
            current["state"] = msg.data
            changed()

        # the same two topics the HMI follows: the state topic for the state, the status for parts and steps
        client.node.create_subscription(DiagnosticStatus, f"/{cfg.cell.name}/status", on_status, LATCHED)
        client.node.create_subscription(String, f"/{cfg.cell.name}/state", on_state, STATE_CHANGES)

        def alive() -> None:
            dead = nodes.dead()
            if dead:
                raise RuntimeError(f"node ended early: {[p.spec.fqn for p in dead]}")

        def hmi_up() -> bool:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/api/session")
                return c.getresponse().status == 200
            except OSError:
                return False

        wait_until(hmi_up, 60, "the HMI", check=alive)
        client.wait_for(lambda: client.state == "Stopped", 60, "state Stopped")
        readers = [LiveReader(port, page_seen[i], stop) for i in range(SSE_CLIENTS)]
        for r in readers:
            r.start()
        driver, browser_note = start_browser(f"http://127.0.0.1:{port}/", work)
        print(f"  {browser_note}")
        if driver is not None:  # the page has loaded and follows the stream before the run starts
            from selenium.webdriver.common.by import By

            wait_until(lambda: driver.find_element(By.ID, "state").text == "Stopped", 30, "the browser's page")
        wait_until(lambda: all(r.events for r in readers), 30, "the live clients' first event")
        t_ready[0] = time.monotonic()  # statuses from here on are timed
        hmi_pid = next(p.popen.pid for p in nodes.procs if p.spec.executable == "hmi")
        for cmd, target in (("reset", "Idle"), ("start", None)):
            ok, msg = client.command(cmd)
            assert ok, msg
            if target:
                client.wait_for(lambda t=target: client.state == t, 30, target)
        t0 = time.monotonic()
        client.wait_for(lambda: client.state == "Complete", 120 + 60 * args.parts / args.rate, "the run")
        wall = time.monotonic() - t0
        done = status_key("Complete", args.parts, [])
        client.wait_for(
            lambda: all(any(k == done for _, k in seen) for seen in page_seen), 10, "the page to show Complete"
        )  # spinning: this process times the last changes too
        rss = proc_rss_kb(hmi_pid) or 0
        hwm = proc_rss_kb(hmi_pid, "VmHWM") or 0
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        if client is not None:
            client.close()
        nodes.stop()
        lease.release()
    floor_after = bare_rss_kb(work)
    floor = max(floor_before, floor_after)
    all_lags: list[float] = []
    missed = 0
    for i, seen in enumerate(page_seen):
        lag, never = lags(ros_seen, seen)
        all_lags += lag
        missed += never
        err = f", error {readers[i].error}" if readers[i].error else ""
        print(f"  client {i + 1}: {readers[i].events} live events, lag {summary_ms(lag)}{err}")
    print(
        f"  run: {args.parts} parts in {wall:.1f} s wall; {len(ros_seen)} status changes timed; "
        f"{missed} never shown" + (f" (the last: {ros_seen[-1][1]})" if missed else "")
    )
    print(
        f"  bare rclpy node: {floor_before / 1024:.1f} MB before, {floor_after / 1024:.1f} MB after; "
        f"hmi node {rss / 1024:.1f} MB (peak {hwm / 1024:.1f} MB)"
    )
    p95 = pct(all_lags, 0.95) * 1000 if all_lags else float("nan")
    p50 = pct(all_lags, 0.5) * 1000 if all_lags else float("nan")
    figs = [
        Figure(
            f"hmi: live-data lag p95 at {args.rate:g}x ({SSE_CLIENTS} clients + browser)",
            p95,
            p50,
            "ms",
            f"<= {LAG_TARGET_MS:g} ms",
            p95 <= LAG_TARGET_MS,
            note="floor: the median lag of the same run",
        ),
        Figure(
            "hmi: node RSS",
            rss / 1024,
            floor / 1024,
            "MB",
            f"<= bare + {RSS_MARGIN_MB:g} MB",
            rss / 1024 <= floor / 1024 + RSS_MARGIN_MB,
            note="floor: bare rclpy node measured in this run",
        ),
    ]
    print()
    print(table(figs, f"hmi ({DATE})"))
    write_json(
        args.json,
        figs,
        {
            "lags_s": all_lags,
            "rss_kb": rss,
            "hwm_kb": hwm,
            "bare_kb": [floor_before, floor_after],
            "statuses": len(ros_seen),
        },
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", type=int, default=10, help="parts (default 10)")
    ap.add_argument("--rate", type=float, default=20.0, help="sim rate (default 20)")
    ap.add_argument("--quick", action="store_true", help="5 parts")
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    args = ap.parse_args(argv)
    if args.quick:
        args.parts = min(args.parts, 5)
    install_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
