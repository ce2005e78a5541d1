"""A simulated infeed with a part-present sensor: what the `sim_infeed` node publishes on each sensed infeed.

A part waits on every sensed infeed (cell file `stations.<name>.sensor`) at start. The part is taken when the
gripper of a cobot whose job steps take parts from that infeed closes on a part (its `<io>/state` rises: a grip
that sensed a part; a missed grip takes nothing) with its TCP within `REACH_XY` m of the infeed horizontally and
`REACH_Z` m above it. The next part arrives `interval` s (clock time) later while the infeed is feeding; with
feeding off (upstream stopped) the infeed stays empty once its part is taken, and the cell is starved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..core.dag import routes_of
from ..core.model import CellConfig
from ..core.ports import CobotPort
from ..motion.kinematics import ArmModel, arm_model, fk
from ..motion.transforms import pose_matrix

REACH_XY = 0.15  # m: a gripper closing this close to an infeed (horizontally) takes the part there
REACH_Z = 0.5  # m above the infeed's origin


@dataclass
class Feed:
    """One sensed infeed: where it is, whether a part waits there, and when the next one arrives."""

    station: str
    xyz: np.ndarray
    present: bool = True
    due: float | None = None  # clock time the next part arrives (None: not on its way)
    taken: int = 0  # parts taken off so far


@dataclass
class _Gripper:
    model: ArmModel
    base: np.ndarray
    tcp: np.ndarray
    infeeds: tuple[str, ...]
    q: np.ndarray | None = None
    holding: bool = False


class InfeedSim:
    """The cell's sensed infeeds, fed with parts and emptied by the grippers that pick from them."""

    def __init__(self, cfg: CellConfig, interval: float = 2.0, feeding: bool = True):
        if not interval >= 0.0:
            raise ValueError(f"interval must be >= 0 s, got {interval!r}")
        self.interval = interval
        self.feeding = feeding
        self.feeds = {n: Feed(n, np.array(cfg.stations[n].pose.xyz, dtype=float)) for n in cfg.infeed_sensors}
        takers: dict[str, set[str]] = {}
        for job in cfg.jobs.values():
            for step, route in routes_of(job).items():
                for station in route.source:
                    if station in self.feeds:
                        takers.setdefault(job.step(step).cobot, set()).add(station)
        self.grippers: dict[tuple[str, str], _Gripper] = {}
        for cobot, stations in takers.items():
            c = cfg.cobots[cobot]
            for tool in c.tools.values():
                if tool.kind == "gripper":
                    self.grippers[(cobot, tool.io)] = _Gripper(
                        arm_model(c.model),
                        pose_matrix(c.base.xyz, c.base.rpy),
                        np.array([*tool.tcp, 1.0]),
                        tuple(sorted(stations)),
                    )

    def joints(self, cobot: str, q: np.ndarray) -> None:
        """A cobot's joint positions now."""
        for (c, _), g in self.grippers.items():
            if c == cobot:
                g.q = np.asarray(q, dtype=float)

    def gripper(self, cobot: str, io: str, holding: bool, t: float) -> list[str]:
        """A gripper's sensed state (part held) at clock time `t`; the infeeds whose part it took."""
        g = self.grippers.get((cobot, io))
        if g is None:
            return []
        rising = holding and not g.holding
        g.holding = holding
        if not rising or g.q is None:
            return []
        tcp = (g.base @ fk(g.model, g.q) @ g.tcp)[:3]
        taken = []
        for name in g.infeeds:
            feed = self.feeds[name]
            d = tcp - feed.xyz
            if feed.present and float(np.hypot(d[0], d[1])) <= REACH_XY and -0.05 <= d[2] <= REACH_Z:
                feed.present = False
                feed.taken += 1
                feed.due = t + self.interval if self.feeding else None
                taken.append(name)
        return taken

    def observe(self, ports: Mapping[str, CobotPort], t: float) -> list[tuple[str, bool]]:
        """Read the picking cobots' joints and grippers from their ports at clock time `t`, then advance to it: the
        sensor edges in order, as the sensor topic carries them (a part taken: False, a part arrived: True)."""
        edges = []
        for cobot, io in self.grippers:
            port = ports[cobot]
            q = port.joint_positions()
            if q is not None:
                self.joints(cobot, q)
            edges += [(name, False) for name in self.gripper(cobot, io, bool(port.sensed(io)), t)]
        return edges + [(name, True) for name in self.tick(t)]

    def set_feeding(self, on: bool, t: float) -> None:
        """Upstream starts (True) or stops (False) feeding parts; an empty infeed gets its next part `interval` s
        after feeding starts again."""
        self.feeding = on
        for feed in self.feeds.values():
            if not on:
                feed.due = None
            elif not feed.present and feed.due is None:
                feed.due = t + self.interval

    def tick(self, t: float) -> list[str]:
        """Advance to clock time `t`; the infeeds a new part arrived on."""
        arrived = []
        for feed in self.feeds.values():
            if not feed.present and feed.due is not None and t >= feed.due and self.feeding:
                feed.present = True
                feed.due = None
                arrived.append(feed.station)
        return arrived
