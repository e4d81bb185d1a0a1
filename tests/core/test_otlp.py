import socket
import time
from pathlib import Path

import pipetrace
import pytest
from otlp_receiver import OTLPReceiver, attrs
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity
from tlsutil import make_tls


def _configure(traced, endpoint: str, **kw) -> None:
    pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=endpoint, export_interval_s=0.05,
                        **kw)


def _emit(run_id: str) -> RunIdentity:
    with pipetrace.task_span("python", "etl", run_id, "extract", attributes={"rows": 3}):
        with pipetrace.get_tracer().start_as_current_span("query"):
            pass
    pipetrace.run_span("python", "etl", run_id, start=time.time() - 1, end=time.time(), result="success")
    return RunIdentity("python", "etl", run_id)


def test_spans_reach_a_real_otlp_http_receiver(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "etl-workers")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=data")
    with OTLPReceiver() as receiver:
        _configure(traced, receiver.endpoint, otlp_headers="x-api-key=s3cret")
        ident = _emit("otlp-1")
        assert pipetrace.force_flush(10)
        got = receiver.wait_for(3)
    by_name = {span.name: (resource, span) for resource, span in got}
    assert set(by_name) == {"task extract", "query", "run etl"}
    resource, task = by_name["task extract"]
    assert task.trace_id.hex() == f"{ident.trace_id:032x}"
    assert task.span_id.hex() == f"{ident.task_span_id('extract'):016x}"
    assert task.parent_span_id.hex() == f"{ident.run_span_id:016x}"
    assert by_name["query"][1].parent_span_id == task.span_id
    assert by_name["run etl"][1].span_id.hex() == f"{ident.run_span_id:016x}"
    assert by_name["run etl"][1].parent_span_id == b""
    task_attrs = attrs(task.attributes)
    assert task_attrs[A.TASK_NAME] == "extract" and task_attrs["rows"] == 3
    assert task_attrs[A.TASK_RESULT] == "success"
    res = attrs(resource.attributes)
    assert res["service.name"] == "etl-workers"
    assert res["deployment.environment"] == "test" and res["team"] == "data"
    assert res["host.name"] == socket.gethostname()
    assert res["process.pid"] > 0
    assert receiver.headers[0]["x-api-key"] == "s3cret"
    # the store got the same spans
    assert len(traced.spans(f"{ident.trace_id:032x}")) == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_spans(n: int, run_id: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        with pipetrace.task_span("python", "timing", run_id, f"t{i}"):
            pass
    return (time.perf_counter() - start) / n


def test_receiver_down_costs_a_task_nothing_and_raises_nothing(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05)
    _time_spans(50, "warm-1")
    baseline = _time_spans(300, "baseline")
    _configure(traced, f"http://127.0.0.1:{_closed_port()}", otlp_timeout_s=2)
    _time_spans(50, "warm-2")
    with_dead_backend = _time_spans(300, "dead-backend")
    added_ms = (with_dead_backend - baseline) * 1000
    print(f"per-span added cost with a dead OTLP backend: {added_ms:.3f} ms")
    assert added_ms < 5
    start = time.perf_counter()
    pipetrace.shutdown(1)
    assert time.perf_counter() - start < 4  # bounded flush, whatever the backend does
    traced.store.close()
    assert traced.store.count() >= 650  # the local store still has every span


def test_tls_with_a_self_signed_ca(traced, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with OTLPReceiver(certfile=str(tls.server_cert), keyfile=str(tls.server_key)) as receiver:
        _configure(traced, receiver.endpoint, otlp_certificate=str(tls.ca))
        _emit("tls-1")
        assert pipetrace.force_flush(10)
        assert len(receiver.wait_for(3)) == 3


def test_mtls_client_certificate(traced, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with OTLPReceiver(certfile=str(tls.server_cert), keyfile=str(tls.server_key),
                      client_ca=str(tls.ca)) as receiver:
        _configure(traced, receiver.endpoint, otlp_certificate=str(tls.ca),
                   otlp_client_certificate=str(tls.client_cert), otlp_client_key=str(tls.client_key))
        _emit("mtls-1")
        assert pipetrace.force_flush(10)
        assert len(receiver.wait_for(3)) == 3
        # without the client certificate the receiver refuses the connection
        _configure(traced, receiver.endpoint, otlp_certificate=str(tls.ca), otlp_timeout_s=1)
        _emit("mtls-2")
        pipetrace.force_flush(5)
        time.sleep(0.5)
        assert len(receiver.spans()) == 3
        stats = pipetrace.stats()["otlp"]
        assert stats["exported"] == 0 and stats["failed"] + stats["queued"] >= 3
