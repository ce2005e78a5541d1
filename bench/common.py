"""Shared helpers of the bench/ scripts: machine facts, /proc sampling, figures, child processes, cell runs.

Every bench script prints its own figures and, with `--json PATH`, writes them as `Figure` rows that
`bench/run_all` gathers into one table. A figure is always shown with a floor measured in the same run, on the
same (noisy, 2-core) machine, and their ratio. Child processes are started with the venv's python, DDS on
loopback (`ros_env`) and a `DomainLease` of their own; every wait has a deadline and every process is stopped
in a `finally`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from cobot_cell import waiting  # noqa: E402
from cobot_cell.ros.processes import DomainLease, ros_env  # noqa: E402


def run_date(now: datetime | None = None) -> str:
    """The date (UTC, ISO 8601) of `now`, default: this moment."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date().isoformat()


DATE = run_date()  # the day this run started, printed on every report
_VENV_PY = REPO / ".venv" / "bin" / "python"
# Child nodes run with the venv's own python (the ROS wheels' bootstrap re-execs it with LD_LIBRARY_PATH).
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        ncpu = os.cpu_count() or 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "cpu": cpu_model(),
        "nproc": ncpu,
        "mem_gb": round(mem_kb / 1048576, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def machine_line() -> str:
    """One line describing the machine and its load now."""
    m = machine()
    return (
        f"machine: {m['cpu']}, nproc {m['nproc']}, {m['mem_gb']} GB, Linux {m['kernel']}, "
        f"python {m['python']}, load average {m['loadavg']}"
    )


# ---------------------------------------------------------------------------------------------- timing
def paired_medians(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall times (s) of `a` and `b`, timed alternately so both see the same machine load."""
    a(), b()
    ta, tb = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta), statistics.median(tb)


# ---------------------------------------------------------------------------------------------- /proc
def proc_rss_kb(pid: int, key: str = "VmRSS") -> int | None:
    """VmRSS (or another /proc/<pid>/status memory line) of a process in kB; None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in CPU seconds (/proc/<pid>/stat); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- statistics
def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; nan for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def median(values: Sequence[float]) -> float:
    """Median; nan for no values."""
    return statistics.median(values) if values else math.nan


def summary_ms(values_s: Sequence[float]) -> str:
    """'n, median / p90 / p99 / max' of durations given in seconds, shown in ms."""
    if not values_s:
        return "n 0"
    return (
        f"n {len(values_s):4d}  median {median(values_s) * 1e3:7.3f}  p90 {pct(values_s, 0.9) * 1e3:7.3f}  "
        f"p99 {pct(values_s, 0.99) * 1e3:7.3f}  max {max(values_s) * 1e3:7.3f} ms"
    )


# ---------------------------------------------------------------------------------------------- figures
@dataclass
class Figure:
    """One row of the bench table: a measured value, its same-run floor, their ratio and the target."""

    name: str
    value: float
    floor: float
    unit: str
    target: str  # e.g. "<= 1.2x floor", ">= 20x", "<= 80 MB"
    met: bool | None  # None: no target (informational)
    ratio: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None:
            self.ratio = self.value / self.floor if self.floor and math.isfinite(self.floor) else math.nan


def _num(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) < 1e-6:
        s = "0"
    elif abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip()


def table(figures: Sequence[Figure], title: str = "") -> str:
    """Fixed-width table: figure, value, floor, ratio, target, met?"""
    head = ("figure", "value", "floor", "ratio", "target", "met?")
    rows = [head]
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        rows.append(
            (
                f.name,
                _num(f.value, f.unit),
                _num(f.floor, f.unit),
                "-" if f.ratio is None or math.isnan(f.ratio) else f"{f.ratio:.2f}x",
                f.target,
                met,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [title] if title else []
    for k, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i in (0, 4) else c.rjust(w) if i < 4 else c for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["notes:"] + notes
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, figures: Sequence[Figure], extra: dict | None = None) -> None:
    """Write the figures (and extra data) for bench/run_all."""
    if not path:
        return
    data = {"figures": [asdict(f) for f in figures], "machine": machine(), "date": DATE, **(extra or {})}
    Path(path).write_text(json.dumps(data, indent=1, default=str))


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a file so that a reader polling for it never sees it half written."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> list[Figure]:
    """Figures written by write_json."""
    return [Figure(**f) for f in json.loads(Path(path).read_text())["figures"]]


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class Child:
    """A helper process of a bench script (a bare publisher, a probe, ...)."""

    name: str
    popen: subprocess.Popen
    log_path: Path


class Children:
    """Helper processes started with the venv python and the ROS environment of one domain lease."""

    def __init__(self, env: dict[str, str], work: Path):
        self.env = env
        self.work = work
        self.procs: list[Child] = []

    def start(self, name: str, argv: Sequence[str]) -> Child:
        """Start `python argv...`, output to work/<name>.log."""
        log_path = self.work / f"{name}.log"
        out = open(log_path, "w")
        try:
            p = subprocess.Popen(
                [PYTHON, *argv], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            out.close()
        child = Child(name, p, log_path)
        self.procs.append(child)
        return child

    def check(self) -> None:
        """RuntimeError naming a helper that exited with an error."""
        for c in self.procs:
            rc = c.popen.poll()
            if rc not in (None, 0):
                tail = c.log_path.read_text()[-2000:] if c.log_path.exists() else ""
                raise RuntimeError(f"helper {c.name} exited with {rc}; log {c.log_path}:\n{tail}")

    def wait(self, child: Child, timeout: float) -> int:
        """Wait for a helper to exit (RuntimeError after `timeout` s)."""
        try:
            return child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"helper {child.name} did not finish within {timeout:g} s (log {child.log_path})"
            ) from None

    def stop(self, child: Child | None = None, timeout: float = 5.0) -> None:
        """SIGINT one helper (or all), then SIGKILL what is left after `timeout` s."""
        targets = [child] if child is not None else list(self.procs)
        for c in targets:
            if c.popen.poll() is None:
                c.popen.send_signal(signal.SIGINT)
        end = time.monotonic() + timeout
        for c in targets:
            try:
                c.popen.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.popen.kill()
                c.popen.wait()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.02,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll until predicate() holds (calling `check()` between looks); TimeoutError naming `what` after `timeout`
    s (cobot_cell.waiting)."""
    waiting.wait_until(
        predicate, timeout, what, poll=poll, step=None if check is None else lambda dt: (check(), time.sleep(dt))
    )


def install_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks stop the children (run_all's timeout)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------------------------------------- cell runs
@dataclass
class CellRun:
    """What a run of a cell through the real node set gave."""

    rate: float
    parts: int
    wall: float  # s from the start command to Complete
    sim_elapsed: float  # s of /clock time over the same span
    reports: list = field(default_factory=list)  # CycleReport from the production log, by part
    rss_kb: dict[str, int] = field(default_factory=dict)  # node fqn -> VmRSS at the end
    hwm_kb: dict[str, int] = field(default_factory=dict)  # node fqn -> VmHWM (peak RSS) at the end
    cpu_s: dict[str, float] = field(default_factory=dict)  # node fqn -> CPU s used during the run
    pids: dict[str, int] = field(default_factory=dict)
    rss_at: dict[int, dict[str, int]] = field(default_factory=dict)  # parts done -> node fqn -> VmRSS kB

    @property
    def sim_span(self) -> float:
        """Sim seconds from the first part's start to the last part's end."""
        return max(r.end for r in self.reports) - min(r.start for r in self.reports)

    @property
    def speed(self) -> float:
        """Sim seconds of production per wall second."""
        return self.sim_span / self.wall


def run_cell(
    cell_file: str | os.PathLike,
    rate: float,
    parts: int,
    work: Path,
    job: str = "",
    timeout: float | None = None,
    log: Callable[[str], None] = print,
    during: Callable[[dict[str, int]], None] | None = None,
    rss_at_parts: Sequence[int] = (),
    planner_params: dict[str, Any] | None = None,
    backend: str = "kinematic",
) -> CellRun:
    """Run a cell file through its real node set (sim drivers, planner, supervisor) for `parts` parts.

    Like `cobot-cell demo`: node_specs + NodeSet + CellClient, reset + start, wait for Complete and for the
    supervisor to have logged every part; CPU and RSS of every node are sampled from /proc around the run.
    `during(pids)` is called once the cell is executing (e.g. to attach a profiler); RSS is also sampled when
    the planner's status first shows each of `rss_at_parts` parts done. `planner_params` are added to the
    planner's parameters (a bench setting, e.g. a longer stale_timeout on an overloaded machine). `backend`: the
    sim drivers (kinematic, or mujoco: the physics twin).
    """
    from cobot_cell.ros.bringup import BringupOptions, NodeSpec, node_specs
    from cobot_cell.ros.client import CellClient
    from cobot_cell.ros.processes import NodeSet
    from cobot_cell.skills import estimate, load_cell
    from cobot_cell.supervisor.log import ProductionLog

    cfg = load_cell(cell_file)
    job = job or next(iter(cfg.jobs))
    cell = cfg.cell.name
    work.mkdir(parents=True, exist_ok=True)
    db, journal = work / "production.db", work / "journal.db"
    for p in work.glob("*.db*"):
        p.unlink()
    planned = sum(e.duration for e in estimate(cfg, job))
    if timeout is None:
        timeout = 60 + 4 * parts * planned / min(rate, 20.0)
    lease = DomainLease()
    nodes = client = None
    try:
        specs = node_specs(
            cfg,
            cell_file,
            BringupOptions(rate=rate, parts=parts, job=job, db=str(db), journal=str(journal), backend=backend),
        )
        if planner_params:
            specs = [
                NodeSpec(s.executable, s.module, s.name, s.namespace, {**s.parameters, **planner_params})
                if s.name == "task_planner"
                else s
                for s in specs
            ]
        nodes = NodeSet(specs, work / "nodes", ros_env(lease.domain_id, work / "ros_log"), python=PYTHON)
        nodes.start()
        pids = {p.spec.fqn: p.popen.pid for p in nodes.procs}

        def alive() -> bool:
            dead = nodes.dead()
            if dead:
                raise RuntimeError(
                    "node ended early: "
                    + ", ".join(f"{p.spec.fqn} (exit {p.popen.returncode}, log {p.log_path})" for p in dead)
                )
            return True

        client = CellClient(cell, domain_id=lease.domain_id, use_sim_time=True, node_name="bench_operator")
        client.wait_for(
            lambda: alive() and client.state is not None and client.status.get("job") == job, 90, "the planner's state"
        )
        ok, msg = client.command("reset")
        if not ok:
            raise RuntimeError(f"reset refused: {msg}")
        client.wait_for(lambda: alive() and client.state == "Idle", 30, "state Idle")
        sim_clock = client.node.get_clock()
        cpu0 = {f: proc_cpu_s(pid) or 0.0 for f, pid in pids.items()}
        t0, s0 = time.monotonic(), sim_clock.now().nanoseconds * 1e-9
        ok, msg = client.command("start")
        if not ok:
            raise RuntimeError(f"start refused: {msg}")
        if during is not None:
            client.wait_for(lambda: alive() and client.state in ("Execute", "Complete", "Aborted"), 30, "state Execute")
            during(pids)
        last_log = time.monotonic()
        deadline = time.monotonic() + timeout
        rss_at: dict[int, dict[str, int]] = {}
        while client.state not in ("Complete", "Aborted", "Stopped", "Held") or client.change_full_pallet():
            alive()
            client.change_full_pallet()  # the bench's operator changes a full pallet as soon as told
            done = int(client.status.get("parts_done") or 0)
            if done in rss_at_parts and done not in rss_at:
                rss_at[done] = {f: proc_rss_kb(pid) or 0 for f, pid in pids.items()}
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run of {parts} parts at {rate:g}x not complete after {timeout:.0f} s "
                    f"(state {client.state}, parts done {client.status.get('parts_done')})"
                )
            client.spin_once(0.05)
            if time.monotonic() - last_log > 15:
                last_log = time.monotonic()
                log(f"    ... {client.status.get('parts_done', '?')}/{parts} parts, state {client.state}")
        t1, s1 = time.monotonic(), sim_clock.now().nanoseconds * 1e-9
        cpu1 = {f: proc_cpu_s(pid) or 0.0 for f, pid in pids.items()}
        if client.state != "Complete":
            raise RuntimeError(f"run ended in state {client.state}: {client.status.get('fault', '')}")
        client.wait_for(
            lambda: alive() and client.kpis.get(cell, {}).get("parts") == str(parts),
            60,
            "the supervisor to log every part",
        )
        rss = {f: proc_rss_kb(pid) or 0 for f, pid in pids.items()}
        hwm = {f: proc_rss_kb(pid, "VmHWM") or 0 for f, pid in pids.items()}
    finally:
        if client is not None:
            client.close()
        if nodes is not None:
            nodes.stop()
        lease.release()
    with ProductionLog(db) as plog:
        reports = sorted(plog.parts(cell=cell), key=lambda r: r.part)
    return CellRun(
        rate=rate,
        parts=parts,
        wall=t1 - t0,
        sim_elapsed=s1 - s0,
        reports=reports,
        rss_kb=rss,
        hwm_kb=hwm,
        cpu_s={f: cpu1[f] - cpu0[f] for f in pids},
        pids=pids,
        rss_at=rss_at,
    )


def short_fqn(fqn: str) -> str:
    """'/demo/task_planner' -> 'task_planner (demo)'; '/picker/sim_cobot' -> 'sim_cobot (picker)'."""
    parts = fqn.strip("/").split("/")
    return parts[-1] if len(parts) == 1 else f"{parts[-1]} ({'/'.join(parts[:-1])})"


# ---------------------------------------------------------------------------------------------- profiling
def py_spy() -> str | None:
    """Path of py-spy in the venv (or on PATH), None if not installed (bench-only: requirements/bench.txt)."""
    cand = Path(PYTHON).parent / "py-spy"
    if cand.exists():
        return str(cand)
    from shutil import which

    return which("py-spy")


def start_profile(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen | None:
    """Record `seconds` of py-spy samples of a process into a raw (collapsed stack) file; None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(raw: Path, top: int = 12, match: str = "") -> str:
    """Inclusive share of samples per function from a py-spy raw file (stack;stack;... count)."""
    if not raw.exists():
        return "(no profile)"
    total = 0
    incl: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            count = int(n)
        except ValueError:
            continue
        total += count
        seen = set()
        for frame in stack.split(";"):
            key = frame.strip()
            # "function (file.py:line)" -> "function (file.py)"
            if "(" in key:
                fn, _, loc = key.partition(" (")
                key = f"{fn} ({loc.split(':')[0].rstrip(')')})"
            if key not in seen:
                seen.add(key)
                incl[key] = incl.get(key, 0) + count
    if not total:
        return "(no samples)"
    rows = sorted(((n, k) for k, n in incl.items() if match in k), reverse=True)[:top]
    return "\n".join(f"  {100 * n / total:5.1f}%  {k}" for n, k in rows) + f"\n  ({total} samples)"
