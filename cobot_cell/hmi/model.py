"""The live page's model: cell state, status, cycle reports, faults and KPIs in; what the page shows out.

Fed by the hmi node from the cell's topics (any thread: every method takes the model's lock), read by the web
server as a JSON-ready snapshot with its charts already drawn as SVG. Times are the cell clock's seconds.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.packml import State, accepted_commands
from ..core.reports import CycleReport
from ..core.wire import decode_fault
from ..supervisor.kpi import kpis
from ..supervisor.log import FaultRecord
from . import svg

logger = logging.getLogger(__name__)

# Banner colours (background, text) per PackML state. ISA-TR88.00.02 names the states but prescribes no colours;
# these follow the usual PackML HMI convention: Execute green, the other producing states a lighter green, held
# and suspended amber, Idle and Complete blue, Stopped grey, Aborted and its neighbours red. Acting (transient)
# states are a lighter shade of the wait state they lead to.
PACKML_COLOURS: dict[str, tuple[str, str]] = {
    State.EXECUTE.value: ("#1b8a2f", "#ffffff"),
    State.STARTING.value: ("#7cc98a", "#000000"),
    State.UNHOLDING.value: ("#7cc98a", "#000000"),
    State.UNSUSPENDING.value: ("#7cc98a", "#000000"),
    State.COMPLETING.value: ("#7fb2e5", "#000000"),
    State.COMPLETE.value: ("#1f5fa8", "#ffffff"),
    State.RESETTING.value: ("#7fb2e5", "#000000"),
    State.IDLE.value: ("#1f5fa8", "#ffffff"),
    State.HOLDING.value: ("#ffd966", "#000000"),
    State.HELD.value: ("#f0a500", "#000000"),
    State.SUSPENDING.value: ("#ffd966", "#000000"),
    State.SUSPENDED.value: ("#f0a500", "#000000"),
    State.STOPPING.value: ("#b0b0b0", "#000000"),
    State.STOPPED.value: ("#5f5f5f", "#ffffff"),
    State.ABORTING.value: ("#f08080", "#000000"),
    State.ABORTED.value: ("#c62828", "#ffffff"),
    State.CLEARING.value: ("#f08080", "#000000"),
}
UNKNOWN_COLOURS = ("#303030", "#ffffff")

# Commands beyond PackML the HMI offers (with the role they need, see auth.PERMISSIONS).
ACKNOWLEDGE = "acknowledge"


@dataclass(frozen=True)
class RunningStep:
    """A step under way: which cobot, which step, since when (clock seconds)."""

    cobot: str
    step: str
    start: float


@dataclass(frozen=True)
class LiveFault:
    """One fault of the cell as the planner last reported it."""

    key: str
    id: int
    code: str
    source: str
    message: str
    raised: float
    acknowledged: float | None
    cleared: float | None

    @property
    def active(self) -> bool:
        """Not cleared yet."""
        return self.cleared is None


def allowed_commands(state: str | None) -> list[str]:
    """PackML commands the state accepts (none for an unknown or missing state)."""
    try:
        return [c.value for c in accepted_commands(State(state))]
    except ValueError:
        return []


def parse_running(text: str) -> list[RunningStep]:
    """The status key 'running' ('cobot:step@start;...') as steps; ValueError naming a malformed entry."""
    steps = []
    for entry in filter(None, text.split(";")):
        head, sep, start = entry.rpartition("@")
        cobot, colon, step = head.partition(":")
        try:
            t = float(start)
        except ValueError:
            t = math.nan
        if not (sep and colon and cobot and step and math.isfinite(t)):
            raise ValueError(f"status key 'running': malformed entry {entry!r} (expected cobot:step@start)")
        steps.append(RunningStep(cobot, step, t))
    return steps


def parse_fault(pairs: Mapping[str, str], message: str = "") -> LiveFault:
    """A fault life-cycle update (the planner's key/values, cobot_cell.core.wire) as a LiveFault; ValueError
    naming a bad key."""
    if not pairs.get("raised") and not pairs.get("time") or not pairs.get("fault_key"):
        raise ValueError("fault update: keys 'fault_key' and 'raised' are required")
    f = decode_fault(pairs, message)
    assert f is not None  # it has a fault_key
    return LiveFault(
        key=f.fault_key,
        id=f.id,
        code=f.code,
        source=f.source,
        message=f.message,
        raised=f.raised,
        acknowledged=f.acknowledged,
        cleared=f.cleared,
    )


def step_stations(
    steps: Iterable[tuple[str, Mapping[str, Any]]], stations: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Which stations each step uses: every parameter value (or list item) that names a station."""
    known = set(stations)
    out: dict[str, tuple[str, ...]] = {}
    for name, params in steps:
        used: list[str] = []
        for value in params.values():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, str) and v in known and v not in used:
                    used.append(v)
        out[name] = tuple(used)
    return out


def cobot_busy(report: CycleReport) -> dict[str, float]:
    """Seconds each cobot worked on one part (sum of its steps)."""
    busy: dict[str, float] = {}
    for s in report.steps:
        busy[s.cobot] = busy.get(s.cobot, 0.0) + s.duration
    return busy


def bottleneck_bound(reports: Sequence[CycleReport]) -> float | None:
    """The cycle-time floor the busiest cobot sets: the largest per-cobot median of work per done part."""
    per_cobot: dict[str, list[float]] = {}
    for r in reports:
        if r.status == "done":
            for cobot, t in cobot_busy(r).items():
                per_cobot.setdefault(cobot, []).append(t)
    if not per_cobot:
        return None
    return max(statistics.median(v) for v in per_cobot.values())


def gantt_bars(
    reports: Iterable[CycleReport],
    current: Sequence[tuple[str, str, float, float | None]],
    stations: Mapping[str, Sequence[str]],
    step_colours: dict[str, int],
    now: float,
    part: int | None = None,
) -> list[svg.Bar]:
    """Gantt bars: each step on its cobot's lane, each cobot's idle time within a part as a wait, and each station
    held by a part (from the first to the last step that uses it). `current`: (step, cobot, start, end or None if
    still running) of the part under way, which has no cycle report yet; running steps end at `now`."""
    bars: list[svg.Bar] = []

    def colour(step: str) -> int:
        return step_colours.setdefault(step, len(step_colours))

    def part_bars(label: str, start: float, steps: list[tuple[str, str, float, float, bool]]) -> None:
        free: dict[str, float] = {}
        held: dict[str, list[float]] = {}
        for step, cobot, a, b, live in sorted(steps, key=lambda s: s[2]):
            ready = free.get(cobot, start)
            if a - ready > 1e-6:
                bars.append(
                    svg.Bar(cobot, ready, a, "wait", "wait", title=f"{cobot} waits {a - ready:.1f} s (part {label})")
                )
            bars.append(
                svg.Bar(
                    cobot,
                    a,
                    b,
                    step,
                    "running" if live else "step",
                    colour(step),
                    f"part {label} {step} on {cobot}: {a:.1f}-{b:.1f} s{' (running)' if live else ''}",
                )
            )
            free[cobot] = max(free.get(cobot, start), b)
            for st in stations.get(step, ()):
                span = held.setdefault(st, [a, b])
                span[0], span[1] = min(span[0], a), max(span[1], b)
        for st, (a, b) in held.items():
            bars.append(svg.Bar(st, a, b, f"part {label}", "station", 7, f"{st} holds part {label}: {a:.1f}-{b:.1f} s"))

    for r in reports:
        part_bars(str(r.part), r.start, [(s.step, s.cobot, s.start, s.end, False) for s in r.steps])
    if current:
        part_bars(
            "?" if part is None else str(part),
            min(c[2] for c in current),
            [(step, cobot, a, max(now, a) if b is None else b, b is None) for step, cobot, a, b in current],
        )
    return bars


def _finite(v: float) -> float | None:
    return v if isinstance(v, float) and math.isfinite(v) else None


class LiveModel:
    """Everything the live page shows, kept up to date from the cell's messages; `snapshot()` renders it."""

    def __init__(
        self,
        cell: str,
        cobots: Sequence[str],
        stations: Mapping[str, Sequence[str]] | None = None,
        window: float = 300.0,
        ideal_cycle_time: float | None = None,
        max_reports: int = 500,
        trend_parts: int = 50,
    ) -> None:
        """`stations`: step name -> stations it uses; `window`: seconds of the Gantt; `ideal_cycle_time`: the OEE
        performance reference (default: the bottleneck bound of the parts seen)."""
        if window <= 0:
            raise ValueError(f"window must be > 0 s, got {window}")
        if ideal_cycle_time is not None and not ideal_cycle_time > 0:
            raise ValueError(f"ideal_cycle_time must be > 0 s, got {ideal_cycle_time}")
        self.cell = cell
        self.cobots = list(cobots)
        self.stations = {k: tuple(v) for k, v in (stations or {}).items()}
        self.station_lanes = list(dict.fromkeys(s for v in self.stations.values() for s in v))
        self.window = window
        self.ideal_cycle_time = ideal_cycle_time
        self.trend_parts = trend_parts
        self._lock = threading.Lock()
        self.version = 0
        self.state: str | None = None
        self.status: dict[str, str] = {}
        self.running: list[RunningStep] = []
        self._current: dict[str, tuple[str, str, float, float | None]] = {}  # steps of the part under way
        self._current_key: tuple[str, str] = ("", "")
        self.reports: deque[CycleReport] = deque(maxlen=max_reports)
        self._seen: set[tuple[str, int]] = set()
        self.faults: dict[str, LiveFault] = {}
        self.kpis: dict[str, str] = {}
        self._colours: dict[str, int] = {}
        self.latest_time = 0.0
        self.authority = ""
        self.on_change: Callable[[], None] | None = None  # called (under the lock) after every change

    # ------------------------------------------------------------------ inputs
    def _bump(self, t: float | None = None) -> None:
        self.version += 1
        if t is not None and math.isfinite(t):
            self.latest_time = max(self.latest_time, t)
        if self.on_change is not None:
            self.on_change()

    def set_authority(self, holder: str) -> None:
        """Which source commands the cell (local or remote)."""
        with self._lock:
            self.authority = holder
            self._bump()

    def set_state(self, state: str) -> None:
        """The cell's PackML state changed."""
        with self._lock:
            self.state = state
            self._bump()

    def set_status(self, pairs: Mapping[str, str], now: float | None = None) -> None:
        """The planner's status key/values at cell time `now`; a malformed 'running' key is logged and the steps
        left as they were. A step that is no longer running ended at `now` (its cycle report has the exact time)."""
        with self._lock:
            self.status = dict(pairs)
            if self.state is None and pairs.get("state"):
                self.state = pairs["state"]  # the state topic has the last word: the two topics are not ordered
            try:
                running = parse_running(pairs.get("running", ""))
            except ValueError as exc:
                logger.warning("%s", exc)
                running = self.running
            key = (pairs.get("run_id", ""), pairs.get("part", ""))
            if key != self._current_key:
                self._current, self._current_key = {}, key
            ended = max([now or 0.0, self.latest_time] + [x.start for x in running])
            names = {x.step for x in running}
            for step, (name, cobot, start, end) in list(self._current.items()):
                if end is None and step not in names:
                    self._current[step] = (name, cobot, start, max(ended, start))
            for x in running:
                self._current[x.step] = (x.step, x.cobot, x.start, None)
            self.running = running
            self._bump(max((x.start for x in running), default=None))

    def add_report(self, report: CycleReport) -> bool:
        """A finished part; False if it was already seen (a late-joining subscriber gets the recent ones again)."""
        key = (report.run_id, report.part)
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= 4 * (self.reports.maxlen or 1):
                self._seen = {(r.run_id, r.part) for r in self.reports}
            self._seen.add(key)
            self.reports.append(report)
            self._bump(report.end)
            return True

    def set_fault(self, fault: LiveFault) -> None:
        """A fault was raised, acknowledged or cleared."""
        with self._lock:
            self.faults[fault.key] = fault
            if len(self.faults) > 200:  # keep the active ones and the newest cleared ones
                for key in [k for k, f in self.faults.items() if not f.active][: len(self.faults) - 200]:
                    del self.faults[key]
            self._bump(fault.raised)

    def set_kpis(self, pairs: Mapping[str, str]) -> None:
        """The supervisor's KPIs for this cell."""
        with self._lock:
            self.kpis = dict(pairs)
            self._bump()

    # ------------------------------------------------------------------ output
    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """What the live page shows at cell time `now` (default: the latest time seen), charts as SVG."""
        with self._lock:
            return self._snapshot(now)

    def _snapshot(self, now: float | None) -> dict[str, Any]:
        now = max(now or 0.0, self.latest_time)
        s = self.status
        state = self.state
        bg, fg = PACKML_COLOURS.get(state or "", UNKNOWN_COLOURS)
        reports = list(self.reports)
        active = sorted((f for f in self.faults.values() if f.active), key=lambda f: f.raised)
        bound = bottleneck_bound(reports[-self.trend_parts :])
        k = self._oee(reports, bound)
        t0 = now - self.window
        recent = [r for r in reports if r.end >= t0]
        part = _int(s.get("part"))
        current = (
            [] if any((r.run_id, r.part) == (s.get("run_id"), part) for r in recent) else list(self._current.values())
        )
        bars = gantt_bars(recent, current, self.stations, self._colours, now, part)
        lanes = self.cobots + self.station_lanes
        # until the window fills, the chart spans the data shown (at least 10 s)
        t0 = min(now - 10.0, max(t0, min((b.start for b in bars), default=t0)))
        trend_pts = [(str(r.part), r.cycle_time, r.status) for r in reports[-self.trend_parts :]]
        return {
            "cell": self.cell,
            "version": self.version,
            "time": now,
            "state": state or "unknown",
            "colour": {"background": bg, "text": fg},
            "commands": allowed_commands(state),
            "job": s.get("job", ""),
            "parts_done": _int(s.get("parts_done")) or 0,
            "parts_target": _int(s.get("parts")) or 0,
            "part": part,
            "scrap": _int(s.get("scrap")) or 0,
            "run_id": s.get("run_id", ""),
            "last_cycle_time": _float(s.get("last_cycle_time")),
            "fault": s.get("fault", ""),
            "resume": s.get("resume", ""),
            "starved": s.get("starved") == "true",  # waiting for parts at the infeed
            "blocked": s.get("blocked") == "true",  # waiting for the outfeed: every pallet full
            "authority": self.authority,
            "steps": [
                {
                    "cobot": c,
                    "step": next((x.step for x in self.running if x.cobot == c), ""),
                    "since": next((x.start for x in self.running if x.cobot == c), None),
                }
                for c in self.cobots
            ],
            "faults": [
                {
                    "key": f.key,
                    "id": f.id,
                    "code": f.code,
                    "source": f.source,
                    "message": f.message,
                    "raised": f.raised,
                    "acknowledged": f.acknowledged is not None,
                }
                for f in active
            ],
            "bottleneck_bound": bound,
            "oee": k,
            "charts": {
                "gantt": svg.gantt(lanes, bars, t0, now, title=f"Last {self.window / 60:g} min"),
                "trend": svg.trend(trend_pts, bound),
                "oee": svg.factors(
                    [
                        ("OEE", k["oee"]),
                        ("availability", k["availability"]),
                        ("performance", k["performance"]),
                        ("quality", k["quality"]),
                    ]
                ),
            },
        }

    def _oee(self, reports: Sequence[CycleReport], bound: float | None) -> dict[str, float | None]:
        faults = [
            FaultRecord(
                id=f.id,
                cell=self.cell,
                time=f.raised,
                level="ERROR",
                source=f.source,
                code=f.code,
                message=f.message,
                fault_key=f.key,
                acknowledged=f.acknowledged,
                cleared=f.cleared if f.cleared is None or f.cleared >= f.raised else f.raised,
            )
            for f in self.faults.values()
        ]
        if reports:
            t0 = min(r.start for r in reports)
            faults = [f for f in faults if (f.cleared if f.cleared is not None else math.inf) >= t0]
        ideal = self.ideal_cycle_time or bound
        k = kpis(reports, faults, ideal_cycle_time=ideal)
        return {key: _finite(k[key]) for key in ("oee", "availability", "performance", "quality")}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        v = float(text) if text else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None
