"""The full-size palletising cells as a user runs them: validate, estimate, and a demo through the real nodes."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
from test_demo_cli import cobot_cell

ROOT = Path(__file__).resolve().parents[2]
CELLS = [
    ("ur20_us_pallet.yaml", "ur20_us", "160 (20/layer x 8, interlock"),
    ("ur10e_eur_pallet.yaml", "ur10e_eur", "32 (8/layer x 4, interlock"),
]


@pytest.mark.parametrize("file,cell,places", CELLS)
def test_palletising_cell_validates_estimates_and_runs(tmp_path, file, cell, places):
    path = ROOT / "config" / file
    proc = cobot_cell("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"cell '{cell}' is valid" in proc.stdout and places in " ".join(proc.stdout.split())
    proc = cobot_cell("estimate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert float(re.search(r"part cycle time, one part alone: (\d+\.\d+) s", proc.stdout).group(1)) > 0
    env = dict(os.environ)
    env.pop("ROS_DOMAIN_ID", None)  # the demo leases a free one
    proc = cobot_cell("demo", str(path), "--parts", "2", "--rate", "20", "--out", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "part 1/2 done" in proc.stdout and "part 2/2 done" in proc.stdout
    with sqlite3.connect(tmp_path / "production.db") as db:
        assert db.execute("SELECT COUNT(*) FROM parts WHERE status = 'done'").fetchone() == (2,)
