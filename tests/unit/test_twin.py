"""The physics twin (cobot_cell.twin): model building, servo tracking, grips, dropped parts, collisions, bad input,
the replayed schedule check and the in-process cell run on the twin's clock. Headless: no viewer is created."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from cobot_cell.core.config import CellFileError
from cobot_cell.motion.trajectory import joint_move
from cobot_cell.twin.model import TIMESTEP, TwinError, build_from_file, build_from_text
from cobot_cell.twin.physics import CONTROL_STEPS, GRIP_TOLERANCE, Twin

REPO = Path(__file__).resolve().parents[2]
CELLS = sorted((REPO / "config").glob("*.yaml"))
DEMO = (REPO / "config" / "demo_cell.yaml").read_text(encoding="utf-8")
# The demo cell with the welder's base 0.95 m from the picker's: a stretched picker reaches it.
CLOSE = DEMO.replace("xyz: [1.1, 0.0, 0.0]", "xyz: [0.95, 0.0, 0.0]")
# The demo cell with the weld no longer waiting for the load: both cobots work at the fixture at once.
OVERLAP = DEMO.replace("        after: [load_blank]\n", "")
V, A = np.full(6, 1.0), np.full(6, 2.0)


@functools.cache
def twin_model(text: str = DEMO, name: str = "demo.yaml"):
    """Built once per cell text (building renders the xacro)."""
    return build_from_text(text, name)


@functools.cache
def cell_model(path: Path):
    """A config/ cell's twin, built once (parsed without planning every pallet place: `load_cell` does that)."""
    from cobot_cell.core.config import parse_cell
    from cobot_cell.twin.model import build

    return build(parse_cell(path.read_text(encoding="utf-8"), str(path))[0], path)


def move(twin: Twin, cobot: str, goal, settle: float = 0.2) -> None:
    """Follow a synchronised joint move from where the arm is to `goal`, then `settle` seconds more."""
    q0 = twin.joint_positions(cobot)
    traj = joint_move(q0, np.asarray(goal, dtype=float), V, A)
    assert twin.follow(cobot, traj.times, traj.positions, traj.velocities)
    twin.step_to(twin.t + traj.duration + settle)


def tcp_to(twin: Twin, cobot: str, xyz, settle: float = 0.2) -> None:
    """Move the cobot's gripper TCP straight down onto a cell point (IK of the skills' context)."""
    from cobot_cell.skills.common import DOWN, SkillContext

    ctx = SkillContext(twin.tm.cfg, cobot)
    name, tool = ctx.tool("gripper")
    target = DOWN.copy()
    target[:3, 3] = xyz
    move(twin, cobot, ctx.solve(target, tool, twin.joint_positions(cobot), "test target"), settle)


@pytest.mark.parametrize("cell", CELLS, ids=lambda p: p.stem)
def test_every_cell_in_config_builds_and_holds_still_at_home(cell: Path) -> None:
    tm = cell_model(cell)
    twin = Twin(tm)
    assert set(tm.cobots) == set(tm.cfg.cobots)
    for name, c in tm.cobots.items():
        assert tm.model.nu >= 6 and len(c.actuators) == len(tm.cfg.cobots[name].joints)
        assert np.allclose(twin.joint_positions(name), tm.cfg.cobots[name].home)
    twin.step_to(0.5)  # gravity on, servos holding home
    for name in tm.cobots:
        assert np.max(np.abs(twin.joint_positions(name) - tm.cfg.cobots[name].home)) < 1e-4
    assert twin.events().collisions == []
    infeeds = [s for s, st in tm.cfg.stations.items() if st.kind == "infeed"]
    assert sum(s == "free" for s in twin.part_state) == len(infeeds)  # each infeed presents a part


def test_a_long_move_tracks_the_command_within_two_milliradians() -> None:
    twin = Twin(twin_model())
    twin.keep_errors = True
    home = np.asarray(twin.tm.cfg.cobots["picker"].home)
    goal = home + np.array([2.5, 0.8, -1.2, 1.5, 2.0, 3.0])
    traj = joint_move(home, goal, np.array([1.2, 1.2, 1.5, 2.0, 2.0, 2.0]), np.array([2.5, 2.5, 3.0, 4.0, 4.0, 4.0]))
    assert traj.duration > 2.5
    twin.follow("picker", traj.times, traj.positions, traj.velocities)
    twin.step_to(traj.duration + 0.3)
    errors = np.asarray(twin.errors["picker"])
    steps = int((traj.duration + 0.3) / TIMESTEP + 1e-9)
    assert len(errors) == -(-steps // CONTROL_STEPS)  # one sample per servo update
    assert errors.max() < 0.002
    assert np.max(np.abs(twin.joint_positions("picker") - goal)) < 1e-4
    assert not twin.moving("picker") and twin.events().collisions == []


def test_a_grip_takes_the_part_at_the_tcp_and_the_physics_carries_it() -> None:
    twin = Twin(twin_model())
    part = next(i for i, s in enumerate(twin.part_state) if s == "free")
    start = twin.part_position(part)
    grasp = start + np.array([0.0, 0.0, -twin.tm.part_box[2] / 2 + 0.03])
    tcp_to(twin, "picker", grasp)
    result = twin.set_io("picker", "gripper/grip", True)
    assert (result.held, result.part) == (True, part) and twin.sensed("picker", "gripper/grip")
    tcp_to(twin, "picker", grasp + np.array([0.1, -0.2, 0.15]))
    assert np.linalg.norm(twin.part_position(part) - start - np.array([0.1, -0.2, 0.15])) < 0.003
    assert twin.events().collisions == []


def test_a_grip_on_nothing_or_beside_the_part_is_a_miss() -> None:
    twin = Twin(twin_model())
    result = twin.set_io("picker", "gripper/grip", True)  # at home: nothing there
    assert (result.held, result.reason) == (False, "no part at the TCP")
    assert not twin.sensed("picker", "gripper/grip")
    twin.set_io("picker", "gripper/grip", False)
    part = next(i for i, s in enumerate(twin.part_state) if s == "free")
    beside = twin.part_position(part) + np.array([0.0, twin.tm.part_box[1] / 2 + 0.04, 0.0])
    tcp_to(twin, "picker", beside)
    result = twin.set_io("picker", "gripper/grip", True)
    assert result.held is False and result.reason == (
        f"nearest part 40 mm from the TCP (tolerance {GRIP_TOLERANCE * 1000:.0f} mm)"
    )
    assert not twin.sensed("picker", "gripper/grip") and twin.part_state[part] == "free"


def test_a_part_let_go_mid_carry_drops_to_the_floor_and_is_reported() -> None:
    twin = Twin(twin_model())
    part = next(i for i, s in enumerate(twin.part_state) if s == "free")
    grasp = twin.part_position(part) + np.array([0.0, 0.0, -twin.tm.part_box[2] / 2 + 0.03])
    tcp_to(twin, "picker", grasp)
    assert twin.set_io("picker", "gripper/grip", True).held
    tcp_to(twin, "picker", np.array([-0.35, 0.35, 0.4]))  # over the bare floor, beside the picker
    assert twin.events().dropped == []
    twin.set_io("picker", "gripper/grip", False)
    assert not twin.sensed("picker", "gripper/grip")
    twin.step_to(twin.t + 1.5)
    dropped = twin.events().dropped
    assert [(d.part, d.cobot) for d in dropped] == [(part, "picker")]
    assert dropped[0].position[2] == pytest.approx(twin.tm.part_box[2] / 2, abs=0.005)
    assert sum(s == "free" for s in twin.part_state) == 2  # the infeed was fed a new part


def test_a_collision_names_both_bodies_and_stops_both_cobots_until_cleared() -> None:
    twin = Twin(twin_model(CLOSE, "close.yaml"))
    q0 = twin.joint_positions("picker")
    traj = joint_move(q0, np.array([np.pi, 0.0, 0.0, 0.0, 0.0, 0.0]), V, A)
    twin.follow("picker", traj.times, traj.positions, traj.velocities)
    twin.step_to(traj.duration + 0.5)
    hits = twin.events().collisions
    assert len(hits) == 1
    hit = hits[0]
    assert {hit.body1.split("_")[0], hit.body2.split("_")[0]} == {"picker", "welder"}
    assert hit.cobots == ("picker", "welder") or hit.cobots == ("welder", "picker")
    assert hit.message.startswith(f"collision: {hit.body1} and {hit.body2} (")
    assert 0 < hit.time < traj.duration and set(twin.stopped) == {"picker", "welder"}
    stopped_at = twin.joint_positions("picker")
    assert np.max(np.abs(stopped_at - traj.final)) > 0.1  # it did not go on to the end
    assert not twin.follow("picker", traj.times, traj.positions, traj.velocities)
    twin.clear()
    back = joint_move(stopped_at, q0, V, A)
    assert twin.follow("picker", back.times, back.positions, back.velocities)
    twin.step_to(twin.t + back.duration + 0.2)
    assert np.max(np.abs(twin.joint_positions("picker") - q0)) < 1e-3 and twin.events().collisions == []


# ---------------------------------------------------------------------------------------------- bad input


def test_bases_on_top_of_each_other_are_refused_before_anything_moves() -> None:
    text = DEMO.replace("xyz: [1.1, 0.0, 0.0]", "xyz: [0.05, 0.0, 0.0]")
    with pytest.raises(
        TwinError,
        match=r"^demo: bodies start in collision with every cobot at home: "
        r"picker_\w+ and welder_\w+ \(\d+\.\d mm deep\)",
    ):
        build_from_text(text, "bases.yaml")


def test_a_part_wider_than_the_gripper_opening_is_refused() -> None:
    text = DEMO.replace(
        "gripper: {kind: gripper, io: gripper/grip, tcp: [0.0, 0.0, 0.15], confirm: true}",
        "gripper: {kind: gripper, io: gripper/grip, tcp: [0.0, 0.0, 0.15], confirm: true, "
        "shape: {box: [0.12, 0.06, 0.10]}}",
    )
    with pytest.raises(TwinError) as info:
        build_from_text(text, "narrow.yaml")
    assert str(info.value) == (
        "cobots.picker.tools.gripper: the part (0.2 x 0.15 x 0.06 m) is larger than the "
        "gripper's opening (0.12 m, the width of its shape)"
    )


def test_a_cell_file_is_checked_before_the_twin_is_built(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.replace("skill: weld", "skill: solder"), encoding="utf-8")
    with pytest.raises(CellFileError, match="solder"):
        build_from_file(bad)


def test_an_unknown_arm_model_is_refused_with_its_place() -> None:
    with pytest.raises(CellFileError, match="cobots.welder.model"):
        build_from_text(DEMO.replace("model: ur5e\n    joints: [welder", "model: ur99\n    joints: [welder"))


def test_a_cell_file_xacro_cannot_render_is_refused() -> None:
    from cobot_cell.core.config import parse_cell
    from cobot_cell.twin.model import build

    cfg = parse_cell(DEMO, "demo.yaml")[0]
    with pytest.raises(TwinError, match=r"^/nonexistent/cell.yaml: the cell's URDF cannot be built"):
        build(cfg, "/nonexistent/cell.yaml")


# ---------------------------------------------------------------------------------------------- schedule replay


def test_the_replay_finds_two_cobots_working_at_the_fixture_at_once() -> None:
    from cobot_cell.twin.replay import first_collision, plan_timeline

    tm = twin_model(OVERLAP, "overlap.yaml")
    timeline = plan_timeline(tm.cfg, parts=1)
    assert [m.step for m in timeline.moves["welder"]][:1] == ["weld_seams"]
    assert timeline.moves["welder"][0].t_start == 0.0  # the weld no longer waits for the load
    hit = first_collision(tm, timeline)
    assert hit is not None
    assert {c for c, _, _ in hit.moves} == {"picker", "welder"}
    assert dict((c, (s, p)) for c, s, p in hit.moves) == {"picker": ("load_blank", 1), "welder": ("weld_seams", 1)}
    assert {hit.body1.split("_")[0], hit.body2.split("_")[0]} == {"picker", "welder"}
    assert 0 < hit.time < timeline.end
    assert hit.message.startswith(f"collision at t={hit.time:.3f} s: {hit.body1} and {hit.body2} (")


@pytest.mark.parametrize("cell", ["ur10e_eur_pallet", "ur20_us_pallet"])
def test_the_palletising_cells_replay_clean(cell: str) -> None:
    from cobot_cell.twin.replay import first_collision, plan_timeline

    tm = cell_model(REPO / "config" / f"{cell}.yaml")
    timeline = plan_timeline(tm.cfg, parts=2)
    assert [m.part for m in timeline.moves["palletiser"]] == sorted(m.part for m in timeline.moves["palletiser"])
    assert {m.part for m in timeline.moves["palletiser"]} == {1, 2}
    assert first_collision(tm, timeline) is None


# ---------------------------------------------------------------------------------------------- cell on the twin


def test_the_cell_controller_runs_parts_on_the_twin_close_to_the_estimate() -> None:
    from cobot_cell.core.cell import CellController
    from cobot_cell.core.packml import State
    from cobot_cell.skills import estimate, make_planner
    from cobot_cell.twin.port import TwinClock, TwinPort

    tm = cell_model(REPO / "config" / "ur20_us_pallet.yaml")
    twin = Twin(tm)
    cfg = tm.cfg
    ports = {n: TwinPort(n, twin) for n in cfg.cobots}
    cell = CellController(cfg, ports, make_planner(cfg), TwinClock(twin), parts=2)
    cell.command("reset")
    cell.command("start")
    for _ in range(10_000):
        if cell.state in (State.COMPLETE, State.HELD, State.ABORTED):
            break
        twin.step_to(twin.t + 0.01)
        cell.update()
    assert cell.state == State.COMPLETE, cell.status()
    job = next(iter(cfg.jobs))
    for r in cell.reports:
        planned = sum(e.duration for e in estimate(cfg, job, part=r.part))
        assert r.cycle_time == pytest.approx(planned, rel=0.03)
    stacked = [i for i, s in enumerate(twin.part_state) if s == "free" and twin.part_position(i)[2] < 0.5]
    assert len(stacked) == 2  # both cartons stay where they were put on the pallet
    assert twin.events().collisions == []


def test_two_grippers_with_the_same_io_name_each_carry_their_own_part_through_a_pipelined_run() -> None:
    from cobot_cell.core.cell import CellController
    from cobot_cell.core.packml import State
    from cobot_cell.skills import make_planner, pallet_places
    from cobot_cell.skills.zones import CellZones
    from cobot_cell.twin.port import TwinClock, TwinPort

    tm = cell_model(REPO / "config" / "three_cobot_cell.yaml")  # feeder and stacker: both `gripper/grip`
    for cobot in ("feeder", "stacker"):
        assert tm.body_name(int(tm.model.eq_obj1id[tm.welds[(cobot, "gripper/grip", 0)]])) == f"{cobot}_tool0"
    twin = Twin(tm)
    cfg = tm.cfg
    ports = {n: TwinPort(n, twin) for n in cfg.cobots}
    cell = CellController(
        cfg, ports, make_planner(cfg), TwinClock(twin), parts=2, zones=CellZones(cfg), pallets=pallet_places(cfg)
    )
    cell.command("reset")
    cell.command("start")
    for _ in range(40_000):
        if cell.state != State.EXECUTE:
            break
        twin.step_to(twin.t + 0.01)
        cell.update()
    assert cell.state == State.COMPLETE, cell.status()
    assert sorted((r.part, r.status) for r in cell.reports) == [(1, "done"), (2, "done")]
    assert twin.events().collisions == [] and twin.events().dropped == []
    pallet = np.asarray(cfg.stations["pallet"].pose.xyz)
    on_pallet = [i for i, s in enumerate(twin.part_state) if s == "free" and twin.part_position(i)[2] < 0.5]
    near = [i for i in on_pallet if np.linalg.norm(twin.part_position(i)[:2] - pallet[:2]) < 0.4]
    assert len(near) == 2  # both frames stacked on the pallet, none left behind at the infeed or the fixture
    from cobot_cell.twin.model import PARKED_Z

    parked = [i for i, s in enumerate(twin.part_state) if s == "parked"]
    assert parked and all(abs(twin.part_position(i)[2] - PARKED_Z) < 0.01 for i in parked)  # weightless, not falling


# ---------------------------------------------------------------------------------------------- the command


def test_estimate_check_collisions_names_the_first_collision_or_says_clean(tmp_path: Path, capsys) -> None:
    from cobot_cell.cli import EXIT_FAIL, EXIT_OK, main

    overlap = tmp_path / "overlap.yaml"
    overlap.write_text(OVERLAP, encoding="utf-8")
    assert main(["estimate", str(overlap), "--check-collisions", "--parts", "1"]) == EXIT_FAIL
    out = capsys.readouterr()
    assert "collision at t=" in out.err and "picker in step 'load_blank' of part 1" in out.err
    assert "welder in step 'weld_seams' of part 1" in out.err
    assert (
        main(["estimate", str(REPO / "config" / "ur10e_eur_pallet.yaml"), "--check-collisions", "--parts", "2"])
        == EXIT_OK
    )
    assert "collision check: clean (2 parts, " in capsys.readouterr().out
