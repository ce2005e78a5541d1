"""Logins, sessions, CSRF tokens, login rate limits and who may send which command.

Roles are the plant user store's (VIEWER < OPERATOR < INTEGRATOR, an IntEnum); this module needs only their
names and order, so it works with whatever store `Sessions` is given. Times are monotonic seconds.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from ..core.packml import Command
from .model import ACKNOWLEDGE

logger = logging.getLogger(__name__)

# Command -> name of the least role that may send it: operators run, hold and acknowledge (every PackML command),
# integrators also change the job and the part count.
PERMISSIONS: dict[str, str] = {
    **{c.value: "OPERATOR" for c in Command},
    ACKNOWLEDGE: "OPERATOR",
    "job": "INTEGRATOR",
    "parts": "INTEGRATOR",
}


class UserCheck(Protocol):
    """What the HMI needs of a user store."""

    def verify(self, name: str, password: str) -> IntEnum | None:
        """The user's role if the password is right, else None."""


@dataclass
class Session:
    """A logged-in user: the session id is the cookie, the CSRF token goes with every command."""

    id: str
    user: str
    role: IntEnum
    csrf: str
    source: str
    created: float
    last_seen: float


class RateLimited(Exception):
    """Too many failed logins from a source or for a user; `retry_after` seconds until the next try."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after:.0f} s")
        self.retry_after = retry_after


def allowed(role: IntEnum, command: str) -> bool:
    """True if `role` may send `command` (unknown commands: nobody)."""
    need = PERMISSIONS.get(command)
    return need is not None and role >= type(role)[need]


def role_name(role: IntEnum) -> str:
    """'viewer', 'operator' or 'integrator'."""
    return role.name.lower()


class Sessions:
    """Server-side sessions with idle and absolute expiry, per-session CSRF tokens and a login rate limit."""

    def __init__(
        self,
        users: UserCheck,
        idle_timeout: float = 900.0,
        max_age: float = 8 * 3600.0,
        max_failures: int = 5,
        failure_window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_failures` failed logins within `failure_window` s from one source, or for one user name, lock that
        source or name out until the oldest failure leaves the window."""
        self.users = users
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_failures = max_failures
        self.failure_window = failure_window
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _retry_after(self, key: str, now: float) -> float:
        fails = self._failures.get(key)
        if not fails:
            return 0.0
        while fails and now - fails[0] > self.failure_window:
            fails.popleft()
        if not fails:
            del self._failures[key]
            return 0.0
        return self.failure_window - (now - fails[0]) if len(fails) >= self.max_failures else 0.0

    def login(self, name: str, password: str, source: str, address: str | None = None) -> Session | None:
        """A new session for a right name and password; None if wrong; RateLimited while locked out. Failures
        count per `address` (default: `source`) and per user name."""
        now = self.clock()
        keys = (f"address:{address or source}", f"user:{name}")
        with self._lock:
            wait = max(self._retry_after(k, now) for k in keys)
            if wait > 0:
                raise RateLimited(wait)
        role = self.users.verify(name, password)
        with self._lock:
            if role is None:
                for k in keys:
                    self._failures.setdefault(k, deque(maxlen=self.max_failures)).append(now)
                if len(self._failures) > 10_000:  # a flood of names: forget the oldest
                    for k in list(self._failures)[:1000]:
                        del self._failures[k]
                return None
            self._expire(now)
            session = Session(
                id=secrets.token_urlsafe(32),
                user=name,
                role=role,
                csrf=secrets.token_urlsafe(32),
                source=source,
                created=now,
                last_seen=now,
            )
            self._sessions[session.id] = session
            return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle time restarts), or None if unknown or expired."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return None
            if now - s.last_seen > self.idle_timeout or now - s.created > self.max_age:
                del self._sessions[session_id]
                logger.info("session of %s expired", s.user)
                return None
            s.last_seen = now
            return s

    def logout(self, session_id: str | None) -> Session | None:
        """End a session; the ended session or None."""
        with self._lock:
            return self._sessions.pop(session_id or "", None)

    def _expire(self, now: float) -> None:
        for sid, s in list(self._sessions.items()):
            if now - s.last_seen > self.idle_timeout or now - s.created > self.max_age:
                del self._sessions[sid]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


def csrf_ok(session: Session, token: str | None) -> bool:
    """The token sent with a command matches the session's (constant-time comparison)."""
    return bool(token) and hmac.compare_digest(session.csrf.encode(), (token or "").encode())
