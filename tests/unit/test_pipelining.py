"""Parts in flight on the real cells (config/three_cobot_cell.yaml, config/dual_station_cell.yaml): the controller
with the skills planner, FakeCobots and a virtual clock; the estimate; faults, scrap and a crash with two parts in
flight; what `cobot-cell validate` says about resources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rig import SkillsRig, WatchedJournal, crash

from cobot_cell.core.config import CellFileError
from cobot_cell.core.faults import Code
from cobot_cell.core.journal import Journal
from cobot_cell.core.packml import State
from cobot_cell.core.ports import VirtualClock
from cobot_cell.skills import load_cell
from cobot_cell.skills.schedule import estimate, gantt, simulate
from cobot_cell.skills.zones import CellZones

REPO = Path(__file__).resolve().parents[2]
THREE = load_cell(REPO / "config" / "three_cobot_cell.yaml")
DUAL = load_cell(REPO / "config" / "dual_station_cell.yaml")
DEMO = load_cell(REPO / "config" / "demo_cell.yaml")


def three(resource_timeout: float | None = None):
    """The three-cobot cell where a failed weld scraps the part at once."""
    from cobot_cell.core.config import parse_cell

    text = (
        (REPO / "config" / "three_cobot_cell.yaml")
        .read_text()
        .replace("        cobot: welder\n", "        cobot: welder\n        fault_policy: {retries: 0, then: scrap}\n")
    )
    if resource_timeout is not None:
        text = text.replace(
            "  max_parts_in_flight: 3", f"  max_parts_in_flight: 3\n  resource_timeout: {resource_timeout}"
        )
    return parse_cell(text)[0]


def rig(cfg, parts: int, **kwargs) -> SkillsRig:
    return SkillsRig(cfg, parts=parts, zones=CellZones(cfg) if cfg.zones else None, **kwargs)


def holds_of(tl, resource: str) -> list[tuple[float, float, str]]:
    return sorted((a, b, who) for r, who, a, b in tl.holds if r == resource)


# ---------------------------------------------------------------------------------------------- the schedule


def test_the_three_cobot_cell_overlaps_parts_and_keeps_the_fixture_to_one_part() -> None:
    tl = simulate(THREE, "frame", 10)
    reports = sorted(tl.reports, key=lambda r: r.part)
    assert [r.part for r in reports] == list(range(1, 11)) and {r.status for r in reports} == {"done"}
    # part n+1's load starts while part n is still being made
    first = {r.part: min(s.start for s in r.steps) for r in reports}
    assert any(first[r.part + 1] < r.end for r in reports[:-1])
    # one part on the fixture at a time, one arm in the fixture zone at a time
    for resource in ("fixture", "fixture_zone"):
        spans = holds_of(tl, resource)
        assert all(b0 >= a1 - 1e-9 for (_, a1, _), (b0, _, _) in zip(spans, spans[1:])), resource
    # the feeder holds part n+1 and waits for the fixture, recorded as a wait, not as motion
    waits = [w for w in tl.waits if w.cobot == "feeder" and w.resource in ("fixture", "fixture_zone")]
    assert waits and all(w.end > w.start for w in waits)
    load = {r.part: next(s for s in r.steps if s.step == "load") for r in reports}
    assert any(load[w.part].wait > 0 for w in waits)


def test_the_estimate_finds_the_bottleneck_and_the_gain_over_one_part_at_a_time(tmp_path: Path) -> None:
    pipelined = estimate(THREE, "frame")
    serial = estimate(THREE, "frame", max_parts_in_flight=1)
    assert pipelined.max_parts_in_flight == 3 and serial.max_parts_in_flight == 1
    assert pipelined.takt < 0.9 * serial.takt
    # the bottleneck is busy all the time: its busy time per part is the takt
    assert pipelined.takt == pytest.approx(pipelined.bound, rel=0.01)
    assert pipelined.kinds[pipelined.bottleneck] in ("station", "zone")
    assert pipelined.busy["welder"] < pipelined.bound
    dual = estimate(DUAL, "bracket")
    assert dual.bottleneck == "welder" and dual.takt == pytest.approx(dual.bound, rel=0.01)
    assert dual.takt < 0.7 * estimate(DUAL, "bracket", max_parts_in_flight=1).takt
    png = gantt(dual, tmp_path / "dual.png", "dual")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_single_gripper_that_unloads_before_it_loads_makes_the_fixture_wait_for_its_trip() -> None:
    est = estimate(DEMO, "bracket", max_parts_in_flight=2)
    one = estimate(DEMO, "bracket", max_parts_in_flight=1)
    assert est.takt == pytest.approx(one.takt, abs=1e-6)  # nothing to overlap: the picker does both
    assert est.bottleneck == "fixture" and est.bound == pytest.approx(est.takt, rel=0.01)
    assert est.busy["picker"] < 0.6 * est.bound  # the picker alone would allow more


def test_the_dual_station_cell_uses_both_fixtures_and_weld_progress_stays_with_each_part() -> None:
    tl = simulate(DUAL, "bracket", 8)
    used = {r: [who for _, _, who in holds_of(tl, r)] for r in ("fixture_a", "fixture_b")}
    assert used["fixture_a"] and used["fixture_b"]
    assert sorted(int(w.split()[1]) for ws in used.values() for w in ws) == list(range(1, 9))
    # two parts in their fixtures at once
    a, b = holds_of(tl, "fixture_a"), holds_of(tl, "fixture_b")
    assert any(a0 < b1 and b0 < a1 for a0, a1, _ in a for b0, b1, _ in b)


def test_cycle_reports_carry_the_takt_and_the_bound() -> None:
    r = rig(THREE, 4)
    r.cell.bound = 43.0
    r.start()
    r.run_until(lambda: r.cell.state == State.COMPLETE, limit=40_000)
    reports = sorted(r.cycles, key=lambda c: c.part)
    assert reports[0].takt is None and all(c.bound == 43.0 for c in reports)
    for prev, cur in zip(reports, reports[1:]):
        assert cur.takt == pytest.approx(cur.end - prev.end, abs=1e-9)
    assert r.cell.status().parts == ()


# ---------------------------------------------------------------------------------------------- faults


def test_a_scrapped_part_keeps_its_fixture_place_until_the_operator_confirms_and_the_others_go_on() -> None:
    r = rig(three(), 4, process_off_timeout=float("inf"))
    r.removes_scrap = False
    r.ports["welder"].fail_io.add("torch/arc")  # the welder's arc fails: part 1 is scrapped
    r.start()
    r.run_until(lambda: r.cell.scrapped == 1, limit=20_000)
    r.ports["welder"].fail_io.clear()
    fault = r.cell.fault
    assert fault is not None and fault.code == Code.SCRAP_TO_REMOVE and "part 1 is still on fixture" in fault.message
    assert r.cell.state == State.EXECUTE
    # the feeder brings part 2 and waits: the fixture is still taken
    r.run_until(lambda: any(c == "feeder" for c, _, _, _ in r.cell.status().waiting), limit=20_000)
    assert r.cell._seq.occupancy["fixture"] == [1]
    assert r.cell.parts_removed() == "removed part 1 from fixture"
    assert r.cell.fault is None
    r.run_until(lambda: r.cell.state == State.COMPLETE, limit=60_000)
    assert [(c.part, c.status) for c in sorted(r.cycles, key=lambda c: c.part)] == [
        (1, "scrap"),
        (2, "done"),
        (3, "done"),
        (4, "done"),
    ]
    with pytest.raises(ValueError, match="no scrapped part is waiting to be removed"):
        r.cell.parts_removed()


def test_a_wait_longer_than_the_resource_timeout_holds_the_cell_naming_the_resource_and_its_holder() -> None:
    r = rig(three(resource_timeout=60), 4, process_off_timeout=float("inf"))
    r.removes_scrap = False
    r.ports["welder"].fail_io.add("torch/arc")
    r.start()
    r.run_until(lambda: r.cell.scrapped == 1, limit=20_000)
    r.ports["welder"].fail_io.clear()
    r.run_until(lambda: r.cell.state != State.EXECUTE, limit=40_000)
    assert r.cell.state == State.HELD
    fault = next(f for f in r.cell.faults.active if f.code == Code.RESOURCE_TIMEOUT)
    assert fault.cobot == "feeder" and "fixture" in fault.message
    assert "held by part 1 (scrapped, to be removed)" in fault.message


# ---------------------------------------------------------------------------------------------- crash


def test_a_planner_killed_with_two_parts_in_flight_resumes_both(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    old = rig(THREE, 5, journal=WatchedJournal(path))
    old.start()
    # until the feeder waits with part n+1 while part n is in the fixture: two parts in flight, one in a gripper
    old.run_until(lambda: len(old.cell.status().parts) >= 2 and old.cell.status().waiting, limit=40_000)
    in_flight = old.cell.status().parts
    on_fixture = list(old.cell._seq.occupancy["fixture"])
    done_before = {c.part for c in old.cycles}
    positions = crash(old)
    i = Journal(path).interrupted()
    assert sorted(i.in_progress) == sorted(in_flight)
    assert [p for p in i.in_progress if i.station_of(p) == "fixture"] == on_fixture
    new = rig(THREE, 5, journal=WatchedJournal(path), clock=VirtualClock(old.clock.now() + 30.0), positions=positions)
    for name, port in new.ports.items():  # a gripper holding a part still holds it
        port.io.update(old.ports[name].io)
    assert new.cell.command("reset") == State.IDLE
    if new.cell._deviations(for_start=True):
        new.cell.reapproach()
        new.run_until(lambda: not new.cell.reapproaching, limit=4000)
    assert new.cell.command("start") == State.EXECUTE
    assert sorted(new.cell.status().parts) == sorted(in_flight)
    assert new.cell._seq.occupancy["fixture"] == on_fixture
    new.run_until(lambda: new.cell.state == State.COMPLETE, limit=60_000)
    ledger = Journal(path).ledger()
    assert sorted(p for _, p, _ in ledger) == [1, 2, 3, 4, 5] and {s for _, _, s in ledger} == {"done"}
    # each part made once: the ones finished before the crash are not made again
    assert not done_before & {c.part for c in new.cycles}
    assert sorted(done_before | {c.part for c in new.cycles}) == [1, 2, 3, 4, 5]
    # the pallet count is exact: five places filled, the next is the sixth
    assert new.skill_state["pallet.pallet.next"] == 5


# ---------------------------------------------------------------------------------------------- validate

CASES = {
    "zone without volume": (
        "three_cobot_cell.yaml",
        "fixture_zone: {stations: [fixture], margin: 0.2, height: 0.45}",
        "fixture_zone: {box: {min: [0, 0, 0], max: [0.2, 0.0, 0.3]}}",
        "zones.fixture_zone.box",
        "the box has no volume: min must be below max in y",
    ),
    "capacity below 1": (
        "three_cobot_cell.yaml",
        "    capacity: 1\n",
        "    capacity: 0\n",
        "stations.fixture.capacity",
        "input should be greater than 0, got 0",
    ),
    "group mixing kinds": (
        "dual_station_cell.yaml",
        "to: [fixture_a, fixture_b]}",
        "to: [fixture_a, pallet]}",
        "jobs.bracket.steps[0].params.to",
        "a station group mixes kinds: fixture_a is a fixture, pallet is a pallet",
    ),
    "place on an infeed": (
        "three_cobot_cell.yaml",
        "params: {from: infeed, to: fixture}",
        "params: {from: fixture, to: infeed}",
        "jobs.frame.steps[0].params.to",
        "an infeed only supplies parts",
    ),
    "home inside a zone": (
        "three_cobot_cell.yaml",
        "fixture_zone: {stations: [fixture], margin: 0.2, height: 0.45}",
        "fixture_zone: {box: {min: [-1.2, -0.4, 0.0], max: [-0.8, 0.2, 0.6]}}",
        "cobots.feeder.home",
        "the home pose is inside zone(s) fixture_zone",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_names_the_yaml_path_of_a_bad_resource(case: str, tmp_path: Path) -> None:
    name, old, new, path, message = CASES[case]
    text = (REPO / "config" / name).read_text()
    assert old in text
    bad = tmp_path / name
    bad.write_text(text.replace(old, new))
    with pytest.raises(CellFileError) as err:
        load_cell(bad)
    assert any(i.path == path and message in i.message for i in err.value.issues), str(err.value)


def test_validate_rejects_fixtures_that_could_deadlock_and_one_never_emptied(tmp_path: Path) -> None:
    text = (REPO / "config" / "three_cobot_cell.yaml").read_text()
    # the stacker also brings parts back to a second fixture the feeder empties: feeder and stacker could each
    # hold a part waiting for a place only the other frees
    text = text.replace(
        """  pallet:
    kind: pallet""",
        """  buffer:
    kind: fixture
    pose: {xyz: [-0.2, -0.3, 0.10], rpy: [0.0, 0.0, 0.0]}
  pallet:
    kind: pallet""",
    )
    from cobot_cell.core.config import parse_cell
    from cobot_cell.skills.resources import check_places

    cfg = parse_cell(
        text.replace("params: {from: fixture, to: pallet}", "params: {from: fixture, to: buffer}").replace(
            "skill: palletise\n        cobot: stacker", "skill: pick\n        cobot: stacker"
        )
    )[0]
    issues: list[tuple] = []
    check_places(cfg, "frame", cfg.jobs["frame"], lambda loc, msg: issues.append((loc, msg)))
    assert issues == [
        (
            ("jobs", "frame", "steps", 2, "params", "to"),
            "no step of job 'frame' takes parts off fixture 'buffer': it would be full after 1 part(s) and stay full",
        )
    ]
    job = cfg.jobs["frame"]
    steps = [
        dict(name=s.name, skill=s.skill, cobot=s.cobot, after=list(s.after), params=dict(s.params)) for s in job.steps
    ]
    steps.append(
        dict(name="back", skill="pick", cobot="feeder", after=["stack"], params={"from": "buffer", "to": "fixture"})
    )
    steps.append(
        dict(name="out", skill="palletise", cobot="stacker", after=["back"], params={"from": "fixture", "to": "pallet"})
    )
    import yaml

    doc = yaml.safe_load(text)
    doc["jobs"]["frame"]["steps"] = steps
    cfg = parse_cell(yaml.safe_dump(doc))[0]
    issues = []
    check_places(cfg, "frame", cfg.jobs["frame"], lambda loc, msg: issues.append((loc, msg)))
    assert [loc for loc, _ in issues] == [("jobs", "frame", "steps")]
    assert issues[0][1].startswith("these fixtures could deadlock: ")
    assert "feeder waits for a place on fixture, which needs stacker (out) to come free" in issues[0][1]
    assert "stacker waits for a place on buffer, which needs feeder (back) to come free" in issues[0][1]


def test_the_cells_in_config_validate_and_their_homes_are_outside_every_zone() -> None:
    for cfg in (THREE, DUAL):
        zones = CellZones(cfg)
        assert all(not zones.at(n, np.asarray(c.home)) for n, c in cfg.cobots.items())


# ---------------------------------------------------------------------------------------------- full pallets

TWO_PALLETS = (
    (REPO / "config" / "demo_cell.yaml")
    .read_text()
    .replace(
        """jobs:
""",
        """  pallet_b:
    kind: pallet
    pose: {xyz: [-0.50, 0.0, 0.0], rpy: [0.0, 0.0, 1.5707963]}
    pallet:
      pallet: {length: 0.40, width: 0.30}
      box: {length: 0.20, width: 0.15, height: 0.06}
      pattern: column
      max_height: 0.12

jobs:
""",
    )
    .replace("params: {from: fixture, to: pallet}", "params: {from: fixture, to: [pallet, pallet_b]}")
)


def test_a_full_pallet_holds_the_cell_until_the_operator_confirms_the_change(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    r = rig(DEMO, 10, journal=WatchedJournal(path))
    r.start()
    r.run_until(lambda: r.cell.state != State.EXECUTE, limit=80_000)
    # eight places filled: the ninth part waits for the pallet, the cell holds saying why
    assert r.cell.state == State.HELD and r.cell.parts_done == 8
    fault = r.cell.fault
    assert fault is not None and fault.code == Code.PALLET_FULL and fault.severity == "WARN"
    assert "pallet 'pallet' is full (8 places)" in fault.message and "pallet_changed" in fault.message
    assert r.cell.status().blocked
    assert r.cell.skill_state["pallet.pallet.next"] == 8
    assert r.cell.pallet_changed() == "pallet pallet changed: place count 0; state Execute"
    assert r.cell.skill_state["pallet.pallet.next"] == 0 and not r.cell.status().blocked
    assert Journal(path).skill_state(r.cell.run_id)["pallet.pallet.next"] == 0  # journalled
    r.run_until(lambda: r.cell.state == State.COMPLETE, limit=40_000)
    assert r.cell.parts_done == 10 and r.cell.skill_state["pallet.pallet.next"] == 2
    with pytest.raises(ValueError, match="no pallet is full: pallet has 2 of 8 places filled"):
        r.cell.pallet_changed()


def test_with_a_second_pallet_the_cell_goes_on_there_and_asks_for_the_full_one_to_be_changed(tmp_path: Path) -> None:
    cfg = load_cell_text(TWO_PALLETS, tmp_path)
    r = rig(cfg, 12)
    r.start()
    r.run_until(lambda: r.cell.parts_done == 10 or r.cell.state != State.EXECUTE, limit=80_000)
    assert r.cell.state == State.EXECUTE  # no hold: parts 9 and 10 went on pallet_b
    assert r.cell.skill_state["pallet.pallet.next"] == 8 and r.cell.skill_state["pallet.pallet_b.next"] == 2
    told = [f for f in r.cell.faults.active if f.code == Code.PALLET_FULL]
    assert [f.message.split(":")[0] for f in told] == ["pallet 'pallet' is full (8 places)"]
    assert r.cell.pallet_changed().startswith("pallet pallet changed")
    r.run_until(lambda: r.cell.state == State.COMPLETE, limit=40_000)
    # the next part goes to the first pallet of the group with a free place again
    assert r.cell.skill_state["pallet.pallet.next"] == 2 and r.cell.skill_state["pallet.pallet_b.next"] == 2


def load_cell_text(text: str, tmp_path: Path):
    path = tmp_path / "cell.yaml"
    path.write_text(text)
    return load_cell(path)
