"""CellClient: an operator-side node (demo, tests, pendant) that commands a cell and follows its reports.

Runs on a private rclpy Context so it never disturbs other nodes of the process; every wait has a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ..core.reports import CycleReport
from ..core.wire import decode_cycle, decode_fault, decode_status
from ..waiting import wait_until
from .common import LATCHED, REPORTS, key_values, level_name


def _value(value: str | int) -> ParameterValue:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError("value must be a str or an int")
    return (
        ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        if isinstance(value, str)
        else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    )


def command_request(command: str, source: str, user: str, **fields: str | int) -> SetParameters.Request:
    """The request of `<cell>/authority/command`."""
    values = {"command": command, "source": source, "user": user, **fields}
    return SetParameters.Request(parameters=[ParameterMsg(name=k, value=_value(v)) for k, v in values.items()])


def command_reply(resp: SetParameters.Response) -> tuple[bool, str, str]:
    """(success, reply or reason, who refused: 'authority', 'command' or '') of an authority/command response."""
    first = resp.results[0]
    kind = resp.results[1].reason if len(resp.results) > 1 else ("" if first.successful else "command")
    return first.successful, first.reason, kind


class CellClient:
    """Commands one cell's planner and collects its state, status, cycle reports and the supervisor's KPIs."""

    def __init__(
        self,
        cell: str | None,
        domain_id: int | None = None,
        use_sim_time: bool | None = False,
        node_name: str = "cell_client",
        node: Node | None = None,
        args: list[str] | None = None,
    ):
        """Follow `cell` on a private context, or on `node` (shared by many cells; its owner spins it). `args`: ROS
        arguments of the private context (remappings, a parameters file); use_sim_time None leaves it to them;
        cell None: the node's namespace names the cell (a node started in the cell's namespace, like the hmi)."""
        self._owned = node is None
        if node is None:
            self.context = Context()
            rclpy.init(args=args, context=self.context, domain_id=domain_id)
            overrides = [] if use_sim_time is None else [Parameter("use_sim_time", value=use_sim_time)]
            node = Node(node_name, context=self.context, parameter_overrides=overrides)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(node)
        else:
            self.context = node.context
        self.node = node
        self.cell = cell if cell is not None else node.get_namespace().strip("/")
        self.state: str | None = None
        self.status: dict[str, str] = {}
        self.reports: list[CycleReport] = []
        self.malformed_reports = 0  # cycle reports that could not be read (logged and skipped)
        self.kpis: dict[str, dict[str, str]] = {}
        self.faults_seen: list[tuple[str, str]] = []  # (code, source) of each fault the cell raised, in order
        self.faults: dict[str, dict[str, str]] = {}  # fault_key -> latest key/values (raised/ack/cleared)
        self.on_report: Callable[[CycleReport], None] | None = None
        ns = f"/{self.cell}"
        self.node.create_subscription(String, f"{ns}/state", self._on_state, LATCHED)
        self.node.create_subscription(DiagnosticStatus, f"{ns}/status", self._on_status, LATCHED)
        self.node.create_subscription(DiagnosticStatus, f"{ns}/cycle", self._on_cycle, REPORTS)
        self.node.create_subscription(DiagnosticArray, "/supervisor/kpis", self._on_kpis, LATCHED)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        self._commands: dict[str, rclpy.client.Client] = {}
        self._params: rclpy.client.Client = self.node.create_client(SetParameters, f"{ns}/task_planner/set_parameters")
        self._other_params: dict[str, rclpy.client.Client] = {}
        # command authority (see docs/opcua.md): who commands the cell, and the audit of every command
        self.authority: str | None = None
        self.audit: list[dict[str, str]] = []
        self.node.create_subscription(String, f"{ns}/authority", self._on_authority, LATCHED)
        self.node.create_subscription(DiagnosticStatus, f"{ns}/audit", self._on_audit, REPORTS)
        self._command_as: rclpy.client.Client = self.node.create_client(SetParameters, f"{ns}/authority/command")

    def _on_authority(self, msg: String) -> None:
        self.authority = msg.data

    def _on_audit(self, msg: DiagnosticStatus) -> None:
        self.audit.append(dict(key_values(msg)))

    def command_as(
        self, command: str, source: str, user: str, timeout: float = 10.0, **fields: str | int
    ) -> tuple[bool, str]:
        """A command through the cell's authority with its source (local/remote) and user; extra fields
        (job, parts) for set_product. Returns (success, reply or reason)."""
        resp = self._call(
            self._command_as, command_request(command, source, user, **fields), timeout, f"reply to '{command}'"
        )
        return command_reply(resp)[:2]

    def command_as_async(self, command: str, source: str, user: str, **fields: str | int):
        """`command_as` without waiting: an rclpy Future of the SetParameters response (see `command_reply`);
        None while the cell's authority service is not available."""
        if not self._command_as.service_is_ready():
            return None
        return self._command_as.call_async(command_request(command, source, user, **fields))

    def _on_state(self, msg: String) -> None:
        self.state = msg.data

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            self.status = decode_status(key_values(msg))
        except ValueError as exc:
            self.node.get_logger().warning(f"status '{msg.name}' ignored: {exc}")

    def _on_cycle(self, msg: DiagnosticStatus) -> None:
        try:
            report = decode_cycle(key_values(msg))
        except ValueError as exc:  # a malformed report (another version, a bad publisher): count it, go on
            self.malformed_reports += 1
            self.node.get_logger().warning(f"malformed cycle report '{msg.name}' ignored: {exc}")
            return
        if any(r.run_id == report.run_id and r.part == report.part for r in self.reports):
            return
        self.reports.append(report)
        if self.on_report:
            self.on_report(report)

    def _fault_updates(self, msg: DiagnosticArray) -> list[tuple[str, dict[str, str]]]:
        """(fault_key, key/values with 'message' and 'level') of this cell's fault updates in a diagnostics array."""
        updates = []
        for st in msg.status:
            kv = dict(key_values(st))
            try:
                update = decode_fault(kv, st.message)
            except ValueError as exc:
                self.node.get_logger().warning(f"fault update '{st.name}' ignored: {exc}")
                continue
            if update is not None and update.cell == self.cell:
                updates.append((update.fault_key, {**kv, "message": st.message, "level": level_name(st.level)}))
        return updates

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for key, kv in self._fault_updates(msg):
            if key not in self.faults:
                self.faults_seen.append((kv.get("code", ""), kv.get("source", "")))
            self.faults[key] = kv

    def _on_kpis(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.kpis[st.hardware_id] = dict(key_values(st))

    def spin_once(self, timeout: float = 0.05) -> None:
        """Process whatever has arrived (waits at most `timeout` s)."""
        self.executor.spin_once(timeout_sec=timeout)

    _pallet_asked = -float("inf")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Spin until predicate() is true; TimeoutError naming `what` after `timeout` wall seconds."""
        wait_until(predicate, timeout, what, step=self.spin_once, poll=0.05, detail=lambda: f" (state {self.state})")

    def _call(self, client, request, timeout: float, what: str):
        self.wait_for(client.service_is_ready, timeout, f"service {client.srv_name}")
        future = client.call_async(request)
        self.wait_for(future.done, timeout, what)
        return future.result()

    def change_full_pallet(self) -> str | None:
        """Be the operator of a simulated cell: when the status shows a full pallet (PALLET_FULL), confirm it was
        changed (the `pallet_changed` service, at most every 0.5 s wall). The cell's reply, or None."""
        if self.status.get("fault_code") != "PALLET_FULL" or time.monotonic() < self._pallet_asked + 0.5:
            return None
        self._pallet_asked = time.monotonic()
        ok, message = self.command("pallet_changed")
        return message if ok else None

    def command(self, name: str, timeout: float = 10.0) -> tuple[bool, str]:
        """Call a cell service (a PackML command, acknowledge, reapproach); returns (success, message)."""
        if name not in self._commands:
            self._commands[name] = self.node.create_client(Trigger, f"/{self.cell}/{name}")
        resp = self._call(self._commands[name], Trigger.Request(), timeout, f"reply to '{name}'")
        return resp.success, resp.message

    def set_parameter(
        self, name: str, value: str | int | float | bool, timeout: float = 10.0, node: str | None = None
    ) -> tuple[bool, str]:
        """Set one parameter of the planner (job, parts) or of another node (fully qualified name);
        returns (successful, reason)."""
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        client = self._params
        if node is not None:
            if node not in self._other_params:
                self._other_params[node] = self.node.create_client(SetParameters, f"{node}/set_parameters")
            client = self._other_params[node]
        resp = self._call(client, req, timeout, f"reply to setting '{name}'")
        result = resp.results[0]
        return result.successful, result.reason

    def close(self) -> None:
        """Destroy the node and shut the private context down (nothing for a shared node)."""
        if not self._owned:
            return
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> CellClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
