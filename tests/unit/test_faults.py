"""Faults (cobot_cell.core.faults): the FaultBook life cycle (raise -> acknowledge -> clear), its refusals, fault
records for diagnostics, and the fault policy model.

Pure: no clock, no ports. Times are plain floats handed to the book.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cobot_cell.core.faults import DRIVER_ACTIONS, DRIVER_CODES, Code, Fault, FaultBook, FaultPolicy
from cobot_cell.core.validation import validate


def book_with(n: int) -> FaultBook:
    """A book with n faults raised at t = 1, 2, ... (alternating cobots and steps)."""
    book = FaultBook()
    for i in range(1, n + 1):
        book.raise_(Code.IO_FAILED, f"failure {i}", float(i), cobot="welder", step=f"s{i}", skill="weld")
    return book


# ---------------------------------------------------------------------------------------------- raise


def test_ids_count_from_one_and_faults_keep_their_source() -> None:
    book = FaultBook()
    a = book.raise_(
        Code.IO_FAILED, "IO service 'torch/arc' failed", 12.5, cobot="welder", step="weld_seams", skill="weld"
    )
    b = book.raise_(Code.PROTECTIVE_STOP, "driver reports protective stop", 13.0, cobot="picker")
    c = book.raise_(Code.NOT_READY, "not homed after 5 s", 14.0, severity="WARN")
    assert [f.id for f in (a, b, c)] == [1, 2, 3]
    assert a == Fault(
        id=1,
        code=Code.IO_FAILED,
        message="IO service 'torch/arc' failed",
        raised=12.5,
        cobot="welder",
        step="weld_seams",
        skill="weld",
        severity="ERROR",
        acknowledged=None,
        cleared=None,
    )
    assert [f.source for f in (a, b, c)] == ["welder/weld_seams", "picker", "cell"]
    assert c.severity == "WARN"
    assert book.faults == [a, b, c] and book.active == [a, b, c]
    assert all(f.active for f in book.faults)
    assert book.get(2) is b


def test_raising_logs_the_fault_at_error_level(caplog: pytest.LogCaptureFixture) -> None:
    book = FaultBook()
    with caplog.at_level(logging.ERROR, logger="cobot_cell.core.faults"):
        book.raise_(
            Code.GRIP_MISSED,
            "'gripper/grip' of 'picker' not confirmed within 0.5 s (expected on)",
            3.0,
            cobot="picker",
            step="load_blank",
            skill="pick",
        )
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            "fault 1 GRIP_MISSED on picker/load_blank: "
            "'gripper/grip' of 'picker' not confirmed within 0.5 s (expected on)",
        )
    ]


def test_a_fault_is_a_frozen_snapshot_the_book_replaces() -> None:
    book = book_with(1)
    first = book.get(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.cleared = 3.0  # type: ignore[misc]
    book.acknowledge(1, 5.0)
    assert first.acknowledged is None  # what was handed out earlier does not change
    assert book.get(1).acknowledged == 5.0 and book.get(1) is not first


# ---------------------------------------------------------------------------------------------- get


def test_unknown_id_names_the_active_faults() -> None:
    book = book_with(3)
    book.clear(2, 10.0)
    for bad in (9, 0, -1, 4):
        with pytest.raises(ValueError) as err:
            book.get(bad)
        assert str(err.value) == f"no fault {bad}: active faults are 1, 3"
    with pytest.raises(ValueError) as err:
        book.acknowledge(9, 11.0)
    assert str(err.value) == "no fault 9: active faults are 1, 3"
    with pytest.raises(ValueError) as err:
        book.clear(9, 11.0)
    assert str(err.value) == "no fault 9: active faults are 1, 3"


def test_unknown_id_when_no_fault_is_active() -> None:
    with pytest.raises(ValueError) as err:
        FaultBook().get(1)
    assert str(err.value) == "no fault 1: active faults are none active"
    book = book_with(2)
    book.clear_all(3.0)
    with pytest.raises(ValueError) as err:
        book.acknowledge(7, 4.0)
    assert str(err.value) == "no fault 7: active faults are none active"


# ---------------------------------------------------------------------------------------------- acknowledge


def test_acknowledge_one_fault() -> None:
    book = book_with(3)
    done = book.acknowledge(2, 7.5)
    assert done == [book.get(2)] and done[0].acknowledged == 7.5
    assert done[0].active and done[0].cleared is None  # acknowledged is not cleared
    assert [f.acknowledged for f in book.faults] == [None, 7.5, None]
    assert [f.id for f in book.active] == [1, 2, 3]


def test_acknowledging_a_fault_twice_is_refused() -> None:
    book = book_with(2)
    book.acknowledge(1, 5.0)
    with pytest.raises(ValueError) as err:
        book.acknowledge(1, 6.0)
    assert str(err.value) == "fault 1 is already acknowledged"
    assert book.get(1).acknowledged == 5.0  # the first acknowledgement stands


def test_acknowledging_a_cleared_fault_is_refused() -> None:
    book = book_with(2)
    book.clear(1, 5.0)
    with pytest.raises(ValueError) as err:
        book.acknowledge(1, 6.0)
    assert str(err.value) == "fault 1 is already cleared"


def test_acknowledge_all_takes_every_unacknowledged_active_fault() -> None:
    book = book_with(4)
    book.acknowledge(2, 5.0)
    book.clear(3, 6.0)
    done = book.acknowledge(None, 8.0)
    assert [f.id for f in done] == [1, 4]
    assert all(f.acknowledged == 8.0 for f in done)
    assert [(f.id, f.acknowledged, f.cleared) for f in book.faults] == [
        (1, 8.0, None),
        (2, 5.0, None),
        (3, 6.0, 6.0),
        (4, 8.0, None),
    ]


@pytest.mark.parametrize("setup", ["empty", "all acknowledged", "all cleared"])
def test_acknowledge_all_with_nothing_to_acknowledge_is_refused(setup: str) -> None:
    book = FaultBook() if setup == "empty" else book_with(2)
    if setup == "all acknowledged":
        book.acknowledge(None, 3.0)
    elif setup == "all cleared":
        book.clear_all(3.0)
    before = list(book.faults)
    with pytest.raises(ValueError) as err:
        book.acknowledge(None, 4.0)
    assert str(err.value) == "no active fault to acknowledge"
    assert book.faults == before


# ---------------------------------------------------------------------------------------------- clear


def test_clear_one_fault_acknowledges_it_if_needed() -> None:
    book = book_with(3)
    book.acknowledge(2, 4.0)
    one = book.clear(1, 6.0)
    two = book.clear(2, 7.0)
    assert (one.acknowledged, one.cleared, one.active) == (6.0, 6.0, False)
    assert (two.acknowledged, two.cleared) == (4.0, 7.0)  # an earlier acknowledgement is kept
    assert [f.id for f in book.active] == [3]
    assert book.clear(1, 9.0) is None  # not active any more: nothing changes
    assert book.get(1).cleared == 6.0


def test_clear_all_clears_every_active_fault() -> None:
    book = book_with(4)
    book.acknowledge(3, 5.0)
    book.clear(4, 6.0)
    done = book.clear_all(10.0)
    assert [(f.id, f.acknowledged, f.cleared) for f in done] == [(1, 10.0, 10.0), (2, 10.0, 10.0), (3, 5.0, 10.0)]
    assert book.get(4).cleared == 6.0  # already cleared: untouched
    assert book.active == [] and all(not f.active for f in book.faults)
    assert book.clear_all(11.0) == []
    new = book.raise_(Code.ESTOP, "driver reports estop", 12.0)
    assert new.id == 5 and book.active == [new]  # ids go on after clearing


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["raise", "ack", "ack_all", "clear", "clear_all"]), st.integers(min_value=0, max_value=6)
        ),
        max_size=30,
    )
)
def test_any_sequence_keeps_ids_dense_and_the_life_cycle_ordered(ops: list[tuple[str, int]]) -> None:
    book = FaultBook()
    t = 0.0
    for op, arg in ops:
        t += 1.0
        try:
            if op == "raise":
                book.raise_(Code.MOTION_TIMEOUT, "late", t)
            elif op == "ack":
                book.acknowledge(arg, t)
            elif op == "ack_all":
                book.acknowledge(None, t)
            elif op == "clear":
                book.clear(arg, t)
            else:
                book.clear_all(t)
        except ValueError:
            pass
    assert [f.id for f in book.faults] == list(range(1, len(book.faults) + 1))
    for f in book.faults:
        if f.cleared is not None:
            assert f.acknowledged is not None and f.raised <= f.acknowledged <= f.cleared
        elif f.acknowledged is not None:
            assert f.raised <= f.acknowledged
    assert book.active == [f for f in book.faults if f.cleared is None]


# ---------------------------------------------------------------------------------------------- records


def test_key_values_for_diagnostics() -> None:
    book = book_with(1)
    f = book.get(1)
    assert dict(f.to_key_values("demo")) == {
        "wire": "1",
        "cell": "demo",
        "id": "1",
        "code": "IO_FAILED",
        "source": "welder/s1",
        "cobot": "welder",
        "step": "s1",
        "skill": "weld",
        "time": "1.0",
        "raised": "1.0",
        "acknowledged": "",
        "cleared": "",
        "severity": "ERROR",
    }
    assert dict(f.to_key_values("demo", "b-1"))["fault_key"] == "b-1"
    book.acknowledge(1, 2.25)
    g = book.clear(1, 3.5)
    assert dict(g.to_key_values("demo"))["acknowledged"] == "2.25"
    assert dict(g.to_key_values("demo"))["cleared"] == "3.5"


# ---------------------------------------------------------------------------------------------- policy


def test_policy_defaults_and_bounds() -> None:
    assert FaultPolicy() == FaultPolicy(retries=1, then="hold")
    assert FaultPolicy(retries=0, then="scrap").then == "scrap"
    assert FaultPolicy(retries=10, then="abort").retries == 10
    for bad in ({"retries": -1}, {"retries": 11}, {"then": "explode"}, {"retry": 2}):
        with pytest.raises(ValidationError):
            validate(FaultPolicy, bad)
    assert validate(FaultPolicy, {"retries": 2, "then": "scrap"}) == FaultPolicy(retries=2, then="scrap")
    with pytest.raises(dataclasses.FrozenInstanceError):
        FaultPolicy().retries = 3  # type: ignore[misc]


def test_driver_faults_have_fixed_actions() -> None:
    assert DRIVER_ACTIONS == {
        Code.PROTECTIVE_STOP: "hold",
        Code.ESTOP: "abort",
        Code.DRIVER_ERROR: "abort",
        Code.STALE_JOINT_STATES: "abort",
        Code.COLLISION: "hold",
    }
    assert DRIVER_CODES == frozenset(DRIVER_ACTIONS)
    assert all(c.value == c.name for c in Code)  # the cell maps step failure codes by name


# ---------------------------------------------------------------------------------------------- bounded


def test_the_book_keeps_active_faults_and_only_the_recent_cleared_ones() -> None:
    book = FaultBook(keep_cleared=5)
    old = book.raise_(Code.ESTOP, "still pressed", 0.0)
    for i in range(1, 1001):
        f = book.raise_(Code.GRIP_MISSED, f"miss {i}", float(i))
        book.clear(f.id, i + 0.5)
    assert len(book.faults) == 6
    assert [f.id for f in book.faults] == [1, 997, 998, 999, 1000, 1001]  # ids unique, increasing, never reused
    assert book.active == [old] and book.get(1) is old
    assert book.get(1001).message == "miss 1000" and book.get(1001).cleared == 1000.5
    with pytest.raises(ValueError) as err:
        book.get(996)
    assert str(err.value) == "no fault 996 (cleared long ago, no longer kept): active faults are 1"
    with pytest.raises(ValueError) as err:
        book.get(1002)
    assert str(err.value) == "no fault 1002: active faults are 1"
    assert book.raise_(Code.ESTOP, "again", 2000.0).id == 1002
    book.clear_all(2001.0)  # the most recently cleared are kept, however old the fault
    assert [f.id for f in book.faults] == [1, 999, 1000, 1001, 1002]


def test_the_default_book_is_bounded() -> None:
    from cobot_cell.core.faults import KEEP_CLEARED

    book = FaultBook()
    for i in range(KEEP_CLEARED * 3):
        book.raise_(Code.IO_FAILED, "io", float(i))
        book.clear_all(i + 0.5)
    assert len(book.faults) == KEEP_CLEARED and book.faults[-1].id == KEEP_CLEARED * 3


def test_keep_cleared_must_not_be_negative() -> None:
    with pytest.raises(ValueError) as err:
        FaultBook(keep_cleared=-1)
    assert str(err.value) == "keep_cleared must be >= 0, got -1"
