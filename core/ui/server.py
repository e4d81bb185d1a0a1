"""``pipetrace ui``: a small read-only HTTP server over the store (stdlib only).

Bound to loopback by default and then only answers requests addressed to a loopback host name (a DNS
rebinding page cannot read traces). Bound anywhere else it requires an access token: given once as
``?token=``, kept in an HttpOnly cookie, or sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .. import __version__
from ..store import SpanStore
from . import page, payload

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


def _float(q: dict[str, list[str]], key: str) -> float | None:
    try:
        value = q.get(key, [""])[0]
        return float(value) if value != "" else None
    except ValueError:
        return None


def _str(q: dict[str, list[str]], key: str) -> str | None:
    value = q.get(key, [""])[0].strip()
    return value or None


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: SpanStore, token: str | None) -> None:
        self.store = store
        self.token = token
        self.loopback = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # ---- responses -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
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

    # ---- access control --------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _token_ok(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, came from the query string — then set the cookie)."""
        token = self.server.token
        if not token:
            return True, False
        given = _str(query, "token")
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True, True
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True, False
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), token.encode()):
                return True, False
        return False, False

    # ---- routing ---------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only viewer")

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def do_GET(self) -> None:  # noqa: N802
        try:
            self._route()
        except BrokenPipeError:
            pass
        except Exception as exc:  # one bad request must not take the viewer down
            log.exception("pipetrace ui: %s failed", self.path)
            try:
                self._error(500, f"{type(exc).__name__}: {exc}")
            except Exception:
                pass

    def _route(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        allowed, from_query = self._token_ok(query)
        if not allowed:
            self._error(HTTPStatus.UNAUTHORIZED, "access token required: open the URL printed by pipetrace ui")
            return
        path = parts.path
        if from_query:  # keep the token out of the address bar and history
            cookie = f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": path, "Set-Cookie": cookie})
            return
        store = self.server.store
        if path in ("/", "/index.html"):
            body = page.server_page(__version__).encode()
            self._send(200, body, "text/html; charset=utf-8", {"Content-Security-Policy": page.SERVER_CSP_HEADER})
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/health":
            self._json({"ok": True, "version": __version__})
        elif path == "/api/runs":
            limit = int(_float(query, "limit") or 200)
            self._json(payload.runs_document(
                store, system=_str(query, "system"), pipeline=_str(query, "pipeline"),
                status=_str(query, "status"), since_s=_float(query, "since"), until_s=_float(query, "until"),
                min_ms=_float(query, "min_ms"), max_ms=_float(query, "max_ms"), limit=max(1, min(limit, 2000))))
        elif path.startswith("/api/trace/"):
            doc = payload.trace_document(store, path[len("/api/trace/"):])
            if doc is None:
                self._error(404, "no such trace or run")
            else:
                self._json(doc)
        elif path == "/api/history":
            pipeline, task = _str(query, "pipeline"), _str(query, "task")
            if not pipeline or not task:
                self._error(400, "pipeline and task are required")
            else:
                self._json(payload.history_document(store, pipeline, task))
        elif path.startswith("/api/export/"):
            self._export(path[len("/api/export/"):], _str(query, "format") or "otlp-json")
        else:
            self._error(404, "not found")

    def _static(self, name: str) -> None:
        if name not in page.SCRIPTS + page.STYLES:
            self._error(404, "not found")
            return
        ctype = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
        self._send(200, page.asset(name), ctype)

    def _export(self, ident: str, fmt: str) -> None:
        from ..formats import to_jaeger_json, to_otlp_json

        if fmt not in ("otlp-json", "jaeger-json"):
            self._error(400, "format must be otlp-json or jaeger-json")
            return
        spans = self.server.store.trace(ident)
        if not spans:
            self._error(404, "no such trace or run")
            return
        doc = to_otlp_json(spans) if fmt == "otlp-json" else to_jaeger_json(spans)
        name = f"{spans[0].trace_id}.{fmt.split('-')[0]}.json"
        self._json(doc, extra={"Content-Disposition": f"attachment; filename=\"{quote(name)}\""})


def make_server(store: SpanStore, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None) -> ViewerServer:
    """A bound server (port 0 picks a free one); call ``serve_forever()`` or :func:`serve_in_thread`."""
    if not is_loopback(host) and not token:
        raise ValueError("binding to a non-loopback address needs an access token")
    return ViewerServer((host, port), store, token)


def serve_in_thread(server: ViewerServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="pipetrace-ui", daemon=True)
    thread.start()
    return thread
