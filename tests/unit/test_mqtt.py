"""MQTT publishing, pure part: broker URL and prefix checks, the topic tree and payloads, the bounded outbox."""

from __future__ import annotations

import json

import pytest

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.plant.mqtt import Message, Outbox, broker_address, check_prefix, event_message


def test_broker_address_and_prefix() -> None:
    assert broker_address("mqtt://127.0.0.1") == ("127.0.0.1", 1883)
    assert broker_address("mqtt://broker.local:1884") == ("broker.local", 1884)
    for bad in ("http://x", "mqtt://", "mqtt://h:port"):
        with pytest.raises(ValueError, match="MQTT broker"):
            broker_address(bad)
    assert check_prefix("/acme/hall2/") == "acme/hall2"
    for bad in ("", "a/+/b", "a//b", "#"):
        with pytest.raises(ValueError, match="expected <site>/<area> without wildcards"):
            check_prefix(bad)


def test_topic_tree_and_payloads() -> None:
    m = event_message("acme/hall2", "cell1", "state", "Execute", now=5.0)
    assert m == Message(
        "acme/hall2/cell1/state",
        json.dumps({"cell": "cell1", "state": "Execute", "state_number": 6, "time": 5.0}, sort_keys=True),
        True,
    )
    r = CycleReport(
        cell="cell1",
        job="bracket",
        run_id="r1",
        part=2,
        start=1.0,
        end=4.5,
        status="done",
        steps=(StepTiming("load", "pick", "picker", 1.0, 2.0),),
    )
    m = event_message("acme/hall2", "cell1", "cycle", r)
    body = json.loads(m.payload)
    assert m.topic == "acme/hall2/cell1/cycle" and not m.retain
    assert (body["key"], body["cycle_time"], body["steps"][0]["step"]) == ("r1/2", 3.5, "load")
    m = event_message("p/a", "c", "kpis", {"oee": "0.5", "mtbf": "nan"}, now=1.0)
    assert json.loads(m.payload) == {"cell": "c", "oee": 0.5, "mtbf": None, "time": 1.0} and m.retain
    m = event_message("p/a", "c", "fault", ("b-1", {"code": "ESTOP", "cleared": ""}))
    assert json.loads(m.payload) == {"key": "b-1", "code": "ESTOP", "cleared": ""} and m.topic == "p/a/c/fault"
    assert event_message("p/a", "c", "something", {}) is None


def msg(i: int) -> Message:
    return Message(f"t/{i}", str(i), False)


def test_outbox_keeps_everything_within_its_bound_and_drops_the_oldest_beyond() -> None:
    box = Outbox(3)
    for i in range(3):
        box.put(msg(i))
    first = box.take()
    box.sent(10, first)
    assert len(box) == 3  # sent, not yet acknowledged: still counted
    box.put(msg(3))  # full: the oldest queued (1) goes
    assert box.dropped == 1
    assert [box.take().payload for _ in range(2)] == ["2", "3"] and box.take() is None
    box.acknowledged(10)
    assert len(box) == 0 and box.acked == 1
    box.acknowledged(11)  # acknowledged before it was recorded as sent
    box.sent(11, msg(4))
    assert len(box) == 0 and box.acked == 2
    box.put(msg(5))
    m = box.take()
    box.unsent(m)
    assert box.take() == m
    with pytest.raises(ValueError, match="outbox limit must be >= 1"):
        Outbox(0)
