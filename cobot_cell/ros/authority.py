"""The planner's command authority on ROS 2 (standard interfaces only).

- `authority/command` (rcl_interfaces/srv/SetParameters): a command with its source and user, as parameters
  `command` (string: a PackML command, acknowledge, reapproach, hand_over, take_back, release, set_product),
  `source` (string: local or remote), `user` (string), and for set_product `job` (string) and/or `parts`
  (integer). The reply's first result carries success and the reply or the reason for refusal, the second one
  (successful = the first's) in its reason who refused: `authority` or `command` (empty when accepted). The OPC UA
  bridge and the web HMI use it; std_srvs/Trigger has no field for who is asking.
- The plain Trigger services (`start`, ...) and the `job`/`parts` parameters are LOCAL commands without a user
  (pendant, CLI); `authority/hand_over` and `authority/take_back` (Trigger) are the local operator's switch.
- `authority` (std_msgs/String, latched): local or remote. `audit` (DiagnosticStatus key/values of an
  AuditRecord, reliable, kept for late joiners): one message per command; the supervisor logs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import ParameterType, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ..plant.authority import AUTHORITY_COMMANDS, COMMAND, REFUSED, AuditRecord, Authority, Refused, Source
from .common import LATCHED, REPORTS, status_msg

SET_PRODUCT = "set_product"
PRODUCT_PARAMETERS = ("job", "parts")
_FIELDS = {
    "command": ParameterType.PARAMETER_STRING,
    "source": ParameterType.PARAMETER_STRING,
    "user": ParameterType.PARAMETER_STRING,
    "job": ParameterType.PARAMETER_STRING,
    "parts": ParameterType.PARAMETER_INTEGER,
}


def command_fields(request: SetParameters.Request) -> dict[str, str | int]:
    """The fields of an `authority/command` request; ValueError naming a bad or unknown one."""
    fields: dict[str, str | int] = {}
    for p in request.parameters:
        kind = _FIELDS.get(p.name)
        if kind is None:
            raise ValueError(f"authority/command: unknown field '{p.name}' (expected {', '.join(_FIELDS)})")
        if p.value.type != kind:
            raise ValueError(
                f"authority/command: field '{p.name}' must be "
                f"{'an integer' if kind == ParameterType.PARAMETER_INTEGER else 'a string'}"
            )
        fields[p.name] = p.value.integer_value if kind == ParameterType.PARAMETER_INTEGER else p.value.string_value
    if not fields.get("command"):
        raise ValueError("authority/command: field 'command' is required")
    if "source" not in fields:
        raise ValueError("authority/command: field 'source' is required (local or remote)")
    return fields


class NodeAuthority:
    """Holds the cell's Authority inside the planner node and offers it on ROS."""

    def __init__(self, node: Node, cell: str, actions: dict[str, Callable[[], str]]) -> None:
        """`actions`: the cell's own commands (PackML, acknowledge, reapproach), each returning its reply."""
        self.node = node
        self.actions = actions
        self._param_source: tuple[Source, str] | None = None
        self.audit_pub = node.create_publisher(DiagnosticStatus, "audit", REPORTS)
        self.state_pub = node.create_publisher(String, "authority", LATCHED)
        self.authority = Authority(cell, on_audit=self._publish_audit, on_change=self._publish_holder)
        node.create_service(SetParameters, "authority/command", self._handle_command)
        for cmd in ("hand_over", "take_back"):
            node.create_service(Trigger, f"authority/{cmd}", functools.partial(self._handle_local, cmd))
        self._publish_holder(self.authority.holder)

    def reply(
        self, resp: Trigger.Response, source: Source, user: str, command: str, action: Callable[[], str]
    ) -> Trigger.Response:
        """Run a command through the authority and fill a Trigger reply."""
        try:
            resp.message, resp.success = self.authority.execute(source, user, command, action), True
        except Refused as exc:
            resp.message, resp.success = exc.reason, False
        return resp

    def _handle_local(self, command: str, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        return self.reply(resp, Source.LOCAL, "", command, lambda: "")

    def _handle_command(self, req: SetParameters.Request, resp: SetParameters.Response) -> SetParameters.Response:
        result = SetParametersResult(successful=False)
        kind = SetParametersResult(successful=False, reason=COMMAND)
        resp.results = [result, kind]
        try:
            fields = command_fields(req)
        except ValueError as exc:
            result.reason = str(exc)
            self.node.get_logger().warning(str(exc))
            return resp
        cmd, user = str(fields["command"]), str(fields.get("user", ""))
        if cmd == SET_PRODUCT:
            action: Callable[[], str] = lambda: self._set_product(fields)  # noqa: E731
        elif cmd in self.actions or cmd in AUTHORITY_COMMANDS:
            action = self.actions.get(cmd, lambda: "")
        else:
            action = self._unknown(cmd)
        try:
            result.reason = self.authority.execute(str(fields["source"]), user, cmd, action)
            result.successful = kind.successful = True
            kind.reason = ""
        except Refused as exc:
            result.reason, kind.reason = exc.reason, exc.kind
        return resp

    def _unknown(self, cmd: str) -> Callable[[], str]:
        def refuse() -> str:
            raise Refused(
                f"unknown command '{cmd}': expected one of "
                f"{', '.join([*self.actions, *AUTHORITY_COMMANDS, SET_PRODUCT])}"
            )

        return refuse

    def _set_product(self, fields: dict[str, str | int]) -> str:
        params = [Parameter(name, value=fields[name]) for name in PRODUCT_PARAMETERS if name in fields]
        if not params:
            raise Refused("set_product needs 'job' and/or 'parts'")
        # the parameter callback knows this change is already checked and audited here
        self._param_source = (Source.REMOTE, "")
        try:
            results = self.node.set_parameters(params)
        finally:
            self._param_source = None
        for r in results:
            if not r.successful:
                raise Refused(r.reason)
        return ", ".join(f"{p.name} {p.value}" for p in params)

    def on_parameters(self, params: list[Parameter]) -> str | None:
        """For the planner's parameter callback: None if a job/parts change may go ahead, else the reason."""
        changes = [p for p in params if p.name in PRODUCT_PARAMETERS]
        if not changes or self._param_source is not None:
            return None
        detail = ", ".join(f"{p.name} {p.value}" for p in changes)
        try:
            self.authority.execute(Source.LOCAL, "", SET_PRODUCT, lambda: detail)
        except Refused as exc:
            return exc.reason
        return None

    def _publish_audit(self, rec: AuditRecord) -> None:
        level = DiagnosticStatus.WARN if rec.outcome == REFUSED else DiagnosticStatus.OK
        self.audit_pub.publish(
            status_msg(
                f"{rec.cell}/audit", level, f"{rec.command} {rec.outcome}", rec.to_key_values(), hardware_id=rec.cell
            )
        )

    def _publish_holder(self, holder: Source) -> None:
        self.state_pub.publish(String(data=holder.value))
