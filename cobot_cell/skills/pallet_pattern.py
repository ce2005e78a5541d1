"""Pallet patterns: where each box goes on a pallet, layer by layer, in an order safe for the gripper.

The specification (`PalletSpec`: pallet, box, pattern, height limit, ...) is part of the cell file model
(cobot_cell.core.config, `stations.<name>.pallet`) and re-exported here; this module turns it into places.

Conventions
- Pallet frame: origin at the centre of the pallet deck, x along the pallet length, y along its width, z up.
  `max_height` and `Place.position` z are measured from the deck.
- Box frame: x along the box length, y along its width. The label is on the box's +x face (an end face).
  `Place.yaw` turns the box frame about z into the pallet frame; it is always 0, pi/2, pi or -pi/2.
- `Place.position` is the centre of the box's top face, where a vacuum gripper holds it.
- `gap` is kept between boxes only; `overhang` lets boxes reach that far past each pallet edge.

Patterns (boxes per layer is the best each pattern achieves)
- column: one grid, the better of the two box orientations (length along x first on a tie), centred;
  every layer the same.
- interlock: the layer with the most boxes among the grids, the two-block layouts (the pallet cut once,
  a grid of one orientation on each side) and the pinwheels. Odd layers take the same-count layout
  that shares the fewest footprints with it: the other orientation's grid, the layer rotated 180 degrees
  or mirrored, or another best layout. When the best layer is the only tiling (EUR with 400 x 300 boxes),
  that is the layer rotated 180 degrees and seams stay in line.
- pinwheel: four blocks around the centre, 180-degree symmetric (bottom-left = top-right, bottom-right =
  top-left), the two pairs in crossed orientations and all four non-empty; odd layers are mirrored so
  the turn alternates. Rule: a pinwheel is used when it holds at least as many boxes as the column
  grid (at a tie it still ties layers together); otherwise the plan falls back to the column pattern,
  `PalletPlan.fallback` says why and a warning is logged.

Place order: the gripper brings each box in horizontally from `approach_side` (default '-y'), then lowers it.
Each layer is filled from the far side towards the approach side, in rows by the distance of the box centres
from that side, along a row from -x to +x (-y to +y for an x approach side) in the unmirrored pattern. So no
box is carried over, or slid through, one already placed: a box in another's straight path lies between it and
the approach side, so its centre is nearer that side and it comes later. `mirror` keeps place i the mirror
image of place i when the approach side is +-y (parallel to the mirror axis); for +-x the order follows the
real side.

`label_out` turns a box 180 degrees when needed so its label faces the nearer of the two pallet edges its
length axis points at (on the centre line: +, or -x on a mirrored pallet so that mirroring stays exact). It
never changes a box's footprint, so a box inside the layer shows its label outward but perhaps behind others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.pallet_spec import (
    CUSTOM_PALLET_HEIGHT,
    STANDARD_PALLETS,
    ApproachSide,
    BoxSize,
    PalletSize,
    PalletSpec,
    PatternName,
)

__all__ = [
    "STANDARD_PALLETS",
    "CUSTOM_PALLET_HEIGHT",
    "PalletSize",
    "BoxSize",
    "PalletSpec",
    "Pattern",
    "ApproachSide",
    "Place",
    "PalletState",
    "PalletPlan",
    "plan_pallet",
]

log = logging.getLogger(__name__)

_EPS = 1e-9  # relative slack when counting boxes that fit a span
_YAW = (0.0, math.pi / 2, math.pi, -math.pi / 2)  # quarter turns -> yaw (rad)

Pattern = PatternName


@dataclass(frozen=True)
class Place:
    """One box: top-centre position (m) in the pallet frame, yaw (rad), layer, and whether a slip sheet goes first."""

    index: int
    layer: int
    position: tuple[float, float, float]
    yaw: float
    slip_sheet_before: bool = False


@dataclass(frozen=True)
class PalletState:
    """How far a pallet is filled: the index of the next place (0 = empty); this is what gets persisted."""

    next_index: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.next_index, bool) or not isinstance(self.next_index, int) or self.next_index < 0:
            raise ValueError(f"next_index: expected an integer >= 0, got {self.next_index!r}")

    def advance(self, plan: PalletPlan | None = None) -> PalletState:
        """The state after one more box is placed; with `plan`, refuses to go past a complete pallet."""
        if plan is not None:
            plan.check(self)
            if self.next_index >= len(plan):
                raise ValueError(f"next_index: the pallet is complete ({len(plan)} places), nothing to advance")
        return PalletState(self.next_index + 1)


# ------------------------------------------------------------------------------------------------ layouts
# A layout is one layer: (x, y, q) per box, centred on the pallet, q = quarter turns of the box (0..3).
# Layouts are built in a "gap frame": the usable area (pallet + overhang) grown by one gap, each box grown by
# one gap, so boxes that just touch there keep exactly `gap` between them on the pallet.

Layout = tuple[tuple[float, float, int], ...]


def _fit(span: float, pitch: float) -> int:
    return max(0, math.floor(span / pitch + _EPS))


def _pitch(q: int, lp: float, wp: float) -> tuple[float, float]:
    return (lp, wp) if q % 2 == 0 else (wp, lp)


def _block(x0: float, y0: float, nx: int, ny: int, q: int, lp: float, wp: float) -> list[tuple[float, float, int]]:
    px, py = _pitch(q, lp, wp)
    return [(x0 + (i + 0.5) * px, y0 + (j + 0.5) * py, q) for j in range(ny) for i in range(nx)]


def _centred(boxes: Sequence[tuple[float, float, int]], span_x: float, span_y: float) -> Layout:
    return tuple((x - span_x / 2, y - span_y / 2, q) for x, y, q in boxes)


def _grid(lx: float, ly: float, q: int, lp: float, wp: float) -> Layout:
    px, py = _pitch(q, lp, wp)
    nx, ny = _fit(lx, px), _fit(ly, py)
    return _centred(_block((lx - nx * px) / 2, (ly - ny * py) / 2, nx, ny, q, lp, wp), lx, ly)


def _two_blocks(lx: float, ly: float, lp: float, wp: float) -> list[Layout]:
    """Best layout per orientation pair with one cut across x: a grid of q1 on the left, of q2 on the right."""
    out = []
    for q1, q2 in ((0, 1), (1, 0)):
        (px1, py1), (px2, py2) = _pitch(q1, lp, wp), _pitch(q2, lp, wp)
        ny1, ny2 = _fit(ly, py1), _fit(ly, py2)
        best: tuple[int, int, int] | None = None
        for nx1 in range(1, _fit(lx, px1) + 1):
            nx2 = _fit(lx - nx1 * px1, px2)
            n = nx1 * ny1 + nx2 * ny2
            if nx1 * ny1 > 0 and nx2 * ny2 > 0 and (best is None or n > best[0]):
                best = (n, nx1, nx2)
        if best is None:
            continue
        _, nx1, nx2 = best
        x0 = (lx - nx1 * px1 - nx2 * px2) / 2
        boxes = _block(x0, (ly - ny1 * py1) / 2, nx1, ny1, q1, lp, wp) + _block(
            x0 + nx1 * px1, (ly - ny2 * py2) / 2, nx2, ny2, q2, lp, wp
        )
        out.append(_centred(boxes, lx, ly))
    return out


def _transposed(layout: Layout) -> Layout:
    return tuple((y, x, 1 - q) for x, y, q in layout)


def _pinwheel(lx: float, ly: float, lp: float, wp: float) -> Layout | None:
    """Best proper pinwheel: blocks a x b at two opposite corners, (lx-a) x (ly-b) at the other two, a >= lx/2."""
    fit = np.vectorize(_fit, otypes=[int])

    def cuts(span: float, lo: float, hi: float) -> np.ndarray:
        values = {span / 2}
        for p in (lp, wp):
            for i in range(_fit(span, p) + 1):
                values.update((i * p, span - i * p))
        return np.array(sorted(v for v in values if lo - _EPS <= v <= hi + _EPS))

    a, b = cuts(lx, lx / 2, lx), cuts(ly, 0.0, ly / 2)
    best: tuple[int, float, float, int] | None = None
    for q1 in (0, 1):
        (px1, py1), (px2, py2) = _pitch(q1, lp, wp), _pitch(1 - q1, lp, wp)
        n1 = fit(a, px1)[:, None] * fit(b, py1)[None, :]
        n2 = fit(lx - a, px2)[:, None] * fit(ly - b, py2)[None, :]
        total = np.where((n1 > 0) & (n2 > 0), 2 * (n1 + n2), -1)
        i, j = np.unravel_index(int(np.argmax(total)), total.shape)
        if total[i, j] > 0 and (best is None or total[i, j] > best[0]):
            best = (int(total[i, j]), float(a[i]), float(b[j]), q1)
    if best is None:
        return None
    _, ai, bj, q1 = best
    q2 = 1 - q1
    (px1, py1), (px2, py2) = _pitch(q1, lp, wp), _pitch(q2, lp, wp)
    nx1, ny1, nx2, ny2 = _fit(ai, px1), _fit(bj, py1), _fit(lx - ai, px2), _fit(ly - bj, py2)
    boxes = (
        _block(0.0, 0.0, nx1, ny1, q1, lp, wp)  # bottom-left
        + _block(lx - nx2 * px2, 0.0, nx2, ny2, q2, lp, wp)  # bottom-right
        + _block(lx - nx1 * px1, ly - ny1 * py1, nx1, ny1, q1, lp, wp)  # top-right
        + _block(0.0, ly - ny2 * py2, nx2, ny2, q2, lp, wp)
    )  # top-left
    return _centred(boxes, lx, ly)


def _rot180(layout: Layout) -> Layout:
    return tuple((-x, -y, (q + 2) % 4) for x, y, q in layout)


def _mirror_x(layout: Layout) -> Layout:
    """Mirror about the pallet's y axis (x -> -x)."""
    return tuple((-x, y, (2 - q) % 4) for x, y, q in layout)


def _mirror_y(layout: Layout) -> Layout:
    return tuple((x, -y, (-q) % 4) for x, y, q in layout)


def _footprints(layout: Layout) -> set[tuple[float, float, int]]:
    return {(round(x, 6) + 0.0, round(y, 6) + 0.0, q % 2) for x, y, q in layout}


@dataclass(frozen=True)
class _Layers:
    even: Layout
    odd: Layout
    used: Pattern
    fallback: str | None


def _layers(spec: PalletSpec) -> _Layers:
    length, width = spec.pallet_size
    g, o = spec.gap, spec.overhang
    lx, ly = length + 2 * o + g, width + 2 * o + g
    lp, wp = spec.box.length + g, spec.box.width + g
    grids = [_grid(lx, ly, 0, lp, wp), _grid(lx, ly, 1, lp, wp)]
    column = max(grids, key=len)  # first (length along x) on a tie
    if spec.pattern == "column":
        return _Layers(column, column, "column", None)
    pinwheel = _pinwheel(lx, ly, lp, wp)
    if spec.pattern == "pinwheel":
        if pinwheel is not None and len(pinwheel) >= len(column):
            return _Layers(pinwheel, _mirror_x(pinwheel), "pinwheel", None)
        if pinwheel is None:
            reason = f"pinwheel: no four-block pinwheel fits; using the column pattern ({len(column)} per layer)"
        else:
            reason = (
                f"pinwheel: the best four-block pinwheel places {len(pinwheel)} boxes per layer, fewer than "
                f"the column grid's {len(column)}; using the column pattern"
            )
        log.warning(reason)
        return _Layers(column, column, "column", reason)
    candidates = grids + _two_blocks(lx, ly, lp, wp) + [_transposed(t) for t in _two_blocks(ly, lx, lp, wp)]
    candidates += [pinwheel] if pinwheel is not None else []
    n = max(len(c) for c in candidates)
    best = [c for c in candidates if len(c) == n]
    base = best[0]
    alternates = [_rot180(base), _mirror_x(base), _mirror_y(base)]
    for c in best[1:]:
        alternates += [c, _rot180(c), _mirror_x(c), _mirror_y(c)]
    # Odd layer: the alternate with the fewest boxes sitting exactly on a box below (seams in line).
    below = _footprints(base)
    odd, fewest = alternates[0], len(base) + 1
    for c in alternates:
        shared = len(below & _footprints(c))
        if shared < fewest:  # first on a tie
            odd, fewest = c, shared
        if shared == 0:
            break
    return _Layers(base, odd, "interlock", None)


def _ordered(layout: Layout, spec: PalletSpec) -> list[tuple[float, float, float]]:
    """Boxes of one layer as (x, y, yaw) in the pallet frame, in place order."""
    sign = -1.0 if spec.mirror else 1.0
    axis = 1 if spec.approach_side[1] == "y" else 0
    towards = 1.0 if spec.approach_side[0] == "-" else -1.0  # far side first: descending distance
    rows = []
    for x, y, q in layout:
        xf, qf = (sign * x, (2 - q) % 4 if spec.mirror else q)
        depth = (xf, y)[axis] * towards
        lateral = (y, x)[axis]  # unmirrored coordinate
        if spec.label_out:
            plus_x = xf > _EPS or (abs(xf) <= _EPS and not spec.mirror)  # centre line: + unless mirrored
            qf = (0 if plus_x else 2) if qf % 2 == 0 else (1 if y >= -_EPS else 3)
        rows.append((-round(depth, 9), round(lateral, 9), round(xf, 9) + 0.0, round(y, 9) + 0.0, _YAW[qf]))
    rows.sort()
    return [(xf, y, yaw) for _, _, xf, y, yaw in rows]


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class PalletPlan:
    """Every place of a full pallet, in place order, with the figures of the pattern."""

    spec: PalletSpec
    places: tuple[Place, ...]
    boxes_per_layer: int
    layers: int
    fill_ratio: float
    height: float
    pattern_used: Pattern
    fallback: str | None = None

    def __len__(self) -> int:
        return len(self.places)

    def place(self, index: int) -> Place:
        """Place `index` (0-based)."""
        if not 0 <= index < len(self.places):
            raise IndexError(f"place index {index} is outside 0..{len(self.places) - 1}")
        return self.places[index]

    def layer(self, layer: int) -> tuple[Place, ...]:
        """The places of one layer, in place order."""
        if not 0 <= layer < self.layers:
            raise IndexError(f"layer {layer} is outside 0..{self.layers - 1}")
        n = self.boxes_per_layer
        return self.places[layer * n : (layer + 1) * n]

    def footprint(self, place: Place) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of a placed box in the pallet frame (m)."""
        along_y = abs(math.sin(place.yaw)) > 0.5
        hx, hy = (self.spec.box.width, self.spec.box.length) if along_y else (self.spec.box.length, self.spec.box.width)
        x, y, _ = place.position
        return (x - hx / 2, x + hx / 2, y - hy / 2, y + hy / 2)

    def check(self, state: PalletState) -> PalletState:
        """`state` if it belongs on this pallet (0 <= next_index <= places), else ValueError."""
        if state.next_index > len(self.places):
            raise ValueError(
                f"next_index: {state.next_index} is past the end of the pallet ({len(self.places)} places)"
            )
        return state

    def remaining(self, state: PalletState) -> tuple[Place, ...]:
        """The places still to fill after `state`, in place order."""
        return self.places[self.check(state).next_index :]

    def next_place(self, state: PalletState) -> Place | None:
        """The place to fill next, None when the pallet is complete."""
        rest = self.remaining(state)
        return rest[0] if rest else None

    def is_complete(self, state: PalletState) -> bool:
        """True when every place is filled."""
        return self.check(state).next_index == len(self.places)

    @property
    def fingerprint(self) -> str:
        """Short hash of the spec: a persisted PalletState is only valid for the same fingerprint."""
        return hashlib.sha256(_json(self.spec).encode()).hexdigest()[:12]

    def summary(self) -> dict[str, Any]:
        """Headline figures as plain values (for reports, the CLI and logs)."""
        s = self.spec
        return {
            "pallet": s.pallet_name,
            "pallet_size_m": list(s.pallet_size),
            "box_m": [s.box.length, s.box.width, s.box.height],
            "pattern": s.pattern,
            "pattern_used": self.pattern_used,
            "fallback": self.fallback,
            "boxes_per_layer": self.boxes_per_layer,
            "layers": self.layers,
            "places": len(self.places),
            "fill_ratio": round(self.fill_ratio, 4),
            "height_m": round(self.height, 6),
            "total_height_m": round(self.height + s.deck_height, 6),
            "slip_sheets": self.layers - 1 if s.slip_sheets else 0,
            "approach_side": s.approach_side,
            "mirror": s.mirror,
            "label_out": s.label_out,
            "fingerprint": self.fingerprint,
        }


def _json_float(x: float) -> str:
    """A float as pydantic writes it in JSON: shortest round-trip digits, plain notation from 1e-5 up to 1e16,
    an exponent without '+' or leading zeros outside; null if not finite."""
    if not math.isfinite(x):
        return "null"
    text = repr(x)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    if int(exponent) == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{int(exponent)}"


def _json(value: Any) -> str:
    """Compact JSON of a spec, byte for byte as pydantic dumps it (fields in order), so fingerprints persisted by
    earlier versions stay valid."""
    if dataclasses.is_dataclass(value):
        return (
            "{"
            + ",".join(f"{json.dumps(f.name)}:{_json(getattr(value, f.name))}" for f in dataclasses.fields(value))
            + "}"
        )
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, float):
        return _json_float(value)
    return json.dumps(value, ensure_ascii=False)


def plan_pallet(spec: PalletSpec) -> PalletPlan:
    """Every place of a full pallet for `spec`, in place order."""
    chosen = _layers(spec)
    even, odd = _ordered(chosen.even, spec), _ordered(chosen.odd, spec)
    n, layers = len(chosen.even), spec.layer_count
    h, sheet = spec.box.height, spec.sheet
    places = []
    for layer in range(layers):
        z, first = round((layer + 1) * h + layer * sheet, 9), layer * n
        for k, (x, y, yaw) in enumerate(odd if layer % 2 else even):
            places.append(Place(first + k, layer, (x, y, z), yaw, k == 0 and layer > 0 and spec.slip_sheets))
    length, width = spec.pallet_size
    fill = spec.box.length * spec.box.width * n / (length * width)
    plan = PalletPlan(spec, tuple(places), n, layers, fill, spec.stack_height(layers), chosen.used, chosen.fallback)
    log.debug("pallet plan: %s", plan.summary())
    return plan
