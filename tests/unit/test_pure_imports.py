"""The pure layers import no rclpy and no ROS message packages (checked in a subprocess with them blocked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BLOCKED = ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "std_srvs", "rosgraph_msgs")
PURE_PACKAGES = ("cobot_cell.core", "cobot_cell.skills", "cobot_cell.motion", "cobot_cell.supervisor",
                 "cobot_cell.pendant")
PURE_MODULES = ("cobot_cell.ros.bringup", "cobot_cell.ros.processes")

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
    assert {"cobot_cell.core.config", "cobot_cell.core.sequencer", "cobot_cell.core.cell", "cobot_cell.skills.weld",
            "cobot_cell.motion.kinematics", "cobot_cell.supervisor.kpi", "cobot_cell.pendant",
            "cobot_cell.ros.bringup", "cobot_cell.ros.processes"} <= found
    on_disk = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for pkg in PURE_PACKAGES for p in (REPO / pkg.replace(".", "/")).rglob("*.py")
    }
    assert on_disk <= found


def test_the_block_does_catch_a_ros_import() -> None:
    # Control: a ROS adapter module must fail under the same block, or the test above proves nothing.
    result = import_blocked((), ("cobot_cell.ros.planner_node",))
    assert set(result["failed"]) == {"cobot_cell.ros.planner_node"}
    message = result["failed"]["cobot_cell.ros.planner_node"]
    assert message.startswith(("ModuleNotFoundError", "ImportError")) and any(b in message for b in BLOCKED)
