"""The sim driver reports the payload it carries: the tool's mass, plus the part's while the gripper holds it."""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from std_srvs.srv import SetBool

from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.client import CellClient
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell

CELL = Path(__file__).resolve().parents[2] / "config" / "ur20_us_pallet.yaml"


def test_payload_follows_the_gripper(tmp_path):
    cfg = load_cell(CELL)
    specs = [
        s
        for s in node_specs(cfg, CELL, BringupOptions(rate=5.0, journal=str(tmp_path / "journal.db")))
        if s.executable == "sim_cobot"
    ]
    assert specs[0].parameters["tool_mass"] == 3.2 and specs[0].parameters["part_mass"] == 12.0
    payload: list[str] = []
    with DomainLease() as lease:
        nodes = NodeSet(specs, tmp_path, ros_env(lease.domain_id, tmp_path / "ros_log")).start()
        client = CellClient(cfg.cell.name, domain_id=lease.domain_id, node_name="payload_probe")
        try:

            def on_diagnostics(msg: DiagnosticArray) -> None:
                for st in msg.status:
                    payload.extend(kv.value for kv in st.values if kv.key == "payload_kg")

            client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
            grip = client.node.create_client(SetBool, "/palletiser/vacuum/grip")
            client.wait_for(lambda: payload[-1:] == ["3.200"], 30, "the empty gripper's payload")
            for on, expected in ((True, "15.200"), (False, "3.200")):
                assert client._call(grip, SetBool.Request(data=on), 10, "grip").success
                client.wait_for(lambda e=expected: payload[-1:] == [e], 30, f"payload {expected} kg")
        finally:
            client.close()
            nodes.stop()
        assert not nodes.unclean_exits(), nodes.unclean_exits()
