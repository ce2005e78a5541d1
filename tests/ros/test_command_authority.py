"""Command authority in a running cell: remote commands only after the local operator hands over, local ones
refused (but Stop) while remote holds it, every command audited and logged by the supervisor."""

from __future__ import annotations

import sqlite3


def test_authority_handover_and_audit(cell_rig) -> None:
    rig = cell_rig(parts=1)
    c = rig.client
    rig.wait(lambda: c.authority == "local", "authority to be announced")
    ok, reason = c.command_as("reset", "remote", "alice")
    assert not ok and reason == (
        "remote command 'reset' refused: the cell takes commands from the local operator "
        "(the local operator hands authority over)"
    )
    assert rig.ok("authority/hand_over") == "authority remote"
    rig.wait(lambda: c.authority == "remote", "authority remote")
    ok, reply = c.command_as("reset", "remote", "alice")
    assert ok and reply.startswith("reset: state "), reply
    rig.wait_state("Idle")
    ok, reason = c.command("start")
    assert not ok and reason.startswith("local command 'start' refused")
    ok, reason = c.set_parameter("parts", 3)
    assert not ok and reason.startswith("local command 'set_product' refused")
    assert c.command_as("set_product", "remote", "alice", parts=2) == (True, "parts 2")
    rig.wait(lambda: c.status.get("parts") == "2", "parts 2 in the status")
    ok, reason = c.command_as("set_product", "remote", "alice", job="nope")
    assert (ok, reason) == (False, "unknown job 'nope': expected one of bracket")
    ok, reason = c.command_as("dance", "remote", "alice")
    assert not ok and reason.startswith("unknown command 'dance': expected one of reset, start")
    assert c.command("stop")[0]  # the person at the cell can always stop it
    rig.wait_state("Stopped")
    assert rig.ok("authority/take_back") == "authority local"
    ok, reason = c.command_as("reset", "remote", "alice")
    assert not ok
    expected = [
        ("remote", "alice", "reset", "refused"),
        ("local", "", "hand_over", "accepted"),
        ("remote", "alice", "reset", "accepted"),
        ("local", "", "start", "refused"),
        ("local", "", "set_product", "refused"),
        ("remote", "alice", "set_product", "accepted"),
        ("remote", "alice", "set_product", "refused"),
        ("remote", "alice", "dance", "refused"),
        ("local", "", "stop", "accepted"),
        ("local", "", "take_back", "accepted"),
        ("remote", "alice", "reset", "refused"),
    ]
    rig.wait(lambda: len(c.audit) >= len(expected), "the audit records")
    assert [(a["source"], a["user"], a["command"], a["outcome"]) for a in c.audit] == expected

    def logged() -> list[tuple]:
        with sqlite3.connect(rig.db) as db:
            return db.execute("SELECT source, user, command, outcome FROM audit ORDER BY time, id").fetchall()

    rig.wait(lambda: len(logged()) >= len(expected), "the supervisor to log the audit")
    assert logged() == expected
