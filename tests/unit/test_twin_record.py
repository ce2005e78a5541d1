"""Foxglove channels of a cell (cobot_cell.twin.record): MCAP round trip through the wire codec, and the live
server seen by a plain WebSocket client speaking the Foxglove WebSocket protocol."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from cobot_cell.core.reports import CycleReport, StepTiming
from cobot_cell.twin.record import Recorder, cell_topics, read_cycles, read_messages

TOPICS = cell_topics("demo", ["/picker", "/welder"])
SUBPROTOCOL = "foxglove.sdk.v1"  # the Foxglove WebSocket protocol as foxglove-sdk 0.30 names it


def report(part: int, start: float, end: float) -> CycleReport:
    return CycleReport(
        cell="demo",
        job="bracket",
        run_id="a1b2c3",
        part=part,
        start=start,
        end=end,
        steps=(
            StepTiming("load_blank", "pick", "picker", start, start + 9.8),
            StepTiming("weld_seams", "weld", "welder", start + 9.8, end),
        ),
    )


def test_a_recording_reads_back_the_cycle_reports_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    reports = [report(1, 0.0, 31.0), report(2, 31.0, 62.5)]
    rec = Recorder(TOPICS, record=path)
    rec.text("/robot_description", 0.0, "<robot name='demo'/>")
    rec.joint_state("/picker/joint_states", 0.04, ["a", "b"], [0.1, 0.2], [0.0, 0.5])
    for r in reports:
        rec.key_values("/demo/cycle", r.end, r.to_key_values(), "demo/task_planner")
    rec.close()
    assert read_cycles(path) == reports
    assert read_cycles(path, "other") == []
    states = read_messages(path, "/joint_states")
    assert states == [
        (
            "/picker/joint_states",
            0.04,
            {
                "timestamp": {"sec": 0, "nsec": 40_000_000},
                "name": ["a", "b"],
                "position": [0.1, 0.2],
                "velocity": [0.0, 0.5],
            },
        )
    ]


def test_a_file_that_is_no_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(ValueError, match=f"^{path}: not a readable MCAP recording"):
        read_cycles(path)


def test_recorder_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to do"):
        Recorder(TOPICS)
    with pytest.raises(ValueError, match="loopback only"):
        Recorder(TOPICS, port=0, host="0.0.0.0")
    with pytest.raises(ValueError, match="must end in .mcap"):
        Recorder(TOPICS, record=tmp_path / "run.db")
    with pytest.raises(ValueError, match="no directory"):
        Recorder(TOPICS, record=tmp_path / "missing" / "run.mcap")
    first = Recorder(TOPICS, port=0)
    try:
        with pytest.raises(ValueError, match=f"^cannot serve Foxglove on 127.0.0.1:{first.port}: .*in use"):
            Recorder(TOPICS, port=first.port)
    finally:
        first.close()


def test_a_websocket_client_sees_the_channels_and_receives_joint_states() -> None:
    import websocket

    rec = Recorder(TOPICS, port=0)
    try:
        assert rec.port and rec.port > 0
        ws = websocket.create_connection(f"ws://127.0.0.1:{rec.port}", subprotocols=[SUBPROTOCOL], timeout=10)
        try:
            channels: dict[str, dict] = {}
            deadline = time.monotonic() + 10
            while set(channels) != set(TOPICS) and time.monotonic() < deadline:
                msg = ws.recv()
                if isinstance(msg, str) and json.loads(msg)["op"] == "advertise":
                    channels.update({c["topic"]: c for c in json.loads(msg)["channels"]})
            assert set(channels) == set(TOPICS)
            js = channels["/welder/joint_states"]
            assert (js["encoding"], js["schemaName"]) == ("json", "cobot_cell.JointState")
            assert json.loads(js["schema"])["properties"]["position"] == {"type": "array", "items": {"type": "number"}}
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": js["id"]}]}))
            got = None
            while got is None and time.monotonic() < deadline:
                rec.joint_state("/welder/joint_states", 12.5, ["w1"], [0.25], [1.5])  # until the subscription holds
                ws.settimeout(0.2)
                try:
                    msg = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if isinstance(msg, bytes) and msg[0] == 1:
                    got = msg
            assert got is not None, "no joint state received"
            sub, stamp = struct.unpack_from("<IQ", got, 1)
            assert (sub, stamp) == (7, 12_500_000_000)
            assert json.loads(got[13:]) == {
                "timestamp": {"sec": 12, "nsec": 500_000_000},
                "name": ["w1"],
                "position": [0.25],
                "velocity": [1.5],
            }
        finally:
            ws.close()
    finally:
        rec.close()
