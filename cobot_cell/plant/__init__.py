"""Plant connectivity, pure parts: users and roles, command authority, PackML tag and MQTT payload mappings."""
