"""The HMI's web app (Starlette, ASGI): live page and server-sent events, login, commands, shift report and exports.

The app talks to the cell through a `Backend` (the hmi node's ROS side, or a fake in tests). Viewing needs no
login; every command needs a session whose role allows it, the session's CSRF token in the `X-CSRF-Token`
header, a same-origin request and a small JSON body. Live data goes to each browser as a stream of complete
snapshots (`event: live`), at most one per `min_interval` and at least one per `heartbeat`; a slow client skips
to the newest one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from html import escape
from importlib import resources
from typing import Any, Protocol, cast
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .auth import PERMISSIONS, RateLimited, Session, Sessions, allowed, csrf_ok, role_name
from .shift import ShiftReport

logger = logging.getLogger(__name__)

COOKIE = "hmi_session"
CSRF_HEADER = "x-csrf-token"
VIEWING = frozenset({"/api/live", "/api/stream", "/report", "/report.csv", "/report.png"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Backend(Protocol):
    """What the web app needs of the cell (the hmi node provides it; tests fake it)."""

    def snapshot(self) -> dict[str, Any]:
        """The live page's data (LiveModel.snapshot at the cell's current time)."""

    def version(self) -> int:
        """A number that changes whenever the snapshot would."""

    def command(self, name: str, user: str, source: str) -> tuple[bool, str]:
        """Send a cell command (PackML or acknowledge) for `user` at `source`; (accepted, the cell's answer)."""

    def set_parameter(self, name: str, value: str | int, user: str, source: str) -> tuple[bool, str]:
        """Set the job or the part count; (accepted, reason)."""

    def report(self, run_id: str | None) -> ShiftReport:
        """The shift report of one run or of the whole log."""

    def report_png(self, run_id: str | None) -> bytes:
        """The shift report as one PNG image."""


@dataclass(frozen=True)
class ServerOptions:
    """How the app behaves: limits, timings, and whether it is served over TLS (cookies then marked Secure)."""

    secure: bool = False
    max_body: int = 4096
    min_interval: float = 0.05
    heartbeat: float = 1.0
    max_streams: int = 32
    title: str = "cobot_cell HMI"
    open_viewing: bool = True  # False (off loopback): live data and reports need a login too (any role)


class HttpError(Exception):
    """An HTTP error with the message shown to the user."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Hub:
    """Builds one snapshot per change (throttled) and hands it to every connected stream."""

    def __init__(self, backend: Backend, opts: ServerOptions) -> None:
        self.backend = backend
        self.opts = opts
        self.streams: set[_Stream] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.payload = b""
        self.sent = 0

    def notify(self) -> None:
        """Something changed (callable from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def start(self) -> None:
        """Start the broadcaster on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="hmi-broadcast")

    async def stop(self) -> None:
        """Stop the broadcaster and end every stream."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for s in list(self.streams):
            s.close()

    def render(self) -> bytes:
        """The current snapshot as one SSE message."""
        data = json.dumps(self.backend.snapshot(), separators=(",", ":"), allow_nan=False)
        return f"event: live\ndata: {data}\n\n".encode()

    async def _run(self) -> None:
        assert self._wake is not None
        last_version, last_sent = None, 0.0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.opts.heartbeat)
            except TimeoutError:
                pass
            self._wake.clear()
            if not self.streams:
                continue
            version = self.backend.version()
            now = time.monotonic()
            if version == last_version and now - last_sent < self.opts.heartbeat:
                continue
            wait = self.opts.min_interval - (now - last_sent)
            if wait > 0:
                await asyncio.sleep(wait)  # throttle: changes in the meantime go out in this snapshot
                version = self.backend.version()
            try:
                self.payload = self.render()
            except Exception:
                logger.exception("live snapshot failed")
                continue
            last_version, last_sent = version, time.monotonic()
            self.sent += 1
            for s in list(self.streams):
                s.offer(self.payload)


class _Stream:
    """One browser's live stream: holds only the newest snapshot not yet sent."""

    def __init__(self) -> None:
        self.pending: bytes | None = None
        self.ready = asyncio.Event()
        self.closed = False

    def offer(self, payload: bytes) -> None:
        self.pending = payload
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


def _source(request: Request | Scope) -> str:
    client = request.client if isinstance(request, Request) else request.get("client")
    if client is None:
        return "unknown"
    host, port = client[0], client[1]
    return f"{host}:{port}"


def _json_error(e: HttpError) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "message": e.message}, status_code=e.status, headers={**e.headers, "Cache-Control": "no-store"}
    )


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 415 if not JSON, 413 over `limit` bytes, 400 if malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HttpError(415, f"expected a JSON body (Content-Type application/json), got {ctype or 'none'}")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise HttpError(400, f"bad Content-Length header: {length!r}") from None
        if n > limit:
            raise HttpError(413, f"request body of {n} bytes is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"request body is over the limit of {limit} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"malformed JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"expected a JSON object, got {type(data).__name__}")
    return data


def _static(name: str) -> bytes:
    return resources.files("cobot_cell.hmi").joinpath("static", name).read_bytes()


def create_app(
    backend: Backend,
    sessions: Sessions,
    opts: ServerOptions = ServerOptions(),
    audit: Callable[[str, str, str, str, bool, str], None] | None = None,
) -> _Outer:
    """The HMI app. `audit(user, source, command, argument, accepted, answer)` is called for every command tried
    by a logged-in user (the backend records accepted ones with the cell); refusals before the cell are logged."""
    hub = Hub(backend, opts)
    assets = {
        "hmi.js": (_static("hmi.js"), "text/javascript; charset=utf-8"),
        "hmi.css": (_static("hmi.css"), "text/css; charset=utf-8"),
    }

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            if origin == "null":
                raise HttpError(403, "cross-origin request refused (Origin null)")
            return
        if urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            raise HttpError(403, f"cross-origin request refused (Origin {origin})")

    def command_session(request: Request, command: str) -> Session:
        session = session_of(request)
        if session is None:
            # 403, not 401: the session is a cookie, there is no HTTP authentication scheme to offer
            raise HttpError(403, "log in to send commands (no session, or it expired)")
        check_origin(request)
        if not csrf_ok(session, request.headers.get(CSRF_HEADER)):
            logger.warning(
                "command %s from %s (%s) refused: missing or wrong CSRF token", command, session.user, _source(request)
            )
            raise HttpError(403, "missing or wrong CSRF token: reload the page")
        return session

    def role_check(session: Session, request: Request, command: str) -> None:
        if not allowed(session.role, command):
            need = PERMISSIONS.get(command, "nobody").lower()
            msg = f"{command} needs the {need} role; {session.user} is {role_name(session.role)}"
            logger.warning("command %s refused for %s at %s: %s", command, session.user, _source(request), msg)
            if audit:
                audit(session.user, _source(request), command, "", False, msg)
            raise HttpError(403, msg)

    async def live(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(backend.snapshot), headers={"Cache-Control": "no-store"})

    async def session_info(request: Request) -> Response:
        s = session_of(request)
        body = (
            {"user": None}
            if s is None
            else {
                "user": s.user,
                "role": role_name(s.role),
                "csrf": s.csrf,
                "commands": sorted(c for c in PERMISSIONS if allowed(s.role, c)),
            }
        )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def login(request: Request) -> Response:
        try:
            check_origin(request)
            data = await read_json(request, opts.max_body)
            user, password = data.get("user"), data.get("password")
            if not isinstance(user, str) or not isinstance(password, str) or not user:
                raise HttpError(400, 'expected {"user": string, "password": string}')
            try:
                # rate-limited per address (not per connection: the port changes with every connection)
                s = await run_in_threadpool(
                    sessions.login,
                    user,
                    password,
                    _source(request),
                    request.client.host if request.client else "unknown",
                )
            except RateLimited as exc:
                logger.warning("login of %r from %s refused: %s", user, _source(request), exc)
                raise HttpError(429, str(exc), {"Retry-After": str(math.ceil(exc.retry_after))}) from None
            if s is None:
                logger.warning("login of %r from %s failed", user, _source(request))
                raise HttpError(401, "wrong user name or password")
        except HttpError as e:
            return _json_error(e)
        logger.info("%s logged in as %s from %s", s.user, role_name(s.role), s.source)
        resp = JSONResponse(
            {
                "ok": True,
                "user": s.user,
                "role": role_name(s.role),
                "csrf": s.csrf,
                "commands": sorted(c for c in PERMISSIONS if allowed(s.role, c)),
            },
            headers={"Cache-Control": "no-store"},
        )
        resp.set_cookie(
            COOKIE, s.id, httponly=True, samesite="strict", secure=opts.secure, path="/", max_age=int(sessions.max_age)
        )
        return resp

    async def logout(request: Request) -> Response:
        s = session_of(request)
        try:
            if s is not None:
                check_origin(request)
                if not csrf_ok(s, request.headers.get(CSRF_HEADER)):
                    raise HttpError(403, "missing or wrong CSRF token: reload the page")
                sessions.logout(s.id)
                logger.info("%s logged out from %s", s.user, _source(request))
        except HttpError as e:
            return _json_error(e)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def command(request: Request) -> Response:
        try:
            session = command_session(request, "command")
            data = await read_json(request, opts.max_body)
            name = data.get("command")
            known = [c for c in PERMISSIONS if c not in ("job", "parts")]
            if not isinstance(name, str) or name not in known:
                raise HttpError(400, f"unknown command {name!r}: expected one of {', '.join(known)}")
            role_check(session, request, name)
            ok, answer = await run_in_threadpool(backend.command, name, session.user, _source(request))
        except HttpError as e:
            return _json_error(e)
        except TimeoutError as exc:
            logger.error("command from %s: %s", _source(request), exc)
            return _json_error(HttpError(504, f"the cell did not answer: {exc}"))
        if audit:
            audit(session.user, _source(request), name, "", ok, answer)
        logger.info(
            "command %s by %s from %s: %s (%s)",
            name,
            session.user,
            _source(request),
            "accepted" if ok else "refused",
            answer,
        )
        hub.notify()
        return JSONResponse({"ok": ok, "message": answer}, status_code=200 if ok else 409)

    async def parameter(request: Request) -> Response:
        try:
            session = command_session(request, "parameter")
            data = await read_json(request, opts.max_body)
            name, value = data.get("name"), data.get("value")
            if name not in ("job", "parts"):
                raise HttpError(400, f"unknown parameter {name!r}: expected 'job' or 'parts'")
            if name == "job" and (not isinstance(value, str) or not value):
                raise HttpError(400, f"job must be a non-empty string, got {value!r}")
            if name == "parts" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise HttpError(400, f"parts must be a whole number >= 1, got {value!r}")
            role_check(session, request, name)
            checked = cast("str | int", value)  # a job name or a part count, checked above
            ok, answer = await run_in_threadpool(backend.set_parameter, name, checked, session.user, _source(request))
        except HttpError as e:
            return _json_error(e)
        except TimeoutError as exc:
            return _json_error(HttpError(504, f"the cell did not answer: {exc}"))
        if audit:
            audit(session.user, _source(request), name, str(value), ok, answer)
        logger.info(
            "parameter %s=%r by %s from %s: %s %s",
            name,
            value,
            session.user,
            _source(request),
            "accepted" if ok else "refused",
            answer,
        )
        hub.notify()
        return JSONResponse({"ok": ok, "message": answer or f"{name} set to {value}"}, status_code=200 if ok else 409)

    async def index(request: Request) -> Response:
        return HTMLResponse(live_page(opts.title), headers={"Cache-Control": "no-store"})

    async def asset(request: Request) -> Response:
        body, ctype = assets[request.path_params["name"]]
        return Response(body, media_type=ctype, headers={"Cache-Control": "no-cache"})

    def run_of(request: Request) -> str | None:
        run = request.query_params.get("run") or None
        if run is not None and (len(run) > 64 or not all(c.isalnum() or c in "-_." for c in run)):
            raise HttpError(400, f"bad run id {run[:64]!r}: letters, digits, '-', '_' and '.' only")
        return run

    async def report(request: Request) -> Response:
        try:
            rep = await run_in_threadpool(backend.report, run_of(request))
        except HttpError as e:
            return PlainTextResponse(e.message, status_code=e.status)
        return HTMLResponse(report_page(rep, opts.title), headers={"Cache-Control": "no-store"})

    async def report_csv(request: Request) -> Response:
        try:
            run = run_of(request)
        except HttpError as e:
            return PlainTextResponse(e.message, status_code=e.status)
        rep = await run_in_threadpool(backend.report, run)
        name = f"{rep.cell}-{run or 'all'}-cycles.csv"
        return Response(
            rep.csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def report_png(request: Request) -> Response:
        try:
            run = run_of(request)
            png = await run_in_threadpool(backend.report_png, run)
        except HttpError as e:
            return PlainTextResponse(e.message, status_code=e.status)
        except (RuntimeError, ValueError) as exc:
            logger.error("report PNG failed: %s", exc)
            return PlainTextResponse(f"report PNG failed: {exc}", status_code=500)
        name = f"report-{run or 'all'}.png"
        return Response(png, media_type="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    routes = [
        Route("/", index),
        Route("/report", report),
        Route("/report.csv", report_csv),
        Route("/report.png", report_png),
        Route("/static/{name:str}", asset),
        Route("/api/live", live),
        Route("/api/session", session_info),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/command", command, methods=["POST"]),
        Route("/api/parameter", parameter, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    return _Outer(Starlette(routes=routes, lifespan=lifespan), hub, opts, sessions)


class _Outer:
    """The app's outer layer: security headers on every response, unknown asset names as 404, the live stream."""

    def __init__(self, inner: Starlette, hub: Hub, opts: ServerOptions, sessions: Sessions) -> None:
        self.inner = inner
        self.hub = hub
        self.opts = opts
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/static/") and path[len("/static/") :] not in ("hmi.js", "hmi.css"):
            await PlainTextResponse("not found", status_code=404)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        if (
            not self.opts.open_viewing
            and path in VIEWING
            and self.sessions.get(Request(scope).cookies.get(COOKIE)) is None
        ):
            await JSONResponse({"ok": False, "message": "log in to view the cell"}, status_code=401)(
                scope, receive, send_with_headers
            )
            return
        if path == "/api/stream" and scope["method"] == "GET":
            await self.stream(scope, receive, send_with_headers)
            return
        await self.inner(scope, receive, send_with_headers)

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Server-sent events: the current snapshot at once, then each new one; ends when the browser goes."""
        source = _source(scope)
        if len(self.hub.streams) >= self.opts.max_streams:
            logger.warning("live stream for %s refused: %d streams open", source, len(self.hub.streams))
            await PlainTextResponse("too many live streams", status_code=503)(scope, receive, send)
            return
        stream = _Stream()
        self.hub.streams.add(stream)
        logger.info("live stream to %s opened (%d open)", source, len(self.hub.streams))
        reason = "server stopping"

        async def watch() -> None:
            nonlocal reason
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    reason = "browser disconnected"
                    stream.close()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            stream.offer(await run_in_threadpool(self.hub.render))  # the current state at once, never a stale one
            while True:
                await stream.ready.wait()
                stream.ready.clear()
                if stream.closed:
                    break
                payload, stream.pending = stream.pending, None
                if payload:
                    await send({"type": "http.response.body", "body": payload, "more_body": True})
            if reason == "server stopping":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError as exc:  # the connection broke while sending
            reason = f"connection lost ({exc.__class__.__name__})"
        finally:
            watcher.cancel()
            self.hub.streams.discard(stream)
            logger.info("live stream to %s closed: %s (%d open)", source, reason, len(self.hub.streams))


# ------------------------------------------------------------------------------------------ pages
def _page(title: str, body: str, script: bool) -> str:
    js = '<script src="/static/hmi.js" defer></script>' if script else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/static/hmi.css">{js}</head>'
        f"<body>{body}</body></html>"
    )


def live_page(title: str) -> str:
    """The live page's HTML skeleton; hmi.js fills it from the live stream."""
    body = """
<header id="banner" class="banner" data-state="unknown">
  <div class="state"><span id="cell"></span> <strong id="state">connecting...</strong></div>
  <div class="counter">done <span id="parts-done">-</span> / <span id="parts-target">-</span>
    <small>job <span id="job">-</span> · part under way <span id="part">-</span>
      <span id="flow" class="flow"></span></small></div>
  <div class="who" id="who"><form id="login" autocomplete="on">
    <input id="user" name="user" placeholder="user" autocomplete="username" required>
    <input id="password" name="password" type="password" placeholder="password" autocomplete="current-password"
      required>
    <button type="submit">Log in</button></form>
    <span id="whoami" hidden></span> <button id="logout" type="button" hidden>Log out</button></div>
</header>
<nav class="commands" id="commands" aria-label="cell commands"></nav>
<p id="message" class="message" role="status" aria-live="polite"></p>
<main class="live">
  <section class="wide"><h2>Last minutes <small>(one lane per cobot and station; grey: waiting)</small></h2>
    <div id="gantt" class="chartbox"></div></section>
  <section><h2>Cycle time</h2><div id="trend" class="chartbox"></div></section>
  <section><h2>OEE</h2><div id="oee" class="chartbox"></div></section>
  <section><h2>Cobots</h2><table id="steps"><thead><tr><th>cobot</th><th>step</th><th>since</th></tr></thead>
    <tbody></tbody></table>
    <h2 class="gap">Active faults</h2><ul id="faults"><li class="none">none</li></ul>
    <div id="setup" hidden><h2 class="gap">Job</h2><form id="job-form"><label>job <input id="job-input" size="10">
      </label><label>parts <input id="parts-input" type="number" min="1" step="1" size="4"></label>
      <button type="submit">Set</button></form></div></section>
</main>
<footer><a href="/report">Shift report</a> · <span id="link">live</span> · command authority
  <span id="authority">-</span></footer>"""
    return _page(title, body, script=True)


def _fmt(v: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(v) else fmt.format(v)


KPI_ROWS = (
    ("parts", "parts done", "{:.0f}"),
    ("scrap", "scrap", "{:.0f}"),
    ("mean_cycle_time", "mean cycle time", "{:.2f} s"),
    ("p95_cycle_time", "p95 cycle time", "{:.2f} s"),
    ("throughput_per_hour", "throughput", "{:.1f} parts/h"),
    ("span", "production time", "{:.1f} s"),
    ("downtime", "downtime", "{:.1f} s"),
    ("faults", "faults", "{:.0f}"),
    ("mtbf", "MTBF", "{:.1f} s"),
    ("mttr", "MTTR", "{:.1f} s"),
    ("availability", "availability", "{:.1%}"),
    ("performance", "performance", "{:.1%}"),
    ("quality", "quality", "{:.1%}"),
    ("oee", "OEE", "{:.1%}"),
)


def report_page(rep: ShiftReport, title: str) -> str:
    """The shift report as one HTML page (no script): KPIs, charts, cycle table, export links."""
    k = rep.kpis()
    charts = rep.charts()
    q = f"?run={quote(rep.run_id)}" if rep.run_id else ""
    runs = "".join(
        f'<a href="/report?run={quote(r)}"{" class=current" if r == rep.run_id else ""}>{escape(r)} ({n})</a> '
        for r, n in rep.runs
    )
    kpi_rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(_fmt(k[key], fmt))}</td></tr>" for key, label, fmt in KPI_ROWS
    )
    rows = rep.rows()
    head = "".join(f"<th>{escape(h)}</th>" for h in (rows[0].keys() if rows else ()))
    body_rows = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    pareto_rows = "".join(
        f"<tr><td>{escape(c)}</td><td>{lost:.1f} s</td><td>{n}</td></tr>" for c, lost, n in rep.pareto()
    )
    bound = f"{rep.bound:.2f} s" if rep.bound else "n/a"
    body = f"""
<header class="banner report-banner"><div class="state"><strong>Shift report</strong> cell {escape(rep.cell)}
  {f"run {escape(rep.run_id)}" if rep.run_id else "all runs"}</div>
  <div class="counter"><span id="report-parts">{len(rep.reports)}</span> parts</div>
  <div class="who"><a class="button" id="csv" href="/report.csv{q}">CSV</a>
    <a class="button" id="png" href="/report.png{q}">PNG</a> <a class="button" href="/">Live</a></div></header>
<p class="runs">runs: <a href="/report"{" class=current" if not rep.run_id else ""}>all</a> {runs}</p>
<main class="report">
  <section><h2>KPIs</h2><table id="kpis">{kpi_rows}<tr><th>bottleneck bound</th><td>{bound}</td></tr></table></section>
  <section><h2>OEE</h2><div class="chartbox" id="report-oee">{charts["oee"]}</div></section>
  <section><h2>Fault Pareto <small>(time lost per code)</small></h2>
    <div class="chartbox" id="report-pareto">{charts["pareto"]}</div></section>
  <section class="wide"><h2>Cycle time per part</h2><div class="chartbox" id="report-trend">{charts["trend"]}</div>
  </section>
  <section class="wide"><h2>Downtime <small>(red: a fault was active)</small></h2>
    <div class="chartbox" id="report-downtime">{charts["downtime"]}</div></section>
  <section class="wide"><h2>Faults</h2><table id="pareto">
    <tr><th>code</th><th>time lost</th><th>count</th></tr>{pareto_rows}
  </table></section>
  <section class="wide"><h2>Cycles</h2><div class="scroll"><table id="cycles"><tr>{head}</tr>{body_rows}</table>
  </div></section>
</main>"""
    return _page(f"{title}: shift report", body, script=False)
