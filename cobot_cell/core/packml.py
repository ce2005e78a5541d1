"""PackML cell state machine (ISA-TR88.00.02) on pytransitions: states, operator commands, SC events.

Sources: ISA-TR88.00.02-2015 state model as modelled by OPC 30050 (OPC UA for PackML v1.01),
PackMLExecuteStateMachineType / PackMLBaseStateMachineType and its note that the dashed Hold transitions
are optional extensions. This machine implements the required model only: Hold is accepted in Execute,
not in Starting, Suspending, Suspended, Unsuspending or Unholding (the optional 2015 extensions).
Execute is its own TR88 state type (neither acting nor wait); it ends by `execute_complete`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

from transitions import EventData, Machine, MachineError

_log = logging.getLogger(__name__)


class State(str, Enum):
    """PackML states; values are the TR88 state names."""

    STOPPED = "Stopped"
    RESETTING = "Resetting"
    IDLE = "Idle"
    STARTING = "Starting"
    EXECUTE = "Execute"
    COMPLETING = "Completing"
    COMPLETE = "Complete"
    HOLDING = "Holding"
    HELD = "Held"
    UNHOLDING = "Unholding"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    UNSUSPENDING = "Unsuspending"
    STOPPING = "Stopping"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    CLEARING = "Clearing"


class Command(str, Enum):
    """PackML operator commands; values are the trigger names."""

    RESET = "reset"
    START = "start"
    STOP = "stop"
    HOLD = "hold"
    UNHOLD = "unhold"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    ABORT = "abort"
    CLEAR = "clear"


# Acting state -> state it enters on SC (state complete).
_SC_TARGETS: dict[State, State] = {
    State.RESETTING: State.IDLE,
    State.STARTING: State.EXECUTE,
    State.COMPLETING: State.COMPLETE,
    State.HOLDING: State.HELD,
    State.UNHOLDING: State.EXECUTE,
    State.SUSPENDING: State.SUSPENDED,
    State.UNSUSPENDING: State.EXECUTE,
    State.STOPPING: State.STOPPED,
    State.ABORTING: State.ABORTED,
    State.CLEARING: State.STOPPED,
}

ACTING_STATES: frozenset[State] = frozenset(_SC_TARGETS)
"""Transient states that do work and leave on state_complete."""

WAIT_STATES: frozenset[State] = frozenset(
    {State.STOPPED, State.IDLE, State.COMPLETE, State.HELD, State.SUSPENDED, State.ABORTED}
)
"""States that wait for an operator command."""

_ALL = frozenset(State)

# Command -> (states that accept it, state it enters).
_COMMAND_RULES: dict[Command, tuple[frozenset[State], State]] = {
    Command.RESET: (frozenset({State.COMPLETE, State.STOPPED}), State.RESETTING),
    Command.START: (frozenset({State.IDLE}), State.STARTING),
    Command.STOP: (
        _ALL - {State.STOPPED, State.STOPPING, State.ABORTING, State.ABORTED, State.CLEARING},
        State.STOPPING,
    ),
    Command.HOLD: (frozenset({State.EXECUTE}), State.HOLDING),
    Command.UNHOLD: (frozenset({State.HELD}), State.UNHOLDING),
    Command.SUSPEND: (frozenset({State.EXECUTE}), State.SUSPENDING),
    Command.UNSUSPEND: (frozenset({State.SUSPENDED}), State.UNSUSPENDING),
    Command.ABORT: (_ALL - {State.ABORTING, State.ABORTED}, State.ABORTING),
    Command.CLEAR: (frozenset({State.ABORTED}), State.CLEARING),
}


def accepted_commands(state: State) -> list[Command]:
    """Commands a state accepts, in Command declaration order (what an HMI offers as buttons)."""
    return [cmd for cmd, (sources, _) in _COMMAND_RULES.items() if state in sources]


_STATE_COMPLETE = "state_complete"
_EXECUTE_COMPLETE = "execute_complete"

OnChange = Callable[[State, State, str], None]


class CommandRefused(ValueError):
    """A command that the current state does not accept, or that is not a PackML command."""

    def __init__(self, command: Command | str, state: State, message: str) -> None:
        super().__init__(message)
        self.command = command
        self.state = state


class _CellModel:
    """Plain model object; pytransitions adds `state` and the trigger methods."""

    state: State


class CellMachine:
    """PackML cell machine: operator commands, state-complete events and the Execute-complete event."""

    def __init__(self, on_change: OnChange | None = None) -> None:
        """Start in Stopped; `on_change(old, new, trigger)` runs after every change and must not re-enter."""
        self._on_change = on_change
        self._model = _CellModel()
        transitions: list[dict[str, object]] = [
            {"trigger": cmd.value, "source": list(src), "dest": dest} for cmd, (src, dest) in _COMMAND_RULES.items()
        ]
        transitions += [{"trigger": _STATE_COMPLETE, "source": src, "dest": dest} for src, dest in _SC_TARGETS.items()]
        transitions.append({"trigger": _EXECUTE_COMPLETE, "source": State.EXECUTE, "dest": State.COMPLETING})
        self._machine = Machine(
            model=self._model,
            states=State,
            transitions=transitions,
            initial=State.STOPPED,
            auto_transitions=False,
            queued=True,
            send_event=True,
            after_state_change=self._changed,
        )

    @property
    def state(self) -> State:
        """Current PackML state."""
        return self._model.state

    def allowed_commands(self) -> list[Command]:
        """Commands the current state accepts, in Command declaration order."""
        triggers = set(self._machine.get_triggers(self.state))
        return [cmd for cmd in Command if cmd.value in triggers]

    def command(self, cmd: Command | str) -> State:
        """Apply an operator command and return the new state; raise CommandRefused if not allowed."""
        state = self.state
        try:
            command = Command(cmd)
        except ValueError:
            expected = ", ".join(c.value for c in Command)
            raise CommandRefused(cmd, state, f"unknown command {cmd!r}: expected one of {expected}") from None
        try:
            self._model.trigger(command.value)  # type: ignore[attr-defined]
        except MachineError as err:
            raise self._refusal(command, state) from err
        return self.state

    def state_complete(self) -> State:
        """SC: the acting state finished its work; move to the state it leads to and return it."""
        state = self.state
        if state in WAIT_STATES:
            raise ValueError(f"state_complete in wait state {state.value}: only acting states complete")
        if state is State.EXECUTE:
            raise ValueError("state_complete in state Execute: Execute ends with execute_complete")
        self._model.trigger(_STATE_COMPLETE)  # type: ignore[attr-defined]
        return self.state

    def execute_complete(self) -> State:
        """The job's parts are all made: Execute -> Completing; return the new state."""
        state = self.state
        if state is not State.EXECUTE:
            raise ValueError(f"execute_complete in state {state.value}: only Execute completes a job")
        self._model.trigger(_EXECUTE_COMPLETE)  # type: ignore[attr-defined]
        return self.state

    def _refusal(self, command: Command, state: State) -> CommandRefused:
        allowed = self.allowed_commands()
        if allowed:
            reason = "allowed commands are " + ", ".join(c.value for c in allowed)
        else:
            reason = "no commands are allowed"
        return CommandRefused(command, state, f"cannot {command.value} in state {state.value}: {reason}")

    def _changed(self, event: EventData) -> None:
        assert event.transition is not None  # after_state_change runs on a transition
        old = State[event.transition.source]
        new = self.state
        trigger = event.event.name
        _log.debug("PackML %s -> %s on %s", old.value, new.value, trigger)
        if self._on_change is not None:
            self._on_change(old, new, trigger)
