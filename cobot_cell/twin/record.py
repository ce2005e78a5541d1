"""The cell's channels for Foxglove: a live WebSocket server (loopback) and MCAP recordings, and reading them back.

Every channel is JSON-encoded with a JSON schema, so Foxglove shows it without ROS message definitions:

- `<ns>/joint_states` per cobot (`cobot_cell.JointState`: joint names, positions, velocities);
- `/robot_description` (`cobot_cell.Text`: the cell's URDF, for the 3D panel);
- `/<cell>/state` (`cobot_cell.Text`: the PackML state);
- `/<cell>/cycle`, `/<cell>/faults`, `/supervisor/kpis` (`cobot_cell.KeyValues`: the key/value pairs of the wire
  codec, `cobot_cell.core.reports`), so a recording's cycle reports decode exactly as the supervisor's do.

Log times are the cell's clock (simulated time in simulation), in nanoseconds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..core.reports import CycleReport

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
"""Foxglove's default WebSocket port."""
HOST = "127.0.0.1"

_STRINGS = {"type": "array", "items": {"type": "string"}}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "cobot_cell.JointState": {
        "type": "object",
        "properties": {
            "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
            "name": _STRINGS,
            "position": _NUMBERS,
            "velocity": _NUMBERS,
        },
    },
    "cobot_cell.Text": {"type": "object", "properties": {"data": {"type": "string"}}},
    "cobot_cell.KeyValues": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "level": {"type": "string"},
            "message": {"type": "string"},
            "values": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


def cell_topics(cell: str, namespaces: Sequence[str]) -> dict[str, str]:
    """Topic -> schema name of a cell's channels."""
    topics = {f"{ns.rstrip('/')}/joint_states": "cobot_cell.JointState" for ns in namespaces}
    topics.update(
        {
            "/robot_description": "cobot_cell.Text",
            f"/{cell}/state": "cobot_cell.Text",
            f"/{cell}/cycle": "cobot_cell.KeyValues",
            f"/{cell}/faults": "cobot_cell.KeyValues",
            "/supervisor/kpis": "cobot_cell.KeyValues",
        }
    )
    return topics


class Recorder:
    """Logs a cell's channels to an MCAP file and/or a Foxglove WebSocket server on loopback."""

    def __init__(
        self,
        topics: dict[str, str],
        record: str | os.PathLike[str] | None = None,
        port: int | None = None,
        host: str = HOST,
        name: str = "cobot_cell",
    ):
        import foxglove

        if record is None and port is None:
            raise ValueError("nothing to do: give an MCAP file to record, a port to serve, or both")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the Foxglove server binds to loopback only, got host {host!r}")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, got {port}")
        self.context = foxglove.Context()
        self.writer = None
        self.server = None
        if record is not None:
            path = Path(record)
            if path.suffix != ".mcap":
                raise ValueError(f"recording {path}: the file name must end in .mcap")
            if not path.parent.is_dir():
                raise ValueError(f"recording {path}: no directory {path.parent}")
            self.writer = foxglove.open_mcap(str(path), allow_overwrite=True, context=self.context)
        try:
            if port is not None:
                self.server = foxglove.start_server(name=name, host=host, port=port, context=self.context)
        except RuntimeError as exc:  # the SDK's FoxgloveError, e.g. the port is taken
            self.close()
            raise ValueError(f"cannot serve Foxglove on {host}:{port}: {exc}") from None
        self.channels = {
            topic: foxglove.Channel(
                topic,
                message_encoding="json",
                context=self.context,
                schema=foxglove.Schema(name=schema, encoding="jsonschema", data=json.dumps(SCHEMAS[schema]).encode()),
            )
            for topic, schema in topics.items()
        }

    @property
    def port(self) -> int | None:
        """The server's port (the one chosen when asked for port 0), None without a server."""
        return self.server.port if self.server is not None else None

    def log(self, topic: str, message: dict[str, Any], t: float) -> None:
        """Log a message (a dict matching the topic's schema) at cell time t (s)."""
        channel = self.channels.get(topic)
        if channel is None:
            raise KeyError(f"unknown channel {topic}: expected one of {', '.join(self.channels)}")
        channel.log(message, log_time=max(int(round(t * 1e9)), 0))

    def joint_state(
        self, topic: str, t: float, names: Sequence[str], position: Sequence[float], velocity: Sequence[float]
    ) -> None:
        """Log a cobot's joint state."""
        sec = int(t)
        self.log(
            topic,
            {
                "timestamp": {"sec": sec, "nsec": int(round((t - sec) * 1e9))},
                "name": list(names),
                "position": [float(v) for v in position],
                "velocity": [float(v) for v in velocity],
            },
            t,
        )

    def key_values(
        self,
        topic: str,
        t: float,
        pairs: Iterable[tuple[str, str]],
        name: str = "",
        level: str = "OK",
        message: str = "",
    ) -> None:
        """Log key/value pairs (a cycle report, a fault, KPIs)."""
        self.log(topic, {"name": name, "level": level, "message": message, "values": dict(pairs)}, t)

    def text(self, topic: str, t: float, data: str) -> None:
        """Log a text (the PackML state, the URDF)."""
        self.log(topic, {"data": data}, t)

    def close(self) -> None:
        """Stop the server and finish the MCAP file."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_messages(path: str | os.PathLike[str], topic_suffix: str) -> list[tuple[str, float, dict[str, Any]]]:
    """(topic, time s, message) of every message on topics ending in `topic_suffix`, in log time order."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    out = []
    try:
        with open(path, "rb") as fh:
            reader = make_reader(fh)
            for _schema, channel, message in reader.iter_messages(log_time_order=True):
                if channel.topic.endswith(topic_suffix) and channel.message_encoding == "json":
                    out.append((channel.topic, message.log_time * 1e-9, json.loads(message.data)))
    except (McapError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable MCAP recording ({exc})") from None
    return out


def read_cycles(path: str | os.PathLike[str], cell: str | None = None) -> list[CycleReport]:
    """The cycle reports of a recording (of one cell, or all), decoded with the wire codec, in order."""
    reports = []
    for topic, _t, msg in read_messages(path, "/cycle"):
        if cell is not None and topic != f"/{cell}/cycle":
            continue
        reports.append(CycleReport.from_key_values(list(msg.get("values", {}).items())))
    return reports
