"""The MQTT bridge with a real broker (Debian's mosquitto on loopback) and a real cell: the parts and faults on
MQTT match the supervisor's production log one to one, also when the broker restarts mid-run."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"
PARTS = 4
PREFIX = "acme/hall2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with persistence (a restart keeps the subscriber's session)."""

    def __init__(self, work: Path) -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            pytest.skip("mosquitto is not installed (scripts/bootstrap.sh installs it with apt when run as root)")
        self.exe = exe
        self.port = free_port()
        self.conf = work / "mosquitto.conf"
        (work / "mqtt-db").mkdir()
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work / 'mqtt-db'}/\n"
        )
        self.log = work / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)


class Subscriber:
    """A persistent-session subscriber to the cell's topic tree, keeping every message."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"raw": msg.payload.decode()}
        with self.lock:
            self.messages.append((msg.topic, body))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [b for t, b in self.messages if t == f"{PREFIX}/demo/{kind}"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_mqtt_matches_the_production_log_across_a_broker_restart(tmp_path) -> None:
    from cobot_cell.ros.client import CellClient

    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port)
    cfg = load_cell(DEMO)
    db = tmp_path / "production.db"
    lease = DomainLease()
    specs = node_specs(
        cfg,
        DEMO,
        BringupOptions(
            rate=20.0,
            parts=PARTS,
            db=str(db),
            journal=str(tmp_path / "journal.db"),
            mqtt=f"mqtt://127.0.0.1:{broker.port}",
            mqtt_prefix=PREFIX,
        ),
    )
    for spec in specs:
        if spec.executable == "mqtt_bridge":
            spec.parameters.update(min_backoff=0.2, max_backoff=1.0)
    nodes = NodeSet(specs, tmp_path, ros_env(lease.domain_id, tmp_path / "ros_log"))
    cell = None
    try:
        nodes.start()
        cell = CellClient("demo", domain_id=lease.domain_id, use_sim_time=True)

        def wait(predicate, what: str, timeout: float = 60.0) -> None:
            try:
                cell.wait_for(predicate, timeout, what)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; MQTT topics {sorted({t for t, _ in sub.messages})}") from None

        wait(lambda: cell.state == "Stopped", "the cell")
        wait(lambda: any(b.get("state") == "Stopped" for b in sub.of("state")), "the retained state on MQTT")
        assert cell.command("reset")[0]
        wait(lambda: cell.state == "Idle", "Idle")
        assert cell.command("start")[0]
        wait(lambda: len(sub.of("cycle")) >= 1, "part 1 on MQTT", 120)
        broker.stop()
        # while the broker is away: a fault, its acknowledgement, more parts
        ok, reason = cell.set_parameter("fault", "protective_stop", node="/picker/sim_cobot")
        assert ok, reason
        wait(lambda: cell.state == "Held", "Held on the protective stop")
        assert cell.set_parameter("fault", "", node="/picker/sim_cobot")[0]
        assert cell.command("acknowledge")[0]
        wait(lambda: cell.command("unhold")[0] or cell.state != "Held", "unhold accepted", 30)
        wait(lambda: len(cell.reports) >= 2, "a part made while the broker is away", 120)
        broker.start()
        wait(lambda: cell.state == "Complete", "Complete", 180)

        def logged() -> tuple[list, list]:
            with sqlite3.connect(db) as conn:
                return (
                    conn.execute("SELECT run_id, part, status FROM parts ORDER BY run_id, part").fetchall(),
                    conn.execute("SELECT fault_key, code FROM faults ORDER BY id").fetchall(),
                )

        wait(lambda: len(logged()[0]) == PARTS, "the supervisor to log every part")
        wait(lambda: len({b["key"] for b in sub.of("cycle")}) == PARTS, "every part on MQTT", 60)
        parts, faults = logged()
        cycles = sub.of("cycle")
        assert sorted((b["run_id"], b["part"], b["status"]) for b in cycles) == sorted(parts)
        fault_keys = {}
        for b in sub.of("fault"):
            fault_keys.setdefault(b["key"], b["code"])
        assert sorted(fault_keys.items()) == sorted(faults) and faults
        wait(lambda: any(b.get("state") == "Complete" for b in sub.of("state")), "the Complete state on MQTT", 30)
    finally:
        if cell is not None:
            cell.close()
        nodes.stop()
        lease.release()
        sub.close()
        broker.stop()
        for p in nodes.procs:
            if p.log_path.exists():
                print(f"--- {p.spec.fqn}\n{p.log_path.read_text()[-3000:]}")
    assert not nodes.unclean_exits(), nodes.unclean_exits()
    assert "went away" in nodes.proc("/mqtt_bridge").log_path.read_text()
