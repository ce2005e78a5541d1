"""UserStore: roles, scrypt hashes, atomic 0600 file, clear errors; the `cobot-cell users` command."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cobot_cell.cli import main
from cobot_cell.plant.users import Role, UserStore, default_path


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.INTEGRATOR
    assert Role.parse(" Operator ") is Role.OPERATOR
    with pytest.raises(ValueError, match=r"unknown role 'boss': expected one of viewer, operator, integrator"):
        Role.parse("boss")


def test_add_verify_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path)
    assert store.roles() == {}
    store.add("alice", "s3cret", Role.OPERATOR)
    store.add("bob", "pw", "viewer")
    assert store.verify("alice", "s3cret") is Role.OPERATOR
    assert store.verify("alice", "S3cret") is None
    assert store.verify("nobody", "s3cret") is None
    assert store.verify("bob", "pw") is Role.VIEWER
    assert store.roles() == {"alice": Role.OPERATOR, "bob": Role.VIEWER}
    store.add("alice", "new", "integrator")  # replaces password and role
    assert store.verify("alice", "s3cret") is None
    assert store.verify("alice", "new") is Role.INTEGRATOR
    store.remove("bob")
    assert store.verify("bob", "pw") is None
    with pytest.raises(ValueError, match=r"no user 'bob' in "):
        store.remove("bob")


def test_file_is_private_hashed_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "users.json"
    UserStore(path).add("alice", "s3cret", Role.OPERATOR)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "s3cret" not in text
    entry = json.loads(text)["users"]["alice"]
    assert entry["role"] == "operator" and len(bytes.fromhex(entry["salt"])) == 16
    assert [p.name for p in path.parent.iterdir()] == ["users.json"]  # no temporary file left behind
    # two users with the same password get different hashes (salted)
    store = UserStore(path)
    store.add("bob", "s3cret", Role.OPERATOR)
    users = json.loads(path.read_text())["users"]
    assert users["alice"]["hash"] != users["bob"]["hash"]


def test_a_second_store_sees_changes_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    server = UserStore(path)
    assert server.verify("carol", "pw") is None
    UserStore(path).add("carol", "pw", Role.OPERATOR)
    assert server.verify("carol", "pw") is Role.OPERATOR


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("", "pw", "operator", "invalid user name ''"),
        ("a b", "pw", "operator", "invalid user name 'a b'"),
        ("-x", "pw", "operator", "invalid user name '-x'"),
        ("x" * 65, "pw", "operator", "invalid user name"),
        ("alice", "", "operator", "empty password: a user needs a password"),
        ("alice", "x" * 1025, "operator", "password too long: at most 1024 characters"),
        ("alice", "pw", "root", "unknown role 'root'"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, name: str, password: str, role: str, message: str
) -> None:
    path = tmp_path / "users.json"
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        UserStore(path).add(name, password, role)
    assert not path.exists()


def test_malformed_passwords_do_not_verify(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "pw", Role.OPERATOR)
    assert store.verify("alice", "") is None
    assert store.verify("alice", None) is None  # type: ignore[arg-type]
    assert store.verify(None, "pw") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"version": 7, "users": {}}', "expected an object with version 1"),
        ('{"version": 1, "users": {"alice": {"role": "operator"}}}', "users.alice: 'salt'"),
        (
            '{"version": 1, "users": {"alice": {"role": "boss", "salt": "", "hash": "", "n": 1, "r": 1, "p": 1}}}',
            "users.alice: unknown role 'boss'",
        ),
    ],
)
def test_a_bad_file_is_named_with_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        UserStore(path)


def test_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COBOT_CELL_USERS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_path() == tmp_path / "cobot_cell" / "users.json"
    monkeypatch.setenv("COBOT_CELL_USERS", str(tmp_path / "u.json"))
    assert default_path() == tmp_path / "u.json"


def test_cli_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("pw1\n"))
    assert main(["users", "--users", str(path), "add", "alice", "--role", "operator", "--password-stdin"]) == 0
    assert UserStore(path).verify("alice", "pw1") is Role.OPERATOR
    assert main(["users", "--users", str(path), "list"]) == 0
    assert "alice\toperator" in capsys.readouterr().out
    assert main(["users", "--users", str(path), "remove", "alice"]) == 0
    assert main(["users", "--users", str(path), "remove", "alice"]) == 2
    assert f"error: no user 'alice' in {path}" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n"))
    assert main(["users", "--users", str(path), "add", "bob", "--password-stdin"]) == 2
    assert "error: empty password" in capsys.readouterr().err
