"""Sensed infeeds: a part starts only when its infeed shows a part that no earlier part has claimed, the cell is
starved (EquipmentStarved) while an infeed it needs is empty, and the simulated infeed (skills.infeed) feeds parts
and sees them taken, closed loop with the controller on the virtual clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rig import SkillsRig, WatchedJournal, crash

from cobot_cell.core.config import CellFileError, parse_cell
from cobot_cell.core.packml import State
from cobot_cell.core.ports import VirtualClock
from cobot_cell.core.wire import decode_status, encode_status
from cobot_cell.plant.packml import CellTracker
from cobot_cell.skills.infeed import InfeedSim
from cobot_cell.skills.zones import CellZones

REPO = Path(__file__).resolve().parents[2]
THREE_TEXT = (REPO / "config" / "three_cobot_cell.yaml").read_text()
SENSOR = "    kind: infeed\n    sensor: infeed/part_present\n"
SENSED = parse_cell(THREE_TEXT.replace("    kind: infeed\n", SENSOR))[0]


class Line:
    """The controller of the three-cobot cell with a sensed infeed, fed by the simulated infeed: after every
    update the infeed sees the arms and grippers, and the controller sees the sensor."""

    def __init__(
        self,
        parts: int = 1,
        interval: float = 5.0,
        sense: bool = True,
        rig: SkillsRig | None = None,
        infeed: InfeedSim | None = None,
        **kwargs,
    ):
        """A new rig and infeed, or the given ones (a planner restarted beside the infeed that went on)."""
        self.rig = rig or SkillsRig(SENSED, parts=parts, zones=CellZones(SENSED), **kwargs)
        self.cell = self.rig.cell
        self.infeed = infeed or InfeedSim(SENSED, interval)
        self.sense = sense  # the sensor is wired: the controller hears it
        self.starved_at: list[float] = []
        self.started: list[tuple[float, int, bool]] = []  # (time, part, part on the infeed then)
        self._sense()

    def _sense(self) -> None:
        """The sensor's edges in order, as its topic carries them: a part taken, then one arriving."""
        for name, present in self.infeed.observe(self.rig.ports, self.rig.clock.now()):
            self._heard(name, present)
        for name, feed in self.infeed.feeds.items():
            if self.cell.infeeds[name] is None:
                self._heard(name, feed.present)

    def _heard(self, name: str, present: bool) -> None:
        if self.sense:
            self.cell.infeed_sensed(name, present)

    def start(self) -> None:
        present = self.infeed.feeds["infeed"].present
        self.rig.start()
        self.started += [(self.rig.clock.now(), part, present) for part in self.cell.status().parts]

    def step(self) -> None:
        before = set(self.cell.status().parts)
        present = self.infeed.feeds["infeed"].present
        self.rig.step()
        self._sense()
        st = self.cell.status()
        for part in sorted(set(st.parts) - before):
            self.started.append((self.rig.clock.now(), part, present))
        if st.starved:
            self.starved_at.append(self.rig.clock.now())

    def run_until(self, cond, limit: int = 40_000) -> None:
        for _ in range(limit):
            if cond():
                return
            self.step()
        raise AssertionError(f"condition not met within {limit} updates; {self.cell.status()}")


def test_a_sensor_belongs_to_an_infeed_and_is_a_relative_topic_name() -> None:
    text = THREE_TEXT.replace("    kind: fixture\n", "    kind: fixture\n    sensor: fixture/part_present\n", 1)
    with pytest.raises(CellFileError) as err:
        parse_cell(text)
    (issue,) = err.value.issues
    assert issue.path == "stations.fixture.sensor"
    assert issue.message == "only an infeed has a part-present sensor; this station is a fixture"
    assert text.splitlines()[issue.line - 1].strip() == "sensor: fixture/part_present"
    with pytest.raises(CellFileError, match=r"stations.infeed.sensor.*expected a relative ROS name"):
        parse_cell(THREE_TEXT.replace("    kind: infeed\n", "    kind: infeed\n    sensor: /abs/topic\n"))
    assert SENSED.infeed_sensors == {"infeed": "infeed/part_present"}
    assert parse_cell(THREE_TEXT)[0].infeed_sensors == {}


def test_an_empty_infeed_starves_the_cell_and_a_part_arriving_starts_one_part() -> None:
    line = Line(parts=3, sense=False)
    line.start()
    for _ in range(50):
        line.step()
    st = line.cell.status()
    # nothing heard from the sensor: no part starts, the cell says it is starved (and so does the wire)
    assert st.state == State.EXECUTE and st.parts == () and st.starved
    tracker = CellTracker("three", jobs=("frame",))
    tracker.on_status(decode_status(encode_status(st)))
    assert tracker.tags().starved and not tracker.tags().blocked  # OPC UA Status.EquipmentStarved
    line.cell.infeed_sensed("infeed", True)
    line.step()
    st = line.cell.status()
    # one part on the infeed: one part starts, though the cell would take three; a claimed part is not starvation
    assert st.parts == (1,) and not st.starved
    for _ in range(50):
        line.step()
    assert line.cell.status().parts == (1,)
    with pytest.raises(ValueError, match="'fixture' is not an infeed with a sensor: expected one of infeed"):
        line.cell.infeed_sensed("fixture", True)


def test_each_part_starts_on_its_own_part_from_the_infeed_and_the_cell_completes() -> None:
    line = Line(parts=5, interval=5.0)
    line.start()
    line.run_until(lambda: line.cell.state == State.COMPLETE)
    assert sorted(c.part for c in line.rig.cycles) == [1, 2, 3, 4, 5]
    assert {c.status for c in line.rig.cycles} == {"done"}
    assert line.infeed.feeds["infeed"].taken == 5  # five parts taken off: none taken twice, none left behind
    assert [p for _, p, _ in line.started] == [1, 2, 3, 4, 5]
    assert all(present for _, _, present in line.started)  # every part started on a part that was there
    # the next part starts only after the previous one's part was taken and a new one arrived
    loads = sorted(min(s.start for s in c.steps if s.step == "load") for c in line.rig.cycles)
    starts = [t for t, _, _ in line.started]
    assert all(b > a for a, b in zip(loads, starts[1:]))


def test_an_upstream_stop_starves_the_cell_until_parts_come_again() -> None:
    line = Line(parts=4, interval=2.0)
    line.start()
    line.run_until(lambda: line.infeed.feeds["infeed"].taken == 2)
    line.infeed.set_feeding(False, line.rig.clock.now())
    # parts in flight finish; then the cell waits for material, in Execute, saying it is starved
    line.run_until(lambda: line.cell.parts_done == 2 and line.cell.status().parts == ())
    for _ in range(200):
        line.step()
    st = line.cell.status()
    assert st.state == State.EXECUTE and st.starved and st.parts == () and st.fault is None
    stopped_at = line.rig.clock.now()
    line.infeed.set_feeding(True, stopped_at)
    line.run_until(lambda: line.cell.state == State.COMPLETE)
    assert line.cell.parts_done == 4 and line.infeed.feeds["infeed"].taken == 4
    assert not line.cell.status().starved
    assert line.started[2][0] >= stopped_at + 2.0  # part 3 started on the part that arrived after the restart


def test_a_resumed_part_keeps_the_part_waiting_on_the_infeed(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    old = Line(parts=3, journal=WatchedJournal(path))
    old.start()
    old.step()
    assert old.cell.status().parts == (1,) and old.infeed.feeds["infeed"].taken == 0
    positions = crash(old.rig)
    # the planner restarts; the part still waits on the infeed and the sensor says so
    rig = SkillsRig(
        SENSED,
        journal=WatchedJournal(path),
        clock=VirtualClock(old.rig.clock.now() + 30.0),
        positions=positions,
        zones=CellZones(SENSED),
    )
    rig.cell.infeed_sensed("infeed", True)
    assert rig.cell.command("reset") == State.IDLE
    if rig.cell._deviations(for_start=True):  # the arm went on to its move's end: brought back slowly
        rig.cell.reapproach()
        rig.run_until(lambda: not rig.cell.reapproaching, limit=4000)
    assert rig.cell.command("start") == State.EXECUTE
    for _ in range(20):
        rig.step()
    assert rig.cell.status().parts == (1,)  # part 1 owns the part there: no part 2 on it
    assert not rig.cell.status().starved
    new = Line(rig=rig, infeed=old.infeed)
    new.run_until(lambda: rig.cell.state == State.COMPLETE)
    assert rig.cell.parts_done == 3 and new.infeed.feeds["infeed"].taken == 3


def test_the_simulated_infeed_gives_its_part_only_to_a_gripper_closing_at_it() -> None:
    sim = InfeedSim(SENSED, interval=3.0)
    assert set(sim.grippers) == {("feeder", "gripper/grip")}  # the cobot that takes parts from the infeed
    feeder = SENSED.cobots["feeder"]
    sim.joints("feeder", np.asarray(feeder.home))
    assert sim.gripper("feeder", "gripper/grip", True, 1.0) == []  # closing at home: nothing taken
    assert sim.feeds["infeed"].present
    with pytest.raises(ValueError, match="interval must be >= 0 s"):
        InfeedSim(SENSED, interval=-1.0)


def test_the_estimate_of_a_sensed_cell_assumes_parts_are_always_there() -> None:
    from cobot_cell.skills.schedule import estimate

    sensed, plain = estimate(SENSED, "frame"), estimate(parse_cell(THREE_TEXT)[0], "frame")
    assert sensed.takt == pytest.approx(plain.takt, rel=1e-9) and sensed.bound == pytest.approx(plain.bound)
