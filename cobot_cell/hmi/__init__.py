"""Shop-floor web HMI: page models, server-side SVG charts, sessions and the ASGI app (no rclpy here)."""
