"""Command authority: a cell takes commands from one source at a time, and every command is audited.

Sources are LOCAL (teach pendant, HMI, the operator's CLI at the cell) and REMOTE (OPC UA, MES). The cell
starts with LOCAL authority. Only the local operator hands authority over (`hand_over`) and may take it back at
any time (`take_back`); the remote side may give it back (`release`). A command from the source without
authority is refused with a reason, except that Stop and Abort are always accepted from LOCAL: the person at
the cell can always stop it. Every command, accepted or refused, becomes one `AuditRecord`.

The cell's planner holds the one `Authority` of a cell, since every command passes through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

logger = logging.getLogger(__name__)

HAND_OVER, TAKE_BACK, RELEASE = "hand_over", "take_back", "release"
AUTHORITY_COMMANDS = (HAND_OVER, TAKE_BACK, RELEASE)
ALWAYS_LOCAL = frozenset({"stop", "abort"})
ACCEPTED, REFUSED = "accepted", "refused"
MAX_TEXT = 256


class Source(str, Enum):
    """Where a command comes from."""

    LOCAL = "local"
    REMOTE = "remote"

    @classmethod
    def parse(cls, text: str) -> Source:
        """The source named `text`; ValueError naming the choices otherwise."""
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise ValueError(f"unknown command source {text!r}: expected local or remote") from None


AUTHORITY, COMMAND = "authority", "command"


class Refused(Exception):
    """A command refused, with the reason; `kind` says by whom: AUTHORITY (wrong source) or COMMAND (the cell)."""

    def __init__(self, reason: str, kind: str = COMMAND) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class AuditRecord:
    """One command as the cell saw it: when (Unix time), from where, by whom, what, and what came of it."""

    time: float
    cell: str
    source: str
    user: str
    command: str
    outcome: str  # accepted | refused
    detail: str  # the reply or the reason for refusal

    def to_key_values(self) -> list[tuple[str, str]]:
        """The record as (key, value) strings for a DiagnosticStatus or a JSON object."""
        return [
            ("time", repr(self.time)),
            ("cell", self.cell),
            ("source", self.source),
            ("user", self.user),
            ("command", self.command),
            ("outcome", self.outcome),
            ("detail", self.detail),
        ]

    @classmethod
    def from_key_values(cls, pairs: list[tuple[str, str]] | dict[str, str]) -> AuditRecord:
        """Parse `to_key_values` output; ValueError naming the missing or bad key."""
        kv = dict(pairs)
        try:
            t = float(kv["time"])
            rec = cls(t, kv["cell"], kv["source"], kv["user"], kv["command"], kv["outcome"], kv["detail"])
        except KeyError as exc:
            raise ValueError(f"audit record: missing key {exc.args[0]!r}") from None
        except ValueError:
            raise ValueError(f"audit record: time is not a number: {kv['time']!r}") from None
        if rec.outcome not in (ACCEPTED, REFUSED):
            raise ValueError(f"audit record: outcome must be {ACCEPTED} or {REFUSED}, got {rec.outcome!r}")
        return rec


def _clip(text: str) -> str:
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


class Authority:
    """Which source commands the cell, and the audit of every command."""

    def __init__(
        self,
        cell: str,
        holder: Source = Source.LOCAL,
        clock: Callable[[], float] = time.time,
        on_audit: Callable[[AuditRecord], None] | None = None,
        on_change: Callable[[Source], None] | None = None,
    ) -> None:
        """Start with `holder` in charge; `on_audit` gets every record, `on_change` every change of holder."""
        self.cell = cell
        self._holder = holder
        self._clock = clock
        self.on_audit = on_audit
        self.on_change = on_change

    @property
    def holder(self) -> Source:
        """The source the cell takes commands from."""
        return self._holder

    def check(self, source: Source | str, user: str, command: str) -> None:
        """Return if `source` may give `command` now, else raise Refused with the reason (not audited)."""
        src = source if isinstance(source, Source) else Source.parse(source)
        if command == HAND_OVER:
            if src is not Source.LOCAL:
                raise Refused("only the local operator hands authority over", AUTHORITY)
            if self._holder is Source.REMOTE:
                raise Refused("authority is already remote", AUTHORITY)
            return
        if command == TAKE_BACK:
            if src is not Source.LOCAL:
                raise Refused("only the local operator takes authority back", AUTHORITY)
            return
        if command == RELEASE:
            if src is not Source.REMOTE or self._holder is not Source.REMOTE:
                raise Refused("only the remote side holding authority releases it", AUTHORITY)
            return
        if src is self._holder or (src is Source.LOCAL and command in ALWAYS_LOCAL):
            return
        raise Refused(
            f"{src.value} command '{command}' refused: the cell takes commands from the "
            f"{self._holder.value} operator"
            + (
                " (the local operator hands authority over)" if src is Source.REMOTE else " (take authority back first)"
            ),
            AUTHORITY,
        )

    def execute(self, source: Source | str, user: str, command: str, action: Callable[[], str]) -> str:
        """Check, run `action` (which raises Refused or ValueError to refuse) and audit; returns the action's reply.

        Authority commands (hand_over, take_back, release) are carried out here; their `action` is not called.
        """
        try:
            src = source if isinstance(source, Source) else Source.parse(source)
        except ValueError as exc:
            self._audit(str(source), user, command, REFUSED, str(exc))
            raise Refused(str(exc)) from None
        try:
            self.check(src, user, command)
            if command in AUTHORITY_COMMANDS:
                reply = self._switch(Source.REMOTE if command == HAND_OVER else Source.LOCAL)
            else:
                reply = action()
        except (Refused, ValueError) as exc:
            reason, kind = (exc.reason, exc.kind) if isinstance(exc, Refused) else (str(exc), COMMAND)
            self._audit(src.value, user, command, REFUSED, reason)
            raise Refused(reason, kind) from None
        self._audit(src.value, user, command, ACCEPTED, reply)
        return reply

    def _switch(self, holder: Source) -> str:
        changed = holder is not self._holder
        self._holder = holder
        if changed and self.on_change is not None:
            self.on_change(holder)
        return f"authority {holder.value}"

    def _audit(self, source: str, user: str, command: str, outcome: str, detail: str) -> None:
        rec = AuditRecord(self._clock(), self.cell, _clip(source), _clip(user), _clip(command), outcome, _clip(detail))
        logger.info("command %s from %s user '%s': %s (%s)", rec.command, rec.source, rec.user, outcome, rec.detail)
        if self.on_audit is not None:
            self.on_audit(rec)
