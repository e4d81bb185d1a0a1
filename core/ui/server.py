"""``pipetrace ui``: a small read-only HTTP server over the store (stdlib only).

Bound to loopback by default and then only answers requests addressed to a loopback host name (a DNS
rebinding page cannot read traces). Bound anywhere else it requires an access token: given once as
``?token=``, kept in an HttpOnly cookie, or sent as ``Authorization: Bearer``. With an access file
(:mod:`pipetrace.ui.access`) every request needs a principal, loopback or not, and each route answers
only with what that principal may see: a trace it may not see is a 404, as if it did not exist.
Every query parameter is validated (:mod:`pipetrace.ui.params`): a bad one is a 400 with one plain
line; an unexpected failure is a 500 with a generic message and an incident id, the details only in the
server log. One access-log line per request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from .. import __version__
from ..store import SpanStore
from . import page, params, payload, scope
from .access import FULL_ACCESS, AccessConfig, AccessFile, Principal, anonymous
from .access_log import AccessLog

log = logging.getLogger("pipetrace.ui")
COOKIE = "pipetrace_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _str(q: dict[str, list[str]], key: str) -> str | None:
    value = q.get(key, [""])[0].strip()
    return value or None


LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pipetrace · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px system-ui,sans-serif;max-width:28rem;margin:12vh auto;padding:0 1rem;color:#1d2433}}
input{{font:inherit;width:100%;padding:.4rem;box-sizing:border-box}}button{{font:inherit;margin-top:.6rem}}
.err{{color:#b3261e}}</style></head><body>
<h1>pipetrace</h1><p id="login-reason" class="{cls}">{reason}</p>
<form method="get" action="/"><label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="off" required><button type="submit">Sign in</button></form>
<p>{hint}{users}.</p></body></html>
"""


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: SpanStore, token: str | None,
                 access: AccessConfig | AccessFile | None = None, access_log: Path | None = None) -> None:
        self.store = store
        self.token = token
        self.access_source = access
        self.access_log = AccessLog(access_log) if access_log is not None else None
        self.loopback = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def locked(self) -> bool:
        """True when every request must name a principal."""
        return bool(self.token) or self.access_source is not None

    @property
    def access(self) -> AccessConfig | None:
        """The access config to apply to this request (a reloaded file: its latest valid version)."""
        source = self.access_source
        if isinstance(source, AccessFile):
            current = source.current()
            if current is None:
                raise AccessLocked(source.error or "access file invalid")
            return current
        return source

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        if self.access_log is not None:
            self.access_log.close()


class AccessLocked(Exception):
    """The access file changed into something invalid: every request is refused (503) until it is fixed."""


class Unauthorized(Exception):
    """No principal: answered 401 (the sign-in page for the HTML route)."""


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, keep-alive waits ~40 ms
    principal: Principal | None = None
    status_sent = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # ---- responses -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.status_sent = int(status)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value, separators=(",", ":"), default=str).encode(),
                   "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _not_found(self) -> None:
        self._error(404, "no such trace or run")

    # ---- who is asking ---------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _by_token(self, token: str) -> Principal | None:
        if self.server.token and hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                                     self.server.token.encode()):
            return Principal("ui-token", "ui-token", (FULL_ACCESS,))
        access = self.server.access
        return access.by_token(token) if access is not None else None

    def _authenticate(self, query: dict[str, list[str]]) -> tuple[Principal, str | None]:
        """(principal, token to move into the cookie when it came in the query string)."""
        if not self.server.locked:
            return anonymous(), None
        given = _str(query, "token")
        if given:
            found = self._by_token(given)
            if found is None:
                raise Unauthorized("that access token is not valid")
            return found, given
        auth = self.headers.get("Authorization") or ""
        scheme, _, credentials = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            found = self._by_token(credentials.strip())
            if found is None:
                raise Unauthorized("that access token is not valid")
            return found, None
        access = self.server.access
        if scheme.lower() == "basic" and credentials.strip() and access is not None:
            try:
                name, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials") from None
            found = access.by_password(name, password) if sep else None
            if found is None:
                raise Unauthorized("unknown user or wrong password")
            return found, None
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                found = self._by_token(unquote(value))
                if found is not None:
                    return found, None
        raise Unauthorized("access token required: open the URL printed by pipetrace ui")

    def _unauthorized(self, path: str, reason: str) -> None:
        extra: dict[str, str] = {}
        access = self.server.access
        users = access is not None and access.has_users
        if path in ("/", "/index.html", "/login"):
            if users and path == "/login":  # only here, so a token holder is not met by a password prompt
                extra["WWW-Authenticate"] = 'Basic realm="pipetrace", charset="UTF-8"'
            extra["Content-Security-Policy"] = LOGIN_CSP
            given = "not valid" in reason or "wrong" in reason or "malformed" in reason
            body = LOGIN_PAGE.format(cls="err" if given else "", reason=html.escape(
                reason if given else "Sign in to see the traces."),
                hint="Paste the access token you were given" if access is not None
                else "Open the URL <code>pipetrace ui</code> printed (it carries the token once)",
                users=', or <a href="/login">sign in with your user name and password</a>' if users else "")
            self._send(HTTPStatus.UNAUTHORIZED, body.encode(), "text/html; charset=utf-8", extra)
        else:
            self._error(HTTPStatus.UNAUTHORIZED, reason)

    # ---- routing ---------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self._handle(lambda: self._error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only viewer"))

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def do_GET(self) -> None:  # noqa: N802
        self._handle(self._route)

    def _handle(self, action: Any) -> None:
        self.principal, self.status_sent = None, 0
        try:
            action()
        except ConnectionError:  # the client went away (broken pipe, reset): nothing to answer
            pass
        except params.ParamError as exc:
            self._safe_error(400, str(exc))
        except Exception:  # one bad request must not take the viewer down, nor show its insides
            incident = secrets.token_hex(4)
            log.exception("pipetrace ui: %s %s failed (incident %s)", self.command, self.path.split("?", 1)[0],
                          incident)
            self._safe_error(500, f"internal error (incident {incident}; details in the server log)")
        finally:
            if self.server.access_log is not None:
                who = self.principal.name if self.principal is not None else "-"
                self.server.access_log.write(who, self.client_address[0], self.command or "-", self.path or "-",
                                             self.status_sent or 500)

    def _safe_error(self, status: int, message: str) -> None:
        if self.status_sent:  # the response had begun: nothing sensible can follow
            return
        try:
            self._error(status, message)
        except Exception:
            pass

    def _route(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
            return
        parts = urlsplit(self.path)
        path = parts.path
        try:
            query = parse_qs(parts.query, keep_blank_values=True, errors="strict", max_num_fields=50)
        except (ValueError, UnicodeDecodeError):
            raise params.ParamError("malformed query string") from None
        try:
            self.principal, from_query = self._authenticate(query)
        except Unauthorized as exc:
            self._unauthorized(path, str(exc))
            return
        except AccessLocked:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the viewer's access file is invalid: "
                        "access is refused until an administrator fixes it")
            return
        query.pop("token", None)
        if from_query:  # keep the token out of the address bar and history; keep the other parameters
            cookie = f"{COOKIE}={quote(from_query, safe='')}; HttpOnly; SameSite=Strict; Path=/"
            location = path + (f"?{urlencode(query, doseq=True)}" if query else "")
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": location, "Set-Cookie": cookie})
            return
        if path in ("/", "/index.html"):  # a page address, not the API: extra parameters are ignored
            body = page.server_page(__version__).encode()
            self._send(200, body, "text/html; charset=utf-8", {"Content-Security-Policy": page.SERVER_CSP_HEADER})
        elif path == "/login":  # signed in (Basic credentials now cached by the browser): go to the runs
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/"})
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/health":
            params.parse(query, params.NONE)
            self._json({"ok": True, "version": __version__})
        elif path == "/api/runs":
            self._runs(params.parse(query, params.RUNS))
        elif path.startswith("/api/trace/"):
            params.parse(query, params.NONE)
            self._trace(params.ident(path[len("/api/trace/"):]))
        elif path == "/api/history":
            self._history(params.parse(query, params.HISTORY))
        elif path.startswith("/api/export/"):
            q = params.parse(query, params.EXPORT)
            self._export(params.ident(path[len("/api/export/"):]), q["format"] or "otlp-json")
        else:
            self._error(404, "not found")

    # ---- routes: each one answers only with what self.principal may see ---------------------------
    @property
    def _who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def _runs(self, q: dict[str, Any]) -> None:
        who = self._who
        self._json(payload.runs_document(
            self.server.store, system=q["system"], pipeline=q["pipeline"], status=q["status"], since_s=q["since"],
            until_s=q["until"], min_ms=q["min_ms"], max_ms=q["max_ms"], limit=q["limit"] or 200,
            scope=who.query_scopes(), visible=None if who.admin else who.may_see))

    def _trace(self, ident: str) -> None:
        store = self.server.store
        spans = scope.visible_trace(self._who, store, ident)
        doc = payload.trace_document(store, ident, spans=spans) if spans else None
        if doc is None:
            self._not_found()
            return
        doc["linked"] = scope.hide_linked(self._who, store, doc["linked"])
        self._json(doc)

    def _history(self, q: dict[str, Any]) -> None:
        if not scope.may_see_pipeline(self._who, self.server.store, q["pipeline"]):
            self._error(404, "no such pipeline")
            return
        self._json(payload.history_document(self.server.store, q["pipeline"], q["task"]))

    def _static(self, name: str) -> None:
        if name not in page.SCRIPTS + page.STYLES:
            self._error(404, "not found")
            return
        ctype = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
        self._send(200, page.asset(name), ctype)

    def _export(self, ident: str, fmt: str) -> None:
        from ..store.formats import to_jaeger_json, to_otlp_json

        spans = scope.visible_trace(self._who, self.server.store, ident)
        if not spans:
            self._not_found()
            return
        doc = to_otlp_json(spans) if fmt == "otlp-json" else to_jaeger_json(spans)
        name = f"{spans[0].trace_id}.{fmt.split('-')[0]}.json"
        self._json(doc, extra={"Content-Disposition": f"attachment; filename=\"{quote(name)}\""})


def make_server(store: SpanStore, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None, access: AccessConfig | AccessFile | None = None,
                access_log: Path | None = None) -> ViewerServer:
    """A bound server (port 0 picks a free one); call ``serve_forever()`` or :func:`serve_in_thread`."""
    if not is_loopback(host) and not token and access is None:
        raise ValueError("binding to a non-loopback address needs an access token or an access file")
    return ViewerServer((host, port), store, token, access, access_log)


def serve_in_thread(server: ViewerServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="pipetrace-ui", daemon=True)
    thread.start()
    return thread


def serve_until_interrupted(server: ViewerServer) -> None:
    """Serve in this thread until Ctrl+C, then close the socket (the ``ui`` and ``demo`` commands)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
