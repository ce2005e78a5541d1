"""The pure layers import no rclpy and no ROS message packages (checked in a subprocess with them blocked); the
task_planner process imports no pydantic, and its cell file check reports a bad file as `load_cell` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cobot_cell.core.config import CellFileError
from cobot_cell.skills import load_cell
from cobot_cell.skills.checked_cell import load_checked

REPO = Path(__file__).resolve().parents[2]

BLOCKED = ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "std_srvs", "rosgraph_msgs")
PURE_PACKAGES = (
    "cobot_cell.core",
    "cobot_cell.skills",
    "cobot_cell.motion",
    "cobot_cell.supervisor",
    "cobot_cell.pendant",
    "cobot_cell.plant",
    "cobot_cell.hmi",
    "cobot_cell.twin",
)
PURE_MODULES = ("cobot_cell.ros.bringup", "cobot_cell.ros.processes", "cobot_cell.ros.gazebo")

# Discovers every module of the pure packages (new modules are covered without editing this test), imports
# each with the ROS packages blocked, and prints what it found and what failed as JSON.
SCRIPT = """
import importlib, json, pkgutil, sys, traceback
for name in {blocked!r}:
    sys.modules[name] = None
found, failed = [], {{}}

def load(name):
    try:
        return importlib.import_module(name)
    except BaseException as exc:
        failed[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return None

def walk(name):
    found.append(name)
    module = load(name)
    if module is not None and hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            walk(name + "." + info.name)

for pkg in {packages!r}:
    walk(pkg)
for name in {modules!r}:
    found.append(name)
    load(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r} and sys.modules[m] is not None)
print(json.dumps({{"found": found, "failed": failed, "leaked": leaked}}))
"""


def import_blocked(packages: tuple[str, ...], modules: tuple[str, ...]) -> dict:
    script = SCRIPT.format(blocked=BLOCKED, packages=packages, modules=modules)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pure_layers_import_without_ros() -> None:
    result = import_blocked(PURE_PACKAGES, PURE_MODULES)
    assert result["failed"] == {}
    assert result["leaked"] == []
    found = set(result["found"])
    # discovery really walked the packages
    assert {
        "cobot_cell.core.config",
        "cobot_cell.core.sequencer",
        "cobot_cell.core.cell",
        "cobot_cell.skills.weld",
        "cobot_cell.motion.kinematics",
        "cobot_cell.supervisor.kpi",
        "cobot_cell.pendant",
        "cobot_cell.ros.bringup",
        "cobot_cell.ros.processes",
    } <= found
    on_disk = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for pkg in PURE_PACKAGES
        for p in (REPO / pkg.replace(".", "/")).rglob("*.py")
    }
    assert on_disk <= found


def test_the_block_does_catch_a_ros_import() -> None:
    # Control: a ROS adapter module must fail under the same block, or the test above proves nothing.
    result = import_blocked((), ("cobot_cell.ros.planner_node",))
    assert set(result["failed"]) == {"cobot_cell.ros.planner_node"}
    message = result["failed"]["cobot_cell.ros.planner_node"]
    assert message.startswith(("ModuleNotFoundError", "ImportError")) and any(b in message for b in BLOCKED)


# The task_planner as it starts: its cell file checked in a child process, every step planned with the
# parameters checked there. Prints the pydantic modules this process ended up with.
PLANNER_SCRIPT = """
import json, sys
import numpy as np
import rclpy
from cobot_cell.ros.planner_node import PlannerNode
rclpy.init(args=["--ros-args", "-p", "cell_file:={cell}", "-p", "journal:={journal}"])
node = PlannerNode()
planned = []
for step in node.cfg.jobs[node.controller.job].steps:
    node.controller.planner(step, 1, np.asarray(node.cfg.cobots[step.cobot].home))
    planned.append(step.name)
node.destroy_node()
rclpy.shutdown()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
print(json.dumps({{"planned": planned, "pydantic": loaded}}))
"""


def test_the_planner_process_never_imports_pydantic(tmp_path: Path, domain: int) -> None:
    script = PLANNER_SCRIPT.format(cell=REPO / "config" / "demo_cell.yaml", journal=tmp_path / "journal.db")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["planned"] == ["load_blank", "weld_seams", "palletise"]
    assert result["pydantic"] == []


BAD_CELLS = {
    "yaml": ("cobot: welder", "cobot: welder: x"),
    "structure": ("  name: demo\n", "  name: demo\n  colour: red\n"),
    "box": ("box: {length: 0.20, width: 0.15, height: 0.06}", "box: 5"),
    "params": ("speed: 0.02", "speed: 0.5"),
    "reach": ("pallet: {length: 0.40, width: 0.30}", "pallet: EUR"),
}


@pytest.mark.parametrize("case", sorted(BAD_CELLS))
def test_the_planner_load_path_reports_a_bad_cell_file_like_load_cell(tmp_path: Path, case: str) -> None:
    old, new = BAD_CELLS[case]
    text = (REPO / "config" / "demo_cell.yaml").read_text()
    assert text.count(old) == 1
    bad = tmp_path / "cell.yaml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(CellFileError) as expected:
        load_cell(bad)
    with pytest.raises(CellFileError) as got:
        load_checked(bad)
    assert str(got.value) == str(expected.value)
    assert (got.value.source, got.value.issues) == (expected.value.source, expected.value.issues)


def test_the_planner_load_path_reports_a_missing_file_like_load_cell(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CellFileError) as got:
        load_checked(missing)
    assert str(got.value) == f"{missing}: 1 error\n  <top>: cannot read file: No such file or directory"


def test_the_planner_fails_on_a_bad_cell_file_with_the_load_cell_message(tmp_path: Path, domain: int) -> None:
    bad = tmp_path / "cell.yaml"
    bad.write_text((REPO / "config" / "demo_cell.yaml").read_text().replace("speed: 0.02", "speed: 0.5"))
    with pytest.raises(CellFileError) as expected:
        load_cell(bad)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cobot_cell.ros.planner_node",
            "--ros-args",
            "-p",
            f"cell_file:={bad}",
            "-p",
            f"journal:={tmp_path / 'journal.db'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"error: {expected.value}\n" in proc.stderr
