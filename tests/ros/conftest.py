"""A real cell for ROS tests: sim drivers, planner and supervisor as processes, and an operator client."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"


class CellRig:
    """The demo cell (or a variant of its text) running at a sim rate, driven like an operator would."""

    def __init__(
        self,
        work: Path,
        cell_text: str | None = None,
        parts: int = 2,
        rate: float = 20.0,
        hmi: str = "",
        env: dict[str, str] | None = None,
    ):
        """`hmi`: HOST:PORT to start the web HMI too; `env`: extra environment for the nodes."""
        from cobot_cell.ros.client import CellClient

        self.work = work
        self.cell_file = work / "cell.yaml"
        self.cell_file.write_text(cell_text if cell_text is not None else DEMO.read_text())
        self.cfg = load_cell(self.cell_file)
        self.journal = work / "journal.db"
        self.db = work / "production.db"
        self.lease = DomainLease()
        specs = node_specs(
            self.cfg,
            self.cell_file,
            BringupOptions(rate=rate, parts=parts, db=str(self.db), journal=str(self.journal), hmi=hmi),
        )
        self.nodes = NodeSet(specs, work, {**ros_env(self.lease.domain_id, work / "ros_log"), **(env or {})})
        self.client = None
        try:
            self.nodes.start()
            self.client = CellClient(self.cfg.cell.name, domain_id=self.lease.domain_id, use_sim_time=True)
            self.wait_state("Stopped", timeout=60)
        except BaseException:
            self.close()
            raise

    def wait(self, predicate, what: str, timeout: float = 60.0) -> None:
        """Spin the client until predicate() holds; fail naming `what` and the cell status otherwise."""
        try:
            self.client.wait_for(predicate, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; status {self.client.status}") from None

    def wait_state(self, *states: str, timeout: float = 60.0) -> str:
        """Wait for one of the PackML states."""
        self.wait(lambda: self.client.state in states, f"state {' or '.join(states)}", timeout)
        return self.client.state

    def wait_reports(self, n: int, timeout: float = 30.0) -> None:
        """Wait for n cycle reports: the state topic may announce Complete before the last report arrives."""
        self.wait(lambda: len(self.client.reports) >= n, f"{n} cycle reports", timeout)

    def ok(self, command: str) -> str:
        """Call a cell service that must succeed; returns its message."""
        success, message = self.client.command(command)
        assert success, f"{command} refused: {message}"
        return message

    def inject(self, cobot: str, fault: str) -> None:
        """Tell a sim driver to have (or, with '', to clear) a fault."""
        ok, reason = self.client.set_parameter("fault", fault, node=f"/{cobot}/sim_cobot")
        assert ok, reason

    def ledger(self) -> list[tuple[str, int, str]]:
        """The planner journal's part ledger: (run_id, part, status)."""
        with sqlite3.connect(self.journal) as db:
            return db.execute("SELECT run_id, part, status FROM ledger ORDER BY part").fetchall()

    def logs(self) -> str:
        """Tail of every node's log (for failure messages)."""
        return "\n".join(
            f"--- {p.spec.fqn}\n{p.log_path.read_text()[-3000:]}" for p in self.nodes.procs if p.log_path.exists()
        )

    def close(self) -> None:
        """Stop everything (always runs, also after a failed test); closing twice is harmless."""
        try:
            if self.client is not None:
                self.client.close()
                self.client = None
        finally:
            self.nodes.stop()
            self.lease.release()


@pytest.fixture
def cell_rig(tmp_path):
    """Factory: cell_rig(cell_text=None, parts=2, rate=20.0) -> a running CellRig, stopped after the test."""
    rigs: list[CellRig] = []

    def make(**kwargs) -> CellRig:
        rig = CellRig(tmp_path, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        print(rig.logs())  # shown by pytest only when the test failed
        rig.close()
    for rig in rigs:
        assert not rig.nodes.unclean_exits(), rig.nodes.unclean_exits()  # every node ended cleanly
