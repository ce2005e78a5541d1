"""Counters that the supervisor's executor callbacks and its writer thread add to at once."""

from __future__ import annotations

import sys
import threading

import pytest

from cobot_cell.supervisor.tally import Tally


def test_counters_by_name() -> None:
    t = Tally("rejected", "faults_rejected")
    t.add("rejected")
    t.add("rejected", 2)
    assert (t["rejected"], t["faults_rejected"]) == (3, 0)
    with pytest.raises(KeyError) as err:
        t.add("recieved")
    assert err.value.args[0] == "no counter 'recieved': expected one of rejected, faults_rejected"


def test_an_add_waits_for_the_lock() -> None:
    t = Tally("rejected")
    with t.lock:
        adder = threading.Thread(target=t.add, args=("rejected",))
        adder.start()
        adder.join(timeout=0.2)
        assert adder.is_alive()  # blocked: no read-modify-write while another thread holds the counters
    adder.join(timeout=10)
    assert not adder.is_alive() and t["rejected"] == 1


def test_no_add_is_lost_across_threads() -> None:
    t = Tally("rejected")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=lambda: [t.add("rejected") for _ in range(20000)]) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert t["rejected"] == 8 * 20000
