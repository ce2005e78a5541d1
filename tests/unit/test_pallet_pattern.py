"""Pallet patterns: layouts, layers, place order, label/mirror, validation messages and continuation state."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from cobot_cell.core.validation import validate
from cobot_cell.skills.pallet_pattern import STANDARD_PALLETS, PalletPlan, PalletSpec, PalletState, Place, plan_pallet

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-7


def spec(**kw: Any) -> PalletSpec:
    """A valid spec: EUR, 400 x 300 x 200 mm boxes, 1 m high, unless overridden."""
    base: dict[str, Any] = {"pallet": "EUR", "box": {"length": 0.4, "width": 0.3, "height": 0.2}, "max_height": 1.0}
    return validate(PalletSpec, base | kw)


def errors(**kw: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        spec(**kw)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def footprints(plan: PalletPlan, places: tuple[Place, ...]) -> np.ndarray:
    """(n, 4) array of x_min, x_max, y_min, y_max from each place's yaw, computed without the plan's help."""
    box = plan.spec.box
    rows = []
    for p in places:
        c, s = round(math.cos(p.yaw)), round(math.sin(p.yaw))
        assert abs(c) + abs(s) == 1, p.yaw  # a quarter turn
        hx, hy = (box.length / 2, box.width / 2) if c else (box.width / 2, box.length / 2)
        x, y, _ = p.position
        rows.append((x - hx, x + hx, y - hy, y + hy))
    return np.array(rows)


def footprint_set(plan: PalletPlan, places: tuple[Place, ...]) -> set[tuple[float, ...]]:
    return {tuple(round(v, 6) + 0.0 for v in f) for f in footprints(plan, places)}


def usable(s: PalletSpec) -> tuple[float, float]:
    length, width = s.pallet_size
    return length + 2 * s.overhang, width + 2 * s.overhang


# ------------------------------------------------------------------------------------ random specifications

mm = st.integers(100, 600).map(lambda v: v / 1000)
pallets = st.one_of(
    st.sampled_from(["EUR", "US"]),
    st.builds(
        lambda a, b: {"length": a, "width": b}, st.integers(600, 1500).map(lambda v: v / 1000), st.floats(0.6, 1.5)
    ),
)


@st.composite
def specs(draw: st.DrawFn, **fixed: Any) -> PalletSpec:
    h = draw(st.one_of(mm, st.floats(0.1, 0.5)))
    kw: dict[str, Any] = {
        "pallet": draw(pallets),
        "box": {"length": draw(st.one_of(mm, st.floats(0.1, 0.6))), "width": draw(mm), "height": h},
        "pattern": draw(st.sampled_from(["column", "interlock", "pinwheel"])),
        "max_height": h + draw(st.floats(0.0, 1.5)),
        "slip_sheets": draw(st.booleans()),
        "label_out": draw(st.booleans()),
        "mirror": draw(st.booleans()),
        "overhang": draw(st.sampled_from([0.0, 0.0, 0.025, 0.05])),
        "gap": draw(st.sampled_from([0.0, 0.0, 0.005, 0.013])),
        "approach_side": draw(st.sampled_from(["-y", "+y", "-x", "+x"])),
    }
    if draw(st.booleans()):
        kw["slip_sheet_thickness"] = draw(st.floats(0.001, 0.01))
    return validate(PalletSpec, kw | fixed)


# --------------------------------------------------------------------------------------------- geometry


def blocked_pairs(plan: PalletPlan, places: tuple[Place, ...]) -> list[tuple[int, int]]:
    """(earlier, later) pairs where the earlier box lies in the later box's straight path from the approach side."""
    f = footprints(plan, places)
    side = plan.spec.approach_side
    # Canonical frame: lateral u, depth v, the gripper comes from v = -inf.
    if side == "-y":
        u, v = f[:, 0:2], f[:, 2:4]
    elif side == "+y":
        u, v = f[:, 0:2], -f[:, [3, 2]]
    elif side == "-x":
        u, v = f[:, 2:4], f[:, 0:2]
    else:
        u, v = f[:, 2:4], -f[:, [1, 0]]
    out = []
    for j in range(len(places)):
        for i in range(j):
            lateral = u[i, 0] < u[j, 1] - TOL and u[j, 0] < u[i, 1] - TOL
            in_path = v[i, 0] < v[j, 1] - TOL  # swept region: v in (-inf, v_max of j)
            if lateral and in_path:
                out.append((i, j))
    return out


def overlapping_pairs(f: np.ndarray, gap: float) -> list[tuple[int, int]]:
    """Pairs of footprints closer than `gap` in both axes (i.e. overlapping once each grows by gap/2)."""
    g = gap - TOL
    ox = (f[:, None, 0] < f[None, :, 1] + g) & (f[None, :, 0] < f[:, None, 1] + g)
    oy = (f[:, None, 2] < f[None, :, 3] + g) & (f[None, :, 2] < f[:, None, 3] + g)
    hit = ox & oy
    np.fill_diagonal(hit, False)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(hit)) if i < j]


@settings(max_examples=150, deadline=None)
@given(specs())
def test_every_layer_is_sound(s: PalletSpec) -> None:
    plan = plan_pallet(s)
    n, h, sheet = plan.boxes_per_layer, s.box.height, s.sheet
    assert n >= 1 and len(plan) == n * plan.layers
    assert [p.index for p in plan.places] == list(range(len(plan)))
    ulen, uwid = usable(s)
    for layer in range(min(plan.layers, 2)):
        places = plan.layer(layer)
        f = footprints(plan, places)
        assert overlapping_pairs(f, s.gap) == []
        assert f[:, 0].min() >= -ulen / 2 - TOL and f[:, 1].max() <= ulen / 2 + TOL
        assert f[:, 2].min() >= -uwid / 2 - TOL and f[:, 3].max() <= uwid / 2 + TOL
        assert blocked_pairs(plan, places) == []
    for p in plan.places:
        assert p.layer == p.index // n
        assert p.position[2] == pytest.approx((p.layer + 1) * h + p.layer * sheet, abs=1e-9)
        assert p.slip_sheet_before == (s.slip_sheets and p.layer > 0 and p.index % n == 0)
        same = plan.places[p.index % (2 * n)]  # layers repeat with period 2
        assert p.position[:2] == same.position[:2] and p.yaw == same.yaw
    length, width = s.pallet_size
    assert plan.fill_ratio == pytest.approx(s.box.length * s.box.width * n / (length * width))
    assert plan.fill_ratio <= ulen * uwid / (length * width) + TOL
    if s.overhang == 0:
        assert plan.fill_ratio <= 1 + TOL
    assert plan.height == pytest.approx(plan.layers * h + (plan.layers - 1) * sheet)
    assert plan.height <= s.max_height + 1e-9
    assert plan.height + h + sheet > s.max_height  # no further layer would fit


@settings(max_examples=100, deadline=None)
@given(specs())
def test_patterns_relate_as_documented(s: PalletSpec) -> None:
    column = plan_pallet(dataclasses.replace(s, pattern="column"))
    interlock = plan_pallet(dataclasses.replace(s, pattern="interlock"))
    pinwheel = plan_pallet(dataclasses.replace(s, pattern="pinwheel"))
    # Column: the better grid, every layer the same, one orientation.
    ulen, uwid = usable(s)
    lp, wp, g = s.box.length + s.gap, s.box.width + s.gap, s.gap
    grids = [
        math.floor((ulen + g) / lp + 1e-9) * math.floor((uwid + g) / wp + 1e-9),
        math.floor((ulen + g) / wp + 1e-9) * math.floor((uwid + g) / lp + 1e-9),
    ]
    assert column.boxes_per_layer == max(grids)
    assert len({round(math.sin(p.yaw) ** 2) for p in column.places}) == 1
    if column.layers > 1:
        assert footprint_set(column, column.layer(0)) == footprint_set(column, column.layer(1))
    # Interlock: best count of all; the odd layer shares no more footprints with the even one than a
    # plain 180-degree rotation would.
    assert interlock.boxes_per_layer >= max(column.boxes_per_layer, pinwheel.boxes_per_layer)
    if interlock.layers > 1:
        even = footprint_set(interlock, interlock.layer(0))
        rotated = {tuple(round(-v, 6) + 0.0 for v in (f[1], f[0], f[3], f[2])) for f in even}
        assert len(even & footprint_set(interlock, interlock.layer(1))) <= len(even & rotated)
    # Pinwheel: used when it ties or beats the column grid, else exactly the column plan.
    assert pinwheel.boxes_per_layer >= column.boxes_per_layer
    if pinwheel.pattern_used == "column":
        assert pinwheel.fallback is not None and pinwheel.places == column.places
    else:
        assert pinwheel.fallback is None
        layer0 = pinwheel.layer(0)
        assert len({round(math.sin(p.yaw) ** 2) for p in layer0}) == 2  # crossed blocks
        fp = footprint_set(pinwheel, layer0)
        assert {tuple(round(-v, 6) + 0.0 for v in (f[1], f[0], f[3], f[2])) for f in fp} == fp  # 180 deg
        if pinwheel.layers > 1:
            mirrored = {tuple(round(-v, 6) + 0.0 for v in (f[1], f[0])) + f[2:] for f in fp}
            assert footprint_set(pinwheel, pinwheel.layer(1)) == mirrored


def normal_angle(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


@settings(max_examples=60, deadline=None)
@given(specs(mirror=False), st.sampled_from(["-y", "+y"]))
def test_mirror_gives_the_mirror_image_place_by_place(s: PalletSpec, side: str) -> None:
    s = dataclasses.replace(s, approach_side=side)
    plain, mirrored = plan_pallet(s), plan_pallet(dataclasses.replace(s, mirror=True))
    assert len(plain) == len(mirrored)
    for p, m in zip(plain.places, mirrored.places):
        assert m.position == (-p.position[0] + 0.0, p.position[1], p.position[2])
        assert normal_angle(m.yaw) == pytest.approx(normal_angle(math.pi - p.yaw), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(specs(label_out=False))
def test_label_out_turns_labels_to_the_nearer_edge_without_moving_boxes(s: PalletSpec) -> None:
    plain, labelled = plan_pallet(s), plan_pallet(dataclasses.replace(s, label_out=True))
    for p, q in zip(plain.places, labelled.places):
        assert q.position == p.position
        assert round(math.sin(q.yaw) ** 2) == round(math.sin(p.yaw) ** 2)  # same axis, same footprint
        label = (round(math.cos(q.yaw)), round(math.sin(q.yaw)))  # the box's +x face
        x, y, _ = q.position
        coord = x if label[0] else y
        if abs(coord) > 1e-9:  # on the centre line both edges are as near
            assert (label[0] or label[1]) == (1 if coord > 0 else -1)  # towards the nearer edge on that axis


# ------------------------------------------------------------------------------------------ known figures


@pytest.mark.parametrize("pattern", ["column", "interlock", "pinwheel"])
def test_eur_400_300_200_is_8_per_layer_fill_1(pattern: str) -> None:
    plan = plan_pallet(spec(pattern=pattern))
    assert (plan.boxes_per_layer, plan.fill_ratio, plan.layers, len(plan)) == (8, 1.0, 5, 40)
    assert plan.height == pytest.approx(1.0)


def test_eur_400_300_pinwheel_falls_back_to_column_with_a_reason() -> None:
    plan = plan_pallet(spec(pattern="pinwheel"))
    assert plan.pattern_used == "column"
    assert plan.fallback == (
        "pinwheel: the best four-block pinwheel places 6 boxes per layer, fewer than the "
        "column grid's 8; using the column pattern"
    )
    assert plan.places == plan_pallet(spec(pattern="column")).places


def test_eur_400_300_column_layer_in_place_order() -> None:
    plan = plan_pallet(spec())
    half_pi = math.pi / 2
    # The only 8-box layer: four boxes across x (300 mm), two rows of 400 mm; far row (+y) first, -x to +x.
    assert [(p.position[:2], p.yaw) for p in plan.layer(0)] == [
        ((-0.45, 0.2), half_pi),
        ((-0.15, 0.2), half_pi),
        ((0.15, 0.2), half_pi),
        ((0.45, 0.2), half_pi),
        ((-0.45, -0.2), half_pi),
        ((-0.15, -0.2), half_pi),
        ((0.15, -0.2), half_pi),
        ((0.45, -0.2), half_pi),
    ]
    assert [p.position[2] for p in plan.places[::8]] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_eur_400_300_interlock_can_only_turn_the_layer_180_degrees() -> None:
    plan = plan_pallet(spec(pattern="interlock"))
    even, odd = plan.layer(0), plan.layer(1)
    assert footprint_set(plan, even) == footprint_set(plan, odd)
    assert {p.yaw for p in even} == {math.pi / 2} and {p.yaw for p in odd} == {-math.pi / 2}


def test_approach_from_plus_x_fills_from_minus_x() -> None:
    plan = plan_pallet(spec(approach_side="+x"))
    assert [p.position[:2] for p in plan.layer(0)] == [
        (-0.45, -0.2),
        (-0.45, 0.2),
        (-0.15, -0.2),
        (-0.15, 0.2),
        (0.15, -0.2),
        (0.15, 0.2),
        (0.45, -0.2),
        (0.45, 0.2),
    ]


def test_order_check_catches_a_box_carried_over_placed_ones() -> None:
    plan = plan_pallet(spec())
    near_row_first = tuple(reversed(plan.layer(0)))
    assert blocked_pairs(plan, plan.layer(0)) == []
    assert len(blocked_pairs(plan, near_row_first)) == 4  # each far box passes over the near box in front of it


def test_label_out_on_eur_and_mirrored() -> None:
    plan = plan_pallet(spec(label_out=True))
    assert [p.yaw for p in plan.layer(0)] == [math.pi / 2] * 4 + [-math.pi / 2] * 4  # far row +y, near row -y
    wide = plan_pallet(spec(box={"length": 0.4, "width": 0.25, "height": 0.2}, label_out=True))
    assert wide.boxes_per_layer == 9  # 3 x 3 lengthwise: the middle column sits on the centre line
    assert [(p.position[0], p.yaw) for p in wide.layer(0)[:3]] == [(-0.4, math.pi), (0.0, 0.0), (0.4, 0.0)]
    mirrored = plan_pallet(spec(box={"length": 0.4, "width": 0.25, "height": 0.2}, label_out=True, mirror=True))
    assert [(p.position[0], p.yaw) for p in mirrored.layer(0)[:3]] == [(0.4, 0.0), (0.0, math.pi), (-0.4, math.pi)]


def test_us_400_300_interlock_beats_column_with_two_blocks_and_offset_seams() -> None:
    column, interlock = plan_pallet(spec(pallet="US")), plan_pallet(spec(pallet="US", pattern="interlock"))
    assert column.boxes_per_layer == 9 and interlock.boxes_per_layer == 10
    assert interlock.fill_ratio == pytest.approx(10 * 0.12 / (1.219 * 1.016))
    assert footprint_set(interlock, interlock.layer(0)) & footprint_set(interlock, interlock.layer(1)) == set()


def test_classic_pinwheel_on_a_square_pallet() -> None:
    s = spec(
        pallet={"length": 1.0, "width": 1.0}, box={"length": 0.6, "width": 0.4, "height": 0.25}, pattern="pinwheel"
    )
    plan = plan_pallet(s)
    assert plan.pattern_used == "pinwheel" and plan.fallback is None
    assert plan.boxes_per_layer == 4 and plan_pallet(dataclasses.replace(s, pattern="column")).boxes_per_layer == 2
    assert plan.fill_ratio == pytest.approx(0.96)
    # Four boxes turning anticlockwise around a 0.2 m hole, in place order (far side first)...
    assert [plan.footprint(p) for p in plan.layer(0)] == [
        pytest.approx(f)
        for f in ((-0.1, 0.5, 0.1, 0.5), (-0.5, -0.1, -0.1, 0.5), (0.1, 0.5, -0.5, 0.1), (-0.5, 0.1, -0.5, -0.1))
    ]
    # ...and the mirrored layer above turns clockwise, so its seams cross the ones below.
    assert [plan.footprint(p) for p in plan.layer(1)] == [
        pytest.approx(f)
        for f in ((-0.5, 0.1, 0.1, 0.5), (0.1, 0.5, -0.1, 0.5), (-0.5, -0.1, -0.5, 0.1), (-0.1, 0.5, -0.5, -0.1))
    ]


def test_box_that_fits_one_way_only_and_overhang() -> None:
    plan = plan_pallet(spec(box={"length": 1.0, "width": 0.3, "height": 0.2}))
    assert plan.boxes_per_layer == 2 and {p.yaw for p in plan.places} == {0.0}
    over = plan_pallet(spec(box={"length": 1.25, "width": 0.4, "height": 0.2}, overhang=0.03))
    assert over.boxes_per_layer == 2
    assert [over.footprint(p) for p in over.layer(0)] == [
        pytest.approx((-0.625, 0.625, 0.0, 0.4)),
        pytest.approx((-0.625, 0.625, -0.4, 0.0)),
    ]
    assert over.fill_ratio == pytest.approx(1.25 * 0.4 * 2 / 0.96)  # above 1: boxes reach over the edge


def test_gap_is_kept_between_boxes_not_at_the_edge() -> None:
    plan = plan_pallet(spec(box={"length": 0.39, "width": 0.29, "height": 0.2}, gap=0.01))
    assert plan.boxes_per_layer == 8
    xs = sorted({p.position[0] for p in plan.layer(0)})
    assert xs == pytest.approx([-0.45, -0.15, 0.15, 0.45])
    assert overlapping_pairs(footprints(plan, plan.layer(0)), 0.01) == []


def test_layers_given_slip_sheets_and_summary() -> None:
    plan = plan_pallet(spec(pattern="interlock", layers=3, slip_sheets=True, max_height=1.2))
    assert plan.layers == 3 and plan.height == pytest.approx(0.604)
    assert [p.index for p in plan.places if p.slip_sheet_before] == [8, 16]
    assert [p.position[2] for p in plan.places[::8]] == pytest.approx([0.2, 0.402, 0.604])
    summary = plan.summary()
    assert summary == {
        "pallet": "EUR",
        "pallet_size_m": [1.2, 0.8],
        "box_m": [0.4, 0.3, 0.2],
        "pattern": "interlock",
        "pattern_used": "interlock",
        "fallback": None,
        "boxes_per_layer": 8,
        "layers": 3,
        "places": 24,
        "fill_ratio": 1.0,
        "height_m": 0.604,
        "total_height_m": 0.748,
        "slip_sheets": 2,
        "approach_side": "-y",
        "mirror": False,
        "label_out": False,
        "fingerprint": plan.fingerprint,
    }
    assert len(plan.fingerprint) == 12 and plan_pallet(spec()).fingerprint != plan.fingerprint


def test_standard_and_custom_pallets() -> None:
    assert spec(pallet="US").pallet_size == (1.219, 1.016) and spec(pallet="US").deck_height == 0.140
    assert spec().pallet_size == (1.2, 0.8) and spec().deck_height == 0.144
    custom = spec(pallet={"length": 1.1, "width": 1.1}, pallet_height=0.15)
    assert (custom.pallet_name, custom.pallet_size, custom.deck_height) == ("custom", (1.1, 1.1), 0.15)
    assert spec(pallet={"length": 1.1, "width": 1.1}).deck_height == 0.144
    assert set(STANDARD_PALLETS) == {"EUR", "US"}
    assert dataclasses.asdict(spec())["pallet"] == "EUR"
    assert dataclasses.asdict(custom)["pallet"] == {"length": 1.1, "width": 1.1}


def test_place_and_layer_accessors() -> None:
    plan = plan_pallet(spec())
    assert plan.place(9) is plan.places[9]
    with pytest.raises(IndexError, match=r"^place index 40 is outside 0\.\.39$"):
        plan.place(40)
    with pytest.raises(IndexError, match=r"^layer 5 is outside 0\.\.4$"):
        plan.layer(5)


# ----------------------------------------------------------------------------------------- bad input


def test_box_larger_than_the_pallet() -> None:
    assert errors(box={"length": 1.3, "width": 0.4, "height": 0.2}) == [
        (
            ("box",),
            "Value error, box 1.300 x 0.400 m does not fit on the EUR pallet 1.200 x 0.800 m in either orientation",
        )
    ]
    assert errors(
        pallet={"length": 1.0, "width": 0.6}, overhang=0.02, box={"length": 0.7, "width": 0.7, "height": 0.2}
    ) == [
        (
            ("box",),
            "Value error, box 0.700 x 0.700 m does not fit on the custom pallet 1.000 x 0.600 m "
            "in either orientation with 0.020 m overhang",
        )
    ]


def test_non_positive_dimensions_name_the_field() -> None:
    assert errors(box={"length": 0.0, "width": 0.3, "height": -0.2}) == [
        (("box", "length"), "Input should be greater than 0"),
        (("box", "height"), "Input should be greater than 0"),
    ]
    assert errors(pallet={"length": 1.0, "width": -1.0}) == [(("pallet", "width"), "Input should be greater than 0")]
    assert errors(max_height=0) == [(("max_height",), "Input should be greater than 0")]
    assert errors(layers=0) == [(("layers",), "Input should be greater than 0")]
    assert errors(gap=-0.01) == [(("gap",), "Input should be greater than or equal to 0")]


def test_height_limit() -> None:
    assert errors(max_height=0.15) == [
        (("max_height",), "Value error, 0.150 m is below the box height 0.200 m: not even one layer fits")
    ]
    assert errors(layers=6, slip_sheets=True) == [
        (("layers",), "Value error, 6 layers of 0.200 m (+ slip sheets) reach 1.210 m, above max_height 1.000 m")
    ]
    assert errors(layers=6) == [
        (("layers",), "Value error, 6 layers of 0.200 m reach 1.200 m, above max_height 1.000 m")
    ]
    assert spec(layers=5).layer_count == 5  # exactly at the limit is fine
    assert spec(slip_sheets=True).layer_count == 4


def test_unknown_keys_and_bad_choices() -> None:
    assert errors(colour="red") == [(("colour",), "Unexpected keyword argument")]
    assert errors(pallet="ISO") == [
        (("pallet",), "Value error, expected 'EUR', 'US' or {length, width} in m, got 'ISO'")
    ]
    assert errors(pallet=3) == [(("pallet",), "Value error, expected 'EUR', 'US' or {length, width} in m, got 3")]
    assert errors(pallet={"length": 1.0, "width": 1.0, "height": 0.1}) == [
        (("pallet", "height"), "Unexpected keyword argument")
    ]
    assert errors(pattern="spiral")[0][0] == ("pattern",)
    assert errors(approach_side="y")[0][0] == ("approach_side",)


def test_error_locations_when_embedded_in_a_cell_file_model() -> None:
    class Station(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        pallet: PalletSpec

    class Cell(BaseModel):
        stations: dict[str, Station]

    data = {
        "stations": {
            "pallet_a": {
                "pallet": {"box": {"length": 0.4, "width": 0.3, "height": 0.2}, "max_height": 1.0, "layers": 6}
            }
        }
    }
    with pytest.raises(ValidationError) as info:
        Cell.model_validate(data)
    assert [e["loc"] for e in info.value.errors()] == [("stations", "pallet_a", "pallet", "layers")]


# ------------------------------------------------------------------------------------------ continuation


def test_continuation_returns_exactly_the_remaining_places() -> None:
    plan = plan_pallet(spec(pattern="interlock"))
    assert plan.remaining(PalletState()) == plan.places
    assert plan.remaining(PalletState(17)) == plan.places[17:]
    assert plan.remaining(PalletState(40)) == () and plan.is_complete(PalletState(40))
    state, filled = PalletState(), []
    while (place := plan.next_place(state)) is not None:
        filled.append(place)
        state = state.advance(plan)
    assert tuple(filled) == plan.places and state == PalletState(40)


@settings(max_examples=50, deadline=None)
@given(specs(), st.data())
def test_continuing_after_a_stop_fills_the_same_places(s: PalletSpec, data: st.DataObject) -> None:
    plan = plan_pallet(s)
    stop = data.draw(st.integers(0, len(plan)))
    resumed = PalletState(stop)  # what a restart reads back
    assert plan.places[:stop] + plan.remaining(resumed) == plan.places
    assert plan_pallet(s).remaining(resumed) == plan.remaining(resumed)  # plans are deterministic


def test_state_validation() -> None:
    plan = plan_pallet(spec())
    with pytest.raises(ValueError, match=r"^next_index: 41 is past the end of the pallet \(40 places\)$"):
        plan.remaining(PalletState(41))
    with pytest.raises(ValueError, match=r"^next_index: the pallet is complete \(40 places\), nothing to advance$"):
        PalletState(40).advance(plan)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"^next_index: expected an integer >= 0, got "):
            PalletState(bad)  # type: ignore[arg-type]
    assert PalletState(3).advance() == PalletState(4)


def test_module_imports_no_rclpy() -> None:
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"
        "import cobot_cell.skills.pallet_pattern\n"
        "bad = sorted(m for m, mod in sys.modules.items() if mod is not None and"
        " (m.startswith('rclpy') or m.endswith('_msgs')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_pinwheel_that_cannot_fit_falls_back_with_a_reason() -> None:
    plan = plan_pallet(spec(box={"length": 0.6, "width": 0.4, "height": 0.2}, pattern="pinwheel"))
    assert (plan.pattern_used, plan.boxes_per_layer) == ("column", 4)
    assert plan.fallback == "pinwheel: no four-block pinwheel fits; using the column pattern (4 per layer)"
