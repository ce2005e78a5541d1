"""Motion: kinematics of the arm model and time-parameterised trajectories (numpy only)."""
