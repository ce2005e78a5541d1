"""Run a node set as child processes (where `ros2 launch` is not installed), restart crashed ones, stop them reliably.

Imports no rclpy. DDS stays on loopback: ROS_AUTOMATIC_DISCOVERY_RANGE defaults to LOCALHOST.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .bringup import NodeSpec, RespawnPolicy, command, dds_env, params_file

log = logging.getLogger(__name__)

RUNNER_PID_VAR = "COBOT_CELL_RUNNER_PID"
"""Set for every node the runner starts: the node ends when that process does (see common.run_node)."""
WATCH_PERIOD = 0.1  # wall seconds between checks for nodes that exited


def ros_env(domain_id: int | None = None, log_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment for child nodes: loopback discovery, a domain id, a log directory, the Fast DDS profile."""
    env = dds_env(dict(os.environ))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class DomainLease:
    """An exclusive ROS_DOMAIN_ID on this machine, held through a lock file until released."""

    def __init__(self, first: int = 1, last: int = 101):
        self.domain_id = -1
        self._fh: IO[str] | None = None
        lock_dir = Path(tempfile.gettempdir()) / "cobot_cell_domains"
        lock_dir.mkdir(exist_ok=True)
        start = first + os.getpid() % (last - first + 1)
        for k in range(last - first + 1):
            d = first + (start - first + k) % (last - first + 1)
            fh = open(lock_dir / f"{d}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self.domain_id, self._fh = d, fh
            return
        raise RuntimeError(f"no free ROS_DOMAIN_ID between {first} and {last}")

    def release(self) -> None:
        """Give the domain back."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> DomainLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class NodeProcess:
    """A running node process and where its output goes; `retries`: restarts before this one."""

    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path
    retries: int = 0
    restart_at: float | None = None  # when it exited: when it is due to start again
    gave_up: bool = False  # exited and will not be started again
    killed: bool = False  # ended on purpose with kill() (a crash test): not an unclean exit


CLEAN_EXITS = (0, -signal.SIGINT)  # a node that handled Ctrl-C, or ended by it before its handler was set


def _no_op(signum: int, frame) -> None:
    """A Ctrl-C while the nodes are being stopped: nothing to do."""


def exit_text(code: int | None) -> str:
    """'code 1', 'signal SIGKILL' for a process return code."""
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class NodeSet:
    """Starts node specs as processes with the current interpreter; `stop()` ends them (SIGINT, then SIGKILL).

    With `respawn`, a watcher thread starts a node that exited again as its spec's RespawnPolicy says (as
    `ros2 launch` does with respawn, respawn_delay and respawn_max_retries), logging each exit and restart;
    without, nodes that exit stay dead (tests and benchmarks that kill and restart nodes themselves). Every
    node runs in its own session, so signals reach it only from the runner: one SIGINT when stopping.
    """

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        work_dir: str | os.PathLike,
        env: dict[str, str],
        python: str = sys.executable,
        echo: bool = False,
        respawn: bool = False,
        clock: Callable[[], float] = time.monotonic,
        watch_period: float = WATCH_PERIOD,
    ):
        self.specs = list(specs)
        self.work_dir = Path(work_dir)
        self.env = {**env, RUNNER_PID_VAR: str(os.getpid())}
        self.python = python
        self.echo = echo
        self.respawn = respawn
        self.clock = clock
        self.watch_period = watch_period  # 0: no watcher thread, the owner calls supervise()
        self.procs: list[NodeProcess] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> NodeSet:
        """Start every node (and, with `respawn`, the watcher that restarts them)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        with self._lock:
            for spec in self.specs:
                self.procs.append(self._spawn(spec))
        if self.respawn and self.watch_period > 0 and any(s.respawn.enabled for s in self.specs):
            self._watcher = threading.Thread(target=self._watch, name="node-watcher", daemon=True)
            self._watcher.start()
        return self

    def _spawn(self, spec: NodeSpec) -> NodeProcess:
        pfile = params_file(spec, self.work_dir)
        log_path = self.work_dir / f"{spec.fqn.strip('/').replace('/', '__')}.log"
        out = None if self.echo else open(log_path, "a")
        popen = subprocess.Popen(
            command(spec, pfile, self.python),
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        return NodeProcess(spec, popen, log_path)

    def _watch(self) -> None:
        while not self._stopping.wait(self.watch_period):
            try:
                self.supervise()
            except OSError:  # cannot start a process now (out of memory, ...): try again on the next pass
                log.exception("restarting a node failed")

    def supervise(self, now: float | None = None) -> list[NodeProcess]:
        """One pass of the watcher: note nodes that exited, start those whose restart is due; returns the
        restarted ones. Nothing is restarted once `stop()` has begun."""
        now = self.clock() if now is None else now
        restarted = []
        with self._lock:
            for i, p in enumerate(self.procs):
                if self._stopping.is_set():
                    break
                if p.gave_up or p.popen.poll() is None:
                    continue
                policy = p.spec.respawn if self.respawn else RespawnPolicy()
                if p.restart_at is None:
                    p.restart_at = policy.restart_at(p.retries, now)
                    if p.restart_at is None:
                        p.gave_up = True
                        if policy.enabled:
                            log.error(
                                "node %s exited with %s; not restarted again (%d restarts used)",
                                p.spec.fqn,
                                exit_text(p.popen.returncode),
                                p.retries,
                            )
                        continue
                    limit = "no limit" if policy.max_retries < 0 else f"{policy.max_retries}"
                    log.warning(
                        "node %s exited with %s; restarting it in %g s (restart %d of %s)",
                        p.spec.fqn,
                        exit_text(p.popen.returncode),
                        policy.delay,
                        p.retries + 1,
                        limit,
                    )
                if now >= p.restart_at:
                    new = self._spawn(p.spec)
                    new.retries = p.retries + 1
                    self.procs[i] = new
                    restarted.append(new)
                    log.warning("node %s restarted (pid %d)", p.spec.fqn, new.popen.pid)
        return restarted

    def failed(self) -> list[NodeProcess]:
        """Nodes that exited and will not be started again (no respawn, or its retries used up)."""
        with self._lock:
            return [
                p
                for p in self.procs
                if p.popen.poll() is not None and (p.gave_up or not (self.respawn and p.spec.respawn.enabled))
            ]

    def kill(self, fqn: str) -> None:
        """SIGKILL one node (a crash: no clean-up runs) and wait for it to be gone."""
        p = self.proc(fqn)
        p.killed = True
        p.popen.kill()
        p.popen.wait()

    def restart(self, fqn: str) -> NodeProcess:
        """Start a node again (after it died or was killed) with the same spec."""
        with self._lock:
            old = self.proc(fqn)
            if old.popen.poll() is None:
                raise RuntimeError(f"node {fqn} is still running")
            new = self._spawn(old.spec)
            self.procs[self.procs.index(old)] = new
            return new

    def dead(self) -> list[NodeProcess]:
        """Nodes that have exited (a respawned node counts until its restart)."""
        with self._lock:
            return [p for p in self.procs if p.popen.poll() is not None]

    def proc(self, fqn: str) -> NodeProcess:
        """The process of a node by fully qualified name."""
        with self._lock:
            for p in self.procs:
                if p.spec.fqn == fqn:
                    return p
        raise KeyError(fqn)

    def unclean_exits(self) -> list[str]:
        """After `stop()`: why each node that did not end cleanly did not (an exit code other than 0 or SIGINT's, or a
        traceback in its log); nodes ended with `kill()` are left out. Empty when every node ended cleanly."""
        problems = []
        with self._lock:
            for p in self.procs:
                code = p.popen.poll()
                if p.killed:
                    continue
                if code is None:
                    problems.append(f"{p.spec.fqn}: still running")
                elif code not in CLEAN_EXITS:
                    problems.append(f"{p.spec.fqn}: exited with {exit_text(code)} (log {p.log_path})")
                log_text = p.log_path.read_text(errors="replace") if p.log_path.exists() else ""
                if "Traceback (most recent call last)" in log_text:
                    problems.append(f"{p.spec.fqn}: a traceback in its log {p.log_path}")
        return problems

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt every node, wait up to `timeout` s, then kill what is left (a second Ctrl-C is ignored)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        if threading.current_thread() is threading.main_thread():
            # a no-op rather than SIG_IGN: a signal already pending must find a handler, or Python reports it
            # ignored "due to race condition"
            previous = signal.signal(signal.SIGINT, _no_op)
            try:
                self._stop(timeout)
            finally:
                signal.signal(signal.SIGINT, previous)
        else:
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # a node that does not stop: its threads' stacks into its log (run_node registers SIGUSR1), then kill
                p.popen.send_signal(signal.SIGUSR1)
                try:
                    p.popen.wait(1.0)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait()

    def __enter__(self) -> NodeSet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
