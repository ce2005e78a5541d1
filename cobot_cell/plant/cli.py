"""`cobot-cell plant PLANT.yaml`: run this computer's part of a plant (its local cells, the supervisor, the
OPC UA server and MQTT publisher of the plant file) until Ctrl-C. See docs/plant.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import DEFAULT_OPCUA_ENDPOINT
from .config import PlantFileError, load_plant


def cmd_plant(args: argparse.Namespace) -> int:
    """Start the plant's local node set as processes and watch it."""
    from ..core.config import CellFileError
    from ..ros.bringup import BringupOptions, plant_node_specs
    from ..ros.processes import NodeSet, ros_env

    try:
        plant = load_plant(args.plant)
        work = Path(args.out or tempfile.mkdtemp(prefix="cobot_cell_plant_"))
        work.mkdir(parents=True, exist_ok=True)
        specs = plant_node_specs(
            plant,
            BringupOptions(
                sim=not args.real,
                rate=args.rate,
                parts=args.parts,
                opcua=args.opcua or "",
                users=args.users or "",
                allow_none=args.allow_none,
                mqtt=args.mqtt or "",
            ),
            work,
        )
    except (PlantFileError, CellFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    domain = int(os.environ["ROS_DOMAIN_ID"]) if "ROS_DOMAIN_ID" in os.environ else None
    nodes = NodeSet(specs, work, ros_env(domain, work / "ros_log"), echo=True)
    local = [c.name for c in plant.cells if c.local]
    remote = [c.name for c in plant.cells if not c.local]
    print(
        f"plant {plant.path}: cells here {', '.join(local) or 'none'}"
        + (f", elsewhere {', '.join(remote)}" if remote else "")
        + f"; {len(specs)} nodes, production log {plant.db}, work dir {work} (Ctrl-C to stop)"
    )
    nodes.start()
    try:
        while not nodes.dead():
            time.sleep(0.2)
        for p in nodes.dead():
            print(f"node {p.spec.fqn} exited with code {p.popen.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        nodes.stop()


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add `cobot-cell plant` to the CLI."""
    helptext = (
        "run this computer's part of a plant: its local cells, one supervisor for every cell, and the "
        "plant's OPC UA server and MQTT publisher (docs/plant.md)"
    )
    p = sub.add_parser("plant", help=helptext, description=helptext)
    p.add_argument("plant", help="plant file (YAML)")
    p.add_argument("--real", action="store_true", help="real arms (no sim drivers, no /clock)")
    p.add_argument("--rate", type=float, default=1.0, help="simulated seconds per wall second (sim only)")
    p.add_argument("--parts", type=int, default=1, help="parts per run of each local cell")
    p.add_argument(
        "--opcua",
        nargs="?",
        const=DEFAULT_OPCUA_ENDPOINT,
        metavar="ENDPOINT",
        help="OPC UA endpoint (overrides the plant file's)",
    )
    p.add_argument("--users", metavar="FILE", help="user file of the OPC UA server (overrides the plant file's)")
    p.add_argument("--allow-none", action="store_true", help="the OPC UA server also offers the None policy")
    p.add_argument("--mqtt", metavar="URL", help="MQTT broker (overrides the plant file's)")
    p.add_argument("--out", help="work dir for node logs, parameters and journals (default: a new temp dir)")
    p.set_defaults(func=cmd_plant)
