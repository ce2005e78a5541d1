"""cobot_cell: a ROS 2 cell controller for collaborative robots."""

__version__ = "0.1.0"
