"""HMI web API against a fake cell that runs the real PackML machine: open viewing, login and sessions, CSRF, roles,
wrong-state refusals, bad bodies, rate limits, the live stream (including a browser that goes away) and exports."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from pathlib import Path
from typing import Self

import pytest
from starlette.testclient import TestClient
from test_hmi_model import STATIONS, part

from cobot_cell.core.packml import CellMachine, CommandRefused
from cobot_cell.hmi.auth import Sessions
from cobot_cell.hmi.model import LiveModel
from cobot_cell.hmi.server import ServerOptions, create_app
from cobot_cell.hmi.shift import ShiftReport
from cobot_cell.plant.users import Role, UserStore
from cobot_cell.waiting import wait_until


class Users:
    """The plant user store (a file in a temp dir) with one user per role (password = name + '-pw'), counting checks."""

    def __init__(self, directory: Path) -> None:
        self.store = UserStore(directory / "users.json")
        for name, role in (("vera", Role.VIEWER), ("otto", Role.OPERATOR), ("ida", Role.INTEGRATOR)):
            self.store.add(name, f"{name}-pw", role)
        self.checked: list[str] = []

    def verify(self, name: str, password: str) -> Role | None:
        self.checked.append(name)
        return self.store.verify(name, password)


class FakeCell:
    """The backend: a real PackML machine behind the live model, recording every call."""

    def __init__(self) -> None:
        self.machine = CellMachine()
        self.model = LiveModel("demo", ["picker", "welder"], STATIONS)
        self.model.set_state(self.machine.state.value)
        self.model.set_status({"state": "Stopped", "job": "bracket", "parts": "1", "parts_done": "0"})
        self.calls: list[tuple] = []
        self.params: dict[str, object] = {"job": "bracket", "parts": 1}
        self.reports = [part(1, 0.0), part(2, 8.0)]

    def snapshot(self) -> dict:
        return self.model.snapshot()

    def version(self) -> int:
        return self.model.version

    def command(self, name: str, user: str, source: str) -> tuple[bool, str]:
        self.calls.append((name, user))
        if name == "acknowledge":
            return False, "no active fault to acknowledge"
        try:
            state = self.machine.command(name)
        except CommandRefused as exc:
            return False, str(exc)
        self.model.set_state(state.value)
        return True, f"{name}: state {state.value}"

    def set_parameter(self, name: str, value, user: str, source: str) -> tuple[bool, str]:
        self.calls.append((name, value, user))
        if name == "job" and value != "bracket":
            return False, f"unknown job '{value}': expected one of bracket"
        self.params[name] = value
        return True, ""

    def report(self, run_id: str | None) -> ShiftReport:
        return ShiftReport("demo", run_id, tuple(self.reports), (), runs=(("r1", 2),))

    def report_png(self, run_id: str | None) -> bytes:
        return b"\x89PNG\r\n\x1a\nfake"


@pytest.fixture
def cell() -> FakeCell:
    return FakeCell()


@pytest.fixture
def audit() -> list[tuple]:
    return []


@pytest.fixture(scope="module")
def users(tmp_path_factory) -> Users:
    return Users(tmp_path_factory.mktemp("users"))


@pytest.fixture
def client(cell, audit, users):
    app = create_app(cell, Sessions(users), ServerOptions(), audit=lambda *a: audit.append(a))
    with TestClient(app, base_url="http://127.0.0.1:8080") as c:
        yield c


def login(client: TestClient, user: str) -> str:
    r = client.post("/api/login", json={"user": user, "password": f"{user}-pw"})
    assert r.status_code == 200, r.text
    return r.json()["csrf"]


def test_viewing_needs_no_login(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="banner"' in r.text
    live = client.get("/api/live").json()
    assert live["state"] == "Stopped" and live["commands"] == ["reset", "abort"]
    assert client.get("/api/session").json() == {"user": None}
    assert client.get("/static/hmi.js").status_code == 200
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/other.js").status_code == 404


def test_off_loopback_viewing_needs_a_login(cell, users):
    with TestClient(create_app(cell, Sessions(users), ServerOptions(open_viewing=False))) as c:
        for path in ("/api/live", "/api/stream", "/report", "/report.csv", "/report.png"):
            r = c.get(path)
            assert (r.status_code, r.json()["message"]) == (401, "log in to view the cell"), path
        assert c.get("/").status_code == 200, "the page itself (with its login form) is served"
        login(c, "vera")
        assert c.get("/api/live").json()["state"] == "Stopped"
        assert c.get("/report").status_code == 200


def test_security_headers(client):
    r = client.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_command_without_login_is_refused_and_the_cell_unchanged(client, cell):
    r = client.post("/api/command", json={"command": "reset"})
    assert r.status_code == 403 and r.json()["message"] == "log in to send commands (no session, or it expired)"
    assert cell.calls == [] and cell.machine.state.value == "Stopped"


def test_login_sets_a_strict_http_only_cookie(client):
    r = client.post("/api/login", json={"user": "otto", "password": "otto-pw"})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == "otto" and body["role"] == "operator" and len(body["csrf"]) > 30
    assert "job" not in body["commands"] and "start" in body["commands"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert client.get("/api/session").json()["csrf"] == body["csrf"]


def test_wrong_password(client):
    r = client.post("/api/login", json={"user": "otto", "password": "nope"})
    assert r.status_code == 401 and r.json()["message"] == "wrong user name or password"
    assert "set-cookie" not in r.headers


def test_csrf_token_is_required(client, cell):
    login(client, "otto")
    r = client.post("/api/command", json={"command": "reset"})
    assert r.status_code == 403 and r.json()["message"] == "missing or wrong CSRF token: reload the page"
    r = client.post("/api/command", json={"command": "reset"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert cell.calls == []


def test_cross_origin_command_is_refused(client, cell):
    token = login(client, "otto")
    r = client.post(
        "/api/command", json={"command": "reset"}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and "cross-origin" in r.json()["message"]
    assert cell.calls == []


def test_operator_commands_and_packml_refusal(client, cell, audit):
    token = login(client, "otto")
    h = {"X-CSRF-Token": token, "Origin": "http://127.0.0.1:8080"}
    r = client.post("/api/command", json={"command": "start"}, headers=h)
    assert r.status_code == 409
    assert r.json() == {"ok": False, "message": "cannot start in state Stopped: allowed commands are reset, abort"}
    r = client.post("/api/command", json={"command": "reset"}, headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "reset: state Resetting"}
    assert cell.machine.state.value == "Resetting"
    assert [a[0] for a in audit] == ["otto", "otto"] and [a[2] for a in audit] == ["start", "reset"]
    assert [a[4] for a in audit] == [False, True]
    assert audit[0][1].startswith("testclient")


def test_viewer_may_not_command(client, cell, audit):
    token = login(client, "vera")
    r = client.post("/api/command", json={"command": "reset"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 403 and r.json()["message"] == "reset needs the operator role; vera is viewer"
    assert cell.calls == [] and cell.machine.state.value == "Stopped"
    assert audit[0][2:5] == ("reset", "", False)


def test_only_integrators_change_job_and_parts(client, cell):
    token = login(client, "otto")
    r = client.post("/api/parameter", json={"name": "parts", "value": 3}, headers={"X-CSRF-Token": token})
    assert r.status_code == 403 and r.json()["message"] == "parts needs the integrator role; otto is operator"
    token = login(client, "ida")
    h = {"X-CSRF-Token": token}
    r = client.post("/api/parameter", json={"name": "parts", "value": 3}, headers=h)
    assert r.status_code == 200 and cell.params["parts"] == 3
    r = client.post("/api/parameter", json={"name": "job", "value": "gearbox"}, headers=h)
    assert r.status_code == 409 and r.json()["message"] == "unknown job 'gearbox': expected one of bracket"
    for bad, msg in (
        ({"name": "parts", "value": "3"}, "parts must be a whole number >= 1, got '3'"),
        ({"name": "parts", "value": 0}, "parts must be a whole number >= 1, got 0"),
        ({"name": "parts", "value": True}, "parts must be a whole number >= 1, got True"),
        ({"name": "cell_file", "value": "x"}, "unknown parameter 'cell_file': expected 'job' or 'parts'"),
    ):
        r = client.post("/api/parameter", json=bad, headers=h)
        assert (r.status_code, r.json()["message"]) == (400, msg)
    assert cell.calls == [("parts", 3, "ida"), ("job", "gearbox", "ida")]


@pytest.mark.parametrize(
    "body, ctype, status, message",
    [
        (
            b'{"command": "reset"',
            "application/json",
            400,
            "malformed JSON: Expecting ',' delimiter at line 1 column 20",
        ),
        (b"[1, 2]", "application/json", 400, "expected a JSON object, got list"),
        (b"\xff\xfe", "application/json", 400, "malformed JSON: not UTF-8 (invalid start byte at byte 0)"),
        (
            b'{"command": "reset"}',
            "text/plain",
            415,
            "expected a JSON body (Content-Type application/json), got text/plain",
        ),
        (
            b'{"command": "fly"}',
            "application/json",
            400,
            (
                "unknown command 'fly': expected one of reset, start, stop, hold, unhold, suspend, unsuspend, abort, "
                "clear, acknowledge"
            ),
        ),
        (
            b'{"command": "' + b"x" * 5000 + b'"}',
            "application/json",
            413,
            "request body of 5015 bytes is over the limit of 4096 bytes",
        ),
    ],
)
def test_bad_bodies(client, cell, body, ctype, status, message):
    token = login(client, "otto")
    r = client.post("/api/command", content=body, headers={"X-CSRF-Token": token, "Content-Type": ctype})
    assert (r.status_code, r.json()["message"]) == (status, message)
    assert cell.calls == []


def test_huge_body_without_length_is_cut_off(client, cell):
    token = login(client, "otto")

    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    r = client.post(
        "/api/command", content=chunks(), headers={"X-CSRF-Token": token, "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["message"] == "request body is over the limit of 4096 bytes"
    assert cell.calls == []


def test_login_is_rate_limited(cell, users):
    users.checked.clear()
    app = create_app(cell, Sessions(users, max_failures=3, failure_window=60.0))
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post("/api/login", json={"user": "otto", "password": "guess"}).status_code == 401
        r = c.post("/api/login", json={"user": "otto", "password": "otto-pw"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["message"].startswith("too many failed logins: try again in ")
        assert users.checked == ["otto"] * 3, "a locked-out login does not even reach the user store"


def test_sessions_expire_and_logout_ends_them(cell, users):
    now = [0.0]
    sessions = Sessions(users, idle_timeout=60.0, max_age=600.0, clock=lambda: now[0])
    with TestClient(create_app(cell, sessions)) as c:
        token = login(c, "otto")
        now[0] = 59.0
        assert c.post("/api/command", json={"command": "abort"}, headers={"X-CSRF-Token": token}).status_code == 200
        now[0] = 120.0
        r = c.post("/api/command", json={"command": "clear"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 403 and r.json()["message"].startswith("log in to send commands")
        token = login(c, "otto")
        assert c.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
        assert c.post("/api/command", json={"command": "clear"}, headers={"X-CSRF-Token": token}).status_code == 403
        assert len(sessions) == 0
        # absolute age: a session used every minute still ends after max_age
        token = login(c, "otto")
        for t in range(180, 780, 50):
            now[0] = float(t)
            c.get("/api/session")
        assert c.get("/api/session").json() == {"user": None}


def test_report_pages_and_exports(client):
    r = client.get("/report")
    assert r.status_code == 200
    assert 'data-marks="2"' in r.text and 'id="cycles"' in r.text and "/report.csv" in r.text
    r = client.get("/report.csv?run=r1")
    assert r.status_code == 200 and r.text.splitlines()[0].startswith("cell,job,run,part")
    assert 'filename="demo-r1-cycles.csv"' in r.headers["content-disposition"]
    r = client.get("/report.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG") and r.headers["content-type"] == "image/png"
    r = client.get("/report?run=../../etc")
    assert r.status_code == 400 and "bad run id" in r.text


# ------------------------------------------------------------------------------------------ live stream
class Served:
    """The app on a real uvicorn server on 127.0.0.1 (an ephemeral port), in a thread."""

    def __init__(self, app, **ssl) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **ssl)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "the server to start")
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def read_event(resp: http.client.HTTPResponse) -> dict:
    """The next `live` event's data from an SSE response."""
    lines = []
    while (line := resp.readline()) not in (b"\n", b""):
        lines.append(line.decode().rstrip("\n"))
    if not lines:
        raise ConnectionError("stream ended")
    assert lines[0] == "event: live"
    return json.loads(lines[1].removeprefix("data: "))


def open_stream(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/stream", headers={"Accept": "text/event-stream"})
    return conn, conn.getresponse()


def test_live_stream_follows_the_cell_and_survives_a_browser_that_leaves(cell, users, caplog):
    caplog.set_level("INFO", logger="cobot_cell.hmi")
    app = create_app(cell, Sessions(users), ServerOptions(heartbeat=0.5))
    with Served(app) as served:
        (gone, gone_resp), (stays, stream) = open_stream(served.port), open_stream(served.port)
        assert stream.status == 200 and stream.getheader("content-type") == "text/event-stream; charset=utf-8"
        assert read_event(gone_resp)["state"] == "Stopped"
        assert read_event(stream)["state"] == "Stopped"
        gone_resp.close()  # the browser goes away mid-stream
        gone.close()
        wait_until(lambda: "browser disconnected" in caplog.text, 10, "the server to notice the disconnect")
        wait_until(lambda: len(app.hub.streams) == 1, 10, "the stream to be dropped")
        cell.command("reset", "otto", "test")
        app.hub.notify()
        deadline = time.monotonic() + 10
        while (event := read_event(stream))["state"] != "Resetting":
            assert time.monotonic() < deadline, "the change never reached the stream"
        assert event["commands"] == ["stop", "abort"]
        stream.close()
        stays.close()
        wait_until(lambda: not app.hub.streams, 10, "the last stream to be dropped")
    assert "live stream to 127.0.0.1" in caplog.text and "closed: browser disconnected (1 open)" in caplog.text


def test_stream_limit(cell, users):
    app = create_app(cell, Sessions(users), ServerOptions(max_streams=1))
    with Served(app) as served:
        first, resp = open_stream(served.port)
        read_event(resp)
        second, refused = open_stream(served.port)
        assert refused.status == 503 and refused.read() == b"too many live streams"
        first.close()
        second.close()


def test_hub_skips_to_the_newest_snapshot_for_a_slow_browser():
    from cobot_cell.hmi.server import _Stream

    async def run() -> None:
        s = _Stream()
        s.offer(b"1")
        s.offer(b"2")
        await asyncio.wait_for(s.ready.wait(), 1)
        assert s.pending == b"2"

    asyncio.run(run())


def test_https_with_the_kept_certificate_and_secure_cookies(cell, users, tmp_path):
    import ssl

    from cobot_cell.hmi.tls import self_signed

    cert, key = self_signed(tmp_path, "127.0.0.1")
    app = create_app(cell, Sessions(users), ServerOptions(secure=True))
    with Served(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as served:
        ctx = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", served.port, timeout=10, context=ctx)
        conn.request(
            "POST",
            "/api/login",
            body=json.dumps({"user": "otto", "password": "otto-pw"}),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["role"] == "operator"
        cookie = resp.getheader("set-cookie").lower()
        assert "secure" in cookie and "httponly" in cookie
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
            plain.request("GET", "/api/live")
            plain.getresponse()


def test_login_failures_count_per_address_across_connections_and_names(cell, users):
    def login_status(port: int, name: str, password: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection: a new port
        conn.request(
            "POST",
            "/api/login",
            body=json.dumps({"user": name, "password": password}),
            headers={"Content-Type": "application/json"},
        )
        status = conn.getresponse().status
        conn.close()
        return status

    with Served(create_app(cell, Sessions(users, max_failures=3))) as served:
        assert [login_status(served.port, name, "x") for name in ("a", "b", "c")] == [401, 401, 401]
        assert login_status(served.port, "otto", "otto-pw") == 429
