"""Run a node set as child processes (where `ros2 launch` is not installed) and stop them reliably.

Imports no rclpy. DDS stays on loopback: ROS_AUTOMATIC_DISCOVERY_RANGE defaults to LOCALHOST.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from .bringup import NodeSpec, command, dds_env, params_file


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

    def __enter__(self) -> "DomainLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class NodeProcess:
    """A running node process and where its output goes."""

    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path


class NodeSet:
    """Starts node specs as processes with the current interpreter; `stop()` ends them (SIGINT, then SIGKILL)."""

    def __init__(self, specs: Sequence[NodeSpec], work_dir: str | os.PathLike, env: dict[str, str],
                 python: str = sys.executable, echo: bool = False):
        self.specs = list(specs)
        self.work_dir = Path(work_dir)
        self.env = env
        self.python = python
        self.echo = echo
        self.procs: list[NodeProcess] = []

    def start(self) -> "NodeSet":
        """Start every node."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self.procs.append(self._spawn(spec))
        return self

    def _spawn(self, spec: NodeSpec) -> NodeProcess:
        pfile = params_file(spec, self.work_dir)
        log_path = self.work_dir / f"{spec.fqn.strip('/').replace('/', '__')}.log"
        out = None if self.echo else open(log_path, "a")
        popen = subprocess.Popen(command(spec, pfile, self.python), env=self.env, stdout=out,
                                 stderr=subprocess.STDOUT if out else None, start_new_session=not self.echo)
        if out:
            out.close()
        return NodeProcess(spec, popen, log_path)

    def kill(self, fqn: str) -> None:
        """SIGKILL one node (a crash: no clean-up runs) and wait for it to be gone."""
        p = self.proc(fqn)
        p.popen.kill()
        p.popen.wait()

    def restart(self, fqn: str) -> NodeProcess:
        """Start a node again (after it died or was killed) with the same spec."""
        old = self.proc(fqn)
        if old.popen.poll() is None:
            raise RuntimeError(f"node {fqn} is still running")
        new = self._spawn(old.spec)
        self.procs[self.procs.index(old)] = new
        return new

    def dead(self) -> list[NodeProcess]:
        """Nodes that have exited."""
        return [p for p in self.procs if p.popen.poll() is not None]

    def proc(self, fqn: str) -> NodeProcess:
        """The process of a node by fully qualified name."""
        for p in self.procs:
            if p.spec.fqn == fqn:
                return p
        raise KeyError(fqn)

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt every node, wait up to `timeout` s, then kill what is left (a second Ctrl-C is ignored)."""
        import threading

        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
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
                p.popen.kill()
                p.popen.wait()

    def __enter__(self) -> "NodeSet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
