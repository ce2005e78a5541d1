"""Waiting on a condition with a deadline (never a fixed sleep): the one helper the operator client, the pendant
link, the benches and the tests use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL = 0.02  # seconds between looks when nothing else is done in between


def _timed_out(timeout: float, what: str, detail: Callable[[], str] | None) -> TimeoutError:
    return TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail() if detail else ''}")


def _holds(predicate: Callable[[], bool], ignore: tuple[type[BaseException], ...]) -> bool:
    if not ignore:
        return predicate()
    try:
        return predicate()
    except ignore:
        return False  # not ready yet


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    step: Callable[[float], object] | None = None,
    poll: float = POLL,
    detail: Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> None:
    """Until predicate() holds, call `step(poll)` (spin an executor, pump a link; default: sleep `poll` s).

    After `timeout` wall seconds: TimeoutError "timed out after <timeout> s waiting for <what><detail()>".
    Exceptions of the `ignore` types raised by the predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while not _holds(predicate, ignore):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(timeout, what, detail)
        if step is None:
            time.sleep(min(poll, left))
        else:
            step(min(poll, left))


async def wait_until_async(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    step: Callable[[], object] | None = None,
    poll: float = POLL,
    detail: Callable[[], str] | None = None,
) -> None:
    """`wait_until` for a coroutine: awaits `poll` s between looks (after `step()`, when given), on the loop's
    clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise _timed_out(timeout, what, detail)
        if step is not None:
            step()
        await asyncio.sleep(poll)
