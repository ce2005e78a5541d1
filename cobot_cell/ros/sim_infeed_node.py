"""sim_infeed: the part-present sensors of a simulated cell's infeeds (cobot_cell.skills.infeed).

Publishes each sensed infeed's sensor (`stations.<name>.sensor` of the cell file, std_msgs/Bool, latched,
relative to the cell's namespace): true while a part waits there. It watches the joint states and gripper
states of the cobots that pick from the infeeds to see a part taken, and feeds the next one `interval` s of
clock time later. Parameter `feeding` (settable at run time): false stops the supply, as an upstream machine
that stopped would, so the cell is starved once the part on its infeed is taken.
On real hardware this node is not started: the sensors are the cell's own inputs, published on the same topics.
"""

from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock as RosClockType
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from ..skills import load_cell
from ..skills.infeed import InfeedSim
from .common import LATCHED, STATES, JointReader, run_node

TICK = 0.05  # wall s between checks for arriving parts


class SimInfeedNode(Node):
    """Simulated infeed sensors of one cell."""

    def __init__(self) -> None:
        super().__init__("sim_infeed")
        cell_file = self._declare("cell_file", "", "cell file (YAML) naming the sensed infeeds")
        interval = self._declare("interval", 2.0, "clock seconds from a part taken off an infeed to the next one")
        feeding = self._declare("feeding", True, "parts keep arriving (false: upstream stopped)")
        if not isinstance(cell_file, str) or not cell_file:
            raise ValueError("parameter cell_file: no cell file given")
        if not isinstance(interval, float) or not interval >= 0.0:
            raise ValueError(f"parameter interval: must be >= 0 s, got {interval!r}")
        self.cfg = load_cell(cell_file)
        self.sim = InfeedSim(self.cfg, interval, bool(feeding))
        self.pubs = {n: self.create_publisher(Bool, topic, LATCHED) for n, topic in self.cfg.infeed_sensors.items()}
        for cobot, io in self.sim.grippers:
            ns = self.cfg.cobot_namespace(cobot)
            reader = JointReader(self.cfg.cobots[cobot].joints)
            self.create_subscription(
                JointState, f"{ns}/joint_states", lambda m, c=cobot, r=reader: self._on_joints(c, r, m), STATES
            )
            self.create_subscription(
                Bool, f"{ns}/{io}/state", lambda m, c=cobot, i=io: self._on_gripper(c, i, m), LATCHED
            )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name in self.pubs:
            self._publish(name)
        self.create_timer(TICK, self._on_tick, clock=RosClockType(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"infeeds {', '.join(self.pubs)}: a part every {interval:g} s after one is taken")

    def _declare(self, name: str, default: object, description: str) -> object:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _now(self) -> float:
        return float(self.get_clock().now().nanoseconds) * 1e-9

    def _publish(self, name: str) -> None:
        self.pubs[name].publish(Bool(data=self.sim.feeds[name].present))

    def _on_joints(self, cobot: str, reader: JointReader, msg: JointState) -> None:
        q = reader.read(msg.name, msg.position)
        if q is not None:
            self.sim.joints(cobot, q)

    def _on_gripper(self, cobot: str, io: str, msg: Bool) -> None:
        for name in self.sim.gripper(cobot, io, bool(msg.data), self._now()):
            self.get_logger().info(f"infeed {name}: part taken by {cobot}")
            self._publish(name)

    def _on_tick(self) -> None:
        for name in self.sim.tick(self._now()):
            self._publish(name)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "feeding":
                if p.type_ != Parameter.Type.BOOL:
                    return SetParametersResult(successful=False, reason="feeding must be true or false")
            elif p.name != "use_sim_time":
                return SetParametersResult(successful=False, reason=f"{p.name} is read once at start")
        for p in params:
            if p.name == "feeding":
                self.sim.set_feeding(bool(p.value), self._now())
                self.get_logger().info("infeed feeding" if p.value else "infeed stopped feeding (upstream stopped)")
        return SetParametersResult(successful=True)


def main(args: list[str] | None = None) -> int:
    """Run the sim_infeed node."""
    return run_node(SimInfeedNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
