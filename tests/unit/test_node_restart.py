"""`cobot-cell up`/`demo` bringup: the bounds the CLI and the node specs share, the node restart policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cobot_cell.cli import build_parser
from cobot_cell.core.limits import MAX_PARTS
from cobot_cell.ros.bringup import (
    RESPAWN_DELAY,
    RESPAWN_MAX_RETRIES,
    BringupOptions,
    NodeSpec,
    RespawnPolicy,
    node_specs,
)
from cobot_cell.ros.processes import NodeSet
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


class _FakePopen:
    """A child process the test ends by hand."""

    pids = iter(range(1000, 2000))

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.returncode = -sig

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


def _node_set(tmp_path: Path, policy: RespawnPolicy, respawn: bool = True) -> NodeSet:
    from cobot_cell.ros.processes import NodeProcess

    spec = NodeSpec("sim_cobot", "cobot_cell.ros.sim_cobot_node", "sim_cobot", "/picker", respawn=policy)
    nodes = NodeSet([spec], tmp_path, {}, respawn=respawn, clock=lambda: 0.0, watch_period=0)
    nodes._spawn = lambda s: NodeProcess(s, _FakePopen(), tmp_path / "x.log")  # type: ignore[method-assign]
    return nodes.start()


def test_a_crashed_node_is_restarted_after_the_delay_up_to_the_limit(tmp_path, caplog) -> None:
    caplog.set_level("INFO", logger="cobot_cell.ros.processes")
    nodes = _node_set(tmp_path, RespawnPolicy(delay=3.0, max_retries=2))
    first = nodes.procs[0]
    assert nodes.supervise(10.0) == [] and not caplog.records  # running: nothing to do
    first.popen.returncode = -9  # kill -9
    assert nodes.supervise(10.0) == [] and nodes.failed() == []
    assert caplog.messages == [
        "node /picker/sim_cobot exited with signal SIGKILL; restarting it in 3 s (restart 1 of 2)"
    ]
    assert nodes.supervise(12.9) == []
    (second,) = nodes.supervise(13.0)
    assert nodes.procs == [second] and second.retries == 1 and second.popen.poll() is None
    assert caplog.messages[-1] == f"node /picker/sim_cobot restarted (pid {second.popen.pid})"
    second.popen.returncode = 1
    assert nodes.supervise(20.0) == []
    (third,) = nodes.supervise(23.5)
    assert third.retries == 2
    third.popen.returncode = 2
    assert nodes.supervise(30.0) == [] and nodes.supervise(100.0) == []
    assert nodes.failed() == [third]
    assert caplog.messages[-1] == "node /picker/sim_cobot exited with code 2; not restarted again (2 restarts used)"
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "WARNING", "WARNING", "ERROR"]


def test_no_limit_no_respawn_and_no_restart_once_stopping(tmp_path) -> None:
    nodes = _node_set(tmp_path, RespawnPolicy(delay=0.0, max_retries=-1))
    for k in range(20):
        nodes.procs[0].popen.returncode = 1
        (p,) = nodes.supervise(float(k))
        assert p.retries == k + 1
    nodes.procs[0].popen.returncode = 1
    nodes.stop()
    assert nodes.supervise(100.0) == []  # stopping: a node that ends is not started again
    manual = _node_set(tmp_path, RespawnPolicy(delay=0.0, max_retries=5), respawn=False)
    manual.procs[0].popen.returncode = -9
    assert manual.supervise(1.0) == [] and manual.failed() == manual.procs  # the caller restarts it, if it wants


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delay": -1.0}, "respawn delay must be >= 0 s, got -1.0"),
        ({"max_retries": -2}, "respawn max retries must be a whole number >= -1 (-1: no limit), got -2"),
        ({"max_retries": 1.5}, "respawn max retries must be a whole number >= -1 (-1: no limit), got 1.5"),
    ],
)
def test_respawn_policy_refuses_bad_values(kwargs, message) -> None:
    with pytest.raises(ValueError) as err:
        RespawnPolicy(**kwargs)
    assert str(err.value) == message


def test_cli_respawn_options_reach_every_node_spec(tmp_path) -> None:
    from cobot_cell.cli import _node_set as cli_node_set

    args = build_parser().parse_args(["up", str(DEMO), "--respawn-delay", "4", "--respawn-max-retries", "-1"])
    nodes = cli_node_set(load_cell(DEMO), args, tmp_path, 7, echo=False)
    assert nodes.respawn and {s.respawn for s in nodes.specs} == {RespawnPolicy(4.0, -1)}
    defaults = build_parser().parse_args(["up"])
    assert (defaults.respawn_delay, defaults.respawn_max_retries) == (RESPAWN_DELAY, RESPAWN_MAX_RETRIES)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--respawn-max-retries", "-2"])
