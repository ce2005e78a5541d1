"""Command authority: one source at a time, handover by the local operator, every command audited."""

from __future__ import annotations

import pytest

from cobot_cell.plant.authority import ACCEPTED, REFUSED, AuditRecord, Authority, Refused, Source


class Rig:
    def __init__(self) -> None:
        self.t = 100.0
        self.records: list[AuditRecord] = []
        self.changes: list[Source] = []
        self.ran: list[str] = []
        self.auth = Authority(
            "cell1", clock=lambda: self.t, on_audit=self.records.append, on_change=self.changes.append
        )

    def run(self, source: str, user: str, command: str) -> str:
        def action() -> str:
            self.ran.append(command)
            return f"{command} done"

        return self.auth.execute(source, user, command, action)


def test_local_holds_authority_at_start_and_remote_is_refused() -> None:
    rig = Rig()
    assert rig.auth.holder is Source.LOCAL
    assert rig.run("local", "pendant", "start") == "start done"
    with pytest.raises(
        Refused,
        match="remote command 'stop' refused: the cell takes commands from the local "
        r"operator \(the local operator hands authority over\)",
    ):
        rig.run("remote", "alice", "stop")
    assert rig.ran == ["start"]
    try:
        rig.run("remote", "alice", "start")
    except Refused as exc:
        assert exc.kind == "authority"
    assert [(r.source, r.user, r.command, r.outcome) for r in rig.records] == [
        ("local", "pendant", "start", ACCEPTED),
        ("remote", "alice", "stop", REFUSED),
        ("remote", "alice", "start", REFUSED),
    ]
    assert rig.records[1].detail.startswith("remote command 'stop' refused") and rig.records[1].time == 100.0


def test_handover_and_take_back() -> None:
    rig = Rig()
    with pytest.raises(Refused, match="only the local operator hands authority over"):
        rig.run("remote", "alice", "hand_over")
    assert rig.run("local", "op", "hand_over") == "authority remote"
    assert rig.auth.holder is Source.REMOTE and rig.changes == [Source.REMOTE]
    assert rig.run("remote", "alice", "start") == "start done"
    with pytest.raises(Refused, match=r"local command 'start' refused: .* remote operator \(take authority back"):
        rig.run("local", "op", "start")
    # the person at the cell can always stop it
    assert rig.run("local", "op", "stop") == "stop done"
    assert rig.run("local", "op", "abort") == "abort done"
    with pytest.raises(Refused, match="only the local operator takes authority back"):
        rig.run("remote", "alice", "take_back")
    assert rig.run("local", "op", "take_back") == "authority local"
    assert rig.auth.holder is Source.LOCAL and rig.changes == [Source.REMOTE, Source.LOCAL]
    assert rig.ran == ["start", "stop", "abort"]  # authority commands do not run the action


def test_remote_releases() -> None:
    rig = Rig()
    with pytest.raises(Refused, match="only the remote side holding authority releases it"):
        rig.run("remote", "alice", "release")
    rig.run("local", "op", "hand_over")
    with pytest.raises(Refused, match="authority is already remote"):
        rig.run("local", "op", "hand_over")
    assert rig.run("remote", "alice", "release") == "authority local"
    assert rig.auth.holder is Source.LOCAL


def test_a_refusal_by_the_action_is_audited_with_its_reason() -> None:
    rig = Rig()

    def wrong_state() -> str:
        raise ValueError("command 'unhold' not allowed in state Stopped")

    with pytest.raises(Refused, match="command 'unhold' not allowed in state Stopped") as refused:
        rig.auth.execute(Source.LOCAL, "op", "unhold", wrong_state)
    assert refused.value.kind == "command"
    assert (rig.records[-1].outcome, rig.records[-1].detail) == (
        REFUSED,
        "command 'unhold' not allowed in state Stopped",
    )


def test_an_unknown_source_is_refused_and_audited() -> None:
    rig = Rig()
    with pytest.raises(Refused, match="unknown command source 'mes': expected local or remote"):
        rig.run("mes", "x", "start")
    assert rig.ran == [] and rig.records[-1].source == "mes" and rig.records[-1].outcome == REFUSED


def test_long_fields_are_clipped_in_the_audit() -> None:
    rig = Rig()
    with pytest.raises(Refused):
        rig.run("remote", "u" * 1000, "start")
    assert len(rig.records[-1].user) == 256 and rig.records[-1].user.endswith("...")


def test_audit_record_round_trip() -> None:
    rec = AuditRecord(1.5, "c", "remote", "alice", "start", ACCEPTED, "ok")
    assert AuditRecord.from_key_values(rec.to_key_values()) == rec
    with pytest.raises(ValueError, match="audit record: missing key 'user'"):
        AuditRecord.from_key_values([p for p in rec.to_key_values() if p[0] != "user"])
    with pytest.raises(ValueError, match="audit record: time is not a number: 'x'"):
        AuditRecord.from_key_values(dict(rec.to_key_values(), time="x"))
    with pytest.raises(ValueError, match="audit record: outcome must be accepted or refused, got 'maybe'"):
        AuditRecord.from_key_values(dict(rec.to_key_values(), outcome="maybe"))
