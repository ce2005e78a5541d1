"""`cobot-cell`: validate and estimate cell files, bring a cell up, run the demo, report a production log."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .core.limits import MAX_PARTS
from .core.loader import CellFileError
from .core.model import CellConfig

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _default_cell() -> str:
    """The demo cell: from the source tree, or the installed share directory."""
    from .ros.bringup import package_file

    return str(package_file("config", "demo_cell.yaml"))


def _load(path: str) -> CellConfig | None:
    from .skills import load_cell

    try:
        return load_cell(path)
    except CellFileError as exc:
        err.print(f"[bold red]invalid cell file[/] {exc}", markup=True, soft_wrap=True)
        return None


# ------------------------------------------------------------------------------------------ validate
def cmd_validate(args: argparse.Namespace) -> int:
    """Check a cell file; print a summary or every error."""
    cfg = _load(args.cell)
    if cfg is None:
        return EXIT_USAGE
    from .skills import estimate
    from .skills.palletise import pallet_plan

    console.print(f"[bold]{args.cell}[/]: cell '{cfg.cell.name}' is valid")
    t = Table(title="Cobots", title_justify="left")
    for col in ("cobot", "model", "namespace", "joints", "tools"):
        t.add_column(escape(col))
    for name, c in cfg.cobots.items():
        tools = ", ".join(f"{n} ({tool.kind}: {tool.io})" for n, tool in c.tools.items())
        t.add_row(name, c.model, cfg.cobot_namespace(name), str(len(c.joints)), tools)
    console.print(t)
    t = Table(title="Stations", title_justify="left")
    for col in ("station", "kind", "xyz [m]", "pallet places"):
        t.add_column(escape(col))
    for name, st in cfg.stations.items():
        plan = pallet_plan(st) if st.pallet else None
        t.add_row(
            name,
            st.kind,
            ", ".join(f"{v:g}" for v in st.pose.xyz),
            f"{len(plan)} ({plan.boxes_per_layer}/layer x {plan.layers}, {plan.pattern_used}, "
            f"fill {plan.fill_ratio:.0%})"
            if plan
            else "",
        )
    console.print(t)
    for jname, job in cfg.jobs.items():
        est = {e.step: e.duration for e in estimate(cfg, jname)}
        t = Table(title=f"Job '{jname}': {job.description}", title_justify="left")
        for col in ("step", "skill", "cobot", "after", "planned [s]"):
            t.add_column(escape(col), justify="right" if col == "planned [s]" else "left")
        for s in job.steps:
            t.add_row(s.name, s.skill, s.cobot, ", ".join(s.after) or "-", f"{est[s.name]:.2f}")
        console.print(t)
    return EXIT_OK


# ------------------------------------------------------------------------------------------ estimate
def cmd_estimate(args: argparse.Namespace) -> int:
    """Predicted step durations, and the steady state with parts in flight, without starting ROS."""
    cfg = _load(args.cell)
    if cfg is None:
        return EXIT_USAGE
    job = args.job or next(iter(cfg.jobs))
    if job not in cfg.jobs:
        err.print(f"unknown job '{job}': expected one of {', '.join(cfg.jobs)}")
        return EXIT_USAGE
    from .core.dag import step_ends
    from .skills import estimate
    from .skills.schedule import estimate as steady_state
    from .skills.schedule import gantt

    est = estimate(cfg, job)
    end = step_ends(cfg.jobs[job], {e.step: e.duration for e in est})
    t = Table(title=f"Estimate: job '{job}' of cell '{cfg.cell.name}', one part alone", title_justify="left")
    for col in ("step", "skill", "cobot", "duration [s]", "ends at [s]"):
        t.add_column(escape(col), justify="right" if "[" in col else "left")
    for e in est:
        t.add_row(e.step, e.skill, e.cobot, f"{e.duration:.2f}", f"{end[e.step]:.2f}")
    console.print(t)
    console.print(f"part cycle time, one part alone: [bold]{max(end.values()):.2f} s[/]")
    try:
        ss = steady_state(cfg, job, parts=args.parts, max_parts_in_flight=args.max_parts_in_flight)
        serial = steady_state(cfg, job, parts=args.parts, max_parts_in_flight=1) if ss.max_parts_in_flight > 1 else ss
    except RuntimeError as exc:
        err.print(f"[bold red]the simulated run failed:[/] {escape(str(exc))}", markup=True)
        return EXIT_FAIL
    cycles = ss.cycle_times[ss.window[0] - 1 : ss.window[1]]
    t = Table(
        title=f"Steady state: {ss.parts} parts simulated, up to {ss.max_parts_in_flight} in flight, measured "
        f"over parts {ss.window[0]}-{ss.window[1]}",
        title_justify="left",
    )
    for col in ("resource", "kind", "busy per part [s]", "utilisation"):
        t.add_column(escape(col), justify="right" if col in ("busy per part [s]", "utilisation") else "left")
    for r in sorted(ss.busy, key=lambda r: -ss.busy[r]):
        mark = " (bottleneck)" if r == ss.bottleneck else ""
        t.add_row(r + mark, ss.kinds[r], f"{ss.busy[r]:.2f}", f"{ss.utilisation[r]:.0%}")
    console.print(t)
    console.print(
        f"cycle time per part: mean {sum(cycles) / len(cycles):.2f} s (min {min(cycles):.2f}, max {max(cycles):.2f})"
    )
    console.print(
        f"takt: [bold]{ss.takt:.2f} s[/] = {ss.parts_per_hour:.1f} parts/h; bound {ss.bound:.2f} s "
        f"({ss.bottleneck}, {ss.kinds[ss.bottleneck]}): takt / bound = {ss.takt / ss.bound:.3f}"
    )
    if serial is not ss:
        console.print(
            f"one part at a time (max_parts_in_flight: 1): takt {serial.takt:.2f} s = "
            f"{serial.parts_per_hour:.1f} parts/h; parts in flight make {serial.takt / ss.takt:.2f}x "
            "as many parts per hour"
        )
    if args.gantt:
        path = gantt(ss, args.gantt, cfg.cell.name)
        console.print(f"Gantt chart: {path}")
    if args.check_collisions:
        return _check_collisions(cfg, args.cell, job, args.parts or 3)
    return EXIT_OK


def _check_collisions(cfg: CellConfig, cell_file: str, job: str, parts: int) -> int:
    """Replay the planned schedule of every cobot in the physics twin's geometry; report the first collision."""
    from .twin.model import TwinError, build
    from .twin.replay import first_collision, plan_timeline

    try:
        twin = build(cfg, cell_file)
    except TwinError as exc:
        err.print(f"[bold red]twin:[/] {escape(str(exc))}")
        return EXIT_USAGE
    timeline = plan_timeline(cfg, job, parts)
    hit = first_collision(twin, timeline)
    if hit is None:
        console.print(
            f"collision check: [bold]clean[/] ({parts} part{'s' * (parts > 1)}, {timeline.end:.2f} s of "
            f"planned motion of {', '.join(cfg.cobots)} replayed in the twin)"
        )
        return EXIT_OK
    err.print(f"[bold red]{escape(hit.message)}[/]")
    return EXIT_FAIL


# ------------------------------------------------------------------------------------------ up / demo
def _node_set(cfg: CellConfig, args: argparse.Namespace, work: Path, domain: int | None, echo: bool):
    from .ros.bringup import BringupOptions, node_specs
    from .ros.processes import NodeSet, ros_env

    specs = node_specs(
        cfg,
        args.cell,
        BringupOptions(
            sim=True,
            rate=args.rate,
            job=args.job or "",
            parts=args.parts,
            db=str(args.db or work / "production.db"),
            max_parts_in_flight=args.max_parts_in_flight or 0,
            journal=str(args.journal or work / f"{cfg.cell.name}.journal.db"),
            pendant_port=getattr(args, "pendant_port", None) or "",
            enabling_device=bool(getattr(args, "enabling_device", False)),
            **_plant_options(args),
            hmi=getattr(args, "hmi", None) or "",
            hmi_insecure=bool(getattr(args, "insecure", False)),
            hmi_cert=getattr(args, "hmi_cert", None) or "",
            hmi_key=getattr(args, "hmi_key", None) or "",
            respawn_delay=args.respawn_delay,
            respawn_max_retries=args.respawn_max_retries,
            backend=getattr(args, "backend", None) or "",
            foxglove=-1 if getattr(args, "foxglove", None) is None else args.foxglove,
            record=getattr(args, "record", None) or "",
        ),
    )
    return NodeSet(specs, work, ros_env(domain, work / "ros_log"), echo=echo, respawn=True)


def _show_runner_log() -> None:
    """Node exits and restarts go to stderr."""
    runner = logging.getLogger("cobot_cell.ros.processes")
    if not runner.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[cobot-cell] %(message)s"))
        runner.addHandler(handler)
        runner.setLevel(logging.INFO)
        runner.propagate = False


def _plant_options(args: argparse.Namespace) -> dict:
    """BringupOptions of the plant bridges (`up --opcua/--mqtt`)."""
    return {
        "opcua": getattr(args, "opcua", None) or "",
        "users": getattr(args, "users", None) or "",
        "allow_none": bool(getattr(args, "allow_none", False)),
        "mqtt": getattr(args, "mqtt", None) or "",
        "mqtt_prefix": getattr(args, "mqtt_prefix", None) or "plant/area",
    }


def _add_plant_arguments(s: argparse.ArgumentParser) -> None:
    """`up` options that start the plant bridges (docs/opcua.md, docs/plant.md)."""
    from .plant import DEFAULT_OPCUA_ENDPOINT as DEFAULT_ENDPOINT

    s.add_argument(
        "--opcua",
        nargs="?",
        const=DEFAULT_ENDPOINT,
        metavar="ENDPOINT",
        help=f"also start the OPC UA server (PackML, OPC 30050) on ENDPOINT (default {DEFAULT_ENDPOINT})",
    )
    s.add_argument(
        "--users",
        metavar="FILE",
        help="user file of the OPC UA server (default: ~/.config/cobot_cell/users.json; see `cobot-cell users`)",
    )
    s.add_argument(
        "--allow-none",
        action="store_true",
        help="the OPC UA server also offers the None security policy (no signing, no encryption)",
    )
    s.add_argument("--mqtt", metavar="URL", help="also publish to the MQTT broker at URL (mqtt://HOST:PORT)")
    s.add_argument(
        "--mqtt-prefix",
        metavar="SITE/AREA",
        default="plant/area",
        help="<site>/<area> of the MQTT topic tree (default: %(default)s)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    """Run the cell's node set as processes, restarting crashed nodes, until Ctrl-C or SIGTERM."""
    from .ros.processes import exit_text

    cfg = _load(args.cell)
    if cfg is None:
        return EXIT_USAGE
    work = Path(args.out or tempfile.mkdtemp(prefix="cobot_cell_"))
    domain = int(os.environ["ROS_DOMAIN_ID"]) if "ROS_DOMAIN_ID" in os.environ else None
    nodes = _node_set(cfg, args, work, domain, echo=True)
    _show_runner_log()
    received: list[str] = []

    def on_signal(signum: int, frame) -> None:
        received.append(signal.Signals(signum).name)

    # From here on, SIGINT and SIGTERM (once or more: a terminal and `ros2 launch` each send one) only ask for
    # the stop; they never interrupt it, so no node is left behind.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    console.print(
        f"cell '{cfg.cell.name}' up: {len(nodes.specs)} nodes, rate {args.rate:g}x, work dir {work} (Ctrl-C to stop)"
    )
    if getattr(args, "hmi", None):
        from .hmi.tls import is_loopback, parse_address

        host, port = parse_address(args.hmi)
        scheme = "http" if is_loopback(host) and not args.hmi_cert or args.insecure else "https"
        console.print(f"web HMI: {scheme}://{host}:{port}/ (users: `cobot-cell users add NAME --role operator`)")
    try:
        nodes.start()
        while not received:
            failed = nodes.failed()
            if failed:
                for p in failed:
                    err.print(
                        f"node {p.spec.fqn} exited with {exit_text(p.popen.returncode)} and is not restarted: "
                        "stopping the cell"
                    )
                return EXIT_FAIL
            time.sleep(0.1)
        err.print(f"{received[0]}: stopping {len(nodes.specs)} nodes")
        return EXIT_OK
    finally:
        nodes.stop()  # further signals only add to `received` (SIGINT is a no-op while stop() runs)
        for sig, handler in previous.items():
            # once stopped for a signal, ignore the rest: Python's exit would restore the default action
            signal.signal(sig, signal.SIG_IGN if received else handler)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the cell in simulation for N parts through the real nodes; print cycle table and KPIs."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cfg = _load(args.cell)
    if cfg is None:
        return EXIT_USAGE
    if args.job and args.job not in cfg.jobs:
        err.print(f"unknown job '{args.job}': expected one of {', '.join(cfg.jobs)}")
        return EXIT_USAGE
    from .ros.client import CellClient
    from .ros.processes import DomainLease
    from .supervisor.kpi import kpis
    from .supervisor.log import ProductionLog
    from .supervisor.report import cycle_table, kpi_table, render

    job = args.job or next(iter(cfg.jobs))
    from .skills.schedule import estimate as steady_state

    planned = steady_state(cfg, job, max_parts_in_flight=args.max_parts_in_flight).bound  # the OEE's ideal cycle
    work = Path(args.out or tempfile.mkdtemp(prefix="cobot_cell_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    lease = None
    if "ROS_DOMAIN_ID" in os.environ:
        domain = int(os.environ["ROS_DOMAIN_ID"])
    else:
        lease = DomainLease()
        domain = lease.domain_id
    db = Path(args.db or work / "production.db")
    args.db = str(db)
    nodes = _node_set(cfg, args, work, domain, echo=False)
    _show_runner_log()
    console.print(
        f"[bold]cobot_cell demo[/]: cell '{cfg.cell.name}', job '{job}', {args.parts} parts, "
        f"sim at {args.rate:g}x real time, {len(nodes.specs)} node processes "
        f"(ROS_DOMAIN_ID {domain}, loopback only)"
    )
    console.print(f"work dir {work} (node logs, production log)")
    t_wall0 = time.monotonic()
    client = None
    try:
        nodes.start()
        client = CellClient(cfg.cell.name, domain_id=domain, use_sim_time=True, node_name="demo_operator")

        def show(r) -> None:
            steps = "  ".join(f"{s.step} {s.duration:.2f}" for s in r.steps)
            console.print(
                f"  part {r.part}/{args.parts} done at t={r.end:7.2f} s (sim): cycle {r.cycle_time:.2f} s  ({steps})",
                markup=False,
                soft_wrap=True,
            )

        client.on_report = show

        def alive() -> bool:
            dead = nodes.failed()
            if dead:
                names = ", ".join(f"{p.spec.fqn} (exit {p.popen.returncode}, log {p.log_path})" for p in dead)
                raise RuntimeError(f"node process ended early: {names}")
            return True

        def reached(state: str) -> bool:
            return alive() and client.state == state

        client.wait_for(lambda: alive() and client.state is not None, 60, "the planner's state")
        client.wait_for(lambda: alive() and client.status.get("job") == job, 30, "the planner's status")
        for cmd, target in (("reset", "Idle"), ("start", None)):
            ok, msg = client.command(cmd)
            if not ok:
                raise RuntimeError(f"{cmd} refused: {msg}")
            if target:
                client.wait_for(functools.partial(reached, target), 30, f"state {target}")
        t_run0 = time.monotonic()
        budget = 60 + 5 * args.parts * planned / args.rate

        def operator() -> bool:  # the demo's operator changes a full pallet as soon as the cell says so
            changed = client.change_full_pallet()
            if changed:
                console.print(f"  pallet full: the demo's operator changed it ({changed})")
            return True

        client.wait_for(
            lambda: operator() and alive() and client.state in ("Complete", "Aborted", "Stopped"),
            budget,
            "the run to complete",
        )
        t_run = time.monotonic() - t_run0
        if client.state != "Complete":
            raise RuntimeError(f"run ended in state {client.state}: {client.status.get('fault', '')}")
        client.wait_for(
            lambda: alive() and client.kpis.get(cfg.cell.name, {}).get("parts") == str(args.parts),
            30,
            "the supervisor to log every part",
        )
        sup_kpis = dict(client.kpis[cfg.cell.name])
    except (RuntimeError, TimeoutError) as exc:
        err.print(f"[bold red]demo failed:[/] {exc}")
        return EXIT_FAIL
    finally:
        if client is not None:
            client.close()
        nodes.stop()
        if lease:
            lease.release()
    with ProductionLog(db) as log:
        reports = log.parts(cell=cfg.cell.name)
        faults = log.faults(cell=cfg.cell.name)
    sim_span = max(r.end for r in reports) - min(r.start for r in reports)
    print(
        render(
            [
                cycle_table(reports, title=f"Production log: {len(reports)} parts ({db})"),
                kpi_table(
                    kpis(reports, faults, ideal_cycle_time=planned),
                    title=f"KPIs (ideal cycle: takt bound {planned:.2f} s)",
                ),
            ]
        )
    )
    console.print(
        f"supervisor KPIs (topic /supervisor/kpis): parts {sup_kpis.get('parts')}, "
        f"mean cycle {float(sup_kpis['mean_cycle_time']):.2f} s, "
        f"p95 cycle {float(sup_kpis['p95_cycle_time']):.2f} s"
    )
    console.print(
        f"run: {sim_span:.1f} s of sim time in {t_run:.1f} s wall = [bold]{sim_span / t_run:.1f}x[/] "
        f"real time; demo total {time.monotonic() - t_wall0:.1f} s wall"
    )
    _write_charts(str(db), cfg.cell.name, work / "charts", ideal_cycle_time=planned)
    ok = len(reports) == args.parts and all(r.status == "done" for r in reports)
    return EXIT_OK if ok else EXIT_FAIL


# ------------------------------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    """Print the cycle table and KPIs of a production log."""
    from .supervisor.kpi import kpis
    from .supervisor.log import ProductionLog
    from .supervisor.report import cycle_table, kpi_table, render

    if not Path(args.db).exists():
        err.print(f"no production log at {args.db}")
        return EXIT_USAGE
    if args.db.endswith(".mcap"):
        return _report_recording(args)
    try:
        log = ProductionLog(args.db, read_only=True)  # never changes the file (it may be another program's)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        return EXIT_USAGE
    with log:
        reports = log.parts(cell=args.cell_name)
        faults = log.faults(cell=args.cell_name)
    print(render([cycle_table(reports, title=f"{len(reports)} parts"), kpi_table(kpis(reports, faults))]))
    if args.plot:
        cells = list(dict.fromkeys(r.cell for r in reports))
        for cell in cells:
            _write_charts(args.db, cell, Path(args.plot) / cell if len(cells) > 1 else Path(args.plot))
    return EXIT_OK


def _write_charts(db: str, cell: str, out: Path, ideal_cycle_time: float | None = None) -> list[Path]:
    """Every chart of a cell's report as a PNG in `out` (read-only on the log); print where they are."""
    from .hmi.shift import load_report
    from .supervisor.charts import write_charts

    paths = write_charts(load_report(db, cell, ideal_cycle_time=ideal_cycle_time, read_only=True), out)
    console.print(f"charts of cell '{cell}' in {out}: {', '.join(p.name for p in paths)}", markup=False)
    return paths


def _report_recording(args: argparse.Namespace) -> int:
    """The cycle table of an MCAP recording (`--record`)."""
    from .supervisor.report import cycle_table, render
    from .twin.record import read_cycles

    try:
        reports = read_cycles(args.db, args.cell_name)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        return EXIT_USAGE
    print(render([cycle_table(reports, title=f"{len(reports)} parts (recording {args.db})")]))
    return EXIT_OK


# ------------------------------------------------------------------------------------------ main
def _number(convert: Callable[[str], float], what: str, ok: Callable[[float], bool], bound: str):
    """An argparse type: `convert` the text, then check it is `ok` (else: expected <what> <bound>)."""

    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text}")
        return v

    return parse


_positive_float = _number(float, "a number", lambda v: v > 0, "> 0")
_part_count = _number(int, "a whole number", lambda v: 1 <= v <= MAX_PARTS, f"from 1 to {MAX_PARTS}")
_delay = _number(float, "a number of seconds", lambda v: v >= 0, ">= 0")
_retries = _number(int, "a whole number", lambda v: v >= -1, ">= -1 (-1: no limit)")


_port = _number(int, "a port number", lambda v: 0 <= v <= 65535, "from 0 to 65535")


def _mcap_path(text: str) -> str:
    if not text.endswith(".mcap"):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .mcap, got {text!r}")
    if not Path(text).resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"no directory {Path(text).resolve().parent} for {text}")
    return text


def _address(text: str) -> str:
    from .hmi.tls import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cobot-cell`."""
    from .ros.bringup import RESPAWN_DELAY, RESPAWN_MAX_RETRIES

    p = argparse.ArgumentParser(
        prog="cobot-cell",
        description="ROS 2 cell controller for collaborative robots: check cell files, run cells in "
        "simulation, report production.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 bad input (cell file, arguments).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("validate", help="check a cell file and print a summary or every error")
    s.add_argument("cell", help="cell file (YAML)")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser(
        "estimate",
        help="predicted step durations, and the steady state with parts in flight (takt, "
        "bottleneck, utilisation), without ROS",
    )
    s.add_argument("cell", help="cell file (YAML)")
    s.add_argument("job", nargs="?", help="job name (default: the first job)")
    s.add_argument(
        "--parts",
        type=_part_count,
        help="parts to simulate (default: enough for the steady state); "
        "--check-collisions replays this many (default 3)",
    )
    s.add_argument(
        "--max-parts-in-flight",
        type=_part_count,
        help="parts in flight at most (default: the cell file's; 1: one part at a time)",
    )
    s.add_argument("--gantt", metavar="FILE", help="write a Gantt chart of the steady state (PNG)")
    s.add_argument(
        "--check-collisions",
        action="store_true",
        help="also replay every cobot's planned moves in the physics twin's geometry and report the first "
        "collision with its step, part and time (exit 1)",
    )
    s.set_defaults(func=cmd_estimate)

    for name, func, helptext in (
        (
            "up",
            cmd_up,
            "run the cell's nodes (sim drivers, planner, supervisor) as processes, restarting a "
            "crashed one, until Ctrl-C or SIGTERM; use `ros2 launch cobot_cell cell.launch.py` "
            "where ROS 2 launch is installed",
        ),
        (
            "demo",
            cmd_demo,
            "simulate the cell making parts through the real nodes, then print the cycle table and KPIs",
        ),
    ):
        s = sub.add_parser(name, help=helptext, description=helptext)
        s.add_argument("cell", nargs="?", default=_default_cell(), help="cell file (default: the demo cell)")
        s.add_argument("--job", help="job to run (default: the first job of the cell file)")
        s.add_argument(
            "--parts", type=_part_count, default=5 if name == "demo" else 1, help="parts per run (1 to 999999999)"
        )
        s.add_argument(
            "--rate",
            type=_positive_float,
            default=20.0 if name == "demo" else 1.0,
            help="simulated seconds per wall second",
        )
        s.add_argument(
            "--max-parts-in-flight",
            type=_part_count,
            help="parts in flight at most (default: the cell file's; 1: one part at a time)",
        )
        s.add_argument("--db", help="SQLite production log (default: in the work dir)")
        s.add_argument(
            "--journal", help="planner's job journal, for resuming after a restart (default: in the work dir)"
        )
        s.add_argument(
            "--out", help="work dir for node logs and parameters, and the demo's charts/ (default: a new temp dir)"
        )
        s.add_argument(
            "--respawn-delay",
            type=_delay,
            default=RESPAWN_DELAY,
            metavar="SECONDS",
            help=f"wait this long before starting a crashed node again (default {RESPAWN_DELAY:g}; "
            "keep it above the planner's stale_timeout, 2 s, so a driver crash is always seen)",
        )
        s.add_argument(
            "--respawn-max-retries",
            type=_retries,
            default=RESPAWN_MAX_RETRIES,
            metavar="N",
            help=f"restarts per node before the cell is stopped (default {RESPAWN_MAX_RETRIES}; 0: never "
            "restart, -1: no limit)",
        )
        s.add_argument(
            "--backend",
            choices=("kinematic", "mujoco"),
            default=None,
            help="sim drivers: kinematic (trajectories followed exactly) or mujoco (the cell's physics "
            "twin: servos, grips, collisions; docs/simulation.md); default: the cell file's cell.sim_backend, "
            "else kinematic",
        )
        s.add_argument(
            "--foxglove",
            nargs="?",
            const=8765,
            type=_port,
            metavar="PORT",
            help="serve the cell live to Foxglove on ws://127.0.0.1:PORT (default 8765; loopback only)",
        )
        s.add_argument(
            "--record",
            metavar="FILE.mcap",
            type=_mcap_path,
            help="record joint states, the URDF, PackML state, cycle reports, faults and KPIs to an MCAP "
            "file (`cobot-cell report FILE.mcap` reads its cycle table back)",
        )
        if name == "up":
            s.add_argument(
                "--pendant-port",
                help="serial device of a teach pendant: also start the pendant bridge "
                "(with `cobot-cell pendant --create-pty PATH`, use PATH)",
            )
            s.add_argument(
                "--enabling-device",
                action="store_true",
                help="the pendant is an enabling device: losing its heartbeat in Execute holds the cell",
            )
            s.add_argument(
                "--hmi",
                nargs="?",
                const="127.0.0.1:8080",
                metavar="HOST:PORT",
                type=_address,
                help="also start the web HMI (default 127.0.0.1:8080); a non-loopback address serves "
                "HTTPS (self-signed certificate generated and kept, or --hmi-cert/--hmi-key)",
            )
            s.add_argument(
                "--insecure",
                action="store_true",
                help="serve the HMI as plain HTTP on a non-loopback address (logged as a warning)",
            )
            s.add_argument("--hmi-cert", help="TLS certificate of the HMI (PEM)")
            s.add_argument("--hmi-key", help="TLS private key of the HMI (PEM)")
            _add_plant_arguments(s)
        s.set_defaults(func=func)

    from .pendant.virtual import register_cli as register_pendant

    register_pendant(sub)

    from .plant.cli import register_cli as register_plant
    from .plant.users import register_cli as register_users

    register_users(sub)
    register_plant(sub)

    s = sub.add_parser(
        "report",
        help="print the cycle table and KPIs of a production log (opened read-only), or the "
        "cycle table of an MCAP recording",
    )
    s.add_argument("db", help="SQLite production log written by the supervisor, or an MCAP recording (FILE.mcap)")
    s.add_argument("--cell", dest="cell_name", help="only this cell")
    s.add_argument(
        "--plot",
        metavar="DIR",
        help="also write every chart as a PNG into DIR (cycle-time trend, OEE, "
        "fault Pareto, downtime, Gantt, cycles, and report.png: all on one "
        "page)",
    )
    s.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cobot-cell`."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
