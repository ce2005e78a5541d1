"""rclpy adapters: one Node class per executable."""
