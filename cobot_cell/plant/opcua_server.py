"""OPC UA server with one OPC 30050 (PackML v1.01) object per cell, built in code with asyncua.

Names, types and structure follow OPC 30050 v1.01 (OPC UA for PackML):
- section 6.1: the `PackMLObjects` folder under Objects, one PackMLBaseObjectType instance per cell;
- 6.2.1 PackMLBaseObjectType: Admin, BaseStateMachine, Status, SetMachSpeed, SetParameter, SetProduct,
  SetUnitMode, RemoteCommand, PackMLVersion, TagID;
- 6.2.2 PackMLStatusObjectType: UnitModeCurrent, UnitSupportedModes, MachSpeed, CurMachSpeed (AnalogItemType),
  EquipmentBlocked, EquipmentStarved (mandatory), UnitModeRequested, UnitModeChangeInProcess, StateRequested,
  StateChangeInProcess, Parameter, Product;
- 6.2.3 PackMLAdminObjectType: ProdProcessedCount, ProdDefectiveCount (PackMLCountDataType[]), StopReason,
  Warning, Alarm (PackMLAlarmDataType), their extents, ModeCurrentTime, ModeCumulativeTime (Int32[] by mode),
  StateCurrentTime, StateCumulativeTime (Int32[,] by mode and state), MachDesignSpeed;
- 6.2.4-6.2.7 the state machines (BaseStateMachine > MachineState > ExecuteState) with CurrentState,
  AvailableStates, AvailableTransitions and the command methods; their StateType and TransitionType objects
  live on the types, with the TR88 StateNumber;
- 6.3 the data types PackMLCountDataType, PackMLAlarmDataType, PackMLDescriptorDataType,
  PackMLIngredientsDataType, PackMLProductDataType, PackMLRemoteInterfaceDataType, ProductionMaintenanceModeEnum.
Extensions in the cobot_cell namespace: `Command/CntrlCmd` (the TR88 PackTag, writable), `Cell` (authority,
job, parts, the reply of the last command, Acknowledge), `KPIs` (the supervisor's OEE and its factors, MTBF,
MTTR, cycle times).

Security: commands (method calls, CntrlCmd writes) need a user of role operator or above from the UserStore;
anonymous sessions read. Sessions are bounded (BadTooManySessions). Basic256Sha256 Sign & Encrypt with a
certificate made on first start and kept; the None policy only when allowed.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.structures104 import new_enum, new_struct, new_struct_field
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import DEFAULT_OPCUA_ENDPOINT
from .packml import (
    BASE,
    EXECUTE,
    KPI_NAMES,
    MACHINE,
    METHOD_COMMANDS,
    METHODS,
    MODES,
    PRODUCE,
    STATE_NUMBERS,
    STATES,
    TRANSITIONS,
    Alarm,
    CellTags,
    Count,
    state_number,
)
from .users import Role, UserStore

logger = logging.getLogger(__name__)

PACKML_URI = "http://opcfoundation.org/UA/PackML/"
CELL_URI = "urn:cobot_cell:plant"
APP_URI = "urn:cobot_cell:opcua_bridge"
DEFAULT_ENDPOINT = DEFAULT_OPCUA_ENDPOINT
PACKML_VERSION = "ISA-TR88.00.02-2015"
MODE_COUNT = max(MODES) + 1
STATE_COUNT = max(STATE_NUMBERS.values()) + 1


@dataclass(frozen=True)
class Reply:
    """What a cell said to a command: accepted, the reply or reason, and who refused ('authority', 'command',
    'timeout' or '' when accepted)."""

    ok: bool
    text: str
    kind: str = ""


# (cell, command, user, fields) -> Reply; fields are job (str) / parts (int) for set_product.
CommandSink = Callable[[str, str, str, dict[str, Any]], Awaitable[Reply]]


@dataclass
class ServerOptions:
    """How the server is reached and secured."""

    endpoint: str = DEFAULT_ENDPOINT
    pki_dir: Path = field(default_factory=lambda: Path.home() / ".config" / "cobot_cell" / "opcua")
    users: UserStore | None = None
    allow_none: bool = False
    max_sessions: int = 10
    cntrl_cmd_map: dict[int, str] = field(default_factory=dict)
    # told of every command refused for the user's role (cell, user, command, reason): the cell's audit trail
    on_refused: Callable[[str, str, str, str], None] | None = None


class PlantUser(User):
    """An asyncua session user with the cobot_cell role."""

    def __init__(self, role: UserRole, name: str | None, level: Role) -> None:
        super().__init__(role=role, name=name)
        self.level = level


class _Users:
    """asyncua user manager over the UserStore: anonymous -> viewer; a name and password -> its role, or refused."""

    def __init__(self, store: UserStore | None) -> None:
        self.store = store

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            return PlantUser(UserRole.Anonymous, None, Role.VIEWER)
        role = self.store.verify(username, password or "") if self.store is not None else None
        if role is None:
            logger.warning("OPC UA login refused for user '%s': unknown user or wrong password", username)
            return None
        logger.info("OPC UA session for user '%s' (%s)", username, role.label)
        return PlantUser(UserRole.User, username, role)


class _Rules(PermissionRuleset):
    """Every session may use the ordinary services; commands are checked per node by the session (role)."""

    def __init__(self) -> None:
        self._allowed = {ua.NodeId(t) for t in USER_TYPES}

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id in self._allowed


class _Session(InternalSession):
    """A session whose method calls and writes to the cells' nodes go to the PlantServer with the user."""

    plant: PlantServer

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        results = []
        for req in params:
            if req.MethodId in self.plant.methods:
                results.append(await self.plant.call(req, self.user))
            else:
                results.extend(await super().call([req]))
        return results

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        results: list[ua.StatusCode | None] = [None] * len(params.NodesToWrite)
        passed = []
        for i, wv in enumerate(params.NodesToWrite):
            if wv.NodeId in self.plant.writable and wv.AttributeId == ua.AttributeIds.Value:
                results[i] = await self.plant.write_command(wv, self.user)
            elif wv.NodeId.NamespaceIndex in self.plant.own_namespaces:
                logger.warning("write to read-only node %s by %s refused", wv.NodeId.to_string(), _who(self.user))
                results[i] = ua.StatusCode(ua.StatusCodes.BadNotWritable)
            else:
                passed.append(i)
        if passed:
            sub = await super().write(ua.WriteParameters(NodesToWrite=[params.NodesToWrite[i] for i in passed]))
            for i, status in zip(passed, sub):
                results[i] = status
        return [r if r is not None else ua.StatusCode(ua.StatusCodes.BadInternalError) for r in results]


class _InternalServer(InternalServer):
    """Bounded sessions of the plant's kind."""

    def __init__(self, plant: PlantServer, user_manager: _Users) -> None:
        super().__init__(user_manager=user_manager)
        self.plant = plant

    def create_session(self, name: str, user: User | None = None, external: bool = False) -> InternalSession:
        if external and len(self._external_sessions) >= self.plant.options.max_sessions:
            logger.warning(
                "OPC UA session '%s' refused: %d sessions open (the limit)", name, len(self._external_sessions)
            )
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        if user is None:
            user = User(role=UserRole.Anonymous)
        session = _Session(self, self.aspace, self.subscription_service, name, user=user, external=external)
        session.plant = self.plant
        return session


def _who(user: Any) -> str:
    name = getattr(user, "name", None)
    return f"user '{name}'" if name else "an anonymous session"


def _level(user: Any) -> Role:
    return getattr(user, "level", Role.VIEWER)


def _utc(t: float | None) -> datetime:
    return datetime.fromtimestamp(t or 0.0, timezone.utc)


@dataclass
class _CellNodes:
    """The NodeIds of one cell's object."""

    name: str
    jobs: tuple[str, ...]
    values: dict[str, ua.NodeId] = field(default_factory=dict)  # tag path -> variable
    last: dict[str, Any] = field(default_factory=dict)  # tag path -> last value written


@dataclass(frozen=True)
class _Method:
    cell: str
    name: str


class PlantServer:
    """The plant's OPC UA server: `start()`, `add_cell()`, `update()` with each cell's tags, `stop()`."""

    def __init__(self, options: ServerOptions, sink: CommandSink) -> None:
        """`sink` carries commands to the cells; the server never changes a cell itself."""
        self.options = options
        self.sink = sink
        self.iserver = _InternalServer(self, _Users(options.users))
        self.server = Server(iserver=self.iserver)
        self.cells: dict[str, _CellNodes] = {}
        self.methods: dict[ua.NodeId, _Method] = {}
        self.writable: dict[ua.NodeId, str] = {}  # CntrlCmd node -> cell
        self.own_namespaces: set[int] = set()
        self.types: dict[str, ua.NodeId] = {}
        self.state_ids: dict[str, ua.NodeId] = {}
        self.transition_ids: dict[str, ua.NodeId] = {}
        self._dt: dict[str, Any] = {}  # data type name -> generated class
        self._started = False

    # ------------------------------------------------------------------ set-up
    async def start(self) -> None:
        """Set up the address space and security, then listen on the endpoint."""
        opts = self.options
        url = urlparse(opts.endpoint)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"OPC UA endpoint {opts.endpoint!r}: expected opc.tcp://HOST:PORT/PATH")
        await self.server.init()
        self.server.set_endpoint(opts.endpoint)
        self.server.set_server_name("cobot_cell plant")
        await self.server.set_application_uri(APP_URI)
        self.server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if opts.allow_none:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        self.server.set_security_policy(policies, permission_ruleset=_Rules())
        await self._certificate(url.hostname)
        self.packml_ns = await self.server.register_namespace(PACKML_URI)
        self.ns = await self.server.register_namespace(CELL_URI)
        self.own_namespaces = {self.packml_ns, self.ns}
        await self._data_types()
        await self._object_types()
        self.folder = await self.server.nodes.objects.add_folder(
            ua.NodeId("PackMLObjects", self.packml_ns), ua.QualifiedName("PackMLObjects", self.packml_ns)
        )
        await self.server.start()
        self._started = True
        logger.info(
            "OPC UA server on %s (security: Basic256Sha256 Sign & Encrypt%s)",
            opts.endpoint,
            ", None" if opts.allow_none else "",
        )

    async def _certificate(self, host: str) -> None:
        pki = self.options.pki_dir
        pki.mkdir(parents=True, exist_ok=True, mode=0o700)
        key, cert = pki / "server_key.pem", pki / "server_cert.der"
        await setup_self_signed_certificate(
            key,
            cert,
            APP_URI,
            socket.gethostname() if host == "0.0.0.0" else host,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "cobot_cell opcua_bridge", "organizationName": "cobot_cell"},
        )
        key.chmod(0o600)
        await self.server.load_certificate(str(cert))
        await self.server.load_private_key(str(key))
        trusted = pki / "trusted"
        trusted.mkdir(exist_ok=True)
        options = CertificateValidatorOptions.EXT_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        store = None
        if any(trusted.iterdir()):
            store = TrustStore([trusted], [])
            await store.load()
            options |= CertificateValidatorOptions.TRUSTED
        validator = CertificateValidator(options, store)

        async def check(certificate: Any, app: ua.ApplicationDescription) -> None:
            try:
                await validator.validate(certificate, app)
            except ServiceError as exc:
                logger.warning(
                    "client certificate of '%s' refused: %s", app.ApplicationUri, ua.StatusCode(exc.code).name
                )
                raise

        self.server.set_certificate_validator(check)

    async def _data_types(self) -> None:
        """OPC 30050 section 6.3 data types, in the PackML namespace."""
        s, ns, vt = self.server, self.packml_ns, ua.VariantType
        eu = ua.NodeId(ua.ObjectIds.EUInformation)
        desc, _ = await new_struct(
            s,
            ns,
            "PackMLDescriptorDataType",
            [
                new_struct_field("ID", vt.Int32),
                new_struct_field("Name", vt.String),
                new_struct_field("Unit", eu),
                new_struct_field("Value", vt.Float),
            ],
        )
        ingr, _ = await new_struct(
            s,
            ns,
            "PackMLIngredientsDataType",
            [new_struct_field("IngredientID", vt.Int32), new_struct_field("Parameter", desc, array=True)],
        )
        await new_struct(
            s,
            ns,
            "PackMLProductDataType",
            [
                new_struct_field("ProductID", vt.Int32),
                new_struct_field("ProcessVariables", desc, array=True),
                new_struct_field("Ingredients", ingr, array=True),
            ],
        )
        await new_struct(
            s,
            ns,
            "PackMLCountDataType",
            [
                new_struct_field("ID", vt.Int32),
                new_struct_field("Name", vt.String),
                new_struct_field("Unit", eu),
                new_struct_field("Count", vt.Int32),
                new_struct_field("AccCount", vt.Int32),
            ],
        )
        await new_struct(
            s,
            ns,
            "PackMLAlarmDataType",
            [
                new_struct_field("ID", vt.Int32),
                new_struct_field("Value", vt.Int32),
                new_struct_field("Message", vt.String),
                new_struct_field("Category", vt.Int32),
                new_struct_field("DateTime", vt.DateTime),
                new_struct_field("AckDateTime", vt.DateTime),
                new_struct_field("Trigger", vt.Boolean),
            ],
        )
        await new_struct(
            s,
            ns,
            "PackMLRemoteInterfaceDataType",
            [
                new_struct_field("Number", vt.Int32),
                new_struct_field("ControlCmdNumber", vt.Int32),
                new_struct_field("CmdValue", vt.Int32),
                new_struct_field("Parameter", desc, array=True),
            ],
        )
        modes = await new_enum(s, ns, "ProductionMaintenanceModeEnum", [MODES[i] for i in sorted(MODES)])
        self.types["ProductionMaintenanceModeEnum"] = modes.nodeid
        classes = await s.load_data_type_definitions()
        for name in (
            "PackMLDescriptorDataType",
            "PackMLIngredientsDataType",
            "PackMLProductDataType",
            "PackMLCountDataType",
            "PackMLAlarmDataType",
            "PackMLRemoteInterfaceDataType",
        ):
            self._dt[name] = classes[name] if name in classes else getattr(ua, name)
            self.types[name] = self._dt[name].data_type

    async def _object_types(self) -> None:
        """The ObjectTypes of OPC 30050 section 6.2, with the state machines' states and transitions."""
        base_obj = self.server.get_node(ua.ObjectIds.BaseObjectType)
        fsm = self.server.get_node(ua.ObjectIds.FiniteStateMachineType)
        ns = self.packml_ns
        for name in ("PackMLBaseObjectType", "PackMLStatusObjectType", "PackMLAdminObjectType"):
            self.types[name] = (await base_obj.add_object_type(ua.NodeId(name, ns), ua.QualifiedName(name, ns))).nodeid
        for machine, type_name in (
            (BASE, "PackMLBaseStateMachineType"),
            (MACHINE, "PackMLMachineStateMachineType"),
            (EXECUTE, "PackMLExecuteStateMachineType"),
        ):
            t = await fsm.add_object_type(ua.NodeId(type_name, ns), ua.QualifiedName(type_name, ns))
            self.types[machine] = t.nodeid
            for state in STATES[machine]:
                node = await t.add_object(
                    ua.NodeId(f"{type_name}.{state}", ns), ua.QualifiedName(state, ns), ua.ObjectIds.StateType
                )
                await (await node.get_child("0:StateNumber")).write_value(
                    ua.Variant(state_number(state), ua.VariantType.UInt32)
                )
                self.state_ids[state] = node.nodeid
            for number, tr in enumerate(TRANSITIONS[machine], start=1):
                node = await t.add_object(
                    ua.NodeId(f"{type_name}.{tr.name}", ns), ua.QualifiedName(tr.name, ns), ua.ObjectIds.TransitionType
                )
                await (await node.get_child("0:TransitionNumber")).write_value(
                    ua.Variant(number, ua.VariantType.UInt32)
                )
                await node.add_reference(self.state_ids[tr.source], ua.ObjectIds.FromState)
                await node.add_reference(self.state_ids[tr.target], ua.ObjectIds.ToState)
                self.transition_ids[tr.name] = node.nodeid

    # ------------------------------------------------------------------ cells
    async def add_cell(self, name: str, jobs: tuple[str, ...] = (), design_speed: float = 0.0) -> None:
        """Create the PackML object of a cell (PackMLObjects/<name>)."""
        if name in self.cells:
            raise ValueError(f"cell '{name}' is already served")
        c = _CellNodes(name, tuple(jobs))
        self.cells[name] = c
        ns, pns, vt = self.ns, self.packml_ns, ua.VariantType

        def nid(path: str) -> ua.NodeId:
            return ua.NodeId(f"{name}.{path}", ns)

        async def var(
            parent: Any,
            path: str,
            bname: str,
            value: Any,
            vtype: ua.VariantType,
            datatype: ua.NodeId | None = None,
            space: int = pns,
            writable: bool = False,
        ) -> Any:
            node = await parent.add_variable(
                nid(path), ua.QualifiedName(bname, space), ua.Variant(value, vtype), datatype=datatype
            )
            if writable:
                await node.set_writable(True)
            c.values[path] = node.nodeid
            return node

        async def obj(parent: Any, path: str, bname: str, type_id: Any, space: int = pns) -> Any:
            return await parent.add_object(nid(path), ua.QualifiedName(bname, space), type_id)

        async def method(parent: Any, path: str, bname: str, inputs: list[ua.Argument], space: int = pns) -> None:
            node = await parent.add_method(nid(path), ua.QualifiedName(bname, space), self._direct_call, inputs, [])
            self.methods[node.nodeid] = _Method(name, bname)

        ext = ua.VariantType.ExtensionObject
        root = await obj(self.folder, "", name, self.types["PackMLBaseObjectType"])
        await root.add_property(nid("PackMLVersion"), ua.QualifiedName("PackMLVersion", pns), PACKML_VERSION)
        await root.add_property(nid("TagID"), ua.QualifiedName("TagID", pns), name)
        # Status (6.2.2)
        st = await obj(root, "Status", "Status", self.types["PackMLStatusObjectType"])
        await var(
            st,
            "Status.UnitModeCurrent",
            "UnitModeCurrent",
            PRODUCE,
            vt.Int32,
            self.types["ProductionMaintenanceModeEnum"],
        )
        await st.add_property(
            nid("Status.UnitSupportedModes"),
            ua.QualifiedName("UnitSupportedModes", pns),
            ua.Variant(self.types["ProductionMaintenanceModeEnum"], vt.NodeId),
        )
        await var(st, "Status.UnitModeRequested", "UnitModeRequested", False, vt.Boolean)
        await var(st, "Status.UnitModeChangeInProcess", "UnitModeChangeInProcess", False, vt.Boolean)
        await var(st, "Status.StateRequested", "StateRequested", 0, vt.Int32)
        await var(st, "Status.StateChangeInProcess", "StateChangeInProcess", False, vt.Boolean)
        await var(st, "Status.StateCurrent", "StateCurrent", STATE_NUMBERS["Stopped"], vt.Int32)
        for tag in ("MachSpeed", "CurMachSpeed"):
            node = await st.add_variable(
                nid(f"Status.{tag}"),
                ua.QualifiedName(tag, pns),
                ua.Variant(0.0, vt.Float),
                datatype=ua.NodeId(ua.ObjectIds.Float),
            )
            c.values[f"Status.{tag}"] = node.nodeid
            await node.add_property(0, "EURange", ua.Variant(ua.Range(0.0, max(design_speed, 1.0) * 2), ext))
            await node.add_property(
                0,
                "EngineeringUnits",
                ua.Variant(
                    ua.EUInformation(
                        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                        UnitId=-1,
                        DisplayName=ua.LocalizedText("parts/h"),
                        Description=ua.LocalizedText("parts per hour"),
                    ),
                    ext,
                ),
            )
        await var(st, "Status.EquipmentBlocked", "EquipmentBlocked", False, vt.Boolean)
        await var(st, "Status.EquipmentStarved", "EquipmentStarved", False, vt.Boolean)
        await var(
            st,
            "Status.Parameter",
            "Parameter",
            [self._descriptor(1, "parts", 0)],
            ext,
            self.types["PackMLDescriptorDataType"],
        )
        await var(st, "Status.Product", "Product", [self._product(0, 0)], ext, self.types["PackMLProductDataType"])
        # Admin (6.2.3)
        ad = await obj(root, "Admin", "Admin", self.types["PackMLAdminObjectType"])
        for tag in ("ProdProcessedCount", "ProdDefectiveCount"):
            await var(ad, f"Admin.{tag}", tag, [], ext, self.types["PackMLCountDataType"])
        alarm = self.types["PackMLAlarmDataType"]
        await var(ad, "Admin.StopReason", "StopReason", self._alarm(Alarm(0, 0, "", 0, 0.0, None, False)), ext, alarm)
        await var(ad, "Admin.StopReasonExtent", "StopReasonExtent", 1, vt.Int32)
        for tag in ("Warning", "Alarm"):
            await var(ad, f"Admin.{tag}", tag, [], ext, alarm)
            await var(ad, f"Admin.{tag}Extent", f"{tag}Extent", 0, vt.Int32)
        await var(ad, "Admin.ModeCurrentTime", "ModeCurrentTime", [0] * MODE_COUNT, vt.Int32)
        await var(ad, "Admin.ModeCumulativeTime", "ModeCumulativeTime", [0] * MODE_COUNT, vt.Int32)
        for tag in ("StateCurrentTime", "StateCumulativeTime"):
            await var(ad, f"Admin.{tag}", tag, [[0] * STATE_COUNT for _ in range(MODE_COUNT)], vt.Int32)
        await var(ad, "Admin.MachDesignSpeed", "MachDesignSpeed", float(design_speed), vt.Float)
        # State machines (6.2.4-6.2.7)
        parent = root
        for machine, bname in ((BASE, "BaseStateMachine"), (MACHINE, "MachineState"), (EXECUTE, "ExecuteState")):
            # a FiniteStateMachineType instance: CurrentState (with Id, Number), AvailableStates and
            # AvailableTransitions come from the base type (OPC 10000-16); the ones missing are added
            sm = await obj(parent, machine, bname, self.types[machine])
            cs = await _child_or(
                sm,
                "CurrentState",
                functools.partial(
                    sm.add_variable,
                    nid(f"{machine}.CurrentState"),
                    ua.QualifiedName("CurrentState", 0),
                    ua.LocalizedText(""),
                    datatype=ua.NodeId(ua.ObjectIds.LocalizedText),
                ),
            )
            c.values[f"{machine}.CurrentState"] = cs.nodeid
            for prop, value, vtype in (("Id", ua.NodeId(), vt.NodeId), ("Number", 0, vt.UInt32)):
                p = await _child_or(
                    cs,
                    prop,
                    functools.partial(
                        cs.add_property,
                        nid(f"{machine}.CurrentState.{prop}"),
                        ua.QualifiedName(prop, 0),
                        ua.Variant(value, vtype),
                    ),
                )
                c.values[f"{machine}.CurrentState.{prop}"] = p.nodeid
            for tag in ("AvailableStates", "AvailableTransitions"):
                node = await _child_or(
                    sm,
                    tag,
                    functools.partial(
                        sm.add_variable,
                        nid(f"{machine}.{tag}"),
                        ua.QualifiedName(tag, 0),
                        ua.Variant([], vt.NodeId),
                        datatype=ua.NodeId(ua.ObjectIds.NodeId),
                    ),
                )
                c.values[f"{machine}.{tag}"] = node.nodeid
            for mname in METHODS[machine]:
                args = [self._arg("Parameter", "PackMLDescriptorDataType", array=True)] if mname == "Start" else []
                await method(sm, f"{machine}.{mname}", mname, args)
            parent = sm
        # Methods of the base object (6.2.1)
        await method(root, "SetUnitMode", "SetUnitMode", [self._arg("RequestedMode", ua.ObjectIds.Int32)])
        await method(root, "SetMachSpeed", "SetMachSpeed", [self._arg("RequestedMachineSpeed", ua.ObjectIds.Float)])
        await method(
            root, "SetParameter", "SetParameter", [self._arg("Parameter", "PackMLDescriptorDataType", array=True)]
        )
        await method(root, "SetProduct", "SetProduct", [self._arg("Product", "PackMLProductDataType", array=True)])
        await method(
            root,
            "RemoteCommand",
            "RemoteCommand",
            [self._arg("RemoteInterface", "PackMLRemoteInterfaceDataType", array=True)],
        )
        # cobot_cell extensions: TR88 Command.CntrlCmd, the cell's own facts, KPIs
        cmd = await obj(root, "Command", "Command", ua.ObjectIds.BaseObjectType, space=ns)
        await var(cmd, "Command.CntrlCmd", "CntrlCmd", 0, vt.Int32, space=ns, writable=True)
        self.writable[c.values["Command.CntrlCmd"]] = name
        cell = await obj(root, "Cell", "Cell", ua.ObjectIds.BaseObjectType, space=ns)
        await var(cell, "Cell.Authority", "Authority", "local", vt.String, space=ns)
        await var(cell, "Cell.Job", "Job", "", vt.String, space=ns)
        await var(cell, "Cell.Jobs", "Jobs", list(jobs), vt.String, space=ns)
        await var(cell, "Cell.PartsTarget", "PartsTarget", 0, vt.Int32, space=ns)
        await var(cell, "Cell.PartsDone", "PartsDone", 0, vt.Int32, space=ns)
        await var(cell, "Cell.LastCommandReply", "LastCommandReply", "", vt.String, space=ns)
        await method(cell, "Cell.Acknowledge", "Acknowledge", [], space=ns)
        kpis = await obj(root, "KPIs", "KPIs", ua.ObjectIds.BaseObjectType, space=ns)
        for bname in KPI_NAMES.values():
            await var(kpis, f"KPIs.{bname}", bname, math.nan, vt.Double, space=ns)
        logger.info("PackML object for cell '%s' (jobs %s)", name, ", ".join(jobs) or "unknown")

    def _arg(self, name: str, dtype: str | int, array: bool = False) -> ua.Argument:
        arg = ua.Argument()
        arg.Name = name
        arg.DataType = self.types[dtype] if isinstance(dtype, str) else ua.NodeId(dtype)
        arg.ValueRank = 1 if array else -1
        arg.ArrayDimensions = [0] if array else []
        return arg

    def _descriptor(self, id_: int, name: str, value: float) -> Any:
        return self._dt["PackMLDescriptorDataType"](ID=id_, Name=name, Unit=ua.EUInformation(), Value=float(value))

    def _product(self, product_id: int, parts: int) -> Any:
        return self._dt["PackMLProductDataType"](
            ProductID=product_id, ProcessVariables=[self._descriptor(1, "parts", parts)], Ingredients=[]
        )

    def _alarm(self, a: Alarm) -> Any:
        return self._dt["PackMLAlarmDataType"](
            ID=a.id,
            Value=a.value,
            Message=a.message,
            Category=a.category,
            DateTime=_utc(a.time) if a.time else datetime(1601, 1, 1, tzinfo=timezone.utc),
            AckDateTime=_utc(a.ack_time) if a.ack_time else datetime(1601, 1, 1, tzinfo=timezone.utc),
            Trigger=a.trigger,
        )

    def _count(self, n: Count) -> Any:
        unit = ua.EUInformation(DisplayName=ua.LocalizedText("parts"))
        return self._dt["PackMLCountDataType"](ID=n.id, Name=n.name, Unit=unit, Count=n.count, AccCount=n.acc_count)

    async def stop(self) -> None:
        """Close every session and stop listening."""
        if self._started:
            self._started = False
            await self.server.stop()

    # ------------------------------------------------------------------ values
    def _values(self, c: _CellNodes, t: CellTags) -> dict[str, ua.Variant | ua.DataValue]:
        vt, ext = ua.VariantType, ua.VariantType.ExtensionObject
        v: dict[str, ua.Variant | ua.DataValue] = {
            "Status.StateCurrent": ua.Variant(t.state_number, vt.Int32),
            "Status.UnitModeCurrent": ua.Variant(t.unit_mode, vt.Int32),
            "Status.MachSpeed": ua.Variant(t.mach_speed, vt.Float),
            "Status.CurMachSpeed": ua.Variant(t.cur_mach_speed, vt.Float),
            "Status.EquipmentBlocked": ua.Variant(t.blocked, vt.Boolean),
            "Status.EquipmentStarved": ua.Variant(t.starved, vt.Boolean),
            "Status.Parameter": ua.Variant([self._descriptor(1, "parts", t.parts_target)], ext),
            "Status.Product": ua.Variant([self._product(t.product_id, t.parts_target)], ext),
            "Admin.ProdProcessedCount": ua.Variant([self._count(n) for n in t.processed], ext),
            "Admin.ProdDefectiveCount": ua.Variant([self._count(n) for n in t.defective], ext),
            "Admin.StopReason": ua.Variant(self._alarm(t.stop_reason), ext),
            "Admin.Warning": ua.Variant([self._alarm(a) for a in t.warnings], ext),
            "Admin.WarningExtent": ua.Variant(len(t.warnings), vt.Int32),
            "Admin.Alarm": ua.Variant([self._alarm(a) for a in t.alarms], ext),
            "Admin.AlarmExtent": ua.Variant(len(t.alarms), vt.Int32),
            "Admin.ModeCurrentTime": ua.Variant(_by_mode(t.mode_current_time), vt.Int32),
            "Admin.ModeCumulativeTime": ua.Variant(_by_mode(t.mode_cumulative_time), vt.Int32),
            "Admin.StateCurrentTime": ua.Variant(_by_mode_state({t.state_number: t.state_current_time}), vt.Int32),
            "Admin.StateCumulativeTime": ua.Variant(_by_mode_state(dict(enumerate(t.state_cumulative_time))), vt.Int32),
            "Cell.Authority": ua.Variant(t.authority, vt.String),
            "Cell.Job": ua.Variant(t.job, vt.String),
            "Cell.PartsTarget": ua.Variant(t.parts_target, vt.Int32),
            "Cell.PartsDone": ua.Variant(t.parts_done, vt.Int32),
        }
        for key, bname in KPI_NAMES.items():
            v[f"KPIs.{bname}"] = ua.Variant(float(t.kpis.get(key, math.nan)), vt.Double)
        for machine in (BASE, MACHINE, EXECUTE):
            current = t.machines[machine]
            if current is None:  # an inactive sub-state machine (OPC 10000-16 FiniteStateMachineType)
                bad = ua.StatusCode(ua.StatusCodes.BadStateNotActive)
                for tag in ("CurrentState", "CurrentState.Id", "CurrentState.Number"):
                    v[f"{machine}.{tag}"] = ua.DataValue(Value=ua.Variant(), StatusCode=bad)
            else:
                v[f"{machine}.CurrentState"] = ua.Variant(ua.LocalizedText(current), vt.LocalizedText)
                v[f"{machine}.CurrentState.Id"] = ua.Variant(self.state_ids[current], vt.NodeId)
                v[f"{machine}.CurrentState.Number"] = ua.Variant(state_number(current), vt.UInt32)
            v[f"{machine}.AvailableStates"] = ua.Variant([self.state_ids[s] for s in STATES[machine]], vt.NodeId)
            v[f"{machine}.AvailableTransitions"] = ua.Variant(
                [self.transition_ids[n] for n in t.available[machine]], vt.NodeId
            )
        return v

    async def update(self, cell: str, tags: CellTags) -> int:
        """Write the tags of a cell that changed since the last update; returns how many values were written."""
        c = self.cells[cell]
        written = 0
        for path, value in self._values(c, tags).items():
            if c.last.get(path) == value:
                continue
            c.last[path] = value
            now = datetime.now(timezone.utc)
            if isinstance(value, ua.DataValue):
                dv = ua.DataValue(
                    Value=value.Value, StatusCode=value.StatusCode, SourceTimestamp=now, ServerTimestamp=now
                )
            else:
                dv = ua.DataValue(Value=value, SourceTimestamp=now, ServerTimestamp=now)
            await self.server.write_attribute_value(c.values[path], dv)
            written += 1
        return written

    # ------------------------------------------------------------------ commands
    async def _direct_call(self, parent: ua.NodeId, *args: Any) -> ua.StatusCode:
        """Method callback for calls that do not come through a client session (none should)."""
        return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)

    async def _reply(self, cell: str, who: str, command: str, reply: Reply) -> ua.StatusCode:
        text = f"{command} by {who}: {'accepted' if reply.ok else 'refused'}: {reply.text}"
        await self.server.write_attribute_value(
            self.cells[cell].values["Cell.LastCommandReply"], ua.DataValue(ua.Variant(text, ua.VariantType.String))
        )
        if reply.ok:
            logger.info("OPC UA %s", text)
            return ua.StatusCode(ua.StatusCodes.Good)
        logger.warning("OPC UA %s", text)
        code = {
            "authority": ua.StatusCodes.BadRequestNotAllowed,
            "input": ua.StatusCodes.BadInvalidArgument,
            "unsupported": ua.StatusCodes.BadNotSupported,
            "range": ua.StatusCodes.BadOutOfRange,
            "timeout": ua.StatusCodes.BadTimeout,
        }.get(reply.kind, ua.StatusCodes.BadInvalidState)
        return ua.StatusCode(code)

    async def _command(self, cell: str, user: Any, command: str, **fields: Any) -> Reply:
        try:
            return await self.sink(cell, command, getattr(user, "name", None) or "", fields)
        except Exception as exc:  # noqa: BLE001 - a failing link to the cell is a refused command, not a crash
            logger.error("command %s to cell '%s' failed: %s", command, cell, exc)
            return Reply(False, f"the cell did not answer: {exc}", "timeout")

    def _refused(self, cell: str, user: Any, command: str) -> None:
        """Tell the audit trail about a command refused for the user's role."""
        if self.options.on_refused is not None:
            try:
                self.options.on_refused(
                    cell,
                    getattr(user, "name", None) or "",
                    command,
                    f"BadUserAccessDenied: {_who(user)} may not command (operator role needed)",
                )
            except Exception:
                logger.exception("auditing a refused %s on cell '%s' failed", command, cell)

    async def call(self, req: ua.CallMethodRequest, user: Any) -> ua.CallMethodResult:
        """A method call on a cell's object, with the session's user."""
        m = self.methods[req.MethodId]
        res = ua.CallMethodResult()
        args = list(req.InputArguments or [])
        res.InputArgumentResults = [ua.StatusCode() for _ in args]
        if _level(user) < Role.OPERATOR:
            logger.warning(
                "OPC UA %s refused for %s on cell '%s': commands need the operator role", m.name, _who(user), m.cell
            )
            self._refused(m.cell, user, m.name)
            res.StatusCode = ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
            return res
        try:
            command, fields = self._parse_call(m, args)
        except _BadInput as exc:
            res.StatusCode = await self._reply(m.cell, _who(user), m.name, Reply(False, str(exc), exc.kind))
            return res
        if command is None:  # accepted without asking the cell (SetUnitMode Produce)
            res.StatusCode = await self._reply(m.cell, _who(user), m.name, Reply(True, "no change"))
            return res
        reply = await self._command(m.cell, user, command, **fields)
        res.StatusCode = await self._reply(m.cell, _who(user), m.name, reply)
        return res

    def _parse_call(self, m: _Method, args: list[ua.Variant]) -> tuple[str | None, dict[str, Any]]:
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        expected = (
            (0, 1) if m.name == "Start" else (0,) if m.name in METHOD_COMMANDS or m.name == "Acknowledge" else (1,)
        )
        if len(values) not in expected:
            raise _BadInput(f"{m.name} takes {' or '.join(map(str, expected))} argument(s), got {len(values)}", "input")
        if m.name in METHOD_COMMANDS:
            if m.name == "Start" and values and values[0]:
                raise _BadInput(
                    "Start takes no parameters here: set the job and part count with SetProduct or SetParameter first",
                    "input",
                )
            return METHOD_COMMANDS[m.name], {}
        if m.name == "Acknowledge":
            return "acknowledge", {}
        value = values[0]
        if m.name == "SetUnitMode":
            if not isinstance(value, int) or isinstance(value, bool):
                raise _BadInput("SetUnitMode: RequestedMode must be an Int32", "input")
            if value != PRODUCE:
                raise _BadInput(
                    f"SetUnitMode: mode {value} ({MODES.get(value, 'unknown')}) is not supported: the "
                    f"cell has one mode, {MODES[PRODUCE]} ({PRODUCE})",
                    "unsupported",
                )
            return None, {}
        if m.name == "SetMachSpeed":
            raise _BadInput(
                "SetMachSpeed: the cell runs its jobs at their planned speed (MachSpeed); choose the "
                "job and part count with SetProduct",
                "unsupported",
            )
        if m.name == "SetParameter":
            return "set_product", {
                "parts": self._parts(
                    _items(value, "SetParameter", self._dt["PackMLDescriptorDataType"]), "SetParameter"
                )
            }
        if m.name == "SetProduct":
            products = _items(value, "SetProduct", self._dt["PackMLProductDataType"])
            if len(products) != 1:
                raise _BadInput(f"SetProduct: expected exactly 1 product (the job), got {len(products)}", "input")
            p = products[0]
            jobs = self.cells[m.cell].jobs
            if not 1 <= p.ProductID <= len(jobs):
                raise _BadInput(
                    f"SetProduct: ProductID {p.ProductID} is not a job of cell '{m.cell}': expected "
                    + ", ".join(f"{i} ({j})" for i, j in enumerate(jobs, 1)),
                    "range",
                )
            fields: dict[str, Any] = {"job": jobs[p.ProductID - 1]}
            if p.ProcessVariables:
                fields["parts"] = self._parts(p.ProcessVariables, "SetProduct")
            return "set_product", fields
        if m.name == "RemoteCommand":
            items = _items(value, "RemoteCommand", self._dt["PackMLRemoteInterfaceDataType"])
            if len(items) != 1:
                raise _BadInput(f"RemoteCommand: expected exactly 1 RemoteInterface, got {len(items)}", "input")
            return self._cntrl_cmd(items[0].ControlCmdNumber), {}
        raise _BadInput(f"{m.name}: not a command", "input")

    @staticmethod
    def _parts(params: list[Any], where: str) -> int:
        for p in params:
            if p.ID == 1 or p.Name == "parts":
                if not math.isfinite(p.Value) or p.Value != int(p.Value) or p.Value < 1:
                    raise _BadInput(f"{where}: parts must be a whole number >= 1, got {p.Value!r}", "range")
                return int(p.Value)
        raise _BadInput(f"{where}: expected the parameter 'parts' (ID 1)", "input")

    def _cntrl_cmd(self, number: Any) -> str:
        mapping = self.options.cntrl_cmd_map
        if not isinstance(number, int) or isinstance(number, bool) or number not in mapping:
            raise _BadInput(
                f"CntrlCmd {number!r} is not mapped to a command: expected one of "
                + ", ".join(f"{n} ({c})" for n, c in sorted(mapping.items())),
                "range",
            )
        return mapping[number]

    async def write_command(self, wv: ua.WriteValue, user: Any) -> ua.StatusCode:
        """A write to a cell's Command.CntrlCmd: the mapped command, if the user may command."""
        cell = self.writable[wv.NodeId]
        if _level(user) < Role.OPERATOR:
            logger.warning(
                "OPC UA CntrlCmd write refused for %s on cell '%s': commands need the operator role", _who(user), cell
            )
            self._refused(cell, user, "CntrlCmd")
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        variant = wv.Value.Value if wv.Value is not None else None
        if variant is None or variant.VariantType != ua.VariantType.Int32:
            return await self._reply(cell, _who(user), "CntrlCmd", Reply(False, "CntrlCmd must be an Int32", "input"))
        try:
            command = self._cntrl_cmd(variant.Value)
        except _BadInput as exc:
            return await self._reply(cell, _who(user), "CntrlCmd", Reply(False, str(exc), exc.kind))
        reply = await self._command(cell, user, command)
        status = await self._reply(cell, _who(user), f"CntrlCmd {variant.Value} ({command})", reply)
        if status.is_good():
            await self.server.write_attribute_value(wv.NodeId, ua.DataValue(variant))
        return status


async def _child_or(parent: Any, name: str, make: Callable[[], Awaitable[Any]]) -> Any:
    """The child `0:name` of a node, made with `make()` if the type did not bring it."""
    try:
        return await parent.get_child(f"0:{name}")
    except ua.UaStatusCodeError:
        return await make()


class _BadInput(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _items(value: Any, where: str, cls: type) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if not isinstance(item, cls):
            raise _BadInput(f"{where}: item {i} must be a {cls.__name__}, got {type(item).__name__}", "input")
    return items


def _by_mode(seconds: int) -> list[int]:
    values = [0] * MODE_COUNT
    values[PRODUCE] = seconds
    return values


def _by_mode_state(by_state: dict[int, int]) -> list[list[int]]:
    rows = [[0] * STATE_COUNT for _ in range(MODE_COUNT)]
    for number, seconds in by_state.items():
        rows[PRODUCE][number] = int(seconds)
    return rows
