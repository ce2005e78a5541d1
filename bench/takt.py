"""Takt with parts in flight: the real node set against the steady-state estimate's bottleneck bound.

For each cell (the demo cell, the three-cobot cell, the dual-station cell) it runs, through the real nodes as
`cobot-cell demo` does, --parts parts at --rate with parts in flight (the cell file's max_parts_in_flight) and
again one part at a time (max_parts_in_flight 1), and simulates the same number of parts with `cobot-cell
estimate`'s model (the real controller on simulated cobots, no ROS). The takt of a run is the mean interval
between successive part completions over its steady-state window (the estimate's: from the end of the first
quarter's last part to the end of the last part but one). Figures per cell:

- takt over bound: how much the real takt exceeds the estimate's lower bound (the bottleneck's busy time per
  part), in %; target <= 3% on the three-cobot and dual-station cells;
- estimate error: the estimate's takt over the real one, minus 1; target within 1%;
- gain: one-part-at-a-time takt over the pipelined takt (how many more parts per hour); the demo cell must be no
  slower than one part at a time (gain >= 0.999);
- the sim rate achieved (sim seconds per wall second).

    .venv/bin/python bench/takt.py [--parts 20] [--rate 20] [--cells demo,three,dual] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATE, REPO, Figure, install_sigterm, machine_line, run_cell, table, write_json

CELLS = {
    "demo": REPO / "config" / "demo_cell.yaml",
    "three": REPO / "config" / "three_cobot_cell.yaml",
    "dual": REPO / "config" / "dual_station_cell.yaml",
}
BOUND_TARGET = {"three": 1.03, "dual": 1.03}


def window_takt(reports) -> float:
    """Mean interval between part completions over the steady-state window (as the estimate measures it)."""
    done = sorted((r for r in reports if r.status == "done"), key=lambda r: r.part)
    ends = [r.end for r in done]
    first, last = (len(done) // 4, len(done) - 2) if len(done) >= 4 else (0, len(done) - 1)
    if last <= first:
        return done[-1].cycle_time
    return (ends[last] - ends[first]) / (last - first)


def bench_cell(name: str, path: Path, args: argparse.Namespace, work: Path) -> list[Figure]:
    from cobot_cell.skills import load_cell
    from cobot_cell.skills.schedule import estimate

    cfg = load_cell(path)
    job = next(iter(cfg.jobs))
    est = estimate(cfg, job, parts=args.parts)
    print(
        f"\n{name}: estimate over {args.parts} parts: takt {est.takt:.3f} s, bound {est.bound:.3f} s "
        f"({est.bottleneck}), up to {est.max_parts_in_flight} part(s) in flight",
        flush=True,
    )
    piped = run_cell(path, args.rate, args.parts, work / f"{name}_pipelined")
    takt = window_takt(piped.reports)
    print(f"{name}: real nodes, pipelined: takt {takt:.3f} s at {piped.speed:.1f}x", flush=True)
    serial = run_cell(path, args.rate, args.parts, work / f"{name}_serial", planner_params={"max_parts_in_flight": 1})
    takt1 = window_takt(serial.reports)
    print(f"{name}: real nodes, one part at a time: takt {takt1:.3f} s at {serial.speed:.1f}x", flush=True)
    target = BOUND_TARGET.get(name)
    figures = [
        Figure(
            f"{name}: takt over bound",
            (takt / est.bound - 1.0) * 100,
            0.0,
            "%",
            f"<= {(target - 1) * 100:.0f}%" if target else "",
            takt / est.bound <= target if target else None,
            note=f"takt {takt:.3f} s, bound {est.bound:.3f} s ({est.bottleneck})",
        ),
        Figure(
            f"{name}: estimate error",
            abs(est.takt / takt - 1.0) * 100,
            0.0,
            "%",
            "<= 1%",
            abs(est.takt / takt - 1.0) <= 0.01,
            note=f"estimated {est.takt:.2f} s",
        ),
        Figure(
            f"{name}: gain over one part at a time",
            takt1 / takt,
            1.0,
            "x",
            ">= 0.999" if name == "demo" else "",
            takt1 / takt >= 0.999 if name == "demo" else None,
            note=f"one at a time {takt1:.2f} s",
        ),
        Figure(
            f"{name}: sim rate", min(piped.speed, serial.speed), args.rate, "x", "", None, note=f"asked {args.rate:g}x"
        ),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", type=int, default=20, help="parts per run (default 20)")
    ap.add_argument("--rate", type=float, default=20.0, help="sim rate (default 20)")
    ap.add_argument("--cells", default=",".join(CELLS), help="cells to run (default: demo,three,dual)")
    ap.add_argument("--quick", action="store_true", help="8 parts")
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    args = ap.parse_args(argv)
    if args.quick:
        args.parts = min(args.parts, 8)
    install_sigterm()
    work = Path(args.out or tempfile.mkdtemp(prefix="takt_"))
    print(f"takt bench, {DATE}; {machine_line()}; {args.parts} parts per run at {args.rate:g}x; work dir {work}")
    figures: list[Figure] = []
    for name in args.cells.split(","):
        figures += bench_cell(name, CELLS[name], args, work)
    print()
    print(table(figures, title="Takt with parts in flight (real nodes) against the estimate's bound"))
    write_json(args.json, figures)
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
