"""Scaling: planner and supervisor CPU per cobot as a cell grows from 1 to 8 cobots.

For each N in --sizes, generates a cell file with N cobots side by side (1.2 m apart, each with its own infeed
and fixture), and one job with one pick step per cobot and no `after`: all N cobots work in parallel. Runs it
through the real node set (N sim drivers, planner, supervisor) at --rate for --parts parts and reads utime+stime
of every node from /proc/<pid>/stat before the start command and at Complete. Prints, per N, CPU seconds per
sim second (the /clock time that passed over the same span) of the planner, the supervisor and a sim driver
(mean), and the planner's per cobot. The floor of each ratio is the N = 1 cell measured in the same run.
The issue sets no target: linear scaling means a constant per-cobot planner figure (ratio 1.0x).

    .venv/bin/python bench/scaling.py [--sizes 1,2,3,4,5,6,7,8] [--rate 1] [--parts 2] [--quick] [--json f]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATE, Figure, install_sigterm, machine_line, run_cell, table, write_json

HOME = [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0]
SPACING = 1.2


def scaling_cell(n: int) -> dict:
    """N cobots side by side, each picking from its own infeed to its own fixture, all in parallel."""
    cobots, stations, steps = {}, {}, []
    for i in range(1, n + 1):
        name, x = f"c{i}", (i - 1) * SPACING
        cobots[name] = {
            "model": "ur5e",
            "joints": [f"{name}_joint_{k}" for k in range(1, 7)],
            "base": {"xyz": [x, 0.0, 0.0], "rpy": [0.0, 0.0, 0.0]},
            "home": HOME,
            "limits": {"velocity": [1.2, 1.2, 1.5, 2.0, 2.0, 2.0], "acceleration": [2.5, 2.5, 3.0, 4.0, 4.0, 4.0]},
            "tools": {"gripper": {"kind": "gripper", "io": "gripper/grip", "tcp": [0.0, 0.0, 0.15], "confirm": True}},
        }
        stations[f"{name}_infeed"] = {"kind": "infeed", "pose": {"xyz": [x + 0.05, 0.55, 0.05], "rpy": [0, 0, 0]}}
        stations[f"{name}_fixture"] = {"kind": "fixture", "pose": {"xyz": [x + 0.55, 0.0, 0.10], "rpy": [0, 0, 0]}}
        steps.append(
            {
                "name": f"pick_{name}",
                "skill": "pick",
                "cobot": name,
                "params": {"from": f"{name}_infeed", "to": f"{name}_fixture"},
            }
        )
    return {
        "cell": {"name": "scale", "description": f"bench: {n} cobots in parallel"},
        "cobots": cobots,
        "stations": stations,
        "jobs": {"parallel": {"steps": steps}},
    }


def run(args: argparse.Namespace) -> list[Figure]:
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(
        f"scaling: cells of {args.sizes} cobots, one pick step per cobot in parallel, {args.parts} parts at "
        f"{args.rate:g}x, planner stale_timeout {args.stale_timeout:g} s; work dir {work}"
    )
    rows, failed = [], []
    for n in args.sizes:
        cell_file = work / f"cell_{n}.yaml"
        cell_file.write_text(yaml.safe_dump(scaling_cell(n), sort_keys=False))
        try:
            r = run_cell(
                cell_file, args.rate, args.parts, work / f"n{n}", planner_params={"stale_timeout": args.stale_timeout}
            )
        except (RuntimeError, TimeoutError) as exc:
            print(f"  N={n}: FAILED: {exc}")
            failed.append(n)
            continue
        sim = r.sim_elapsed
        planner = r.cpu_s["/scale/task_planner"] / sim
        sup = r.cpu_s["/supervisor"] / sim
        sims = [c / sim for f, c in r.cpu_s.items() if f.endswith("/sim_cobot")]
        rows.append((n, planner, sup, sum(sims) / len(sims), r.wall, sim, r.sim_span / args.parts))
        print(
            f"  N={n}: wall {r.wall:.1f} s, sim {sim:.1f} s, cycle {r.sim_span / args.parts:.2f} s; CPU s per sim s: "
            f"planner {planner:.3f} ({planner / n:.3f}/cobot), supervisor {sup:.4f}, sim driver {sims[0]:.3f}"
        )
    print()
    print(
        f"  {'cobots':>6} {'planner':>9} {'per cobot':>9} {'supervisor':>10} {'per cobot':>9} {'sim driver':>10} "
        f"{'cycle s':>8}   (CPU seconds per sim second)"
    )
    for n, p, s, d, _wall, _sim, cyc in rows:
        print(f"  {n:>6} {p:>9.3f} {p / n:>9.3f} {s:>10.4f} {s / n:>9.4f} {d:>10.3f} {cyc:>8.2f}")
    if failed:
        print(f"  failed sizes (not in the table): {failed}")
    if not rows:
        raise RuntimeError("no cell size completed")
    n1, p1, s1 = rows[0][0], rows[0][1], rows[0][2]
    nk, pk, sk = rows[-1][0], rows[-1][1], rows[-1][2]
    figs = [
        Figure(
            f"scaling: planner CPU s per sim s per cobot, {nk} vs {n1} cobots",
            pk / nk,
            p1 / n1,
            "",
            "(none; linear = 1.0x)",
            None,
            note=f"floor: the {n1}-cobot cell in this run; rate {args.rate:g}x",
        ),
        Figure(f"scaling: supervisor CPU s per sim s, {nk} vs {n1} cobots", sk, s1, "", "(none)", None),
    ]
    for n in failed:
        figs.append(
            Figure(
                f"scaling: {n}-cobot cell did not complete",
                math.nan,
                math.nan,
                "",
                "completes",
                False,
                note="see the bench output (planner fault)",
            )
        )
    print()
    print(table(figs, f"scaling ({DATE})"))
    write_json(
        args.json,
        figs,
        {
            "rows": [
                dict(zip(("cobots", "planner", "supervisor", "sim_driver", "wall", "sim", "cycle"), r)) for r in rows
            ]
        },
    )
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1,2,3,4,5,6,7,8", help="cobot counts, comma separated")
    ap.add_argument("--rate", type=float, default=1.0, help="sim rate (default 1)")
    ap.add_argument("--parts", type=int, default=2, help="parts per size (default 2)")
    ap.add_argument(
        "--stale-timeout",
        type=float,
        default=30.0,
        help="planner stale_timeout for these runs (default 30 s instead of 1 s: with 8 sim drivers on 2 "
        "busy cores the planner can go seconds without processing joint states and would abort)",
    )
    ap.add_argument("--quick", action="store_true", help="sizes 1,2,4,8, 1 part")
    ap.add_argument("--out", default="", help="work dir (default: a new temp dir)")
    ap.add_argument("--json", default="", help="write the figures as JSON (for bench/run_all)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.parts = "1,2,4,8", 1
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s]
    install_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
