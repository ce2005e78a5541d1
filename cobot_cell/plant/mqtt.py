"""MQTT publishing, the pure part: the topic tree, JSON payloads and a bounded outbox.

Topic tree (`<site>/<area>` is the configured prefix):

    <site>/<area>/<cell>/state       retained  {"cell", "state", "state_number", "time"}
    <site>/<area>/<cell>/status      retained  the planner's status key/values
    <site>/<area>/<cell>/authority   retained  {"cell", "authority", "time"}
    <site>/<area>/<cell>/kpis        retained  the supervisor's KPIs (numbers; null when undefined)
    <site>/<area>/<cell>/cycle                 one cycle report per part (key: run_id/part)
    <site>/<area>/<cell>/fault                 one message per fault life-cycle update (key: fault_key)
    <site>/<area>/<cell>/audit                 one message per command the cell's authority saw
    <site>/<area>/bridge/<client id>  retained  "online", or "offline" (the broker's last will)

Events are published with QoS 1 (at least once: a consumer drops repeats by their key).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from cobot_cell.core.reports import CycleReport

from .packml import STATE_NUMBERS

logger = logging.getLogger(__name__)

TOPIC_RE_CHARS = set("+#\0")
RETAINED = frozenset({"state", "status", "authority", "kpis"})


@dataclass(frozen=True)
class Message:
    """One MQTT message to publish."""

    topic: str
    payload: str
    retain: bool


def broker_address(url: str) -> tuple[str, int]:
    """(host, port) of mqtt://HOST[:PORT] (port 1883 by default); ValueError naming the problem."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"MQTT broker {url!r}: expected mqtt://HOST[:PORT]")
    try:
        port = parsed.port or 1883
    except ValueError:
        raise ValueError(f"MQTT broker {url!r}: bad port") from None
    return parsed.hostname, port


def check_prefix(prefix: str) -> str:
    """The topic prefix (<site>/<area>) without surrounding slashes; ValueError for wildcards or empty levels."""
    p = prefix.strip("/")
    if not p or any(c in TOPIC_RE_CHARS for c in p) or "" in p.split("/"):
        raise ValueError(f"MQTT prefix {prefix!r}: expected <site>/<area> without wildcards or empty levels")
    return p


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def cycle_payload(r: CycleReport) -> dict[str, Any]:
    """A cycle report as JSON data (key: run_id/part)."""
    return {
        "key": f"{r.run_id}/{r.part}",
        "cell": r.cell,
        "job": r.job,
        "run_id": r.run_id,
        "part": r.part,
        "status": r.status,
        "start": r.start,
        "end": r.end,
        "cycle_time": r.cycle_time,
        "steps": [
            {"step": s.step, "skill": s.skill, "cobot": s.cobot, "start": s.start, "end": s.end} for s in r.steps
        ],
    }


def event_message(prefix: str, cell: str, kind: str, data: Any, now: float | None = None) -> Message | None:
    """The message for one cell event (see plant_follower kinds), or None for events not published."""
    t = time.time() if now is None else now
    body: Any
    if kind == "state":
        body = {"cell": cell, "state": data, "state_number": STATE_NUMBERS.get(data, 0), "time": t}
    elif kind == "status":
        body = {"cell": cell, **data, "time": t}
    elif kind == "authority":
        body = {"cell": cell, "authority": data, "time": t}
    elif kind == "kpis":
        body = {"cell": cell, **{k: _number(v) for k, v in data.items()}, "time": t}
    elif kind == "cycle":
        body = cycle_payload(data)
    elif kind == "fault":
        key, kv = data
        body = {"key": key, **kv}
    elif kind == "audit":
        body = dict(data)
    else:
        return None
    return Message(f"{prefix}/{cell}/{kind}", json.dumps(body, sort_keys=True), kind in RETAINED)


class Outbox:
    """Messages waiting for the broker, bounded: `limit` counts the queued and the sent but not acknowledged.

    While the broker is away messages queue; when the bound is reached the oldest queued one is dropped (counted
    and logged), so nothing is lost within the bound. Thread-safe (the MQTT client acknowledges from its thread).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"outbox limit must be >= 1, got {limit}")
        self.limit = limit
        self._queue: deque[Message] = deque()
        self._unacked: dict[int, Message] = {}
        self._early: set[int] = set()  # acknowledged before `sent` recorded them (the client's thread was quick)
        self._lock = threading.Lock()
        self.dropped = 0
        self.acked = 0

    def put(self, msg: Message) -> None:
        """Queue a message (dropping the oldest queued one if full)."""
        with self._lock:
            if len(self._queue) + len(self._unacked) >= self.limit and self._queue:
                lost = self._queue.popleft()
                self.dropped += 1
                logger.warning("MQTT outbox full (%d): dropped a message for %s", self.limit, lost.topic)
            self._queue.append(msg)

    def take(self) -> Message | None:
        """The next message to send, or None."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def sent(self, mid: int, msg: Message) -> None:
        """`msg` went to the client with message id `mid`."""
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
                self.acked += 1
            else:
                self._unacked[mid] = msg

    def unsent(self, msg: Message) -> None:
        """The client did not take `msg`: back to the front of the queue."""
        with self._lock:
            self._queue.appendleft(msg)

    def acknowledged(self, mid: int) -> None:
        """The broker acknowledged message `mid`."""
        with self._lock:
            if self._unacked.pop(mid, None) is not None:
                self.acked += 1
            else:
                self._early.add(mid)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._unacked)
