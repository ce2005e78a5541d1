"""The estimate (skills.estimate, no ROS) against the cycle times the real node set measures in simulation."""

from __future__ import annotations

import pytest

from cobot_cell.core.config import CellConfig, topological_order
from cobot_cell.skills import estimate

PARTS = 2
TOLERANCE = 0.05  # relative, per part


def predicted(cfg: CellConfig, job: str, part: int) -> tuple[float, dict[str, float]]:
    """Planned cycle time of one part and each step's planned duration; a step starts when the steps it comes
    after have ended and its cobot is free (the sequencer's rule). The part number picks the pallet place."""
    est = {e.step: e.duration for e in estimate(cfg, job, part=part)}
    end: dict[str, float] = {}
    free: dict[str, float] = {}
    for name in topological_order(cfg.jobs[job]):
        step = cfg.jobs[job].step(name)
        start = max([end[d] for d in step.after] + [free.get(step.cobot, 0.0)])
        end[name] = start + est[name]
        free[step.cobot] = end[name]
    return max(end.values()), est


def test_the_estimate_is_within_5_percent_of_each_simulated_part(cell_rig) -> None:
    rig = cell_rig(parts=PARTS)
    rig.ok("reset")
    rig.wait_state("Idle")
    rig.ok("start")
    rig.wait_state("Complete", timeout=180)
    rig.wait_reports(PARTS)
    reports = sorted(rig.client.reports, key=lambda r: r.part)
    assert [r.part for r in reports] == list(range(1, PARTS + 1))
    lines, errors = [], []
    for r in reports:
        cycle, steps = predicted(rig.cfg, "bracket", r.part)
        error = (r.cycle_time - cycle) / cycle
        errors.append(error)
        lines.append(f"part {r.part}: estimated {cycle:.6f} s, measured {r.cycle_time:.6f} s, error {error:+.2e}")
        lines += [
            f"  {s.step}: estimated {steps[s.step]:.6f} s, measured {s.duration:.6f} s, "
            f"error {(s.duration - steps[s.step]) / steps[s.step]:+.2e}"
            for s in r.steps
        ]
    print("\n".join(lines))
    # the pallet place differs per part, and so does the estimate
    place_1, place_2 = (predicted(rig.cfg, "bracket", p)[1]["palletise"] for p in (1, 2))
    assert place_1 != pytest.approx(place_2, abs=1e-6)
    assert all(abs(e) <= TOLERANCE for e in errors), "\n".join(lines)
