"""opcua_bridge: the plant's OPC UA server (OPC 30050 PackML) for any number of cells.

Follows each cell with the operator client on one node (a ROS thread spins it) and serves the PackML model
from an asyncio loop (asyncua). Cell updates become tags on the ROS thread and are written to the server at
once; commands from OPC UA clients go to the cell's `authority/command` service as REMOTE commands with the
session's user. See docs/opcua.md.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ..plant.authority import REFUSED, AuditRecord, Source
from ..plant.opcua_server import DEFAULT_ENDPOINT, PlantServer, Reply, ServerOptions
from ..plant.packml import CellTracker, parse_cntrl_cmd_map
from ..plant.users import UserStore, default_path
from .client import command_reply
from .common import REPORTS, StartError, route_core_logging, run_node, spin_once_alive, status_msg
from .plant_follower import CellFollower

logger = logging.getLogger(__name__)

REFRESH = 1.0  # wall seconds between refreshes of the time tags (StateCurrentTime, ...)


@dataclass(frozen=True)
class BridgeParams:
    """Parameters of the opcua_bridge node."""

    cells: tuple[str, ...]
    cell_files: tuple[str, ...]
    endpoint: str
    pki_dir: str
    users: str
    allow_none: bool
    max_sessions: int
    cntrl_cmd_map: str
    command_timeout: float
    mach_speed: float


def jobs_of(cell_file: str) -> tuple[str, ...]:
    """The job names of a cell file, in order (their PackML ProductIDs are 1, 2, ...)."""
    try:
        data = yaml.safe_load(Path(cell_file).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"parameter cell_files: cannot read {cell_file}: {exc}") from None
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict) or not jobs:
        raise ValueError(f"parameter cell_files: {cell_file} has no jobs")
    return tuple(str(j) for j in jobs)


def design_speed(cell_file: str) -> float:
    """Parts/h of a cell's first job as planned: 3600 / its planned cycle time, timed as `cobot-cell estimate`
    does (each step when its predecessors and its cobot are done)."""
    from ..core.dag import step_ends
    from ..skills import estimate, load_cell

    cfg = load_cell(cell_file)
    job = next(iter(cfg.jobs))
    cycle = max(step_ends(cfg.jobs[job], {e.step: e.duration for e in estimate(cfg, job)}).values())
    return 3600.0 / cycle if cycle > 0 else 0.0


class BridgeNode(Node):
    """The ROS side: parameters, one CellFollower per cell, and the queue of commands from OPC UA."""

    def __init__(self) -> None:
        super().__init__("opcua_bridge")
        route_core_logging(self)
        d = self._declare
        self.params = BridgeParams(
            cells=tuple(c for c in d("cells", [""], "cells to serve (names, = their namespaces)") if c),
            cell_files=tuple(
                c
                for c in d(
                    "cell_files", [""], "cell files of the cells, same order (job names for SetProduct); optional"
                )
                if c
            ),
            endpoint=d("endpoint", DEFAULT_ENDPOINT, "OPC UA endpoint (opc.tcp://HOST:PORT/PATH); loopback by default"),
            pki_dir=d(
                "pki_dir",
                "",
                "directory of the server certificate and key, made on first start "
                "(default ~/.config/cobot_cell/opcua); trusted/ holds client certificates",
            ),
            users=d("users", "", f"user file (default {default_path()})"),
            allow_none=d("allow_none", False, "also offer the None security policy (no signing, no encryption)"),
            max_sessions=d("max_sessions", 10, "sessions at once; more are refused with BadTooManySessions"),
            cntrl_cmd_map=d(
                "cntrl_cmd_map",
                "",
                "CntrlCmd numbers, e.g. '1=reset,2=start,3=stop' (default: the TR88 numbering 1 reset .. 9 clear)",
            ),
            command_timeout=d("command_timeout", 5.0, "seconds a command waits for the cell's reply"),
            mach_speed=d(
                "mach_speed",
                0.0,
                "target parts/h shown as MachSpeed (0: the planned rate of each cell's first job, from its cell file)",
            ),
        )
        if not self.params.cells:
            raise ValueError("parameter cells: at least one cell is required")
        if self.params.cell_files and len(self.params.cell_files) != len(self.params.cells):
            raise ValueError(
                f"parameter cell_files: {len(self.params.cell_files)} files for {len(self.params.cells)} cells"
            )
        if self.params.max_sessions < 1:
            raise ValueError(f"parameter max_sessions: must be >= 1, got {self.params.max_sessions}")
        self.cntrl_cmd_map = parse_cntrl_cmd_map(self.params.cntrl_cmd_map)
        self.jobs = {c: jobs_of(f) for c, f in zip(self.params.cells, self.params.cell_files)}
        self.speeds = {
            c: self.params.mach_speed or (design_speed(f) if f else 0.0)
            for c, f in zip(self.params.cells, self.params.cell_files or [""] * len(self.params.cells))
        }
        self.trackers = {
            c: CellTracker(c, jobs=self.jobs.get(c, ()), mach_speed=self.speeds[c]) for c in self.params.cells
        }
        self.dirty: set[str] = set(self.params.cells)
        self.followers = {c: CellFollower(c, self, self._on_event) for c in self.params.cells}
        self.commands: queue.SimpleQueue[tuple[str, str, str, dict, Any]] = queue.SimpleQueue()
        # commands the server refused for the user's role go into the cell's audit trail, as the planner's own do
        self.refusals: queue.SimpleQueue[AuditRecord] = queue.SimpleQueue()
        self.audit_pubs = {
            c: self.create_publisher(DiagnosticStatus, f"/{c}/audit", REPORTS) for c in self.params.cells
        }

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _on_event(self, cell: str, kind: str, data: Any) -> None:
        t = self.trackers[cell]
        if kind == "state":
            t.on_state(data)
        elif kind == "status":
            t.on_status(data)
        elif kind == "cycle":
            t.on_report(data)
        elif kind == "fault":
            t.on_fault(*data)
        elif kind == "kpis":
            t.on_kpis(data)
        elif kind == "authority":
            t.authority = data
        else:
            return
        self.dirty.add(cell)

    def refused(self, cell: str, user: str, command: str, reason: str) -> None:
        """A command the server refused for the user's role (any thread): audited on the ROS thread."""
        self.refusals.put(AuditRecord(time.time(), cell, Source.REMOTE.value, user, command, REFUSED, reason))

    def send_commands(self) -> None:
        """Pass queued OPC UA commands to the cells (without waiting for their replies)."""
        while True:
            try:
                rec = self.refusals.get_nowait()
            except queue.Empty:
                break
            if rec.cell in self.audit_pubs:
                self.audit_pubs[rec.cell].publish(
                    status_msg(
                        f"{rec.cell}/audit",
                        DiagnosticStatus.WARN,
                        f"{rec.command} {rec.outcome}",
                        rec.to_key_values(),
                        hardware_id=rec.cell,
                    )
                )
        while True:
            try:
                cell, command, user, fields, done = self.commands.get_nowait()
            except queue.Empty:
                return
            future = self.followers[cell].command_as_async(command, "remote", user, **fields)
            if future is None:
                done(Reply(False, f"cell '{cell}' is not reachable (no authority/command service)", "timeout"))
                continue

            def finished(fut, done=done) -> None:
                exc = fut.exception()
                if exc is not None:
                    done(Reply(False, f"call failed: {exc}", "timeout"))
                else:
                    ok, text, kind = command_reply(fut.result())
                    done(Reply(ok, text, kind))

            future.add_done_callback(finished)


class Bridge:
    """Runs the BridgeNode's ROS thread and the PlantServer's asyncio loop together."""

    def __init__(self, node: BridgeNode) -> None:
        self.node = node
        p = node.params
        self.server = PlantServer(
            ServerOptions(
                endpoint=p.endpoint,
                pki_dir=Path(p.pki_dir).expanduser() if p.pki_dir else Path.home() / ".config" / "cobot_cell" / "opcua",
                users=UserStore(p.users or None),
                allow_none=p.allow_none,
                max_sessions=p.max_sessions,
                cntrl_cmd_map=node.cntrl_cmd_map,
                on_refused=node.refused,
            ),
            self._sink,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = threading.Event()
        self.updates = 0

    async def _sink(self, cell: str, command: str, user: str, fields: dict[str, Any]) -> Reply:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Reply] = loop.create_future()

        def settle(r: Reply) -> None:
            if not reply.done():
                reply.set_result(r)

        def done(r: Reply) -> None:
            loop.call_soon_threadsafe(settle, r)

        self.node.commands.put((cell, command, user, fields, done))
        try:
            return await asyncio.wait_for(reply, self.node.params.command_timeout)
        except asyncio.TimeoutError:
            return Reply(False, f"cell '{cell}' did not reply within {self.node.params.command_timeout:g} s", "timeout")

    def _ros_thread(self) -> None:
        executor = SingleThreadedExecutor(context=self.node.context)
        executor.add_node(self.node)
        next_refresh = time.monotonic() + REFRESH
        try:
            while not self.stopping.is_set() and spin_once_alive(executor, 0.02):
                self.node.send_commands()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + REFRESH
                    self.node.dirty |= set(self.node.trackers)
                if self.node.dirty and self.loop is not None:
                    cells, self.node.dirty = self.node.dirty, set()
                    for cell in cells:
                        tags = self.node.trackers[cell].tags()
                        asyncio.run_coroutine_threadsafe(self._write(cell, tags), self.loop)
        except ExternalShutdownException:
            pass
        finally:
            executor.shutdown(timeout_sec=0)
            if self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._done.set)

    async def _write(self, cell: str, tags: Any) -> None:
        try:
            self.updates += await self.server.update(cell, tags)
        except Exception:  # one bad update must not stop the server
            logger.exception("updating the PackML object of cell '%s' failed", cell)

    async def run(self) -> None:
        """Serve until the ROS context shuts down (Ctrl-C, SIGINT)."""
        self.loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        try:
            await self.server.start()
        except OSError as exc:  # the port is taken, the address is not this host's, ...
            raise StartError(f"parameter endpoint: cannot serve {self.node.params.endpoint}: {exc}") from None
        except ValueError as exc:  # not an opc.tcp URL
            raise StartError(f"parameter endpoint: {exc}") from None
        for cell in self.node.params.cells:
            await self.server.add_cell(cell, self.node.jobs.get(cell, ()), self.node.speeds[cell])
        thread = threading.Thread(target=self._ros_thread, name="ros", daemon=True)
        thread.start()
        self.node.get_logger().info(
            f"OPC UA server for {', '.join(self.node.params.cells)} on {self.node.params.endpoint}"
        )
        try:
            await self._done.wait()
        finally:
            self.stopping.set()
            await self.server.stop()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)


def main(args=None) -> int:
    """Run the opcua_bridge node."""
    return run_node(BridgeNode, args, spin=lambda node: asyncio.run(Bridge(node).run()))


if __name__ == "__main__":
    raise SystemExit(main())
