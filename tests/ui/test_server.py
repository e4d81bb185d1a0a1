"""The viewer's HTTP side: read-only, loopback by default, a token for anything else."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pipetrace.store import SpanStore
from pipetrace.ui.server import is_loopback, make_server
from viewer_helpers import Viewer, env_for, start_viewer, stop_viewer


def request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.putrequest(method, path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_api_serves_runs_trace_history_and_exports(viewer: Viewer, seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    status, headers, body = request(viewer.url, "/api/runs?system=airflow")
    assert status == 200 and headers["cache-control"] == "no-store"
    doc = json.loads(body)
    assert {r["run_id"] for r in doc["runs"]} == {r["run_id"] for r in data["sales"]}
    assert [p["duration_ms"] for p in doc["pipelines"]["daily_sales"]]  # sparkline series, oldest first
    starts = [p["start"] for p in doc["pipelines"]["daily_sales"]]
    assert starts == sorted(starts)
    run = data["sales"][0]
    status, _, body = request(viewer.url, f"/api/trace/{run['run_id']}")  # a run id works as well as a trace id
    trace = json.loads(body)
    assert status == 200 and trace["trace_id"] == run["trace_id"] and len(trace["spans"]) == 7
    assert set(trace["critical"]) == {run["run_span"], run["extract"], run["batch"], run["transforms"][1], run["load"]}
    status, _, body = request(viewer.url, "/api/history?pipeline=daily_sales&task=extract")
    assert status == 200 and json.loads(body)["count"] == 6
    status, headers, body = request(viewer.url, f"/api/export/{run['trace_id']}?format=jaeger-json")
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert len(json.loads(body)["data"][0]["spans"]) == 7
    assert request(viewer.url, "/api/trace/nope")[0] == 404
    assert request(viewer.url, "/api/export/nope?format=otlp-json")[0] == 404
    assert request(viewer.url, f"/api/export/{run['trace_id']}?format=xml")[0] == 400


def test_read_only_and_locked_to_loopback_names(viewer: Viewer) -> None:
    status, headers, body = request(viewer.url, "/")
    assert status == 200 and "default-src 'self'" in headers["content-security-policy"]
    assert b"/static/app.js" in body
    assert request(viewer.url, "/static/app.js")[0] == 200
    assert request(viewer.url, "/static/../server.py")[0] == 404
    assert request(viewer.url, "/api/runs", method="POST")[0] == 405
    assert request(viewer.url, "/api/runs", method="DELETE")[0] == 405
    # a DNS-rebinding page reaches 127.0.0.1 under its own host name: refused
    assert request(viewer.url, "/api/runs", host="evil.example:80")[0] == 403
    port = urlsplit(viewer.url).port
    assert request(viewer.url, "/api/runs", host=f"localhost:{port}")[0] == 200


def test_token_required_when_given(seeded: tuple[Path, dict[str, Any]]) -> None:
    v = start_viewer(seeded[0], "--token", "s3cret-token")
    try:
        assert request(v.url, "/api/runs")[0] == 401
        assert request(v.url, "/api/runs?token=wrong")[0] == 401
        status, headers, _ = request(v.url, "/?token=s3cret-token")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert request(v.url, "/api/runs", headers={"Cookie": cookie})[0] == 200
        assert request(v.url, "/api/runs", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    finally:
        stop_viewer(v)


def test_non_loopback_host_warns_and_generates_token(seeded: tuple[Path, dict[str, Any]]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pipetrace", "ui", "--host", "0.0.0.0", "--port", "0"],
                            env=env_for(seeded[0]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        url = line.split("serving", 1)[1].strip()
        assert "?token=" in url
        warning = proc.stderr.readline() + proc.stderr.readline()
        assert "warning" in warning and "0.0.0.0" in warning
        port = urlsplit(url).port
        local = f"http://127.0.0.1:{port}/"
        assert request(local, "/api/runs")[0] == 401
        token = url.split("?token=", 1)[1]
        assert request(local, "/api/runs", headers={"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                s.close()


def test_make_server_refuses_open_bind_without_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ValueError, match="token"):
        make_server(SpanStore(tmp_path / "t.db"), host="0.0.0.0", port=0)


def test_closing_the_server_does_not_wait_for_idle_keep_alive_connections(tmp_path: Path) -> None:
    """A browser keeps HTTP/1.1 connections open after a page loads; Ctrl+C must still stop the viewer."""
    import socket
    import threading
    import time

    server = make_server(SpanStore(tmp_path / "traces.db"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    browser = socket.create_connection((host, port), timeout=5)
    browser.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert b"200" in browser.recv(4096).split(b"\r\n", 1)[0]  # answered; the connection stays open
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    assert time.monotonic() - started < 3
    browser.close()
