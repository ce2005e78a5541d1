"""Plant connectivity, pure parts: users and roles, command authority, PackML tag and MQTT payload mappings."""

DEFAULT_OPCUA_ENDPOINT = "opc.tcp://127.0.0.1:4840/cobot_cell/"
