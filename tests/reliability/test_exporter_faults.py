"""OTLP backend faults: a dead, slow, failing, resetting or untrusted collector costs a task nothing."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pipetrace
import pytest
from harness import FaultRow, added_latency, run_tasks
from otlp_receiver import OTLPReceiver
from tlsutil import make_tls

N = 300


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ResettingServer:
    """Accepts TCP connections and resets them at once (SO_LINGER 0)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.resets = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            self.resets += 1

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def baseline(traced) -> list[float]:
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05)
    run_tasks(100, "warmup")
    return run_tasks(N, "baseline")


def _check(traced, report, baseline: list[float], fault: str, run_id: str, configure_kw: dict) -> None:
    pipetrace.configure(**{"home": traced.home, "exporters": "store,otlp", "export_interval_s": 0.05,
                           "otlp_timeout_s": 3, **configure_kw})
    faulted = run_tasks(N, run_id)  # raises if any exception leaked into the "task"
    added = added_latency(baseline, faulted)
    stored = len(traced.spans(f"{pipetrace.run_identity('python', 'reliability', run_id).trace_id:032x}"))
    report.append(FaultRow(fault, N, N, stored, added.p95_ms, added.max_ms))
    assert stored == N, "the local store must keep every span whatever the OTLP backend does"
    assert added.p95_ms < 5, f"{fault}: tasks slowed by {added}"
    start = time.perf_counter()
    pipetrace.shutdown(2)
    assert time.perf_counter() - start < 6, "shutdown flush must be bounded"


def test_backend_down(traced, report, baseline) -> None:
    _check(traced, report, baseline, "OTLP backend down (connection refused)", "down",
           {"otlp_endpoint": f"http://127.0.0.1:{_closed_port()}"})


def test_backend_slow_5s_per_request(traced, report, baseline) -> None:
    with OTLPReceiver(delay_s=5) as receiver:
        _check(traced, report, baseline, "OTLP backend slow (5 s per request)", "slow",
               {"otlp_endpoint": receiver.endpoint, "otlp_timeout_s": 10})


@pytest.mark.parametrize("status", [500, 503, 429])
def test_backend_returns_errors(traced, report, baseline, status: int) -> None:
    with OTLPReceiver(status=status) as receiver:
        _check(traced, report, baseline, f"OTLP backend answers HTTP {status}", f"http-{status}",
               {"otlp_endpoint": receiver.endpoint})


def test_transient_errors_are_retried_with_backoff(traced) -> None:
    """503 and 429 are retried by the OTLP exporter (with backoff) inside its background export."""
    hits: list[float] = []
    with OTLPReceiver(status=503) as receiver:
        original = receiver.server.RequestHandlerClass.do_POST

        def counting(handler) -> None:  # type: ignore[no-untyped-def]
            hits.append(time.monotonic())
            original(handler)

        receiver.server.RequestHandlerClass.do_POST = counting  # type: ignore[method-assign]
        pipetrace.configure(home=traced.home, exporters="store,otlp", export_interval_s=0.05, otlp_timeout_s=4,
                            otlp_endpoint=receiver.endpoint)
        run_tasks(10, "retry")
        pipetrace.force_flush(6)
    assert len(hits) >= 2, "a transient error must be retried"
    gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
    assert gaps[0] >= 0.3, f"retries must back off, gaps {gaps}"
    assert pipetrace.stats()["otlp"]["failed"] >= 10 or pipetrace.stats()["otlp"]["queued"] == 0


def test_backend_resets_connections(traced, report, baseline) -> None:
    server = ResettingServer()
    try:
        _check(traced, report, baseline, "OTLP backend resets connections", "reset",
               {"otlp_endpoint": f"http://127.0.0.1:{server.port}"})
        assert server.resets >= 1
    finally:
        server.close()


def test_tls_handshake_failure(traced, report, baseline, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    other = make_tls(tmp_path / "other") if (tmp_path / "other").mkdir() is None else None
    assert other is not None
    with OTLPReceiver(certfile=str(tls.server_cert), keyfile=str(tls.server_key)) as receiver:
        # the client trusts a different CA: every handshake fails
        _check(traced, report, baseline, "OTLP TLS handshake failure", "tls",
               {"otlp_endpoint": receiver.endpoint, "otlp_certificate": str(other.ca)})
        assert receiver.requests == []


def test_full_queue_drops_are_counted_and_logged(traced, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipetrace")
    with OTLPReceiver(delay_s=5) as receiver:
        pipetrace.configure(home=traced.home, exporters="store,otlp", export_interval_s=0.05, otlp_timeout_s=10,
                            otlp_endpoint=receiver.endpoint, max_queue_size=1000, max_export_batch_size=100)
        for i in range(3000):
            with pipetrace.task_span("python", "reliability", "overflow", f"t{i}"):
                pass
            if i % 10 == 0:
                time.sleep(0.002)
        stats = pipetrace.stats()
        assert stats["otlp"]["dropped"] > 0
        assert "otlp queue full" in caplog.text
        stored = traced.spans(f"{pipetrace.run_identity('python', 'reliability', 'overflow').trace_id:032x}")
        assert len(stored) == 3000 and pipetrace.stats()["store"]["dropped"] == 0
        pipetrace.shutdown(1)


@pytest.fixture(autouse=True)
def _no_otlp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    yield
