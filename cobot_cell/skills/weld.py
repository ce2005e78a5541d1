"""Weld: lay seams (polylines and arcs in a fixture's frame) with the torch.

Per seam: a joint move to the approach point (`approach` back along the torch axis from the seam start), a
straight descent, gas pre-flow, arc on, the seam at `speed` (tilted by the work and travel angles, held
`standoff` back along the torch axis, with an optional sinusoidal weave across the seam), arc off, gas
post-flow, a straight retract along the torch axis, and a checkpoint of the next seam.

Geometry, in the station (fixture) frame, whose z axis is the surface normal n:
- a polyline `[[x, y, z], ...]` is straight pieces; the torch stops at each corner (and, when the angles tilt
  it, turns on the spot to the next piece's travel direction, the arc still on);
- an arc `{arc: [start, via, end]}` is the circle through the three points, from start through via to end;
- travel direction t is the seam tangent, the lateral direction b = n x t (left of travel);
- the torch axis (tool z, pointing at the work) is -n tilted by `travel_angle` towards t (positive: pushing,
  the torch points ahead) and by `work_angle` towards b, both in degrees measured from -n in the (t, n) and
  (b, n) planes: axis ~ -n + tan(travel) t + tan(work) b. The torch is turned by the least rotation from its
  untilted orientation (tool x along the station x), so the wrist does not roll along a seam;
- the TCP is at point(u) + weave(u) b - standoff * axis, for u the distance travelled along the seam;
- weave(u) = amplitude sin(2 pi u / wavelength), with the wavelength speed / frequency rounded so that each
  straight piece or arc holds a whole number of half waves (the weave ends on the seam): at the travel speed the
  torch weaves at about `frequency` Hz. Weave paths are sampled at least 24 times per wavelength.

Each piece is timed by `motion.path_move` with `speed` as the travel speed along the seam; if a joint limit
keeps the arm below it (near the edge of the workspace, or a weave too fast for the wrist), planning raises
ParamError naming `speed`, so a cell file with such a seam fails validation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Le, MinLen

from ..core.model import CellConfig
from ..core.plan import PART_STATE_PREFIX, Checkpoint, Dwell, Move, PartView, ProcessSpan, Segment, SetIo, SkillPlan
from ..core.validation import After, PositiveFloat, Schema
from ..motion.kinematics import UnreachableError
from ..motion.trajectory import PathTiming, path_move
from ..motion.transforms import invert, rotation_angle, slerp, translation
from .common import (
    ParamError,
    SkillContext,
    SkillParams,
    StationRef,
    blame,
    check_group,
    end_of,
    fk,
    location,
    station_frame,
)
from .skill import Problems, Skill

Point = tuple[float, float, float]
WEAVE_SAMPLES = 24  # path samples per weave wavelength at least
SEAM_STEP = 0.005  # m between path samples at most
ARC_STEP = 0.05  # rad of arc between path samples at most
_LATERAL_MIN = 1e-6  # |n x t| below this: the seam runs along the normal, no lateral direction


def _not_collinear(v: tuple[Point, Point, Point]) -> tuple[Point, Point, Point]:
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in v)
    a, b = p1 - p0, p2 - p0
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)), float(np.linalg.norm(p2 - p1)))
    if min(float(np.linalg.norm(a)), float(np.linalg.norm(b)), float(np.linalg.norm(p2 - p1))) < 1e-6:
        raise ValueError("the three arc points must be distinct (start, a point on the arc, end)")
    if float(np.linalg.norm(np.cross(a, b))) < 1e-6 * scale * scale:
        raise ValueError("the three arc points are on one line: use a polyline for a straight seam")
    return v


@dataclass(frozen=True, kw_only=True)
class ArcSeam(SkillParams):
    """A circular arc from `arc[0]` through `arc[1]` to `arc[2]` (station frame, m)."""

    arc: Annotated[tuple[Point, Point, Point], After(_not_collinear)]


def _seam_kind(v: Any) -> str | None:
    if isinstance(v, (dict, ArcSeam)):
        return "arc seam"
    if isinstance(v, (list, tuple)):
        return "polyline"
    return None


def _seam_union() -> Any:
    from pydantic import Discriminator, Tag

    return Annotated[
        Annotated[tuple[Point, ...], Tag("polyline")] | Annotated[ArcSeam, Tag("arc seam")],
        Discriminator(
            _seam_kind,
            custom_error_type="seam",
            custom_error_message="expected a polyline [[x, y, z], ...] or {arc: [start, via, end]}",
        ),
    ]


Seam = Annotated[tuple[Point, ...] | ArcSeam, Schema(_seam_union)]
"""A polyline or an arc seam, told apart by shape (a list or a mapping)."""
LOC_TAGS = frozenset({"polyline", "arc seam"})
"""Union tags pydantic puts in error locations; they are not YAML keys."""


@dataclass(frozen=True, kw_only=True)
class Weave(SkillParams):
    """A sinusoidal weave across the seam."""

    amplitude: Annotated[PositiveFloat, Le(0.02)]
    frequency: Annotated[PositiveFloat, Le(20.0)]


def _two_points(v: tuple[Any, ...]) -> tuple[Any, ...]:
    for i, seam in enumerate(v):
        if not isinstance(seam, ArcSeam) and len(seam) < 2:
            raise ValueError(f"seam {i} needs at least 2 points, got {len(seam)}")
    return v


@dataclass(frozen=True, kw_only=True)
class WeldParams(SkillParams):
    """Parameters of a weld step."""

    station: StationRef
    seams: Annotated[tuple[Seam, ...], MinLen(1), After(_two_points)]
    speed: Annotated[PositiveFloat, Le(0.2)]
    work_angle: Annotated[float, Ge(-60.0), Le(60.0)] = 0.0
    travel_angle: Annotated[float, Ge(-45.0), Le(45.0)] = 0.0
    standoff: Annotated[float, Ge(0.0), Le(0.05)] = 0.0
    weave: Weave | None = None
    approach: PositiveFloat = 0.05
    approach_speed: PositiveFloat = 0.25
    preflow: Annotated[float, Ge(0.0)] = 0.3
    postflow: Annotated[float, Ge(0.0)] = 0.5
    restart_overlap: Annotated[float, Ge(0.0), Le(0.1)] = 0.010
    return_home: bool = True


def check(cfg: CellConfig, params: WeldParams) -> Problems:
    """Cross-check the station reference and the seams' shape; returns {param: problem}."""
    try:
        check_group(cfg, params.station, ("fixture",))
    except ValueError as exc:
        return {"station": str(exc)}
    problems: dict[str | tuple[str | int, ...], str] = {}
    tilted = params.weave is not None or params.work_angle != 0.0 or params.travel_angle != 0.0
    for i, seam in enumerate(params.seams):
        for k, piece in enumerate(seam_pieces(seam)):
            if tilted and piece.length > 0.0 and not _has_lateral(piece):
                problems[("seams", i)] = (
                    f"seam {i} piece {k} runs along the fixture's z axis: the torch angles "
                    "and the weave need a travel direction across it"
                )
                break
    return problems


# ------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class SeamPiece:
    """A smooth piece of a seam in the station frame, by distance u along it (0..length)."""

    length: float
    point: Callable[[float], np.ndarray]
    tangent: Callable[[float], np.ndarray]
    radius: float | None = None  # of an arc


def _line(a: Point, b: Point) -> SeamPiece:
    p0, p1 = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    length = float(np.linalg.norm(p1 - p0))
    t = (p1 - p0) / length if length > 0 else np.array([1.0, 0.0, 0.0])
    return SeamPiece(length, lambda u: p1.copy() if u >= length else p0 + u * t, lambda u: t)


def _arc(points: tuple[Point, Point, Point]) -> SeamPiece:
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in points)
    a, b = p1 - p0, p2 - p0
    m = np.cross(a, b)
    c = p0 + np.cross(a @ a * b - b @ b * a, m) / (2.0 * (m @ m))
    r = float(np.linalg.norm(p0 - c))
    e1 = (p0 - c) / r
    e2 = np.cross(m / np.linalg.norm(m), e1)
    sweep = math.atan2(float((p2 - c) @ e2), float((p2 - c) @ e1)) % (2.0 * math.pi)
    length = r * sweep

    def point(u: float) -> np.ndarray:
        if u >= length:
            return p2.copy()
        phi = u / r
        return c + r * (math.cos(phi) * e1 + math.sin(phi) * e2)

    def tangent(u: float) -> np.ndarray:
        phi = min(u, length) / r
        return -math.sin(phi) * e1 + math.cos(phi) * e2

    return SeamPiece(length, point, tangent, r)


def seam_pieces(seam: tuple[Point, ...] | ArcSeam) -> list[SeamPiece]:
    """The smooth pieces of a seam: one per polyline segment, one for an arc."""
    if isinstance(seam, ArcSeam):
        return [_arc(seam.arc)]
    return [_line(a, b) for a, b in zip(seam, seam[1:])]


def seam_length(seam: tuple[Point, ...] | ArcSeam) -> float:
    """Length of a seam in metres."""
    return float(sum(p.length for p in seam_pieces(seam)))


def weld_time(params: WeldParams) -> float:
    """Arc-on travel time of every seam at the weld speed (s), without the short ramps at each piece's ends."""
    return sum(seam_length(s) for s in params.seams) / params.speed


_N = np.array([0.0, 0.0, 1.0])  # the station's surface normal, in the station frame
_DOWN = np.diag([1.0, -1.0, -1.0])  # untilted torch: tool z = -n, tool x along the station x


def _has_lateral(piece: SeamPiece) -> bool:
    us = np.linspace(0.0, piece.length, 9)
    return all(float(np.linalg.norm(np.cross(_N, piece.tangent(float(u))))) > _LATERAL_MIN for u in us)


def _least_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 rotation turning unit vector a onto unit vector b about a x b (a and b less than 180 deg apart)."""
    v = np.cross(a, b)
    c = float(a @ b)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    rot: np.ndarray = np.eye(3) + vx + vx @ vx / (1.0 + c)
    return rot


class _Torch:
    """TCP poses along the pieces of one seam for the step's angles, stand-off and weave."""

    def __init__(self, params: WeldParams, frame: np.ndarray):
        self.frame = frame
        self.tan_travel = math.tan(math.radians(params.travel_angle))
        self.tan_work = math.tan(math.radians(params.work_angle))
        self.standoff = params.standoff
        self.weave = params.weave
        self.speed = params.speed

    def wavelength(self, piece: SeamPiece) -> float | None:
        """Weave wavelength on a piece: speed / frequency, rounded to a whole number of half waves; None without a
        weave or on a piece of zero length (a point repeated in a polyline)."""
        if self.weave is None or piece.length <= 0.0:
            return None
        half_waves = max(1, round(2.0 * piece.length * self.weave.frequency / self.speed))
        return 2.0 * piece.length / half_waves

    def pose(self, piece: SeamPiece, u: float) -> np.ndarray:
        """TCP pose (cell frame) at distance u along a piece."""
        t = piece.tangent(u)
        lateral = np.cross(_N, t)
        norm = float(np.linalg.norm(lateral))
        b = lateral / norm if norm > _LATERAL_MIN else np.zeros(3)
        axis = -_N + self.tan_travel * t + self.tan_work * b
        axis /= np.linalg.norm(axis)
        p = piece.point(u) - self.standoff * axis
        wavelength = self.wavelength(piece)
        if wavelength is not None and self.weave is not None:
            p = p + self.weave.amplitude * math.sin(2.0 * math.pi * min(u, piece.length) / wavelength) * b
        out = np.eye(4)
        out[:3, :3] = _least_rotation(-_N, axis) @ _DOWN
        out[:3, 3] = p
        return self.frame @ out

    def samples(self, piece: SeamPiece) -> int:
        """Path samples for a piece: at most SEAM_STEP apart (ARC_STEP rad on an arc), WEAVE_SAMPLES per weave
        wavelength."""
        step = SEAM_STEP if piece.radius is None else min(SEAM_STEP, ARC_STEP * piece.radius)
        wavelength = self.wavelength(piece)
        if wavelength is not None:
            step = min(step, wavelength / WEAVE_SAMPLES)
        return max(1, math.ceil(piece.length / step - 1e-9))


def state_key(station: str) -> str:
    """Skill-state key of the weld progress at a station (for resuming a part mid-weld): a `SeamProgress` dict."""
    return f"{PART_STATE_PREFIX}weld.{station}.progress"


LOCATE_STEP = 0.002  # m between the coarse samples when locating the torch along a seam
LOCATE_TOLERANCE = 0.003  # m: a TCP farther than this from the seam path is not on it


def progress(value: Any) -> tuple[int, float, bool]:
    """(seams done, metres welded of the next seam, arc was on there) from a weld progress record.

    The record is `{"done": n, "at": u}`: n seams finished (n == number of seams: all done, never confused with
    none done), u metres of seam n welded; `"arc": true` marks a record written when the arc was struck at u,
    whose actual end is not known yet (a planner that died mid-seam); resuming from u is safe (nothing skipped).
    """
    if not isinstance(value, dict):
        return 0, 0.0, False
    return int(value.get("done", 0)), float(value.get("at", 0.0)), bool(value.get("arc", False))


def _record_at(seam: int, at: float) -> dict[str, Any]:
    """The record of seam `seam` interrupted `at` metres along it (the arc was on)."""
    return record(seam, at)


def record(done: int, at: float = 0.0, arc: bool = False) -> dict[str, Any]:
    """A weld progress record (see `progress`)."""
    out: dict[str, Any] = {"done": done, "at": round(float(at), 6)}
    if arc:
        out["arc"] = True
    return out


def _back_along_axis(pose: np.ndarray, distance: float) -> np.ndarray:
    """The pose moved `distance` back along its own z axis (away from the work)."""
    back: np.ndarray = pose @ translation(0.0, 0.0, -distance)
    return back


def _start_of(torch: _Torch, pieces: list[SeamPiece], u: float) -> np.ndarray:
    """TCP pose (cell frame) at distance u along a seam's pieces."""
    offset = 0.0
    for piece in pieces:
        if u <= offset + piece.length or piece is pieces[-1]:
            return torch.pose(piece, min(max(u - offset, 0.0), piece.length))
        offset += piece.length
    return torch.pose(pieces[-1], pieces[-1].length)


def _locator(ctx: SkillContext, torch: _Torch, pieces: list[SeamPiece]) -> Callable[[np.ndarray], tuple[float, float]]:
    """A function of joint positions q: (distance along the seam nearest the torch's TCP, how far off it, m)."""
    _, tool = ctx.tool("torch")
    frame = ctx.base_frame
    tcp = translation(*tool.tcp)
    offsets = np.cumsum([0.0] + [p.length for p in pieces])

    def at(u: float) -> np.ndarray:
        k = min(int(np.searchsorted(offsets, u, side="right")) - 1, len(pieces) - 1)
        return _start_of(torch, pieces[k : k + 1], u - offsets[k])[:3, 3]

    def locate(q: np.ndarray) -> tuple[float, float]:
        p = (frame @ fk(ctx.model, q) @ tcp)[:3, 3]
        total = float(offsets[-1])
        us = np.linspace(0.0, total, max(2, math.ceil(total / LOCATE_STEP) + 1))
        d = [float(np.linalg.norm(at(float(u)) - p)) for u in us]
        k = int(np.argmin(d))
        lo, hi = float(us[max(k - 1, 0)]), float(us[min(k + 1, len(us) - 1)])
        for _ in range(40):  # golden-section refinement between the neighbours of the nearest sample
            m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
            if np.linalg.norm(at(m1) - p) <= np.linalg.norm(at(m2) - p):
                hi = m2
            else:
                lo = m1
        u = 0.5 * (lo + hi)
        return u, float(np.linalg.norm(at(u) - p))

    return locate


def _seam_moves(
    ctx: SkillContext,
    torch: _Torch,
    pieces: list[SeamPiece],
    q: np.ndarray,
    i: int,
    speed: float,
    key: str = "",
    start: float = 0.0,
) -> list[Segment]:
    """Arc-on moves along the pieces of seam i from joint positions q (at distance `start` along the seam), each
    marked as process work (skill-state `key`) so an interruption records how far the arc got."""
    _, tool = ctx.tool("torch")
    base_inv = invert(ctx.base_frame)
    tcp = translation(*tool.tcp)
    segs: list[Segment] = []
    cur = q
    locate = _locator(ctx, torch, pieces)
    offset = 0.0
    first = True
    for k, piece in enumerate(pieces):
        length = piece.length
        u0 = min(max(start - offset, 0.0), length)
        offset += length
        if start > 0.0 and u0 >= length and k < len(pieces) - 1:
            continue  # welded before the interruption
        if k > 0 and not first:  # a corner: turn the torch about the corner to the next piece's travel direction
            turn = _corner(ctx, torch, pieces[k - 1], piece, cur, tcp, f"seam {i} corner {k}")
            if turn is not None:
                segs.append(turn)
                cur = end_of(segs, cur)
        first = False
        if length - u0 <= 0.0 and length > 0.0:
            continue

        def path(s: float, piece: SeamPiece = piece, length: float = length, u0: float = u0) -> np.ndarray:
            flange: np.ndarray = base_inv @ torch.pose(piece, u0 + s * (length - u0))
            return flange

        try:
            move = path_move(
                ctx.model,
                cur,
                path,
                length - u0,
                speed,
                ctx.v_max,
                ctx.a_max,
                max(1, math.ceil(torch.samples(piece) * (length - u0) / length)) if length > 0 else 1,
                tcp=tcp,
                exact=True,
                what=f"seam {i}",
            )
        except UnreachableError as exc:
            raise ParamError(("seams", i), f"{exc} (cobot '{ctx.cobot_name}')") from None
        if move.timing.limit != "speed":
            raise _too_fast(ctx, torch, move.timing, i)
        span = (
            ProcessSpan(key, i, offset - length + u0, offset, locate, functools.partial(_record_at, i)) if key else None
        )
        segs.append(Move(move.trajectory, f"seam {i} weld {k + 1}", span))
        cur = end_of(segs, cur)
    return segs


def locate(ctx: SkillContext, params: WeldParams, seam: int, q: np.ndarray) -> tuple[float, float]:
    """(distance along seam `seam` nearest the torch at joint positions q, distance of the torch from it), m."""
    torch = _Torch(params, station_frame(ctx.station(location(params.station, None))))
    return _locator(ctx, torch, seam_pieces(params.seams[seam]))(np.asarray(q, dtype=float))


def _corner(
    ctx: SkillContext, torch: _Torch, before: SeamPiece, after: SeamPiece, q: np.ndarray, tcp: np.ndarray, label: str
) -> Move | None:
    """Turn the torch from the end of one piece to the start of the next about the seam point (the TCP keeps
    its stand-off), timed by the joints; None when the torch need not turn."""
    T0, T1 = torch.pose(before, before.length), torch.pose(after, 0.0)
    angle = rotation_angle(T0, T1)
    if angle < 1e-9:
        return None
    corner = T0[:3, 3] + torch.standoff * T0[:3, 2]  # on the seam, in the cell frame
    base_inv = invert(ctx.base_frame)

    def turn(s: float) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = slerp(T0[:3, :3], T1[:3, :3], s)
        pose[:3, 3] = corner - torch.standoff * pose[:3, 2]
        return base_inv @ pose

    try:
        move = path_move(
            ctx.model, q, turn, 0.0, 1.0, ctx.v_max, ctx.a_max, max(1, math.ceil(angle / ARC_STEP)), tcp=tcp, what=label
        )
    except UnreachableError as exc:
        raise ParamError(("seams", int(label.split()[1])), f"{exc} (cobot '{ctx.cobot_name}')") from None
    return Move(move.trajectory, label)


def _too_fast(ctx: SkillContext, torch: _Torch, timing: PathTiming, i: int) -> ParamError:
    """The error for a seam the arm cannot follow at the weld speed: the speed's, or the weave's fault."""
    weave = torch.weave
    if weave is not None and timing.limit.endswith("acceleration"):
        # The weave's lateral acceleration, amplitude (2 pi f)^2, does not change with the travel speed: the
        # frequency is what to lower (acceleration ~ f^2, so the joints allow about f * max_speed / speed).
        return ParamError(
            "weave",
            f"a {weave.amplitude:g} m weave at {weave.frequency:g} Hz is more than "
            f"'{ctx.cobot_name}' can do along seam {i} ({timing.limit} limit; about "
            f"{weave.frequency * timing.max_speed / torch.speed:.2g} Hz at most at this amplitude)",
        )
    return ParamError(
        "speed",
        f"{torch.speed:g} m/s is faster than '{ctx.cobot_name}' can weld seam {i} "
        f"(at most {timing.max_speed:.3g} m/s there: {timing.limit} limit)",
    )


def plan(
    ctx: SkillContext, params: WeldParams, part: int, q: np.ndarray, state: PartView | dict[str, Any] | None = None
) -> SkillPlan:
    """Weld every seam in order at `speed`, with gas pre-/post-flow dwells around the arc; with state, start at
    the next seam not yet welded (a resumed part) and record each finished seam."""
    tool_name, tool = ctx.tool("torch")
    station = location(params.station, state)
    torch = _Torch(params, station_frame(ctx.station(station)))
    segs: list[Segment] = []
    cur = q
    key = state_key(station)
    done, at, _ = progress(state.get(key) if state is not None else None)
    process = tool.is_process
    for i, seam in enumerate(params.seams):
        if i < done:
            continue  # welded already (all done: none left, only the way home)
        pieces = seam_pieces(seam)
        length = float(sum(p.length for p in pieces))
        if i == done and at > 0.0 and at >= length - 1e-6:
            continue  # the arc went out at the seam's end: done
        # A seam stopped part-way is struck again `restart_overlap` before where the arc went out.
        from_u = min(max(at - params.restart_overlap, 0.0), length) if i == done and at > 0.0 else 0.0
        start = _start_of(torch, pieces, from_u)
        end = torch.pose(pieces[-1], pieces[-1].length)
        restart = " restart" if from_u > 0.0 else ""
        with blame("seams", i):
            q_above = ctx.solve(_back_along_axis(start, params.approach), tool, cur, f"weld seam {i}{restart} approach")
            segs.append(ctx.joint_to(cur, q_above, f"seam {i}{restart} approach"))
            segs.append(ctx.line_to(q_above, start, tool, params.approach_speed, f"seam {i} descend"))
        segs += [
            Dwell(params.preflow, f"seam {i} gas pre-flow"),
            SetIo(tool_name, tool.io, True, f"seam {i} arc on", process=process),
            Checkpoint(key, record(i, from_u, arc=True), f"seam {i} arc struck"),
        ]
        segs += _seam_moves(ctx, torch, pieces, end_of(segs, q), i, params.speed, key, from_u)
        segs += [
            SetIo(tool_name, tool.io, False, f"seam {i} arc off", process=process),
            Dwell(params.postflow, f"seam {i} gas post-flow"),
        ]
        segs.append(Checkpoint(key, record(i + 1), f"seam {i} done"))
        with blame("seams", i):
            segs.append(
                ctx.line_to(
                    end_of(segs, q),
                    _back_along_axis(end, params.approach),
                    tool,
                    params.approach_speed,
                    f"seam {i} retract",
                )
            )
        cur = end_of(segs, q)
    if params.return_home:
        segs.append(ctx.joint_to(cur, ctx.home, "home"))
    return SkillPlan(tuple(segs), end_of(segs, q))


__all__ = [
    "WeldParams",
    "ArcSeam",
    "Weave",
    "SeamPiece",
    "seam_pieces",
    "seam_length",
    "weld_time",
    "check",
    "plan",
    "state_key",
    "progress",
    "record",
    "locate",
    "LOC_TAGS",
]


class Weld(Skill[WeldParams]):
    """The weld skill: the seams on a fixture, with the torch."""

    name = "weld"
    tool = "torch"
    params = WeldParams
    loc_tags = LOC_TAGS

    check = staticmethod(check)
    plan = staticmethod(plan)


SKILL = Weld()
