"""The benches' shared helpers: the date a report prints is the run's."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_common():
    spec = importlib.util.spec_from_file_location("bench_common_under_test", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_reports_carry_the_date_of_the_run() -> None:
    loaded = set(sys.modules)
    before = datetime.now(timezone.utc).date().isoformat()
    common = _load_common()
    after = datetime.now(timezone.utc).date().isoformat()
    assert common.DATE in (before, after)
    assert not [m for m in set(sys.modules) - loaded if m.split(".")[0] == "rclpy"]  # the helpers need no ROS


def test_the_run_date_is_the_utc_day() -> None:
    common = _load_common()
    late_in_berlin = datetime(2027, 1, 3, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert common.run_date(late_in_berlin) == "2027-01-02"
    assert common.run_date(datetime(2027, 1, 3, 0, 30, tzinfo=timezone.utc)) == "2027-01-03"
