"""A real OTLP/HTTP receiver on 127.0.0.1 for tests: decodes protobuf with opentelemetry-proto.

Optional TLS (server certificate) and mTLS (client certificate required, verified against a CA).
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OTLPReceiver:
    def __init__(self, *, certfile: str | None = None, keyfile: str | None = None,
                 client_ca: str | None = None, status: int = 200, delay_s: float = 0.0) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        self.delay_s = delay_s
        self.tls_errors = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if receiver.status == 200 and self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.requests.append(request)
                    receiver.raw.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    payload = ExportTraceServiceResponse().SerializeToString()
                    self.send_response(200)
                else:
                    payload = b""
                    self.send_response(receiver.status if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                receiver.tls_errors += 1

        self.server = Server(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}"

    def __enter__(self) -> OTLPReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[Any, Any]]:
        """(resource, span) pairs received so far."""
        out = []
        for request in list(self.requests):
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append((rs.resource, span))
        return out

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[tuple[Any, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.spans()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.spans()


def attrs(kvs: Any) -> dict[str, Any]:
    """Protobuf KeyValue list → plain dict."""
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out
