"""Digital twin of a cell: one MuJoCo model of every cobot, tool, station and part (no rclpy).

`model` builds the model from the cell file's rendered URDF, `physics` runs it (servos, grips, collisions),
`replay` checks a planned schedule for collisions kinematically, `record` writes and reads Foxglove channels.
"""
