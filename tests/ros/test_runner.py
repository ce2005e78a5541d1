"""`cobot-cell up` as a supervisor, with real processes: a crashed node is restarted and the cell recovers by the
documented operator actions; SIGTERM and SIGINT (once or twice) stop every node cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO

from cobot_cell.ros.processes import DomainLease, ros_env
from cobot_cell.waiting import wait_until

PARTS = 2
RESPAWN_DELAY = 3.0


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


class Up:
    """`cobot-cell up` running the demo cell in a work dir, and an operator client on its domain."""

    def __init__(self, work: Path, *extra: str, parts: int = PARTS):
        from cobot_cell.ros.client import CellClient

        self.work = work
        self.out_path = work / "up.out"
        self.lease = DomainLease()
        env = ros_env(self.lease.domain_id, work / "ros_log")
        self.client = None
        with open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cobot_cell.cli",
                    "up",
                    str(DEMO),
                    "--rate",
                    "20",
                    "--parts",
                    str(parts),
                    "--out",
                    str(work / "run"),
                    "--respawn-delay",
                    str(RESPAWN_DELAY),
                    *extra,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.client = CellClient("demo", domain_id=self.lease.domain_id, use_sim_time=True, node_name="runner_test")
            self.wait(lambda: self.client.state == "Stopped" and len(self.nodes()) == 4, "the cell up", 90)
        except BaseException:
            self.close()
            raise

    def nodes(self) -> dict[str, int]:
        """Fully qualified node name -> pid of the node processes `up` runs now."""
        out = {}
        for pid in _pids():
            if _ppid(pid) != self.proc.pid:
                continue
            args = dict(a.split(":=", 1) for a in _cmdline(pid) if a.startswith("__n"))
            if "__node" in args and "__ns" in args:
                out[f"{args['__ns'].rstrip('/')}/{args['__node']}"] = pid
        return out

    def leftovers(self) -> list[int]:
        """Processes still running a node of this work dir (its parameter files are on their command line)."""
        return [pid for pid in _pids() if any(str(self.work / "run") in a for a in _cmdline(pid))]

    def output(self) -> str:
        """What `up` and its nodes printed, and every ROS log file."""
        logs = [self.out_path.read_text()]
        logs += [p.read_text(errors="replace") for p in (self.work / "ros_log").rglob("*") if p.is_file()]
        return "\n".join(logs)

    def wait(self, predicate, what: str, timeout: float = 60.0) -> None:
        """Spin the client until predicate() holds (and `up` runs)."""

        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"cobot-cell up exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            return predicate()

        try:
            self.client.wait_for(check, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; status {self.client.status}\n{self.output()[-3000:]}") from None

    def command(self, name: str, timeout: float = 60.0) -> tuple[bool, str]:
        """Call a cell service; a call that gets no reply is sent again. Just after a node restart DDS may still
        route it to the dead process's endpoints (kept until their lease runs out), where it is lost."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.client.command(name, timeout=3.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def ok(self, command: str) -> str:
        success, message = self.command(command)
        assert success, f"{command} refused: {message}"
        return message

    def journal_pose(self, cobot: str) -> list[float] | None:
        """Where the planner's journal expects a cobot (the end of its last finished step), if anywhere yet."""
        try:
            with sqlite3.connect(self.work / "run" / "demo.journal.db") as db:
                row = db.execute("SELECT q FROM cobot_pose WHERE cobot = ?", (cobot,)).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return None
        return json.loads(row[0]) if row else None

    def ledger(self) -> list[tuple[int, str]]:
        with sqlite3.connect(self.work / "run" / "demo.journal.db") as db:
            return db.execute("SELECT part, status FROM ledger ORDER BY part").fetchall()

    def stop(self, *signals: signal.Signals, gap: float = 0.0) -> int:
        """Send the signals to `up` (`gap` s apart); its exit code."""
        for i, sig in enumerate(signals):
            if i and gap:
                time.sleep(gap)  # the second signal of a pair, as a terminal and ros2 launch send them
            os.kill(self.proc.pid, sig)
        return self.proc.wait(60)

    def assert_clean_exit(self, code: int) -> None:
        """Exit 0, no traceback anywhere, no node process left."""
        text = self.output()
        assert code == 0, text[-3000:]
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
        wait_until(lambda: not self.leftovers(), 10, "every node process to be gone")

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            for pid in self.leftovers():
                os.kill(pid, signal.SIGKILL)
            self.lease.release()


@pytest.fixture
def up(tmp_path):
    """Factory: up(*extra_args) -> a running `cobot-cell up`, stopped after the test."""
    made: list[Up] = []

    def make(*extra: str, **kwargs) -> Up:
        u = Up(tmp_path, *extra, **kwargs)
        made.append(u)
        return u

    yield make
    for u in made:
        print(u.output()[-6000:])  # shown by pytest only when the test failed
        u.close()


def _distance(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def _resume(u: Up, command: str) -> bool:
    """`start` or `unhold` the documented way; True if a reapproach was needed. Refusals while a restarted driver
    is not yet heard (its joint states are missing or stale) are retried; a refusal naming `reapproach` is
    followed by a reapproach, then the command again."""
    reapproached, msg = False, ""
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, f"{command} never accepted; last reply {msg!r}"
        ok, msg = u.command(command)
        if ok or u.client.state == "Execute":  # accepted (a repeat of a call whose reply was lost is refused)
            return reapproached
        if "call reapproach" in msg:
            done, why = u.command("reapproach")
            if done:
                reapproached = True
                u.wait(
                    lambda: u.command(command)[0] or u.client.state == "Execute",
                    f"{command} accepted after reapproach",
                    60,
                )
                return reapproached
            msg = why
        assert "joint states" in msg or "nothing to reapproach" in msg, msg
        u.client.spin_once(0.2)


def _start(u: Up) -> None:
    u.ok("reset")
    u.wait(lambda: u.client.state == "Idle", "Idle")
    u.ok("start")
    u.wait(lambda: u.client.state == "Execute", "Execute")


def _watch_picker(u: Up) -> list[tuple[float, tuple[float, ...]]]:
    """(stamp, positions) of every /picker/joint_states message from now on."""
    from sensor_msgs.msg import JointState

    from cobot_cell.ros.common import STATES

    seen: list[tuple[float, tuple[float, ...]]] = []
    u.client.node.create_subscription(
        JointState,
        "/picker/joint_states",
        lambda m: seen.append((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, tuple(m.position))),
        STATES,
    )
    u.wait(lambda: bool(seen), "picker joint states")
    return seen


def _kill_and_see_it_restarted(u: Up, fqn: str, seen) -> tuple[float, float, float]:
    """kill -9 a sim driver; once `up` has restarted it: (wall s until the restart, last stamp before, first
    stamp after). Its joint states go on from the last /clock time, from its initial position."""
    old = u.nodes()[fqn]
    os.kill(old, signal.SIGKILL)
    t_kill = time.monotonic()
    u.wait(lambda: u.nodes().get(fqn, old) != old, f"{fqn} restarted", 30)
    restarted_after = time.monotonic() - t_kill
    last_stamp = seen[-1][0]
    u.wait(
        lambda: re.search(r"owning /clock at 20x from t=([0-9.]+) s", u.output()) is not None,
        "the restarted driver's start-up line",
    )
    resumed_from = float(re.search(r"owning /clock at 20x from t=([0-9.]+) s", u.output()).group(1))
    assert last_stamp <= resumed_from < last_stamp + 10.0  # /clock goes on from its last time, not from 0
    n_before = len(seen)
    u.wait(lambda: len(seen) > n_before, "joint states from the restarted driver")
    first_stamp, first_q = seen[n_before]
    assert first_stamp >= last_stamp, (first_stamp, last_stamp)  # /clock did not go back
    assert _distance(first_q, seen[0][1]) < 1e-6  # back at its initial position
    assert restarted_after >= RESPAWN_DELAY
    text = u.output()
    assert f"node {fqn} exited with signal SIGKILL; restarting it in 3 s (restart 1 of 5)" in text
    assert f"node {fqn} restarted (pid" in text
    return restarted_after, last_stamp, resumed_from


def test_killed_sim_driver_is_restarted_and_the_cell_recovers(up):
    """kill -9 of the /clock owner's driver mid-motion: Aborted with STALE; restarted at its initial position
    with /clock going on from where it was; clear, reset, start (reapproach only if the journal left the arm
    elsewhere) finish every part once."""
    u = up()
    seen = _watch_picker(u)
    home = seen[0][1]
    _start(u)
    u.wait(lambda: _distance(seen[-1][1], home) > 0.1, "the picker moving away from home")
    restarted_after, last_stamp, resumed_from = _kill_and_see_it_restarted(u, "/picker/sim_cobot", seen)
    u.wait(lambda: u.client.state == "Aborted", "Aborted")
    u.wait(lambda: ("STALE_JOINT_STATES", "picker") in u.client.faults_seen, "the STALE fault")
    u.ok("clear")
    u.wait(lambda: u.client.state == "Stopped", "Stopped")
    u.wait(lambda: u.command("reset")[0] or u.client.state == "Idle", "reset accepted")
    u.wait(lambda: u.client.state == "Idle", "Idle")
    expected = u.journal_pose("picker")  # where the resumed part goes on from
    elsewhere = _distance(expected, home) > 0.02
    assert _resume(u, "start") == elsewhere
    u.wait(lambda: u.client.state == "Complete", "Complete", 180)
    assert u.ledger() == [(1, "done"), (2, "done")]
    print(
        f"\ndriver kill -9 in Execute: restarted {restarted_after:.1f} s later; /clock went on from "
        f"{resumed_from:.2f} s (last stamp seen {last_stamp:.2f} s); reapproach "
        f"{'needed' if elsewhere else 'not needed'}"
    )
    u.assert_clean_exit(u.stop(signal.SIGTERM))


def test_driver_restarted_elsewhere_needs_a_reapproach(up):
    """Held mid-motion, the picker's driver crashes and comes back at its initial position: unhold is refused
    (the planner compares the arm with where it held, it does not assume it is still there); reapproach,
    unhold, and every part is finished once."""
    u = up()
    seen = _watch_picker(u)
    home = seen[0][1]
    _start(u)
    u.wait(lambda: _distance(seen[-1][1], home) > 0.1, "the picker moving away from home")
    u.ok("hold")
    u.wait(lambda: u.client.state == "Held", "Held")
    held_at = seen[-1][1]
    restarted_after, last_stamp, resumed_from = _kill_and_see_it_restarted(u, "/picker/sim_cobot", seen)
    assert _resume(u, "unhold")  # the arm is not where the cell held it
    u.wait(lambda: u.client.state == "Complete", "Complete", 180)
    assert u.ledger() == [(1, "done"), (2, "done")]
    print(
        f"\ndriver kill -9 while Held {_distance(held_at, home):.2f} rad from home: restarted "
        f"{restarted_after:.1f} s later at home; unhold refused until reapproach"
    )
    u.assert_clean_exit(u.stop(signal.SIGINT, signal.SIGINT))


def test_killed_planner_is_restarted_and_resumes(up):
    """kill -9 of the planner mid-part: `up` restarts it, it comes back Stopped naming the interrupted part;
    reset, start finish every part once."""
    u = up()
    _start(u)
    u.wait(lambda: u.client.status.get("part") == "1" and u.ledger() == [(1, "in_progress")], "part 1 under way")
    old = u.nodes()["/demo/task_planner"]
    os.kill(old, signal.SIGKILL)
    t_kill = time.monotonic()
    u.client.state = None
    u.wait(lambda: u.nodes().get("/demo/task_planner", old) != old, "the planner restarted", 30)
    restarted_after = time.monotonic() - t_kill
    u.wait(lambda: u.client.state == "Stopped", "the restarted planner Stopped", 60)
    stopped_after = time.monotonic() - t_kill
    u.wait(lambda: "part 1 interrupted" in u.client.status.get("resume", ""), "the interrupted part")
    u.wait(lambda: u.command("reset")[0] or u.client.state == "Idle", "reset accepted")
    u.wait(lambda: u.client.state == "Idle", "Idle")
    _resume(u, "start")
    u.wait(lambda: u.client.state == "Complete", "Complete", 180)
    assert u.ledger() == [(1, "done"), (2, "done")]
    assert "node /demo/task_planner exited with signal SIGKILL; restarting it in 3 s" in u.output()
    print(
        f"\nplanner kill -9: restarted {restarted_after:.1f} s later, Stopped (state heard) "
        f"{stopped_after:.1f} s after the kill"
    )
    u.assert_clean_exit(u.stop(signal.SIGINT))


@pytest.mark.parametrize(
    "signals, gap",
    [
        ((signal.SIGTERM,), 0.0),
        ((signal.SIGINT,), 0.0),
        ((signal.SIGINT, signal.SIGINT), 0.0),
        ((signal.SIGINT, signal.SIGINT), 0.3),
        ((signal.SIGTERM, signal.SIGINT), 0.05),
    ],
    ids=["sigterm", "sigint", "double-sigint", "double-sigint-0.3s", "sigterm-then-sigint"],
)
def test_signals_stop_every_node_cleanly(up, signals, gap):
    u = up()
    assert set(u.nodes()) == {"/picker/sim_cobot", "/welder/sim_cobot", "/demo/task_planner", "/supervisor"}
    u.client.close()
    u.client = None
    u.assert_clean_exit(u.stop(*signals, gap=gap))
    assert f"{signals[0].name}: stopping 4 nodes" in u.output()


@pytest.mark.parametrize("gap", [0.0, 0.001, 0.003, 0.01, 0.05])
def test_a_node_survives_a_second_sigint_while_shutting_down(tmp_path, gap):
    """A node's main (run_node) ends with exit 0 and no traceback however soon a second Ctrl-C follows."""
    with DomainLease() as lease:
        env = ros_env(lease.domain_id, tmp_path / "ros_log")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cobot_cell.ros.supervisor_node", "--ros-args", "-p", f"db:={tmp_path / 'p.db'}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            line = ""
            deadline = time.monotonic() + 60
            while "supervisor logging to" not in line:
                assert time.monotonic() < deadline and proc.poll() is None, "the supervisor did not come up"
                line = proc.stdout.readline()
            proc.send_signal(signal.SIGINT)
            if gap:
                time.sleep(gap)  # the second Ctrl-C lands while the node is shutting down
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0 and "Traceback" not in out, (proc.returncode, out)


NODE_SCRIPT = """
import sys
from rclpy.node import Node
from cobot_cell.ros.common import run_node

class Node_(Node):
    def __init__(self):
        super().__init__("broken")
        if sys.argv[1] == "init":
            raise ValueError("parameter speed: must be > 0, got -1")
        self.create_timer(0.01, self._tick)

    def _tick(self):
        raise ValueError("a defect in a callback")

sys.exit(run_node(Node_, []))
"""


@pytest.mark.parametrize("where", ["init", "callback"])
def test_only_a_bad_configuration_ends_a_node_with_exit_2(tmp_path, where):
    """A ValueError from the node's construction is bad configuration: exit 2 and its message, no traceback. One
    raised in a callback while spinning is a defect: its traceback and exit 1, never passed off as 'error: ...'."""
    with DomainLease() as lease:
        proc = subprocess.run(
            [sys.executable, "-c", NODE_SCRIPT, where],
            env=ros_env(lease.domain_id, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    if where == "init":
        assert (proc.returncode, proc.stderr) == (2, "error: parameter speed: must be > 0, got -1\n"), proc.stderr
    else:
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" in proc.stderr and "ValueError: a defect in a callback" in proc.stderr, proc.stderr
        assert "error: a defect" not in proc.stderr
