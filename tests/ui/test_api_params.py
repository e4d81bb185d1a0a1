"""Every API route with bad input: HTTP 400 and one plain JSON line, never a traceback; a failure inside the
server is a 500 with a generic message, the details only in the server's log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pipetrace.store import SpanStore
from pipetrace.ui.server import make_server, serve_in_thread
from test_server import request
from viewer_helpers import Viewer

TRACE = "/api/trace/"
BAD = [  # (path, a word the message must hold)
    ("/api/runs?limit=nan", "limit"),
    ("/api/runs?limit=-1", "limit"),
    ("/api/runs?limit=0", "limit"),
    ("/api/runs?limit=99999999999999999999", "limit"),
    ("/api/runs?limit=2.5", "limit"),
    ("/api/runs?limit=1&limit=2", "more than once"),
    ("/api/runs?since=nan", "since"),
    ("/api/runs?since=inf", "since"),
    ("/api/runs?since=-5", "since"),
    ("/api/runs?until=1e400", "until"),
    ("/api/runs?min_ms=abc", "min_ms"),
    ("/api/runs?max_ms=-1", "max_ms"),
    ("/api/runs?status=exploded", "status"),
    ("/api/runs?system=air%20flow", "system"),
    ("/api/runs?system=" + "a" * 65, "system"),
    ("/api/runs?pipeline=" + "x" * 300, "pipeline"),
    ("/api/runs?pipeline=a%00b", "pipeline"),
    ("/api/runs?pipeline=%ff%fe", "query"),
    ("/api/runs?colour=red", "unknown parameter"),
    ("/api/runs?" + "&".join(f"p{i}=1" for i in range(60)), "query"),
    (TRACE + "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "hexadecimal"),
    (TRACE + "0" * 32, "all-zero"),
    (TRACE + "run%0Aid", "control"),
    (TRACE + "%ff", "UTF-8"),
    (TRACE + "x" * 300, "at most"),
    (TRACE + "abc?verbose=1", "unknown parameter"),
    ("/api/history", "required"),
    ("/api/history?pipeline=daily_sales", "task is required"),
    ("/api/history?pipeline=daily_sales&task=a%01", "control"),
    ("/api/history?pipeline=daily_sales&task=load&last=5", "unknown parameter"),
    ("/api/export/abc?format=xml", "format"),
    ("/api/export/" + "g" * 32 + "?format=otlp-json", "hexadecimal"),
    ("/api/health?x=1", "unknown parameter"),
]


@pytest.mark.parametrize(("path", "word"), BAD, ids=[p[:60] for p, _ in BAD])
def test_bad_parameters_answer_400_with_a_plain_message(viewer: Viewer, path: str, word: str) -> None:
    status, headers, body = request(viewer.url, path)
    assert status == 400, (path, body)
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert list(doc) == ["error"] and word in doc["error"], doc
    assert "\n" not in doc["error"] and "Traceback" not in doc["error"] and "Error" not in doc["error"]


def test_good_parameters_still_work(viewer: Viewer, seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    ok = ["/api/runs?limit=5&status=failure&system=celery&since=0&until=32503680000&min_ms=0&max_ms=1e9",
          "/api/runs?pipeline=daily_*&status=", f"/api/trace/{data['sales'][0]['run_id']}",
          f"/api/trace/{data['sales'][0]['trace_id'].upper()}", "/api/history?pipeline=daily_sales&task=load",
          f"/api/export/{data['sales'][0]['trace_id']}", "/api/health"]
    for path in ok:
        assert request(viewer.url, path)[0] == 200, path
    doc = json.loads(request(viewer.url, "/api/runs?limit=2")[2])
    assert len(doc["runs"]) == 2


class Exploding(SpanStore):
    def runs(self, **kw: Any) -> Any:  # type: ignore[override]
        raise RuntimeError("secret internals /var/db/password=hunter2")


def test_unexpected_failure_is_a_generic_500_with_details_only_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server(Exploding(tmp_path / "traces.db"), port=0, access_log=tmp_path / "access.log")
    serve_in_thread(server)
    try:
        with caplog.at_level(logging.ERROR, logger="pipetrace.ui"):
            status, _, body = request(server.url, "/api/runs")
        assert status == 500
        message = json.loads(body)["error"]
        assert message.startswith("internal error (incident ") and "hunter2" not in message
        assert "RuntimeError" not in message
        incident = message.split("incident ", 1)[1].split(";")[0]
        logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
        assert incident in logged and "hunter2" in caplog.text
    finally:
        server.shutdown()
        server.server_close()
    log = tmp_path / "access.log"
    deadline = time.monotonic() + 5  # the line is written just after the response
    while not log.read_text().endswith(" 500\n") and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = log.read_text().splitlines()
    assert lines[-1].split()[1:] == ["-", "127.0.0.1", "GET", "/api/runs", "500"]


def test_keep_alive_requests_are_not_held_back_by_nagle(tmp_path: Path) -> None:
    """Headers and body are two writes; with Nagle's algorithm each keep-alive answer waited ~40 ms for the
    client's delayed ACK (the page makes several requests per view)."""
    import http.client

    server = make_server(SpanStore(tmp_path / "traces.db"), port=0)
    serve_in_thread(server)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request("GET", "/api/health")
        conn.getresponse().read()
        started = time.perf_counter()
        for _ in range(20):
            conn.request("GET", "/api/health")
            assert conn.getresponse().read()
        assert time.perf_counter() - started < 0.4  # 20 × 40 ms = 0.8 s with Nagle
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
