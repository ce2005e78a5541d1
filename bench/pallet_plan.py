"""Benchmark: time to generate a pallet plan of at least 1,000 boxes, against allocating as many Place objects.

Run: .venv/bin/python bench/pallet_plan.py [--runs 31]
Prints the machine, the EUR 400 x 300 x 200 mm figures per pattern, then per pattern the median time to plan a
1,024-box pallet and its ratio to a floor measured in the same run: building the same number of `Place` objects
from precomputed values (what any plan costs at least), timed alternately with the plan.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import pydantic
from common import cpu_model, paired_medians

from cobot_cell.core.validation import validate
from cobot_cell.skills.pallet_pattern import PalletSpec, Place, plan_pallet

PATTERNS = ("column", "interlock", "pinwheel")
# EUR pallet, 150 x 100 x 100 mm boxes, 1.65 m high: 64 boxes x 16 layers (+ 15 slip sheets) = 1,024 places.
BIG = {
    "pallet": "EUR",
    "box": {"length": 0.15, "width": 0.10, "height": 0.10},
    "max_height": 1.65,
    "slip_sheets": True,
    "label_out": True,
}
EUR_400_300 = {"pallet": "EUR", "box": {"length": 0.4, "width": 0.3, "height": 0.2}, "max_height": 1.0}


def main() -> None:
    """Print the machine, the EUR figures and the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31, help="timed runs per case (median reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the pinwheel fallback warning is reported in the table instead

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), numpy {np.__version__}, "
        f"pydantic {pydantic.VERSION}"
    )
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    print()
    print("EUR 1200 x 800 pallet, 400 x 300 x 200 mm boxes, max_height 1.0 m")
    print(f"  {'pattern':<10} {'boxes/layer':>11} {'fill':>6} {'layers':>6} {'places':>6}  used")
    for pattern in PATTERNS:
        plan = plan_pallet(validate(PalletSpec, EUR_400_300 | {"pattern": pattern}))
        note = plan.pattern_used + (f" ({plan.fallback})" if plan.fallback else "")
        print(
            f"  {pattern:<10} {plan.boxes_per_layer:>11} {plan.fill_ratio:>6.3f} {plan.layers:>6} "
            f"{len(plan):>6}  {note}"
        )
    print()
    print(
        f"Plan a 1,024-box pallet (EUR, 150 x 100 x 100 mm boxes, 16 layers, slip sheets, label out), "
        f"median of {args.runs} paired runs"
    )
    print(f"  {'pattern':<10} {'places':>6} {'plan ms':>9} {'floor ms':>9} {'ratio':>7} {'us/box':>7}")
    for pattern in PATTERNS:
        spec = validate(PalletSpec, BIG | {"pattern": pattern})
        plan = plan_pallet(spec)
        values = [(p.index, p.layer, p.position, p.yaw, p.slip_sheet_before) for p in plan.places]

        def floor(values: list[tuple[int, int, tuple[float, float], float, bool]] = values) -> list[Place]:
            return [Place(i, layer, pos, yaw, sheet) for i, layer, pos, yaw, sheet in values]

        assert len(plan) >= 1000, len(plan)
        t_plan, t_floor = paired_medians(lambda spec=spec: plan_pallet(spec), floor, args.runs)
        print(
            f"  {pattern:<10} {len(plan):>6} {t_plan * 1e3:>9.2f} {t_floor * 1e3:>9.3f} "
            f"{t_plan / t_floor:>6.1f}x {t_plan / len(plan) * 1e6:>7.2f}"
        )
    print()
    print(
        "ratio = plan time / time to build the same Place objects from precomputed values, timed alternately "
        "in this run"
    )


if __name__ == "__main__":
    main()
