"""The pallet a station stacks boxes on, as written under `stations.<name>.pallet`: the pallet (standard or
custom), the box, the pattern name and the stack limits, with the checks that a box fits and a layer fits.

The layout algorithm (places, order, figures) is cobot_cell.skills.pallet_pattern; the conventions (frames, label
end, approach side) are described there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge

from .validation import After, Checked, Plain, PositiveFloat, PositiveInt, validate

STANDARD_PALLETS: dict[str, tuple[float, float, float]] = {
    "EUR": (1.200, 0.800, 0.144),  # EN 13698-1
    "US": (1.219, 1.016, 0.140),  # GMA 48 x 40 in, about 5.5 in high
}
CUSTOM_PALLET_HEIGHT = 0.144
_PALLET_EPS = 1e-9  # relative slack when a box fits a span, absolute slack for heights (m)

PatternName = Literal["column", "interlock", "pinwheel"]
ApproachSide = Literal["-y", "+y", "-x", "+x"]


@dataclass(frozen=True, kw_only=True)
class PalletSize(Checked):
    """A custom pallet deck, length (along x) by width (along y), in m."""

    length: PositiveFloat
    width: PositiveFloat


@dataclass(frozen=True, kw_only=True)
class BoxSize(Checked):
    """A box, length by width by height, in m; the label is on the face at the end of its length."""

    length: PositiveFloat
    width: PositiveFloat
    height: PositiveFloat


def pallet_dims(pallet: str | PalletSize) -> tuple[str, float, float]:
    """('EUR' | 'US' | 'custom', length, width) of a pallet (m)."""
    if isinstance(pallet, str):
        length, width, _ = STANDARD_PALLETS[pallet]
        return (pallet, length, width)
    return ("custom", pallet.length, pallet.width)


def _pallet(v: Any) -> str | PalletSize:
    if isinstance(v, str):
        if v not in STANDARD_PALLETS:
            raise ValueError(f"expected 'EUR', 'US' or {{length, width}} in m, got {v!r}")
        return v
    if isinstance(v, (dict, PalletSize)):
        return validate(PalletSize, v)
    raise ValueError(f"expected 'EUR', 'US' or {{length, width}} in m, got {v!r}")


def _box_fits(box: BoxSize, d: dict[str, Any]) -> BoxSize:
    if "pallet" not in d or "overhang" not in d:
        return box
    name, length, width = pallet_dims(d["pallet"])
    o, e = d["overhang"], _PALLET_EPS
    fits = [
        box.length <= length + 2 * o + e and box.width <= width + 2 * o + e,
        box.width <= length + 2 * o + e and box.length <= width + 2 * o + e,
    ]
    if not any(fits):
        with_overhang = f" with {o:.3f} m overhang" if o > 0 else ""
        raise ValueError(
            f"box {box.length:.3f} x {box.width:.3f} m does not fit on the {name} pallet "
            f"{length:.3f} x {width:.3f} m in either orientation{with_overhang}"
        )
    return box


def _one_layer(max_height: float, d: dict[str, Any]) -> float:
    box = d.get("box")
    if box is not None and box.height > max_height + _PALLET_EPS:
        raise ValueError(f"{max_height:.3f} m is below the box height {box.height:.3f} m: not even one layer fits")
    return max_height


def _layers_fit(layers: int | None, d: dict[str, Any]) -> int | None:
    if layers is None or not all(k in d for k in ("box", "max_height", "slip_sheets", "slip_sheet_thickness")):
        return layers
    sheet = d["slip_sheet_thickness"] if d["slip_sheets"] else 0.0
    reach = layers * d["box"].height + (layers - 1) * sheet
    if reach > d["max_height"] + _PALLET_EPS:
        sheets = " (+ slip sheets)" if d["slip_sheets"] else ""
        raise ValueError(
            f"{layers} layers of {d['box'].height:.3f} m{sheets} reach {reach:.3f} m, "
            f"above max_height {d['max_height']:.3f} m"
        )
    return layers


def _doc(text: str) -> dict[str, str]:
    return {"description": text}


@dataclass(frozen=True, kw_only=True)
class PalletSpec(Checked):
    """A pallet, the box stacked on it and the pattern, as written under `stations.<name>.pallet`."""

    # Field order matters: the cross-field checks read only fields declared before them.
    pallet: Annotated[Literal["EUR", "US"] | PalletSize, Plain(_pallet)] = field(
        default="EUR", metadata=_doc("'EUR' (1.200 x 0.800 m), 'US' (1.219 x 1.016 m) or a custom {length, width} in m")
    )
    pallet_height: PositiveFloat | None = field(
        default=None, metadata=_doc("deck height above the floor (m); default EUR 0.144, US 0.140, custom 0.144")
    )
    overhang: Annotated[float, Ge(0.0)] = field(
        default=0.0, metadata=_doc("how far a box may reach past each pallet edge (m)")
    )
    gap: Annotated[float, Ge(0.0)] = field(default=0.0, metadata=_doc("space kept between neighbouring boxes (m)"))
    box: Annotated[BoxSize, After(_box_fits, fields=True)] = field(
        metadata=_doc("box length, width, height (m); the label is on the +x (length) end")
    )
    pattern: PatternName = field(default="column", metadata=_doc("column, interlock or pinwheel"))
    max_height: Annotated[PositiveFloat, After(_one_layer, fields=True)] = field(
        metadata=_doc("stack height limit above the pallet deck (m)")
    )
    slip_sheets: bool = field(default=False, metadata=_doc("lay a slip sheet between layers"))
    slip_sheet_thickness: PositiveFloat = field(default=0.002, metadata=_doc("slip sheet thickness (m)"))
    layers: Annotated[PositiveInt | None, After(_layers_fit, fields=True)] = field(
        default=None, metadata=_doc("number of layers; default: as many as fit max_height")
    )
    label_out: bool = field(default=False, metadata=_doc("turn boxes so labels face the nearer pallet edge"))
    mirror: bool = field(
        default=False, metadata=_doc("mirror the pattern about the pallet's y axis (right-hand pallet)")
    )
    approach_side: ApproachSide = field(default="-y", metadata=_doc("side of the pallet the gripper comes in from"))

    @property
    def pallet_name(self) -> str:
        """'EUR', 'US' or 'custom'."""
        return pallet_dims(self.pallet)[0]

    @property
    def pallet_size(self) -> tuple[float, float]:
        """Pallet deck length and width (m)."""
        _, length, width = pallet_dims(self.pallet)
        return (length, width)

    @property
    def deck_height(self) -> float:
        """Height of the pallet deck above the floor (m): `pallet_height` or the pallet's standard height."""
        if self.pallet_height is not None:
            return self.pallet_height
        return STANDARD_PALLETS[self.pallet][2] if isinstance(self.pallet, str) else CUSTOM_PALLET_HEIGHT

    @property
    def sheet(self) -> float:
        """Thickness of the slip sheet laid between layers (m), 0 without slip sheets."""
        return self.slip_sheet_thickness if self.slip_sheets else 0.0

    def stack_height(self, layers: int) -> float:
        """Height of `layers` layers with their slip sheets above the deck (m)."""
        return layers * self.box.height + max(layers - 1, 0) * self.sheet

    @property
    def layer_count(self) -> int:
        """`layers` if given, else as many layers as fit under `max_height`."""
        if self.layers is not None:
            return self.layers
        return max(1, math.floor((self.max_height + self.sheet + _PALLET_EPS) / (self.box.height + self.sheet)))
