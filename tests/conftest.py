"""Test-wide isolation: DDS on loopback, a private ROS_DOMAIN_ID and log directory for this test process."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="cobot_cell_test_ros_log_"))


@pytest.fixture
def domain():
    """An exclusive ROS_DOMAIN_ID for one test (a lock file held until the test ends)."""
    from cobot_cell.ros.processes import DomainLease

    with DomainLease() as lease:
        yield lease.domain_id
