"""The physics backend of sim_cobot (backend mujoco) as a process, driven over its topics and services like the
planner drives it: joint states from the physics, grip, missed grip, dropped part, a collision stop with both
bodies named; and the foxglove node serving the same joint states to a WebSocket client. A demo run recorded to
MCAP reads back to the cycle reports the supervisor logged."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from cobot_cell.motion.trajectory import joint_move
from cobot_cell.ros.bringup import BringupOptions, node_specs
from cobot_cell.ros.client import CellClient
from cobot_cell.ros.common import LATCHED, STATES, key_values, level_name, split_seconds
from cobot_cell.ros.processes import NodeSet, ros_env
from cobot_cell.skills import load_cell
from cobot_cell.skills.common import DOWN, SkillContext

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "config" / "demo_cell.yaml").read_text(encoding="utf-8")
CLOSE = DEMO.replace("xyz: [1.1, 0.0, 0.0]", "xyz: [0.95, 0.0, 0.0]")  # a stretched picker reaches the welder


class TwinRig:
    """The twin node (and the foxglove node) of a cell, with a probe node on the same domain."""

    def __init__(self, work: Path, domain: int, text: str):
        self.cell_file = work / "cell.yaml"
        self.cell_file.write_text(text, encoding="utf-8")
        self.cfg = load_cell(self.cell_file)
        specs = [
            s
            for s in node_specs(
                self.cfg,
                self.cell_file,
                BringupOptions(
                    rate=4.0, backend="mujoco", foxglove=0, supervisor=False, journal=str(work / "journal.db")
                ),
            )
            if s.executable in ("sim_cobot", "foxglove")
        ]
        assert [s.executable for s in specs] == ["sim_cobot", "foxglove"]
        self.nodes = NodeSet(specs, work, ros_env(domain, work / "ros_log")).start()
        self.client = CellClient(self.cfg.cell.name, domain_id=domain, use_sim_time=False, node_name="twin_probe")
        node = self.client.node
        self.q: dict[str, np.ndarray] = {}
        self.stamp: dict[str, float] = {}
        self.vel_seen: dict[str, float] = {n: 0.0 for n in self.cfg.cobots}
        self.sensed: dict[str, bool] = {}
        self.diag: dict[str, tuple[str, str, dict[str, str]]] = {}
        self.pubs = {}
        for name, cobot in self.cfg.cobots.items():
            node.create_subscription(
                JointState, f"/{name}/joint_states", lambda m, name=name: self._on_js(name, m), STATES
            )
            self.pubs[name] = node.create_publisher(JointTrajectory, f"/{name}/{cobot.controller}/joint_trajectory", 10)
        node.create_subscription(Bool, "/picker/gripper/grip/state", lambda m: self.sensed.update(grip=m.data), LATCHED)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.grip = node.create_client(SetBool, "/picker/gripper/grip")
        self.params = node.create_client(SetParameters, f"/{self.cfg.cell.name}/sim_twin/set_parameters")

    def _on_js(self, name: str, msg: JointState) -> None:
        self.q[name] = np.asarray(msg.position)
        self.stamp[name] = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.vel_seen[name] = max(self.vel_seen[name], float(np.max(np.abs(msg.velocity))))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            self.diag[st.name] = (level_name(st.level), st.message, dict(key_values(st)))

    def move(self, cobot: str, goal: np.ndarray, timeout: float = 60.0, arrive: bool = True) -> None:
        """Send a joint move from where the arm is; wait until it has arrived (within 1 mrad)."""
        self.client.wait_for(lambda: cobot in self.q, 30, f"joint states of {cobot}")
        traj = joint_move(self.q[cobot], goal, np.full(6, 1.5), np.full(6, 3.0))
        msg = JointTrajectory(joint_names=list(self.cfg.cobots[cobot].joints))
        for t, p, v in zip(traj.times, traj.positions, traj.velocities):
            sec, nsec = split_seconds(float(t))
            pt = JointTrajectoryPoint(positions=p.tolist(), velocities=v.tolist())
            pt.time_from_start.sec, pt.time_from_start.nanosec = sec, nsec
            msg.points.append(pt)
        self.pubs[cobot].publish(msg)
        if arrive:
            self.client.wait_for(lambda: np.max(np.abs(self.q[cobot] - goal)) < 1e-3, timeout, f"{cobot} arrived")

    def tcp_goal(self, xyz) -> np.ndarray:
        ctx = SkillContext(self.cfg, "picker")
        _, tool = ctx.tool("gripper")
        target = DOWN.copy()
        target[:3, 3] = xyz
        return ctx.solve(target, tool, self.q["picker"], "test target")

    def set_grip(self, on: bool) -> SetBool.Response:
        return self.client._call(self.grip, SetBool.Request(data=on), 20, "grip")

    def close(self) -> None:
        self.client.close()
        self.nodes.stop()

    def assert_clean_exit(self) -> None:
        for p in self.nodes.procs:
            log = p.log_path.read_text()
            assert p.popen.returncode == 0 and "Traceback" not in log, log


def test_the_physics_backend_grips_misses_drops_and_stops_on_a_collision(tmp_path, domain):
    import websocket

    rig = TwinRig(tmp_path, domain, CLOSE)
    try:
        # the foxglove node serves the twin's joint states on loopback
        rig.client.wait_for(lambda: "serving ws://" in rig.nodes.procs[1].log_path.read_text(), 60, "foxglove up")
        port = int(re.search(r"serving ws://127\.0\.0\.1:(\d+)", rig.nodes.procs[1].log_path.read_text())[1])
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], timeout=10)
        try:
            channels: dict[str, dict] = {}
            while "/picker/joint_states" not in channels:
                msg = ws.recv()
                if isinstance(msg, str) and json.loads(msg)["op"] == "advertise":
                    channels.update({c["topic"]: c for c in json.loads(msg)["channels"]})
            assert {
                "/picker/joint_states",
                "/welder/joint_states",
                "/robot_description",
                "/demo/state",
                "/demo/cycle",
                "/demo/faults",
                "/supervisor/kpis",
            } <= set(channels)
            ws.send(
                json.dumps(
                    {
                        "op": "subscribe",
                        "subscriptions": [{"id": 3, "channelId": channels["/picker/joint_states"]["id"]}],
                    }
                )
            )
            while True:
                msg = ws.recv()
                if isinstance(msg, bytes) and msg[0] == 1:
                    break
            assert struct.unpack_from("<I", msg, 1)[0] == 3
            state = json.loads(msg[13:])
            assert state["name"] == list(rig.cfg.cobots["picker"].joints) and len(state["position"]) == 6
        finally:
            ws.close()

        # grip: the part the infeed presents, at the TCP
        rig.client.wait_for(lambda: "picker" in rig.q and rig.sensed.get("grip") is False, 30, "twin up")
        infeed = np.asarray(rig.cfg.stations["infeed"].pose.xyz)
        rig.move("picker", rig.tcp_goal(infeed + [0, 0, 0.13]))
        assert rig.vel_seen["picker"] > 0.1  # velocities come from the physics
        rig.move("picker", rig.tcp_goal(infeed + [0, 0, 0.03]))
        resp = rig.set_grip(True)
        assert (resp.success, resp.message) == (True, "gripper/grip on")
        rig.client.wait_for(lambda: rig.sensed.get("grip") is True, 20, "part sensed")
        rig.client.wait_for(
            lambda: rig.diag.get("/picker/sim_cobot", ("", "", {}))[2].get("payload_kg") == "1.000",
            20,
            "payload with the part",
        )
        # dropped part: opened over the bare floor, the part falls and is reported
        rig.move("picker", rig.tcp_goal([-0.35, 0.35, 0.4]))
        assert rig.set_grip(False).success
        rig.client.wait_for(lambda: rig.sensed.get("grip") is False, 20, "gripper open")
        rig.client.wait_for(
            lambda: "part_dropped" in rig.diag.get("/picker/sim_cobot", ("", "", {}))[2],
            30,
            "the dropped part reported",
        )
        level, message, kv = rig.diag["/picker/sim_cobot"]
        assert level == "WARN" and message.startswith("part dropped by picker: at rest on the floor at [-0.3"), message
        # missed grip: nothing at the TCP any more
        resp = rig.set_grip(True)
        assert (resp.success, resp.message) == (True, "gripper/grip on (no part at the TCP)")
        assert rig.sensed.get("grip") is False
        assert rig.set_grip(False).success
        # collision: the stretched picker reaches the welder's base
        rig.move("picker", np.array([np.pi, 0.0, 0.0, 0.0, 0.0, 0.0]), arrive=False)
        rig.client.wait_for(lambda: rig.diag.get("/picker/sim_cobot", ("",))[0] == "ERROR", 60, "the collision")
        level, message, kv = rig.diag["/picker/sim_cobot"]
        assert (kv["fault"], kv["fault_code"]) == ("collision", "COLLISION")
        assert re.match(
            r"collision: picker_\w+ and welder_\w+ \(\d+\.\d mm\) at t=\d+\.\d{3} s; stopped "
            r"(picker, welder|welder, picker)$",
            message,
        ), message
        rig.client.wait_for(lambda: rig.diag.get("/welder/sim_cobot", ("",))[0] == "ERROR", 20, "welder stopped")
        t_hit = rig.stamp["picker"]
        rig.client.wait_for(lambda: rig.stamp["picker"] > t_hit + 1.0, 20, "a second after the stop")
        stopped = rig.q["picker"].copy()  # braked to a stand
        assert np.max(np.abs(stopped - [np.pi, 0, 0, 0, 0, 0])) > 0.1
        rig.move("picker", rig.cfg.cobots["picker"].home, arrive=False)  # ignored: protective stop
        resp = rig.set_grip(True)
        assert (resp.success, resp.message) == (False, "gripper/grip: collision")
        t_sent = rig.stamp["picker"]
        rig.client.wait_for(lambda: rig.stamp["picker"] > t_sent + 1.0, 20, "a second after the move")
        # not one step towards home (1.5 rad/s for a second); the wrist pressed against the welder's base may settle
        # against it by a few mrad
        assert np.max(np.abs(rig.q["picker"] - stopped)) < 0.02
        # clearing the fault (as the operator does on the pendant) lets it move away
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="")
        result = rig.client._call(
            rig.params, SetParameters.Request(parameters=[ParameterMsg(name="fault", value=value)]), 20, "clear faults"
        )
        assert result.results[0].successful
        rig.move("picker", np.asarray(rig.cfg.cobots["picker"].home))
        rig.client.wait_for(lambda: rig.diag.get("/picker/sim_cobot", ("",))[0] == "OK", 20, "fault cleared")
    finally:
        rig.close()
    rig.assert_clean_exit()


def test_a_recorded_run_reads_back_to_the_cycle_reports_the_supervisor_logged(tmp_path, domain):
    from cobot_cell.supervisor.log import ProductionLog
    from cobot_cell.twin.record import read_cycles, read_messages

    mcap = tmp_path / "run.mcap"
    env = ros_env(domain, tmp_path / "ros_log")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cobot_cell.cli",
            "demo",
            "--parts",
            "3",
            "--out",
            str(tmp_path / "work"),
            "--record",
            str(mcap),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with ProductionLog(tmp_path / "work" / "production.db", read_only=True) as log:
        logged = log.parts(cell="demo")
    assert len(logged) == 3
    # the production log keeps what the recording has, but the takt and the bound (the KPIs use them live)
    recorded = [dataclasses.replace(r, takt=None, bound=None) for r in read_cycles(mcap, "demo")]
    assert recorded == logged
    states = read_messages(mcap, "/picker/joint_states")
    assert len(states) > 100 and states[-1][1] >= logged[-1].end - 0.1  # joint states on the cell's clock
    assert [m["data"] for _, _, m in read_messages(mcap, "/demo/state")][-1] == "Complete"
    report = subprocess.run(
        [sys.executable, "-m", "cobot_cell.cli", "report", str(mcap)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0 and "3 parts (recording" in report.stdout, report.stdout + report.stderr


def test_the_planners_sync_reads_back_and_bad_ones_are_ignored():
    from std_msgs.msg import Float64MultiArray

    from cobot_cell.ros.twin_sync import Sync

    for sync in (Sync(12.34, 13.5, 7, 3), Sync(0.0, None, 0, 0)):
        assert Sync.from_msg(sync.to_msg()) == sync
    assert Sync.from_msg(Float64MultiArray(data=[1.0, 2.0, 3.0])) is None
    assert Sync.from_msg(Float64MultiArray(data=[float("nan"), 2.0, 3.0, 4.0])) is None
