"""User store shared by the plant servers (OPC UA, web HMI): names, roles and scrypt-hashed passwords in JSON.

The file (default `~/.config/cobot_cell/users.json`, or `$XDG_CONFIG_HOME/cobot_cell/users.json`, or the path in
`$COBOT_CELL_USERS`) holds one entry per user: role, salt and scrypt hash with its cost parameters. It is written
atomically (a temporary file in the same directory, then renamed) with mode 0600, and read again when it changes,
so a user added with `cobot-cell users add` can log in without restarting a server.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

logger = logging.getLogger(__name__)

USERS_VAR = "COBOT_CELL_USERS"
FILE_VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MAX_PASSWORD = 1024
# scrypt cost: n=2**14, r=8, p=1 (16 MiB, tens of ms per check): RFC 7914 section 2's interactive-login figures.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32


class Role(IntEnum):
    """What a user may do; a higher role may do everything a lower one may."""

    VIEWER = 1  # read only
    OPERATOR = 2  # commands (start, stop, ...), job and part count
    INTEGRATOR = 3  # plus configuration (users, authority defaults)

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text` (case-insensitive); ValueError naming the choices otherwise."""
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {text!r}: expected one of {', '.join(r.name.lower() for r in cls)}"
            ) from None

    @property
    def label(self) -> str:
        """Lower-case name, as written in the file and on the command line."""
        return self.name.lower()


def default_path() -> Path:
    """The user file used when none is given: $COBOT_CELL_USERS, else the per-user configuration directory."""
    if os.environ.get(USERS_VAR):
        return Path(os.environ[USERS_VAR])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cobot_cell" / "users.json"


def check_name(name: str) -> str:
    """`name` if it is a valid user name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: 1-64 characters, letters, digits and _ . @ -, starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """`password` if it can be stored, else ValueError (empty, too long, not text)."""
    if not isinstance(password, str) or not password:
        raise ValueError("empty password: a user needs a password")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password too long: at most {MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True)
class _Entry:
    role: Role
    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=HASH_BYTES
    )


class UserStore:
    """Users and roles in a JSON file; `verify` checks a password in constant time against its scrypt hash."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        """Open the store at `path` (default: `default_path()`); a missing file is an empty store."""
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._users: dict[str, _Entry] = {}
        self._stamp: tuple[int, int] | None = None
        # verify() of an unknown user still derives a hash, so timing does not tell which names exist
        self._dummy = _Entry(Role.VIEWER, os.urandom(SALT_BYTES), os.urandom(HASH_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        with self._lock:
            self._reload()

    # ------------------------------------------------------------------ file
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._users = self._read() if stamp is not None else {}
        self._stamp = stamp

    def _read(self) -> dict[str, _Entry]:
        where = str(self.path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: cannot read the user file: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION or not isinstance(data.get("users"), dict):
            raise ValueError(f"{where}: expected an object with version {FILE_VERSION} and a 'users' object")
        users: dict[str, _Entry] = {}
        for name, e in data["users"].items():
            try:
                check_name(name)
                users[name] = _Entry(
                    Role.parse(e["role"]),
                    bytes.fromhex(e["salt"]),
                    bytes.fromhex(e["hash"]),
                    int(e["n"]),
                    int(e["r"]),
                    int(e["p"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: users.{name}: {exc}") from None
        return users

    def _write(self) -> None:
        data = {
            "version": FILE_VERSION,
            "users": {
                name: {"role": e.role.label, "salt": e.salt.hex(), "hash": e.hash.hex(), "n": e.n, "r": e.r, "p": e.p}
                for name, e in sorted(self._users.items())
            },
        }
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._stamp = self._file_stamp()

    # ------------------------------------------------------------------ API
    def add(self, name: str, password: str, role: Role | str) -> None:
        """Add a user, or replace the password and role of an existing one."""
        check_name(name)
        check_password(password)
        role = role if isinstance(role, Role) else Role.parse(role)
        salt = os.urandom(SALT_BYTES)
        entry = _Entry(role, salt, _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        with self._lock:
            self._reload()
            self._users[name] = entry
            self._write()
        logger.info("user '%s' stored with role %s in %s", name, role.label, self.path)

    def remove(self, name: str) -> None:
        """Remove a user; ValueError if there is none of that name."""
        with self._lock:
            self._reload()
            if name not in self._users:
                raise ValueError(f"no user {name!r} in {self.path}")
            del self._users[name]
            self._write()
        logger.info("user '%s' removed from %s", name, self.path)

    def roles(self) -> dict[str, Role]:
        """Every user's role, by name."""
        with self._lock:
            self._reload()
            return {name: e.role for name, e in sorted(self._users.items())}

    def verify(self, name: str, password: str) -> Role | None:
        """The user's role if `password` is theirs, else None (unknown user, wrong or malformed password)."""
        with self._lock:
            try:
                self._reload()
            except ValueError as exc:
                logger.error("%s", exc)
                return None
            entry = self._users.get(name) if isinstance(name, str) else None
        ok_input = isinstance(password, str) and 0 < len(password) <= MAX_PASSWORD
        e = entry if entry is not None and ok_input else self._dummy
        derived = _derive(password if ok_input else "", e.salt, e.n, e.r, e.p)
        match = hmac.compare_digest(derived, e.hash)
        return e.role if match and entry is not None and ok_input else None


# ---------------------------------------------------------------------------------------------- CLI
def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    """`cobot-cell users add|remove|list`."""
    try:
        store = UserStore(args.users)
        if args.action == "add":
            check_name(args.name)
            role = Role.parse(args.role)
            store.add(args.name, _read_password(args), role)
            print(f"user {args.name} ({role.label}) stored in {store.path}")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"user {args.name} removed from {store.path}")
        else:
            roles = store.roles()
            if not roles:
                print(f"no users in {store.path}")
            for name, role in roles.items():
                print(f"{name}\t{role.label}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add `cobot-cell users` to the CLI."""
    helptext = "manage the users of the plant servers (OPC UA, web HMI): add, remove, list"
    p = sub.add_parser(
        "users", help=helptext, description=helptext + f". Default file: {default_path()} (or ${USERS_VAR})."
    )
    p.add_argument("--users", metavar="FILE", help="user file (default: %(default)s)", default=str(default_path()))
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = acts.add_parser("add", help="add a user or change their password and role")
    a.add_argument("name", help="user name")
    a.add_argument("--role", default="operator", help="viewer, operator or integrator (default: %(default)s)")
    a.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin instead of prompting"
    )
    r = acts.add_parser("remove", help="remove a user")
    r.add_argument("name", help="user name")
    acts.add_parser("list", help="list users and their roles")
    p.set_defaults(func=cmd_users)
