"""hmi: the shop-floor web HMI of one cell (live page, commands with roles, shift report), served over HTTP(S).

Runs in the cell's namespace and follows the cell through the operator client the CLI uses (CellClient): state,
status, cycle reports, faults and KPIs feed the live page's model; commands go through the cell's command
authority as LOCAL commands with the logged-in user, so the planner audits each into the production log. One
thread spins ROS (and runs the commands the web side hands it); the main thread runs the web server (uvicorn).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import String

from ..core.wire import decode_cycle
from ..hmi.auth import Sessions
from ..hmi.model import LiveModel, parse_fault, step_stations
from ..hmi.server import ServerOptions, create_app
from ..hmi.shift import ShiftReport, load_report
from ..hmi.tls import is_loopback, plan_listen
from ..plant.users import UserStore
from ..skills.checked_cell import load_checked
from .client import CellClient
from .common import key_values, route_core_logging, spin_once_alive

log = logging.getLogger("cobot_cell.ros.hmi_node")
COMMAND_TIMEOUT = 10.0


@dataclass(frozen=True)
class HmiParams:
    """Parameters of the hmi node, read once at start."""

    cell_file: str
    host: str
    port: int
    db: str
    users: str
    cert: str
    key: str
    insecure: bool
    cert_dir: str
    window: float
    ideal_cycle_time: float
    session_idle: float


class HmiClient(CellClient):
    """The cell client feeding the live model (and keeping no unbounded history of its own)."""

    def __init__(self, args: list[str] | None) -> None:
        super().__init__(None, use_sim_time=None, node_name="hmi", args=args)
        self.model: LiveModel | None = None

    def _on_state(self, msg: String) -> None:
        self.state = msg.data
        if self.model:
            self.model.set_state(msg.data)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        super()._on_status(msg)
        if self.model:
            self.model.set_status(self.status, now=self.now())

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        try:
            report = decode_cycle(key_values(msg))
        except ValueError as exc:
            log.warning("cycle report ignored: %s", exc)
            return
        if self.model:
            self.model.add_report(report)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            kv = dict(key_values(st))
            if not kv.get("fault_key") or kv.get("cell") != self.cell or self.model is None:
                continue
            try:
                self.model.set_fault(parse_fault(kv, st.message))
            except ValueError as exc:
                log.warning("%s", exc)

    def _on_kpis(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.hardware_id == self.cell and self.model:
                self.model.set_kpis(dict(key_values(st)))

    def _on_authority(self, msg: String) -> None:
        self.authority = msg.data
        if self.model:
            self.model.set_authority(msg.data)

    def _on_audit(self, msg: DiagnosticStatus) -> None:
        pass  # the supervisor logs the audit; the HMI keeps none of it

    def now(self) -> float:
        """Cell time (sim time when use_sim_time) in seconds."""
        return self.node.get_clock().now().nanoseconds * 1e-9


class CellBackend:
    """The web app's view of the cell: the live model, and commands run on the ROS thread."""

    def __init__(self, client: HmiClient, model: LiveModel, params: HmiParams) -> None:
        self.client = client
        self.model = model
        self.params = params
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name="hmi-ros", daemon=True)

    # ---------------------------------------------------------------- ROS thread
    def start(self) -> None:
        """Start spinning ROS."""
        self.thread.start()

    def stop(self) -> None:
        """Stop spinning (pending commands fail) and wait for the thread."""
        self._stop.set()
        self.thread.join(timeout=5)

    def _spin(self) -> None:
        try:
            while not self._stop.is_set() and spin_once_alive(self.client.executor, 0.02):
                while True:
                    try:
                        job, fut = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(job())
                        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                            fut.set_exception(exc)
        except ExternalShutdownException:
            pass
        while True:
            try:
                _, fut = self._jobs.get_nowait()
            except queue.Empty:
                break
            fut.set_exception(RuntimeError("the HMI is shutting down"))

    def _on_ros(self, job: Callable[[], Any]) -> Any:
        if self._stop.is_set():
            raise RuntimeError("the HMI is shutting down")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((job, fut))
        return fut.result(timeout=COMMAND_TIMEOUT + 5)

    # ---------------------------------------------------------------- Backend
    def snapshot(self) -> dict[str, Any]:
        return self.model.snapshot(self.client.now())

    def version(self) -> int:
        return self.model.version

    def command(self, name: str, user: str, source: str) -> tuple[bool, str]:
        return self._on_ros(
            lambda: self.client.command_as(name, "local", f"{user}@hmi {source}", timeout=COMMAND_TIMEOUT)
        )

    def set_parameter(self, name: str, value: str | int, user: str, source: str) -> tuple[bool, str]:
        return self._on_ros(
            lambda: self.client.command_as(
                "set_product", "local", f"{user}@hmi {source}", timeout=COMMAND_TIMEOUT, **{name: value}
            )
        )

    def report(self, run_id: str | None) -> ShiftReport:
        if not self.params.db or not Path(self.params.db).exists():
            return ShiftReport(self.client.cell, run_id, (), ())
        return load_report(self.params.db, self.client.cell, run_id, self.params.ideal_cycle_time or None)

    def report_png(self, run_id: str | None) -> bytes:
        if not self.params.db or not Path(self.params.db).exists():
            raise ValueError(f"no production log at {self.params.db or '(none configured)'}")
        with tempfile.TemporaryDirectory(prefix="hmi_png_") as tmp:
            out = Path(tmp) / "report.png"
            cmd = [
                sys.executable,
                "-m",
                "cobot_cell.supervisor.charts",
                self.params.db,
                "--sheet",
                str(out),
                "--cell",
                self.client.cell,
            ]
            if run_id:
                cmd += ["--run", run_id]
            if self.params.ideal_cycle_time:
                cmd += ["--ideal", repr(self.params.ideal_cycle_time)]
            # matplotlib in a child process: the HMI process never loads it (memory)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0 or not out.is_file():
                raise RuntimeError(
                    done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
                )
            return out.read_bytes()


def _declare(client: CellClient, name: str, default: Any, description: str) -> Any:
    return client.node.declare_parameter(name, default, ParameterDescriptor(description=description)).value


def read_params(client: CellClient) -> HmiParams:
    """Declare and read the node's parameters; ValueError naming a bad one."""
    d = functools.partial(_declare, client)
    p = HmiParams(
        cell_file=d("cell_file", "", "cell file (YAML): cobots, stations and steps for the page's lanes"),
        host=d("host", "127.0.0.1", "address to listen on (a non-loopback address needs TLS or insecure)"),
        port=d("port", 8080, "TCP port"),
        db=d("db", "", "the supervisor's SQLite production log, for the shift report"),
        users=d("users", "", "user file (default: $COBOT_CELL_USERS or ~/.config/cobot_cell/users.json)"),
        cert=d("cert", "", "TLS certificate (PEM); with key"),
        key=d("key", "", "TLS private key (PEM); with cert"),
        insecure=d("insecure", False, "serve plain HTTP on a non-loopback address (logged as a warning)"),
        cert_dir=d(
            "cert_dir", "", "where a self-signed certificate is generated and kept (default: next to the user file)"
        ),
        window=d("window", 300.0, "seconds of the live Gantt"),
        ideal_cycle_time=d(
            "ideal_cycle_time", 0.0, "ideal cycle time for OEE performance (0: the bottleneck bound of the parts made)"
        ),
        session_idle=d("session_idle", 900.0, "seconds without a request before a login expires"),
    )
    if not 0 < p.port < 65536:
        raise ValueError(f"parameter port: expected 1-65535, got {p.port}")
    if p.window <= 0 or p.session_idle <= 0 or p.ideal_cycle_time < 0:
        raise ValueError("parameters window and session_idle must be > 0 s, ideal_cycle_time >= 0 s")
    return p


class _Server:
    """uvicorn's server, ending the live streams as soon as it is told to stop."""

    def __init__(self, app: Any, **config: Any) -> None:
        import uvicorn

        app_hub = app.hub

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                for s in list(app_hub.streams):
                    s.close()

        self.server = Server(uvicorn.Config(app, **config))

    def run(self) -> None:
        self.server.run()


def main(args: list[str] | None = None) -> int:
    """Run the hmi node until Ctrl-C (or SIGTERM)."""
    argv = list(sys.argv if args is None else args)
    try:
        client = HmiClient(argv)
    except Exception as exc:  # noqa: BLE001 - rclpy argument errors: say why
        print(f"error: {exc}", file=sys.stderr)
        return 2
    route_core_logging(client.node)
    logging.getLogger("cobot_cell").setLevel(logging.INFO)
    backend = None
    try:
        params = read_params(client)
        cobots: list[str] = []
        stations: dict[str, tuple[str, ...]] = {}
        if params.cell_file:
            cfg, _ = load_checked(params.cell_file)
            cobots = list(cfg.cobots)
            for job in cfg.jobs.values():
                stations.update(step_stations(((s.name, s.params) for s in job.steps), cfg.stations))
        model = LiveModel(
            client.cell, cobots, stations, window=params.window, ideal_cycle_time=params.ideal_cycle_time or None
        )
        client.model = model
        users = UserStore(params.users or None)
        cert_dir = params.cert_dir or str(users.path.parent)
        listen = plan_listen(params.host, params.port, params.cert, params.key, params.insecure, cert_dir)
        backend = CellBackend(client, model, params)
        app = create_app(
            backend,
            Sessions(users, idle_timeout=params.session_idle),
            ServerOptions(
                secure=listen.cert is not None, title=f"{client.cell} HMI", open_viewing=is_loopback(listen.host)
            ),
        )
        model.on_change = app.hub.notify
        if not users.roles():
            log.warning("no users in %s: the page is view-only until `cobot-cell users add` creates one", users.path)
        log.info("HMI of cell '%s' on %s://%s:%d/", client.cell, listen.scheme, listen.host, listen.port)
        backend.start()
        _Server(
            app,
            host=listen.host,
            port=listen.port,
            ssl_certfile=listen.cert,
            ssl_keyfile=listen.key,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        ).run()
        return 0
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if backend is not None:
            backend.stop()
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
