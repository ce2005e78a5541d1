"""The PackML OPC UA server on loopback, with a recording stand-in for the cell: the model as OPC 30050 has it,
subscriptions, roles, refusals with status codes and reasons, bad input, bounded sessions, certificates."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from cobot_cell.plant.opcua_server import PACKML_URI, PlantServer, Reply, ServerOptions
from cobot_cell.plant.packml import CellTracker, parse_cntrl_cmd_map
from cobot_cell.plant.users import UserStore
from cobot_cell.waiting import wait_until_async

pytestmark = pytest.mark.asyncio
CELL_NS = "urn:cobot_cell:plant"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cell:
    """Stands in for the cell behind the server: records commands, replies as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict]] = []
        self.reply = Reply(True, "ok")

    async def __call__(self, cell: str, command: str, user: str, fields: dict) -> Reply:
        self.calls.append((cell, command, user, fields))
        return self.reply


class Rig:
    def __init__(self, tmp: Path, allow_none: bool = True, max_sessions: int = 10, pki: Path | None = None) -> None:
        self.tmp = tmp
        self.users = UserStore(tmp / "users.json")
        self.users.add("op", "op-pw", "operator")
        self.users.add("viewer", "v-pw", "viewer")
        self.cell = Cell()
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/test/"
        self.options = ServerOptions(
            endpoint=self.url,
            pki_dir=pki or tmp / "pki",
            users=self.users,
            allow_none=allow_none,
            max_sessions=max_sessions,
            cntrl_cmd_map=parse_cntrl_cmd_map(""),
        )
        self.server = PlantServer(self.options, self.cell)
        self.tracker = CellTracker("demo", jobs=("bracket", "frame"), mach_speed=120.0)

    async def start(self) -> Rig:
        await self.server.start()
        await self.server.add_cell("demo", ("bracket", "frame"), 120.0)
        await self.server.update("demo", self.tracker.tags())
        return self

    def client(self, user: str | None = None, password: str = "") -> Client:
        c = Client(self.url, timeout=10)
        if user:
            c.set_user(user)
            c.set_password(password)
        return c


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """One server certificate for the module's servers (made by the first; RSA keys take a while)."""
    return tmp_path_factory.mktemp("pki")


@pytest_asyncio.fixture
async def rig(tmp_path, pki):
    r = await Rig(tmp_path, pki=pki).start()
    yield r
    await r.server.stop()


async def cell_object(c: Client):
    ns = await c.get_namespace_index(PACKML_URI)
    return ns, await c.nodes.objects.get_child([f"{ns}:PackMLObjects", f"{ns}:demo"])


async def child(c: Client, obj, *path: str):
    ns = await c.get_namespace_index(PACKML_URI)
    cns = await c.get_namespace_index(CELL_NS)
    names = [p if ":" in p else f"{ns}:{p}" for p in path]
    return await obj.get_child([n.replace("cell:", f"{cns}:") for n in names])


async def test_the_model_has_every_mandatory_node_with_its_data_type(rig) -> None:
    async with rig.client() as c:
        ns, obj = await cell_object(c)
        assert (await obj.read_type_definition()) == ua.NodeId("PackMLBaseObjectType", ns)
        int32, flt, boolean = (
            ua.NodeId(ua.ObjectIds.Int32),
            ua.NodeId(ua.ObjectIds.Float),
            ua.NodeId(ua.ObjectIds.Boolean),
        )
        enum = await (await child(c, obj, "Status", "UnitSupportedModes")).read_value()
        assert (await c.get_node(enum).read_browse_name()).Name == "ProductionMaintenanceModeEnum"
        expected = {
            ("Status", "UnitModeCurrent"): enum,
            ("Status", "MachSpeed"): flt,
            ("Status", "CurMachSpeed"): flt,
            ("Status", "EquipmentBlocked"): boolean,
            ("Status", "EquipmentStarved"): boolean,
            ("Status", "StateCurrent"): int32,
            ("Admin", "StopReasonExtent"): int32,
            ("Admin", "ModeCurrentTime"): int32,
            ("Admin", "StateCumulativeTime"): int32,
            ("Admin", "MachDesignSpeed"): flt,
            ("BaseStateMachine", "0:CurrentState"): ua.NodeId(ua.ObjectIds.LocalizedText),
            ("BaseStateMachine", "0:AvailableStates"): ua.NodeId(ua.ObjectIds.NodeId),
            ("BaseStateMachine", "0:AvailableTransitions"): ua.NodeId(ua.ObjectIds.NodeId),
        }
        for path, dtype in expected.items():
            assert await (await child(c, obj, *path)).read_data_type() == dtype, path
        for tag, type_name in (
            ("ProdProcessedCount", "PackMLCountDataType"),
            ("ProdDefectiveCount", "PackMLCountDataType"),
            ("StopReason", "PackMLAlarmDataType"),
            ("Warning", "PackMLAlarmDataType"),
            ("Alarm", "PackMLAlarmDataType"),
        ):
            dtype = await (await child(c, obj, "Admin", tag)).read_data_type()
            assert (await c.get_node(dtype).read_browse_name()).Name == type_name
        for name in ("SetMachSpeed", "SetParameter", "SetProduct", "SetUnitMode", "RemoteCommand"):
            assert await (await child(c, obj, name)).read_node_class() == ua.NodeClass.Method
        for path in (
            ("BaseStateMachine", "Abort"),
            ("BaseStateMachine", "Clear"),
            ("BaseStateMachine", "MachineState", "Stop"),
            ("BaseStateMachine", "MachineState", "Reset"),
            *[
                ("BaseStateMachine", "MachineState", "ExecuteState", m)
                for m in ("Start", "Hold", "Unhold", "Suspend", "Unsuspend", "Reset")
            ],
        ):
            assert await (await child(c, obj, *path)).read_node_class() == ua.NodeClass.Method, path
        # the cell starts Stopped: Cleared > Stopped, ExecuteState inactive; the state's StateNumber is TR88's
        base = await child(c, obj, "BaseStateMachine", "0:CurrentState")
        machine = await child(c, obj, "BaseStateMachine", "MachineState", "0:CurrentState")
        assert (await base.read_value()).Text == "Cleared" and (await machine.read_value()).Text == "Stopped"
        state_id = await (await machine.get_child("0:Id")).read_value()
        assert await (await c.get_node(state_id).get_child("0:StateNumber")).read_value() == 2
        execute = await child(c, obj, "BaseStateMachine", "MachineState", "ExecuteState", "0:CurrentState")
        dv = await execute.read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.value == ua.StatusCodes.BadStateNotActive
        transitions = await (
            await child(c, obj, "BaseStateMachine", "MachineState", "0:AvailableTransitions")
        ).read_value()
        assert [(await c.get_node(t).read_browse_name()).Name for t in transitions] == ["StoppedToRunning"]
        assert await (await child(c, obj, "Status", "MachSpeed")).read_value() == 120.0


async def test_a_subscription_sees_state_changes(rig) -> None:
    class Handler:
        def __init__(self) -> None:
            self.values: list[int] = []

        def datachange_notification(self, node, val, data) -> None:
            self.values.append(val)

    handler = Handler()
    async with rig.client() as c:
        _, obj = await cell_object(c)
        sub = await c.create_subscription(20, handler)
        await sub.subscribe_data_change(await child(c, obj, "Status", "StateCurrent"))
        for state in ("Resetting", "Idle", "Starting", "Execute"):
            rig.tracker.on_state(state)
            await rig.server.update("demo", rig.tracker.tags())
        await wait_until_async(lambda: bool(handler.values) and handler.values[-1] == 6, 10, "Execute (6) notified")
        assert handler.values[0] == 2


async def test_equipment_starved_and_blocked_follow_the_cell_status(rig) -> None:
    async with rig.client() as c:
        _, obj = await cell_object(c)
        starved = await child(c, obj, "Status", "EquipmentStarved")
        blocked = await child(c, obj, "Status", "EquipmentBlocked")
        assert (await starved.read_value(), await blocked.read_value()) == (False, False)
        for flags in (("true", "false"), ("false", "true"), ("false", "false")):
            rig.tracker.on_status({"state": "Execute", "starved": flags[0], "blocked": flags[1]})
            await rig.server.update("demo", rig.tracker.tags())
            want = tuple(f == "true" for f in flags)
            assert (await starved.read_value(), await blocked.read_value()) == want


@pytest.mark.parametrize("user", [None, ("viewer", "v-pw")])
async def test_commands_need_the_operator_role(rig, user, caplog) -> None:
    async with rig.client(*(user or ())) as c:
        _, obj = await cell_object(c)
        machine = await child(c, obj, "BaseStateMachine", "MachineState")
        with pytest.raises(UaStatusCodeError) as refused:
            await machine.call_method(await child(c, obj, "BaseStateMachine", "MachineState", "Reset"))
        assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
        cntrl = await child(c, obj, "cell:Command", "cell:CntrlCmd")
        with pytest.raises(UaStatusCodeError) as refused:
            await cntrl.write_value(ua.Variant(1, ua.VariantType.Int32))
        assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
    assert rig.cell.calls == []
    assert "commands need the operator role" in caplog.text


async def test_a_wrong_password_is_refused(rig) -> None:
    with pytest.raises(UaStatusCodeError) as refused:
        async with rig.client("op", "nope"):
            pass
    assert refused.value.code == ua.StatusCodes.BadUserAccessDenied


async def test_operator_commands_reach_the_cell_with_the_user(rig) -> None:
    async with rig.client("op", "op-pw") as c:
        _, obj = await cell_object(c)
        execute = await child(c, obj, "BaseStateMachine", "MachineState", "ExecuteState")
        await execute.call_method(await child(c, obj, "BaseStateMachine", "MachineState", "ExecuteState", "Start"))
        await (await child(c, obj, "cell:Command", "cell:CntrlCmd")).write_value(ua.Variant(4, ua.VariantType.Int32))
        dt = c.get_node  # noqa: F841 - the structures are loaded from the server
        await c.load_data_type_definitions()
        desc = ua.PackMLDescriptorDataType(ID=1, Name="parts", Unit=ua.EUInformation(), Value=7.0)
        await obj.call_method(
            await child(c, obj, "SetProduct"),
            ua.Variant(
                [ua.PackMLProductDataType(ProductID=2, ProcessVariables=[desc], Ingredients=[])],
                ua.VariantType.ExtensionObject,
            ),
        )
        await obj.call_method(await child(c, obj, "SetParameter"), ua.Variant([desc], ua.VariantType.ExtensionObject))
        remote = ua.PackMLRemoteInterfaceDataType(Number=0, ControlCmdNumber=3, CmdValue=0, Parameter=[])
        await obj.call_method(
            await child(c, obj, "RemoteCommand"), ua.Variant([remote], ua.VariantType.ExtensionObject)
        )
        await obj.call_method(await child(c, obj, "SetUnitMode"), ua.Variant(1, ua.VariantType.Int32))
        cell_obj = await child(c, obj, "cell:Cell")
        await cell_obj.call_method(await child(c, obj, "cell:Cell", "cell:Acknowledge"))
    assert rig.cell.calls == [
        ("demo", "start", "op", {}),
        ("demo", "hold", "op", {}),
        ("demo", "set_product", "op", {"job": "frame", "parts": 7}),
        ("demo", "set_product", "op", {"parts": 7}),
        ("demo", "stop", "op", {}),
        ("demo", "acknowledge", "op", {}),
    ]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("command", ua.StatusCodes.BadInvalidState),
        ("authority", ua.StatusCodes.BadRequestNotAllowed),
        ("timeout", ua.StatusCodes.BadTimeout),
    ],
)
async def test_a_refusal_gives_a_bad_status_and_the_reason(rig, kind, code) -> None:
    rig.cell.reply = Reply(False, "cannot unhold in state Idle: allowed commands are start, stop, abort", kind)
    async with rig.client("op", "op-pw") as c:
        _, obj = await cell_object(c)
        execute = await child(c, obj, "BaseStateMachine", "MachineState", "ExecuteState")
        with pytest.raises(UaStatusCodeError) as refused:
            await execute.call_method(await child(c, obj, "BaseStateMachine", "MachineState", "ExecuteState", "Unhold"))
        assert refused.value.code == code
        reply = await (await child(c, obj, "cell:Cell", "cell:LastCommandReply")).read_value()
        assert reply == (
            "Unhold by user 'op': refused: cannot unhold in state Idle: allowed commands are start, stop, abort"
        )


async def test_bad_input_is_refused_without_reaching_the_cell(rig, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with rig.client("op", "op-pw") as c:
        _, obj = await cell_object(c)
        await c.load_data_type_definitions()

        async def call(name: str, *args) -> int:
            with pytest.raises(UaStatusCodeError) as refused:
                await obj.call_method(await child(c, obj, name), *args)
            return refused.value.code

        ext = ua.VariantType.ExtensionObject
        parts = ua.PackMLDescriptorDataType(ID=1, Name="parts", Unit=ua.EUInformation(), Value=2.5)
        assert (
            await call("SetProduct", ua.Variant([ua.PackMLProductDataType(ProductID=9)], ext))
            == ua.StatusCodes.BadOutOfRange
        )
        assert await call("SetParameter", ua.Variant([parts], ext)) == ua.StatusCodes.BadOutOfRange
        assert await call("SetUnitMode", ua.Variant(2, ua.VariantType.Int32)) == ua.StatusCodes.BadNotSupported
        assert (
            await call("SetUnitMode", ua.Variant("Produce", ua.VariantType.String)) == ua.StatusCodes.BadInvalidArgument
        )
        assert await call("SetMachSpeed", ua.Variant(99.0, ua.VariantType.Float)) == ua.StatusCodes.BadNotSupported
        assert await call("SetUnitMode") == ua.StatusCodes.BadInvalidArgument
        remote = ua.PackMLRemoteInterfaceDataType(ControlCmdNumber=77)
        assert await call("RemoteCommand", ua.Variant([remote], ext)) == ua.StatusCodes.BadOutOfRange
        cntrl = await child(c, obj, "cell:Command", "cell:CntrlCmd")
        for value, code in (
            (ua.Variant(42, ua.VariantType.Int32), ua.StatusCodes.BadOutOfRange),
            (ua.Variant(2.0, ua.VariantType.Double), ua.StatusCodes.BadInvalidArgument),
        ):
            with pytest.raises(UaStatusCodeError) as refused:
                await cntrl.write_value(value)
            assert refused.value.code == code
        with pytest.raises(UaStatusCodeError) as refused:
            await (await child(c, obj, "Status", "StateCurrent")).write_value(ua.Variant(6, ua.VariantType.Int32))
        assert refused.value.code == ua.StatusCodes.BadNotWritable
        assert await cntrl.read_value() == 0
        assert await (await child(c, obj, "Status", "StateCurrent")).read_value() == 2
    assert rig.cell.calls == []
    assert "SetProduct: ProductID 9 is not a job of cell 'demo': expected 1 (bracket), 2 (frame)" in caplog.text
    assert "CntrlCmd 42 is not mapped to a command: expected one of 1 (reset)" in caplog.text
    assert "write to read-only node" in caplog.text


async def test_sessions_are_bounded(tmp_path, pki, caplog) -> None:
    rig = await Rig(tmp_path, max_sessions=2, pki=pki).start()
    clients = [rig.client(), rig.client()]
    try:
        for c in clients:
            await c.connect()
        with pytest.raises(UaStatusCodeError) as refused:
            async with rig.client():
                pass
        assert refused.value.code == ua.StatusCodes.BadTooManySessions
        assert "sessions open (the limit)" in caplog.text
        await clients.pop().disconnect()
        async with rig.client() as c:  # a closed session frees its place
            _, obj = await cell_object(c)
    finally:
        for c in clients:
            await c.disconnect()
        await rig.server.stop()


async def _secure_client(rig: Rig, tmp: Path, uri: str, cert_uri: str | None = None) -> Client:
    c = rig.client("op", "op-pw")
    c.application_uri = cert_uri or uri
    cert, key = await c.setup_self_signed_certificate(
        tmp / f"{uri[-3:]}.pem", tmp / f"{uri[-3:]}.der", host_name="localhost"
    )
    c.application_uri = uri
    await c.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
    return c


async def test_sign_and_encrypt_only_unless_none_is_allowed_and_the_certificate_is_kept(tmp_path, caplog) -> None:
    rig = await Rig(tmp_path, allow_none=False).start()
    try:
        endpoints = await Client(rig.url).connect_and_get_server_endpoints()
        assert {(e.SecurityPolicyUri.split("#")[-1], e.SecurityMode) for e in endpoints} == {
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)
        }
        with pytest.raises(ua.UaError):
            async with rig.client():  # no security: no such endpoint
                pass
        c = await _secure_client(rig, tmp_path, "urn:test:mes")
        async with c:
            _, obj = await cell_object(c)
            await (await child(c, obj, "cell:Command", "cell:CntrlCmd")).write_value(
                ua.Variant(3, ua.VariantType.Int32)
            )
        assert rig.cell.calls == [("demo", "stop", "op", {})]
        # a client certificate that does not match its application: refused, logged
        bad = await _secure_client(rig, tmp_path, "urn:test:bad", cert_uri="urn:test:other")
        with pytest.raises(UaStatusCodeError) as refused:
            async with bad:
                pass
        assert refused.value.code == ua.StatusCodes.BadCertificateUriInvalid
        assert "client certificate of 'urn:test:bad' refused: BadCertificateUriInvalid" in caplog.text
        first = (tmp_path / "pki" / "server_cert.der").read_bytes()
    finally:
        await rig.server.stop()
    again = await Rig(tmp_path, allow_none=False).start()
    try:
        assert (tmp_path / "pki" / "server_cert.der").read_bytes() == first
        assert (tmp_path / "pki" / "server_key.pem").stat().st_mode & 0o077 == 0
    finally:
        await again.server.stop()
