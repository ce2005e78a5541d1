"""`cobot-cell up`/`demo` bringup: the bounds the CLI and the node specs share, the node restart policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cobot_cell.cli import build_parser
from cobot_cell.core.limits import MAX_PARTS
from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.skills import load_cell

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_cell.yaml"


@pytest.mark.parametrize("command", ["up", "demo"])
def test_cli_parts_is_bounded(command: str, capsys) -> None:
    assert build_parser().parse_args([command, "--parts", str(MAX_PARTS)]).parts == MAX_PARTS
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--parts", str(10**12)])
    assert exc.value.code == 2
    assert "argument --parts: expected a whole number from 1 to 999999999, got 1000000000000" in capsys.readouterr().err


def test_node_specs_refuse_a_part_count_the_pendant_cannot_show() -> None:
    cfg = load_cell(DEMO)
    planner = [s for s in node_specs(cfg, DEMO, BringupOptions(parts=MAX_PARTS)) if s.executable == "task_planner"]
    assert planner[0].parameters["parts"] == MAX_PARTS
    with pytest.raises(ValueError) as err:
        node_specs(cfg, DEMO, BringupOptions(parts=MAX_PARTS + 1))
    assert str(err.value) == "parts must be a whole number from 1 to 999999999, got 1000000000"
