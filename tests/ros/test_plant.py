"""A plant of two cells (each its own namespace, the first owning /clock) under one supervisor and one OPC UA
server on this machine, started from a plant file: both cells make parts at the same time, the supervisor
logs and KPIs them per cell, the OPC UA server has a PackML object for each."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

from asyncua import Client

from cobot_cell.plant.config import load_plant
from cobot_cell.plant.opcua_server import PACKML_URI
from cobot_cell.ros.bringup import BringupOptions, plant_node_specs
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"


def second_cell(text: str) -> str:
    """The demo cell as a second cell: its own name and cobot namespaces."""
    text = text.replace("  name: demo\n", "  name: cell_b\n")
    for cobot in ("picker", "welder"):
        text = text.replace(
            f"  {cobot}:\n    model: ur5e\n", f"  {cobot}:\n    model: ur5e\n    namespace: cell_b/{cobot}\n"
        )
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cells_one_supervisor_one_opcua_server(tmp_path) -> None:
    from cobot_cell.ros.client import CellClient

    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "a.yaml").write_text(DEMO.read_text())
    (tmp_path / "cells" / "b.yaml").write_text(second_cell(DEMO.read_text()))
    url = f"opc.tcp://127.0.0.1:{free_port()}/plant/"
    (tmp_path / "plant.yaml").write_text(
        "plant: {site: acme, area: hall2, db: production.db, opcua: '" + url + "'}\n"
        "cells:\n  - file: cells/a.yaml\n  - file: cells/b.yaml\n"
    )
    plant = load_plant(tmp_path / "plant.yaml")
    assert [c.name for c in plant.cells] == ["demo", "cell_b"]
    lease = DomainLease()
    specs = plant_node_specs(plant, BringupOptions(rate=20.0, parts=2, allow_none=True), tmp_path)
    for spec in specs:
        if spec.executable == "opcua_bridge":
            spec.parameters["pki_dir"] = str(tmp_path / "pki")
    assert [s.fqn for s in specs] == [
        "/picker/sim_cobot",
        "/welder/sim_cobot",
        "/demo/task_planner",
        "/cell_b/picker/sim_cobot",
        "/cell_b/welder/sim_cobot",
        "/cell_b/task_planner",
        "/supervisor",
        "/opcua_bridge",
    ]
    assert [s.parameters.get("publish_clock") for s in specs if s.executable == "sim_cobot"] == [
        True,
        False,
        False,
        False,
    ]
    nodes = NodeSet(specs, tmp_path, ros_env(lease.domain_id, tmp_path / "ros_log"))
    clients: list[CellClient] = []
    try:
        nodes.start()
        clients = [
            CellClient(c, domain_id=lease.domain_id, use_sim_time=True, node_name=f"op_{c}") for c in ("demo", "cell_b")
        ]
        for c in clients:
            c.wait_for(lambda c=c: c.state == "Stopped", 60, f"cell {c.cell}")
        for cmd, state in (("reset", "Idle"), ("start", None)):
            for c in clients:
                ok, msg = c.command(cmd)
                assert ok, f"{c.cell} {cmd}: {msg}"
            for c in clients:
                if state:
                    c.wait_for(lambda c=c, state=state: c.state == state, 30, f"{c.cell} {state}")

        def both(predicate, what: str, timeout: float) -> None:
            clients[0].wait_for(lambda: (clients[1].spin_once(0.0), predicate())[1], timeout, what)

        both(lambda: all(c.state == "Complete" for c in clients), "both cells complete", 240)
        both(lambda: all(c.kpis.get(c.cell, {}).get("parts") == "2" for c in clients), "KPIs of both cells", 30)
        with sqlite3.connect(plant.db) as db:
            per_cell = dict(db.execute("SELECT cell, count(*) FROM parts GROUP BY cell").fetchall())
        assert per_cell == {"demo": 2, "cell_b": 2}

        async def browse() -> list[str]:
            opc = Client(url, timeout=10)
            deadline = asyncio.get_running_loop().time() + 60
            while True:  # the bridge may still be setting up (certificate, address space)
                try:
                    await opc.connect()
                    break
                except (OSError, asyncio.TimeoutError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            try:
                ns = await opc.get_namespace_index(PACKML_URI)
                folder = await opc.nodes.objects.get_child([f"{ns}:PackMLObjects"])
                names = [(await n.read_browse_name()).Name for n in await folder.get_children()]
                nodes_ = [await folder.get_child([f"{ns}:{n}", f"{ns}:Status", f"{ns}:StateCurrent"]) for n in names]
                while True:  # a bridge that just started catches up with the cells' latched states
                    states = [await n.read_value() for n in nodes_]
                    if states == [17, 17] or asyncio.get_running_loop().time() > deadline:
                        return list(zip(names, states))
                    await asyncio.sleep(0.1)
            finally:
                await opc.disconnect()

        assert asyncio.run(browse()) == [("demo", 17), ("cell_b", 17)]
    finally:
        for c in clients:
            c.close()
        nodes.stop()
        lease.release()
        for p in nodes.procs:
            if p.log_path.exists():
                print(f"--- {p.spec.fqn}\n{p.log_path.read_text()[-2000:]}")
    assert not nodes.unclean_exits(), nodes.unclean_exits()
