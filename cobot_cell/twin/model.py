"""Build one MuJoCo model of a whole cell from its cell file: the rendered URDF plus a floor, parts and servos.

The arms, tools and stations come from `urdf/cell.urdf.xacro` rendered for the cell file (the URDF that
robot_state_publisher and Gazebo get), so the twin has the same geometry. Added in code:

- a floor plane at z = 0 (the cobots' bases rest on it: those pairs are excluded);
- a pool of part bodies (free boxes of the job's part size and mass) parked out of the way until a station is fed;
- per cobot joint a position servo with velocity feed-forward (`general` actuator: kp, kv from the arm's
  inertia at home), plus gravity, Coriolis and inertia feed-forward applied by `physics`;
- a weld equality per (gripper, part), inactive until the gripper closes on that part;
- a TCP site per tool (the cell file's `tcp` offset from tool0);
- contact filtering by owner (bit masks): a cobot's own links never collide with each other (the URDF's
  adjacent links overlap at the joints by design); parts collide with everything.

Errors (a cell whose URDF cannot be built, a part wider than its gripper's opening, bodies that start in
collision) raise TwinError naming the cell file place.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import CellConfig, Tool

log = logging.getLogger(__name__)

TIMESTEP = 0.002
"""Physics step (s): 500 Hz, the controller update rate of a UR e-Series arm."""
SERVO_BANDWIDTH = 2 * math.pi * 20.0
"""Natural frequency (rad/s) of each joint servo, with the arm's inertia at home (critically damped)."""
DEFAULT_PART_BOX = (0.10, 0.10, 0.05)
"""Part size (m) when neither the job (`part.box`) nor a pallet (`pallet.box`) gives one."""
DEFAULT_PART_MASS = 1.0
"""Part mass (kg) when the job gives none."""
START_TOLERANCE = 1e-4
"""Penetration (m) allowed between bodies at the start (resting contact)."""
PARKED_Z = 20.0  # parked parts wait high above the cell, weightless

_FLOOR, _PART = 1, 2
_ALL = 0x7FFFFFFF  # MuJoCo masks are signed 32-bit ints


class TwinError(ValueError):
    """The cell cannot be built as a twin; the message names the cell file place."""


@dataclass(frozen=True)
class ToolIndex:
    """One tool of a cobot in the model."""

    name: str
    io: str
    kind: str
    site: int
    """TCP site id."""
    body: int
    """Body the tool is mounted on (its shape link, else tool0)."""
    opening: float | None
    """Widest part (m) a gripper takes, from its shape; None: no limit (a suction cup or no shape given)."""


@dataclass(frozen=True)
class CobotIndex:
    """One cobot in the model: its joints' addresses, actuators, bodies and tools."""

    name: str
    bit: int
    joints: tuple[str, ...]
    qpos: np.ndarray
    dof: np.ndarray
    actuators: np.ndarray
    bodies: frozenset[int]
    tools: dict[str, ToolIndex]
    home: np.ndarray


@dataclass
class TwinModel:
    """A compiled cell model and the indices the physics and the replay need."""

    cfg: CellConfig
    model: Any  # mujoco.MjModel (the mujoco package ships no type information)
    cobots: dict[str, CobotIndex]
    stations: dict[str, int]
    parts: list[int]
    """Part body ids (the pool)."""
    part_qpos: list[int]
    part_dof: list[int]
    part_geoms: list[int]
    part_box: tuple[float, float, float]
    part_mass: float
    welds: dict[tuple[str, str, int], int]  # (cobot, gripper io, part) -> its weld (IO names repeat across cobots)
    """(tool io, part index) -> equality id."""
    body_owner: dict[int, tuple[str, str]] = field(default_factory=dict)
    """body id -> (kind, name): ('cobot', cobot), ('tool', cobot), ('station', name), ('part', index), ('floor', '')."""

    def body_name(self, body: int) -> str:
        """A body's name (part bodies are part_<n>)."""
        import mujoco

        return mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, body) or f"body {body}"


def part_size(cfg: CellConfig) -> tuple[tuple[float, float, float], float]:
    """The part's box (m) and mass (kg): the first job with a part, else the first pallet's box, else defaults."""
    mass = DEFAULT_PART_MASS
    for job in cfg.jobs.values():
        if job.part is not None:
            mass = float(job.part.mass)
            if job.part.box is not None:
                b = job.part.box
                return (b.length, b.width, b.height), mass
    for st in cfg.stations.values():
        if st.pallet is not None:
            b = st.pallet.box
            return (b.length, b.width, b.height), mass
    return DEFAULT_PART_BOX, mass


def gripper_opening(tool: Tool) -> float | None:
    """The widest part a gripper takes: its shape's widest cross-section (box x or y, cylinder diameter)."""
    if tool.kind != "gripper" or tool.shape is None:
        return None
    if tool.shape.box is not None:
        return float(max(tool.shape.box[0], tool.shape.box[1]))
    assert tool.shape.cylinder is not None
    return float(2 * tool.shape.cylinder[0])


def pool_size(cfg: CellConfig) -> int:
    """Part bodies the twin keeps: every pallet place, one per other station, two per cobot."""
    from ..skills.palletise import pallet_plan

    places = sum(len(pallet_plan(st)) for st in cfg.stations.values() if st.pallet is not None)
    return places + sum(1 for st in cfg.stations.values() if st.pallet is None) + 2 * len(cfg.cobots)


def render_urdf(cell_file: str | os.PathLike[str]) -> str:
    """The cell's URDF, rendered from urdf/cell.urdf.xacro for a cell file; TwinError if xacro fails."""
    import xacro  # type: ignore[import-untyped]

    from ..ros.bringup import package_file

    source = package_file("urdf", "cell.urdf.xacro")
    try:
        doc = xacro.process_file(str(source), mappings={"cell_file": str(Path(cell_file).resolve())})
    except Exception as exc:  # noqa: BLE001 - xacro raises its own and plain errors: report them all as one
        raise TwinError(f"{cell_file}: the cell's URDF cannot be built ({source.name}): {exc}") from None
    return str(doc.toxml())


def _check_parts_fit(cfg: CellConfig, box: tuple[float, float, float]) -> None:
    narrow = min(box[0], box[1])
    for name, cobot in cfg.cobots.items():
        for tname, tool in cobot.tools.items():
            opening = gripper_opening(tool)
            if opening is not None and narrow > opening + 1e-9:
                raise TwinError(
                    f"cobots.{name}.tools.{tname}: the part ({box[0]:g} x {box[1]:g} x {box[2]:g} m) is larger than "
                    f"the gripper's opening ({opening:g} m, the width of its shape)"
                )


def build(cfg: CellConfig, cell_file: str | os.PathLike[str]) -> TwinModel:
    """Compile the cell's twin; TwinError when the URDF cannot be built, a part does not fit its gripper or bodies
    start in collision."""
    import mujoco

    box, mass = part_size(cfg)
    _check_parts_fit(cfg, box)
    urdf = render_urdf(cell_file)
    urdf = urdf.replace(
        "</robot>",
        '<mujoco><compiler fusestatic="false" discardvisual="true" balanceinertia="true"/></mujoco></robot>',
        1,
    )
    try:
        spec = mujoco.MjSpec.from_string(urdf)
    except Exception as exc:  # noqa: BLE001 - MuJoCo's parser error
        raise TwinError(f"{cell_file}: MuJoCo cannot load the cell's URDF: {exc}") from None
    spec.option.timestep = TIMESTEP
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    # parts at rest (infeed, fixture, the pallet stack) sleep: no contacts to solve until an arm or a part touches
    # them (arms, being actuated, never sleep)
    spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
    cobots = list(cfg.cobots)
    if len(cobots) > 29:
        raise TwinError(f"cobots: the twin models at most 29 cobots, the cell has {len(cobots)}")
    bits = {name: 1 << (2 + i) for i, name in enumerate(cobots)}

    def owner_of(body_name: str) -> str | None:
        for name in cobots:
            if body_name.startswith(name + "_"):
                return name
        return None

    for body in spec.bodies:
        if body.name == "world":
            continue
        owner = owner_of(body.name)
        for geom in body.geoms:
            if owner is not None:
                geom.contype, geom.conaffinity = bits[owner], _ALL & ~bits[owner]
            else:  # a station
                geom.contype, geom.conaffinity = _FLOOR, _ALL & ~_FLOOR
    for sname, st in cfg.stations.items():  # a pallet's deck at its real size (the URDF has a token box)
        if st.pallet is None:
            continue
        length, width = st.pallet.pallet_size
        thick = max(min(st.pallet.deck_height, st.pose.xyz[2]), 0.02)
        deck = spec.worldbody.add_body(name=f"{sname}_deck", pos=list(st.pose.xyz))
        deck.quat = _quat(st.pose.rpy)
        g = deck.add_geom(
            name=f"{sname}_deck",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[length / 2, width / 2, thick / 2],
            pos=[0.0, 0.0, -thick / 2],
        )
        g.contype, g.conaffinity = _FLOOR, _ALL & ~_FLOOR
    floor = spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    floor.contype, floor.conaffinity = _FLOOR, _ALL & ~_FLOOR
    for name in cobots:
        spec.add_exclude(bodyname1="world", bodyname2=f"{name}_base_link")
    # TCP sites
    for name, cobot in cfg.cobots.items():
        for tname, tool in cobot.tools.items():
            spec.body(f"{name}_tool0").add_site(name=f"{name}_{tname}_tcp", pos=list(tool.tcp), size=[0.005, 0, 0])
    # parts
    n_parts = pool_size(cfg)
    half = [v / 2 for v in box]
    for i in range(n_parts):
        b = spec.worldbody.add_body(name=f"part_{i}", pos=parked_position(i, box))
        b.add_freejoint(name=f"part_{i}_free")
        # weightless while parked (Twin sets it per state); compiled non-zero so that MuJoCo applies it at all
        b.gravcomp = 1.0
        g = b.add_geom(name=f"part_{i}_box", type=mujoco.mjtGeom.mjGEOM_BOX, size=half, mass=mass)
        # colliding at compile time (a geom that collides with nothing counts as visual and is discarded);
        # the physics parks every part (no contacts, no gravity) before the first step
        g.contype, g.conaffinity = _PART, _ALL
        g.friction = [0.8, 0.02, 0.001]
    # servos: position + velocity feed-forward through ctrl (see physics), forces limited to the arm's efforts
    from ..motion.arms import arm_spec

    for cobot in cfg.cobots.values():
        effort = arm_spec(cobot.model).effort
        for j, joint in enumerate(cobot.joints):
            act = spec.add_actuator(name=f"{joint}_servo", target=joint)
            act.trntype = mujoco.mjtTrn.mjTRN_JOINT
            act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
            act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-effort[j], effort[j]]
            act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
    # grip welds: one per (gripper, part), off until a grip
    welds_spec: list[tuple[str, str, int, str]] = []
    for name, cobot in cfg.cobots.items():
        for tname, tool in cobot.tools.items():
            if tool.kind != "gripper":
                continue
            for i in range(n_parts):
                eq_name = f"{name}_{tname}_grip_{i}"
                eq = spec.add_equality(
                    name=eq_name,
                    type=mujoco.mjtEq.mjEQ_WELD,
                    objtype=mujoco.mjtObj.mjOBJ_BODY,
                    name1=f"{name}_tool0",
                    name2=f"part_{i}",
                )
                eq.active = False
                eq.solref = [0.01, 1.0]
                welds_spec.append((name, tool.io, i, eq_name))
    try:
        model = spec.compile()
    except Exception as exc:  # noqa: BLE001 - MuJoCo's compiler error
        raise TwinError(f"{cell_file}: MuJoCo cannot compile the cell: {exc}") from None

    def bid(n: str) -> int:
        return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n))

    data = mujoco.MjData(model)
    index: dict[str, CobotIndex] = {}
    owners: dict[int, tuple[str, str]] = {0: ("floor", "")}
    for name, cobot in cfg.cobots.items():
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in cobot.joints]
        if min(jids) < 0:
            raise TwinError(f"cobots.{name}.joints: not all of {list(cobot.joints)} are in the cell's URDF")
        bodies = frozenset(b for b in range(model.nbody) if owner_of(model.body(b).name) == name)
        tools = {}
        for tname, tool in cobot.tools.items():
            shape_body = bid(f"{name}_{tname}")
            tools[tool.io] = ToolIndex(
                tname,
                tool.io,
                tool.kind,
                mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{name}_{tname}_tcp"),
                shape_body if shape_body >= 0 else bid(f"{name}_tool0"),
                gripper_opening(tool),
            )
        tool_bodies = {t.body for t in tools.values()} - {bid(f"{name}_tool0")}
        for b in bodies:
            owners[b] = ("tool" if b in tool_bodies else "cobot", name)
        acts = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{j}_servo") for j in cobot.joints]
        index[name] = CobotIndex(
            name,
            bits[name],
            tuple(cobot.joints),
            np.array([model.jnt_qposadr[j] for j in jids]),
            np.array([model.jnt_dofadr[j] for j in jids]),
            np.array(acts),
            bodies,
            tools,
            np.asarray(cobot.home, dtype=float),
        )
    stations = {s: bid(s) for s in cfg.stations}
    for s, b in stations.items():
        owners[b] = ("station", s)
        if bid(f"{s}_deck") >= 0:
            owners[bid(f"{s}_deck")] = ("station", s)
    parts = [bid(f"part_{i}") for i in range(n_parts)]
    for i, b in enumerate(parts):
        owners[b] = ("part", str(i))
    for b in range(1, model.nbody):  # the floor is the world body's; every other body has an owner
        owners.setdefault(b, ("floor", ""))
    twin = TwinModel(
        cfg=cfg,
        model=model,
        cobots=index,
        stations=stations,
        parts=parts,
        part_qpos=[int(model.jnt_qposadr[model.body_jntadr[b]]) for b in parts],
        part_dof=[int(model.jnt_dofadr[model.body_jntadr[b]]) for b in parts],
        part_geoms=[int(model.body_geomadr[b]) for b in parts],
        part_box=box,
        part_mass=mass,
        welds={(c, io, i): mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, n) for c, io, i, n in welds_spec},
        body_owner=owners,
    )
    _tune_servos(twin, data)
    check_start(twin, data)
    return twin


def build_from_file(cell_file: str | os.PathLike[str]) -> TwinModel:
    """Load and check a cell file (CellFileError if invalid), then build its twin."""
    from ..skills import load_cell

    return build(load_cell(Path(cell_file)), cell_file)


def build_from_text(text: str, name: str = "cell.yaml") -> TwinModel:
    """Build the twin of a cell given as YAML text (written to a temporary file for xacro)."""
    from ..skills import parse_cell

    cfg = parse_cell(text, name)[0]
    with tempfile.TemporaryDirectory(prefix="cobot_cell_twin_") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_text(text, encoding="utf-8")
        return build(cfg, path)


def _quat(rpy: tuple[float, float, float]) -> list[float]:
    """Quaternion (w, x, y, z) of fixed-axis roll, pitch, yaw."""
    r, p, y = (v / 2 for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return [
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ]


def parked_position(i: int, box: tuple[float, float, float]) -> list[float]:
    """Where part i waits, out of the way, until it is put on a station."""
    return [10.0 + (2 * max(box) + 0.1) * i, 10.0, PARKED_Z]


def home_state(twin: TwinModel, data: Any) -> None:
    """Every cobot at home, at rest; parts parked."""
    import mujoco

    data.qpos[:] = 0.0
    data.qvel[:] = 0.0
    for c in twin.cobots.values():
        data.qpos[c.qpos] = c.home
        data.ctrl[c.actuators] = c.home
    for i, adr in enumerate(twin.part_qpos):
        data.qpos[adr : adr + 7] = parked_position(i, twin.part_box) + [1.0, 0.0, 0.0, 0.0]
    mujoco.mj_forward(twin.model, data)


def _tune_servos(twin: TwinModel, data: Any) -> None:
    """kp, kv per joint from the arm's inertia at home: every joint a critically damped SERVO_BANDWIDTH servo."""
    import mujoco

    m = twin.model
    home_state(twin, data)
    dense = np.zeros((m.nv, m.nv))
    mujoco.mj_fullM(m, data, dense)
    for c in twin.cobots.values():
        for dof, act in zip(c.dof, c.actuators):
            inertia = max(float(dense[dof, dof]), 1e-3)
            kp = inertia * SERVO_BANDWIDTH**2
            kv = 2.0 * inertia * SERVO_BANDWIDTH
            m.actuator_gainprm[act, 0] = kp
            m.actuator_biasprm[act, :3] = [0.0, -kp, -kv]


def contacts(twin: TwinModel, data: Any, tolerance: float = START_TOLERANCE) -> list[tuple[int, int, float]]:
    """Contacts deeper than `tolerance` (m) between bodies of different owners: (body1, body2, depth)."""
    m = twin.model
    out = []
    for k in range(data.ncon):
        c = data.contact[k]
        depth = -float(c.dist)
        if depth <= tolerance:
            continue
        b1, b2 = int(m.geom_bodyid[c.geom[0]]), int(m.geom_bodyid[c.geom[1]])
        out.append((b1, b2, depth))
    return out


def check_start(twin: TwinModel, data: Any) -> None:
    """TwinError naming the bodies when any two start in collision (cobots at home, stations)."""
    home_state(twin, data)
    found = contacts(twin, data)
    if found:
        b1, b2, depth = found[0]
        raise TwinError(
            f"{twin.cfg.cell.name}: bodies start in collision with every cobot at home: "
            f"{twin.body_name(b1)} and {twin.body_name(b2)} ({depth * 1000:.1f} mm deep); check "
            f"cobots.*.base, cobots.*.home and stations.*.pose"
        )
