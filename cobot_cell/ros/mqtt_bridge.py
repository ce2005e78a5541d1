"""mqtt_bridge: publishes the cells' state changes, cycle reports, faults, KPIs and audit to an MQTT broker.

Follows each cell with the operator client (one node), turns every update into a JSON message under
`<site>/<area>/<cell>/...` (cobot_cell/plant/mqtt.py), and hands them to paho-mqtt while the broker is
there. While it is away messages wait in a bounded outbox; paho reconnects with backoff and re-sends what
was not acknowledged. See docs/plant.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from ..plant.mqtt import Message, Outbox, broker_address, check_prefix, event_message
from .common import route_core_logging, run_node
from .plant_follower import CellFollower


@dataclass(frozen=True)
class MqttParams:
    """Parameters of the mqtt_bridge node."""

    cells: tuple[str, ...]
    broker: str
    prefix: str
    client_id: str
    buffer: int
    min_backoff: float
    max_backoff: float


class MqttBridgeNode(Node):
    """Cells -> MQTT."""

    def __init__(self) -> None:
        super().__init__("mqtt_bridge")
        route_core_logging(self)
        d = self._declare
        self.params = MqttParams(
            cells=tuple(c for c in d("cells", [""], "cells to publish") if c),
            broker=d("broker", "mqtt://127.0.0.1:1883", "MQTT broker URL (mqtt://HOST[:PORT]); loopback by default"),
            prefix=d("prefix", "plant/area", "<site>/<area>: the first levels of every topic"),
            client_id=d("client_id", "", "MQTT client id (default: cobot_cell-<host>-<pid>)"),
            buffer=d("buffer", 10000, "messages kept while the broker is away (the oldest are dropped beyond)"),
            min_backoff=d("min_backoff", 0.5, "seconds before the first reconnection attempt"),
            max_backoff=d("max_backoff", 10.0, "longest wait between reconnection attempts (doubling up to it)"),
        )
        p = self.params
        if not p.cells:
            raise ValueError("parameter cells: at least one cell is required")
        self.host, self.port = broker_address(p.broker)
        self.prefix = check_prefix(p.prefix)
        if not 0 < p.min_backoff <= p.max_backoff:
            raise ValueError(
                f"parameters min_backoff/max_backoff: need 0 < min <= max, got {p.min_backoff}, {p.max_backoff}"
            )
        self.outbox = Outbox(p.buffer)
        self.connected = False
        client_id = p.client_id or f"cobot_cell-{os.uname().nodename}-{os.getpid()}"
        self.bridge_topic = f"{self.prefix}/bridge/{client_id}"
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        # paho annotates the delays as int; it only sleeps for them, so fractions of a second work
        self.mqtt.reconnect_delay_set(p.min_backoff, p.max_backoff)  # type: ignore[arg-type]
        self.mqtt.max_queued_messages_set(0)
        self.mqtt.will_set(self.bridge_topic, "offline", qos=1, retain=True)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_publish = self._on_publish
        self.followers = [CellFollower(c, self, self._on_event) for c in p.cells]
        self.mqtt.connect_async(self.host, self.port, keepalive=10)
        self.mqtt.loop_start()
        self.create_timer(0.02, self._flush, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"publishing {', '.join(p.cells)} to {p.broker} under {self.prefix}/")

    def _declare(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _on_event(self, cell: str, kind: str, data: Any) -> None:
        msg = event_message(self.prefix, cell, kind, data)
        if msg is not None:
            self.outbox.put(msg)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.get_logger().warning(f"MQTT broker {self.params.broker} refused the connection: {reason}")
            return
        self.connected = True
        self.get_logger().info(f"MQTT connected to {self.params.broker}")
        client.publish(self.bridge_topic, "online", qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected:
            self.get_logger().warning(f"MQTT broker {self.params.broker} went away ({reason}); buffering, reconnecting")
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.outbox.acknowledged(mid)

    def _flush(self) -> None:
        while self.connected:
            msg = self.outbox.take()
            if msg is None:
                return
            if not self._publish(msg):
                return

    def _publish(self, msg: Message) -> bool:
        """Hand a message to paho; False when the connection turned out to be gone."""
        info = self.mqtt.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.outbox.unsent(msg)
            return False
        # on NO_CONN paho keeps the message and sends it after reconnecting: it is in flight either way
        self.outbox.sent(info.mid, msg)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def destroy_node(self) -> None:
        """Say goodbye on the bridge topic and stop the MQTT client."""
        if self.connected:
            self.mqtt.publish(self.bridge_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        super().destroy_node()


def main(args=None) -> int:
    """Run the mqtt_bridge node."""
    return run_node(MqttBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
