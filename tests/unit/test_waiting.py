"""The shared wait-for-condition helper: steps between looks, a deadline with a message naming what was awaited."""

from __future__ import annotations

import asyncio

import pytest

from cobot_cell.waiting import wait_until, wait_until_async


def test_steps_between_looks_until_the_condition_holds() -> None:
    looks: list[float] = []
    wait_until(lambda: len(looks) >= 3, 5.0, "three looks", step=looks.append, poll=0.01)
    assert looks == [0.01, 0.01, 0.01]
    wait_until(lambda: True, 0.0, "nothing", step=looks.append)
    assert len(looks) == 3  # a condition that holds at once costs no step


def test_the_deadline_names_what_was_awaited_and_the_detail() -> None:
    with pytest.raises(TimeoutError) as err:
        wait_until(lambda: False, 0.05, "the moon", poll=0.01, detail=lambda: " (state Idle)")
    assert str(err.value) == "timed out after 0.05 s waiting for the moon (state Idle)"


def test_ignored_errors_count_as_not_yet_and_others_propagate() -> None:
    calls = iter([ConnectionError("starting"), ConnectionError("starting"), True])

    def ready() -> bool:
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    wait_until(ready, 5.0, "the server", poll=0.001, ignore=(ConnectionError,))
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], 5.0, "a key", ignore=(ConnectionError,))


def test_the_async_wait_steps_and_times_out() -> None:
    spins: list[int] = []

    async def run() -> None:
        await wait_until_async(lambda: len(spins) >= 2, 5.0, "two spins", step=lambda: spins.append(1), poll=0.001)
        with pytest.raises(TimeoutError) as err:
            await wait_until_async(lambda: False, 0.02, "never", poll=0.005)
        assert str(err.value) == "timed out after 0.02 s waiting for never"

    asyncio.run(run())
    assert spins == [1, 1]
