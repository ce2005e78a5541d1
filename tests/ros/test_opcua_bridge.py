"""The OPC UA bridge in front of a real cell (sim drivers, planner, supervisor as processes): an asyncua client
on loopback follows a shift through CurrentState and commands it; refused commands leave the cell where it
is; a client dropping mid-subscription does not disturb the cell."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from cobot_cell.plant.opcua_server import PACKML_URI
from cobot_cell.plant.users import UserStore
from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.opcua_bridge import design_speed
from cobot_cell.ros.processes import DomainLease, NodeSet, ros_env
from cobot_cell.skills import load_cell
from cobot_cell.waiting import wait_until_async

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"
CELL_NS = "urn:cobot_cell:plant"
PARTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plant(tmp_path):
    """The demo cell with an opcua_bridge (None policy allowed on loopback for the test), and its users."""
    from cobot_cell.ros.client import CellClient

    users = tmp_path / "users.json"
    store = UserStore(users)
    store.add("op", "op-pw", "operator")
    store.add("viewer", "v-pw", "viewer")
    url = f"opc.tcp://127.0.0.1:{free_port()}/cell/"
    cfg = load_cell(DEMO)
    lease = DomainLease()
    specs = node_specs(
        cfg,
        DEMO,
        BringupOptions(
            rate=20.0,
            parts=PARTS,
            db=str(tmp_path / "production.db"),
            journal=str(tmp_path / "journal.db"),
            opcua=url,
            users=str(users),
            allow_none=True,
        ),
    )
    for spec in specs:
        if spec.executable == "opcua_bridge":
            spec.parameters["pki_dir"] = str(tmp_path / "pki")
    nodes = NodeSet(specs, tmp_path, ros_env(lease.domain_id, tmp_path / "ros_log"))
    client = None
    try:
        nodes.start()
        client = CellClient("demo", domain_id=lease.domain_id, use_sim_time=True)
        client.wait_for(lambda: client.state == "Stopped" and client.authority == "local", 60, "the cell")
        yield url, client, nodes
    finally:
        if client is not None:
            client.close()
        nodes.stop()
        lease.release()
        for p in nodes.procs:
            if p.log_path.exists():
                print(f"--- {p.spec.fqn}\n{p.log_path.read_text()[-3000:]}")
        assert not nodes.unclean_exits(), nodes.unclean_exits()


SPUN = []  # the operator client, spun while the test awaits OPC UA (one thread: this loop's)


async def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    """The shared wait, spinning the operator clients between looks."""

    def spin() -> None:
        for client in SPUN:
            client.spin_once(0.0)

    await wait_until_async(predicate, timeout, what, step=spin)


class States:
    """Subscription handler keeping every StateCurrent value."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def datachange_notification(self, node, val, data) -> None:
        self.values.append(val)


async def connect(url: str, user: str | None = None, password: str = "") -> Client:
    c = Client(url, timeout=10)
    if user:
        c.set_user(user)
        c.set_password(password)
    deadline = asyncio.get_running_loop().time() + 60
    while True:  # the bridge process may still be starting
        try:
            await c.connect()
            return c
        except (OSError, asyncio.TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def nodes_of(c: Client) -> dict:
    await c.load_data_type_definitions()  # PackMLCountDataType, PackMLAlarmDataType, ...
    ns = await c.get_namespace_index(PACKML_URI)
    cns = await c.get_namespace_index(CELL_NS)
    obj = await c.nodes.objects.get_child([f"{ns}:PackMLObjects", f"{ns}:demo"])
    sm = [f"{ns}:BaseStateMachine", f"{ns}:MachineState", f"{ns}:ExecuteState"]

    async def get(*path: str):
        return await obj.get_child(list(path))

    return {
        "obj": obj,
        "machine": await get(*sm[:2]),
        "execute": await get(*sm),
        "reset": await get(*sm[:2], f"{ns}:Reset"),
        "start": await get(*sm, f"{ns}:Start"),
        "hold": await get(*sm, f"{ns}:Hold"),
        "unhold": await get(*sm, f"{ns}:Unhold"),
        "state": await get(f"{ns}:Status", f"{ns}:StateCurrent"),
        "current": await get(sm[0], "0:CurrentState"),
        "processed": await get(f"{ns}:Admin", f"{ns}:ProdProcessedCount"),
        "stop_reason": await get(f"{ns}:Admin", f"{ns}:StopReason"),
        "alarm": await get(f"{ns}:Admin", f"{ns}:Alarm"),
        "reply": await get(f"{cns}:Cell", f"{cns}:LastCommandReply"),
        "cell": await get(f"{cns}:Cell"),
        "ack": await get(f"{cns}:Cell", f"{cns}:Acknowledge"),
        "parts": await get(f"{cns}:KPIs", f"{cns}:Parts"),
        "mach_speed": await get(f"{ns}:Status", f"{ns}:MachSpeed"),
        "availability": await get(f"{cns}:KPIs", f"{cns}:Availability"),
    }


def subsequence(wanted: list[int], seen: list[int]) -> bool:
    it = iter(seen)
    return all(any(v == w for v in it) for w in wanted)


async def bad(coro) -> int:
    with pytest.raises(UaStatusCodeError) as refused:
        await coro
    return refused.value.code


def test_a_shift_through_opc_ua(plant) -> None:
    url, cell, nodes = plant

    async def shift() -> None:
        anon = await connect(url)
        viewer = await connect(url, "viewer", "v-pw")
        op = await connect(url, "op", "op-pw")
        try:
            n, a, v = await nodes_of(op), await nodes_of(anon), await nodes_of(viewer)
            states = States()
            sub = await anon.create_subscription(20, states)
            await sub.subscribe_data_change(a["state"])
            await wait_for(lambda: states.values[-1:] == [2], "Stopped (2) on the subscription")
            # refused: anonymous and viewer sessions (BadUserAccessDenied), remote without authority
            for session in (a, v):
                assert await bad(session["machine"].call_method(session["reset"])) == ua.StatusCodes.BadUserAccessDenied
            assert await bad(n["machine"].call_method(n["reset"])) == ua.StatusCodes.BadRequestNotAllowed
            assert "the cell takes commands from the local operator" in await n["reply"].read_value()
            assert cell.state == "Stopped"
            assert await a["mach_speed"].read_value() == pytest.approx(design_speed(str(DEMO)), rel=1e-6)
            ok, _ = cell.command("authority/hand_over")
            assert ok
            await n["machine"].call_method(n["reset"])
            await wait_for(lambda: cell.state == "Idle", "Idle")
            # wrong state: a Bad status and the reason
            assert await bad(n["execute"].call_method(n["unhold"])) == ua.StatusCodes.BadInvalidState
            assert (await n["reply"].read_value()).startswith(
                "Unhold by user 'op': refused: cannot unhold in state Idle"
            )
            for session in (a, v):  # still refused while authority is remote; the cell does not move
                assert await bad(session["execute"].call_method(session["start"])) == ua.StatusCodes.BadUserAccessDenied
            assert cell.state == "Idle"
            await n["execute"].call_method(n["start"])

            async def processed() -> int:
                counts = await a["processed"].read_value()
                return counts[0].Count if counts else 0

            done = []

            async def poll_count(target: int) -> None:
                while True:
                    done[:] = [await processed()]
                    if done[0] >= target:
                        return
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(poll_count(1), 120)
            # a second client subscribes and drops its connection: the cell goes on
            dropper = await connect(url)
            d = await nodes_of(dropper)
            dsub = await dropper.create_subscription(20, States())
            await dsub.subscribe_data_change(d["state"])
            dropper.disconnect_socket()
            await n["execute"].call_method(n["hold"])
            await wait_for(lambda: cell.state == "Held", "Held")
            await n["execute"].call_method(n["unhold"])
            await wait_for(lambda: cell.state == "Execute", "Execute again")
            # a fault holds the cell: StopReason and Alarm name it; acknowledge and go on over OPC UA
            ok, reason = cell.set_parameter("fault", "protective_stop", node="/picker/sim_cobot")
            assert ok, reason
            await wait_for(lambda: cell.state == "Held", "Held on the protective stop")

            async def stop_reason():
                return await a["stop_reason"].read_value()

            await asyncio.wait_for(_until(stop_reason, lambda r: r.Trigger and "PROTECTIVE_STOP" in r.Message), 30)
            assert [al.Message.split(":")[0] for al in await a["alarm"].read_value()] == ["PROTECTIVE_STOP"]
            ok, reason = cell.set_parameter("fault", "", node="/picker/sim_cobot")
            assert ok, reason
            await n["cell"].call_method(n["ack"])

            async def unhold() -> bool:
                try:
                    await n["execute"].call_method(n["unhold"])
                    return True
                except UaStatusCodeError:
                    return False

            await asyncio.wait_for(_until(unhold, bool, period=0.5), 60)
            await wait_for(lambda: cell.state == "Complete", "Complete", timeout=180)
            await asyncio.wait_for(poll_count(PARTS), 30)
            await wait_for(lambda: states.values[-1:] == [17], "Complete (17) on the subscription")
            assert subsequence([2, 4, 6, 11, 6, 11, 6, 17], states.values), states.values
            assert (await a["current"].read_value()).Text == "Cleared"
            counts = (await a["processed"].read_value())[0]
            assert (counts.Name, counts.ID, counts.Count) == ("bracket", 1, PARTS)
            # the supervisor's KPIs (OEE against the takt bound the planner sends with each cycle report)
            await asyncio.wait_for(_until(n["parts"].read_value, lambda x: x == PARTS), 30)
            assert 0.0 < await n["availability"].read_value() <= 1.0
        finally:
            for c in (anon, viewer, op):
                await c.disconnect()

    SPUN[:] = [cell]
    try:
        asyncio.run(shift())
    finally:
        SPUN.clear()
    assert not nodes.dead()
    cell.wait_for(lambda: any(r["command"] == "acknowledge" for r in cell.audit), 10, "the audit records")
    audit = [(r["source"], r["user"], r["command"], r["outcome"]) for r in cell.audit]
    assert ("remote", "op", "reset", "refused") in audit and ("remote", "op", "start", "accepted") in audit
    assert ("remote", "op", "acknowledge", "accepted") in audit
    # the commands refused for the session's role are in the cell's audit too (anonymous: no user name)
    assert ("remote", "viewer", "Reset", "refused") in audit and ("remote", "", "Start", "refused") in audit


async def _until(read, check, period: float = 0.1):
    while True:
        value = await read()
        if check(value):
            return value
        await asyncio.sleep(period)


@pytest.mark.parametrize(
    "endpoint, reason",
    [
        ("http://127.0.0.1:4840/cell/", "expected opc.tcp://HOST:PORT/PATH"),
        ("opc.tcp://192.0.2.1:4840/cell/", "cannot serve opc.tcp://192.0.2.1:4840/cell/"),  # not this host's address
    ],
)
def test_an_endpoint_the_bridge_cannot_serve_ends_it_with_exit_2(tmp_path, endpoint, reason) -> None:
    """Found while the server starts (after the node's construction), still a configuration error: exit 2 and
    the reason naming the parameter (asyncua logs its own traceback of a failed bind before)."""
    with DomainLease() as lease:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cobot_cell.ros.opcua_bridge",
                "--ros-args",
                "-p",
                "cells:=[demo]",
                "-p",
                f"endpoint:={endpoint}",
                "-p",
                f"pki_dir:={tmp_path / 'pki'}",
                "-p",
                f"users:={tmp_path / 'users.json'}",
            ],
            env=ros_env(lease.domain_id, tmp_path / "ros_log"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: parameter endpoint: ") and reason in last, proc.stderr
