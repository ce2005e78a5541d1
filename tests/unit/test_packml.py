"""Unit tests for the PackML cell machine (cobot_cell.core.packml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_cell.core.packml import (
    ACTING_STATES,
    WAIT_STATES,
    CellMachine,
    Command,
    CommandRefused,
    State,
)

REPO = Path(__file__).resolve().parents[2]

S = State
C = Command

# Expected TR88 command table, written out state by state: state -> {command: new state}.
_STOP = {C.STOP: S.STOPPING}
_ABORT = {C.ABORT: S.ABORTING}
EXPECTED: dict[State, dict[Command, State]] = {
    S.STOPPED: {C.RESET: S.RESETTING, **_ABORT},
    S.RESETTING: {**_STOP, **_ABORT},
    S.IDLE: {C.START: S.STARTING, **_STOP, **_ABORT},
    S.STARTING: {**_STOP, **_ABORT},
    S.EXECUTE: {C.STOP: S.STOPPING, C.HOLD: S.HOLDING, C.SUSPEND: S.SUSPENDING, **_ABORT},
    S.COMPLETING: {**_STOP, **_ABORT},
    S.COMPLETE: {C.RESET: S.RESETTING, **_STOP, **_ABORT},
    S.HOLDING: {**_STOP, **_ABORT},
    S.HELD: {**_STOP, C.UNHOLD: S.UNHOLDING, **_ABORT},
    S.UNHOLDING: {**_STOP, **_ABORT},
    S.SUSPENDING: {**_STOP, **_ABORT},
    S.SUSPENDED: {**_STOP, C.UNSUSPEND: S.UNSUSPENDING, **_ABORT},
    S.UNSUSPENDING: {**_STOP, **_ABORT},
    S.STOPPING: {**_ABORT},
    S.ABORTING: {},
    S.ABORTED: {C.CLEAR: S.CLEARING},
    S.CLEARING: {**_ABORT},
}

SC_EDGES: dict[State, State] = {
    S.RESETTING: S.IDLE,
    S.STARTING: S.EXECUTE,
    S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}

SC = "SC"
EC = "EC"
_TO_EXECUTE = [C.RESET, SC, C.START, SC]
# Legal paths from Stopped: operator commands, SC (state_complete) and EC (execute_complete).
PATHS: dict[State, list[Command | str]] = {
    S.STOPPED: [],
    S.RESETTING: [C.RESET],
    S.IDLE: [C.RESET, SC],
    S.STARTING: [C.RESET, SC, C.START],
    S.EXECUTE: _TO_EXECUTE,
    S.COMPLETING: [*_TO_EXECUTE, EC],
    S.COMPLETE: [*_TO_EXECUTE, EC, SC],
    S.HOLDING: [*_TO_EXECUTE, C.HOLD],
    S.HELD: [*_TO_EXECUTE, C.HOLD, SC],
    S.UNHOLDING: [*_TO_EXECUTE, C.HOLD, SC, C.UNHOLD],
    S.SUSPENDING: [*_TO_EXECUTE, C.SUSPEND],
    S.SUSPENDED: [*_TO_EXECUTE, C.SUSPEND, SC],
    S.UNSUSPENDING: [*_TO_EXECUTE, C.SUSPEND, SC, C.UNSUSPEND],
    S.STOPPING: [C.RESET, SC, C.STOP],
    S.ABORTING: [C.ABORT],
    S.ABORTED: [C.ABORT, SC],
    S.CLEARING: [C.ABORT, SC, C.CLEAR],
}

PAIRS = [(state, cmd) for state in State for cmd in Command]


class Recorder:
    """on_change callback that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[State, State, str]] = []

    def __call__(self, old: State, new: State, trigger: str) -> None:
        self.calls.append((old, new, trigger))


def step(machine: CellMachine, action: Command | str) -> State:
    """Apply one path step to the machine."""
    if action == SC:
        return machine.state_complete()
    if action == EC:
        return machine.execute_complete()
    return machine.command(action)


def drive_to(state: State, on_change: Recorder | None = None) -> CellMachine:
    """A fresh machine driven to `state` with legal commands and events only."""
    machine = CellMachine(on_change=on_change)
    for action in PATHS[state]:
        step(machine, action)
    assert machine.state is state
    return machine


def refusal(cmd: Command, state: State) -> str:
    """The expected CommandRefused message, allowed commands in Command declaration order."""
    allowed = [c.value for c in Command if c in EXPECTED[state]]
    reason = f"allowed commands are {', '.join(allowed)}" if allowed else "no commands are allowed"
    return f"cannot {cmd.value} in state {state.value}: {reason}"


def test_paths_cover_every_state() -> None:
    assert set(PATHS) == set(State) == set(EXPECTED)


@pytest.mark.parametrize(("state", "cmd"), PAIRS, ids=[f"{s.value}-{c.value}" for s, c in PAIRS])
def test_command_in_every_state(state: State, cmd: Command) -> None:
    recorder = Recorder()
    machine = drive_to(state, recorder)
    recorder.calls.clear()
    if cmd in EXPECTED[state]:
        new = EXPECTED[state][cmd]
        assert machine.command(cmd) is new
        assert machine.state is new
        assert recorder.calls == [(state, new, cmd.value)]
    else:
        with pytest.raises(CommandRefused) as info:
            machine.command(cmd)
        assert str(info.value) == refusal(cmd, state)
        assert info.value.command is cmd
        assert info.value.state is state
        assert machine.state is state
        assert recorder.calls == []


@pytest.mark.parametrize("state", list(State), ids=[s.value for s in State])
def test_allowed_commands(state: State) -> None:
    assert drive_to(state).allowed_commands() == [c for c in Command if c in EXPECTED[state]]


def test_refusal_message_exact() -> None:
    machine = drive_to(S.EXECUTE)
    with pytest.raises(
        CommandRefused,
        match=r"^cannot start in state Execute: allowed commands are "
        r"stop, hold, suspend, abort$",
    ):
        machine.command("start")


def test_refusal_message_when_nothing_is_allowed() -> None:
    with pytest.raises(CommandRefused) as info:
        drive_to(S.ABORTING).command(C.CLEAR)
    assert str(info.value) == "cannot clear in state Aborting: no commands are allowed"


def test_command_refused_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot unhold in state Stopped"):
        CellMachine().command(C.UNHOLD)


def test_unknown_command() -> None:
    recorder = Recorder()
    machine = CellMachine(on_change=recorder)
    with pytest.raises(CommandRefused) as info:
        machine.command("jump")
    assert str(info.value) == (
        "unknown command 'jump': expected one of reset, start, stop, hold, unhold, suspend, unsuspend, abort, clear"
    )
    assert info.value.command == "jump"
    assert info.value.state is S.STOPPED
    assert machine.state is S.STOPPED
    assert recorder.calls == []


def test_command_accepts_enum_and_string() -> None:
    machine = CellMachine()
    assert machine.command(C.RESET) is S.RESETTING
    assert machine.command("abort") is S.ABORTING


@pytest.mark.parametrize("state", list(SC_EDGES), ids=[s.value for s in SC_EDGES])
def test_state_complete_edges(state: State) -> None:
    recorder = Recorder()
    machine = drive_to(state, recorder)
    recorder.calls.clear()
    new = SC_EDGES[state]
    assert machine.state_complete() is new
    assert machine.state is new
    assert recorder.calls == [(state, new, "state_complete")]


@pytest.mark.parametrize("state", sorted(WAIT_STATES), ids=[s.value for s in sorted(WAIT_STATES)])
def test_state_complete_refused_in_wait_states(state: State) -> None:
    machine = drive_to(state)
    with pytest.raises(ValueError) as info:
        machine.state_complete()
    assert str(info.value) == f"state_complete in wait state {state.value}: only acting states complete"
    assert machine.state is state


def test_state_complete_in_idle_message() -> None:
    with pytest.raises(ValueError, match=r"^state_complete in wait state Idle: only acting states complete$"):
        drive_to(S.IDLE).state_complete()


def test_state_complete_refused_in_execute() -> None:
    machine = drive_to(S.EXECUTE)
    with pytest.raises(ValueError, match=r"^state_complete in state Execute: Execute ends with execute_complete$"):
        machine.state_complete()
    assert machine.state is S.EXECUTE


def test_execute_complete() -> None:
    recorder = Recorder()
    machine = drive_to(S.EXECUTE, recorder)
    recorder.calls.clear()
    assert machine.execute_complete() is S.COMPLETING
    assert recorder.calls == [(S.EXECUTE, S.COMPLETING, "execute_complete")]


_NOT_EXECUTE = [s for s in State if s is not S.EXECUTE]


@pytest.mark.parametrize("state", _NOT_EXECUTE, ids=[s.value for s in _NOT_EXECUTE])
def test_execute_complete_refused_outside_execute(state: State) -> None:
    machine = drive_to(state)
    with pytest.raises(ValueError) as info:
        machine.execute_complete()
    assert str(info.value) == f"execute_complete in state {state.value}: only Execute completes a job"
    assert machine.state is state


def test_state_sets_partition_the_states() -> None:
    assert ACTING_STATES == set(SC_EDGES)
    assert WAIT_STATES == {S.STOPPED, S.IDLE, S.COMPLETE, S.HELD, S.SUSPENDED, S.ABORTED}
    assert not ACTING_STATES & WAIT_STATES
    assert ACTING_STATES | WAIT_STATES | {S.EXECUTE} == set(State)
    assert isinstance(ACTING_STATES, frozenset) and isinstance(WAIT_STATES, frozenset)


def test_enum_values_are_tr88_names() -> None:
    assert [s.value for s in State] == [
        "Stopped",
        "Resetting",
        "Idle",
        "Starting",
        "Execute",
        "Completing",
        "Complete",
        "Holding",
        "Held",
        "Unholding",
        "Suspending",
        "Suspended",
        "Unsuspending",
        "Stopping",
        "Aborting",
        "Aborted",
        "Clearing",
    ]
    assert all(s.name == s.value.upper() for s in State)
    assert [c.value for c in Command] == [
        "reset",
        "start",
        "stop",
        "hold",
        "unhold",
        "suspend",
        "unsuspend",
        "abort",
        "clear",
    ]


def test_happy_path_cycle() -> None:
    recorder = Recorder()
    machine = CellMachine(on_change=recorder)
    assert machine.state is S.STOPPED
    assert machine.command(C.RESET) is S.RESETTING
    assert machine.state_complete() is S.IDLE
    assert machine.command(C.START) is S.STARTING
    assert machine.state_complete() is S.EXECUTE
    assert machine.execute_complete() is S.COMPLETING
    assert machine.state_complete() is S.COMPLETE
    assert machine.command(C.RESET) is S.RESETTING
    assert recorder.calls == [
        (S.STOPPED, S.RESETTING, "reset"),
        (S.RESETTING, S.IDLE, "state_complete"),
        (S.IDLE, S.STARTING, "start"),
        (S.STARTING, S.EXECUTE, "state_complete"),
        (S.EXECUTE, S.COMPLETING, "execute_complete"),
        (S.COMPLETING, S.COMPLETE, "state_complete"),
        (S.COMPLETE, S.RESETTING, "reset"),
    ]


def test_no_on_change_is_fine() -> None:
    machine = drive_to(S.HELD)
    assert machine.command(C.UNHOLD) is S.UNHOLDING


ACTIONS = st.sampled_from([*Command, SC, EC])


@settings(max_examples=200, deadline=None)
@given(st.lists(ACTIONS, max_size=40))
def test_random_walk_follows_the_table(actions: list[Command | str]) -> None:
    recorder = Recorder()
    machine = CellMachine(on_change=recorder)
    expected = S.STOPPED
    for action in actions:
        before = len(recorder.calls)
        if action == SC:
            target = SC_EDGES.get(expected)
        elif action == EC:
            target = S.COMPLETING if expected is S.EXECUTE else None
        else:
            target = EXPECTED[expected].get(action)
        if target is None:
            with pytest.raises(ValueError):
                step(machine, action)
            assert len(recorder.calls) == before
        else:
            assert step(machine, action) is target
            assert recorder.calls[-1][:2] == (expected, target)
            expected = target
        assert machine.state is expected
    # Abort then clear brings any state back to Stopped.
    if machine.state not in (S.ABORTING, S.ABORTED):
        machine.command(C.ABORT)
    if machine.state is S.ABORTING:
        machine.state_complete()
    machine.command(C.CLEAR)
    assert machine.state_complete() is S.STOPPED


def test_module_imports_no_rclpy() -> None:
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"
        "import cobot_cell.core.packml\n"
        "loaded = [m for m, mod in sys.modules.items() if mod is not None]\n"
        "bad = sorted(m for m in loaded if m.startswith('rclpy') or m.endswith('_msgs'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
