"""The hmi node refuses bad parameters with the reason and exit code 2 (no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cobot_cell.ros.processes import DomainLease, ros_env


@pytest.mark.parametrize(
    "params, message",
    [
        (["port:=0"], "error: parameter port: expected 1-65535, got 0"),
        (
            ["host:=0.0.0.0", "cert:=/nonexistent/c.pem", "key:=/nonexistent/k.pem"],
            "error: cert file /nonexistent/c.pem does not exist",
        ),
        (["cert:=/nonexistent/c.pem"], "error: cert and key go together: give both files or neither"),
        (["window:=-1.0"], "error: parameters window and session_idle must be > 0 s, ideal_cycle_time >= 0 s"),
    ],
)
def test_bad_parameters(tmp_path, params, message):
    with DomainLease() as lease:
        env = ros_env(lease.domain_id, tmp_path / "ros_log")
        env["COBOT_CELL_USERS"] = str(tmp_path / "users.json")
        args = [sys.executable, "-m", "cobot_cell.ros.hmi_node", "--ros-args", "-r", "__ns:=/demo"]
        for p in params:
            args += ["-p", p]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
