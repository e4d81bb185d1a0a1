"""Transport security: OTLP/gRPC with mTLS against a CA made here, PIPETRACE_REQUIRE_TLS, and exporter
headers (API keys) that never reach a log line or ``pipetrace doctor``."""

from __future__ import annotations

import logging
import socket
import time
from concurrent import futures
from pathlib import Path

import grpc
import pipetrace
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from otlp_receiver import OTLPReceiver
from pipetrace.cli import app
from pipetrace.config import load
from tlsutil import make_tls
from typer.testing import CliRunner


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []

    def Export(self, request, context):  # noqa: N802 - the gRPC method name
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()

    def span_names(self) -> list[str]:
        return [s.name for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture
def mtls_grpc(tmp_path: Path):
    """A real gRPC OTLP collector on localhost that requires a client certificate signed by our CA."""
    tls = make_tls(tmp_path)
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    creds = grpc.ssl_server_credentials([(tls.server_key.read_bytes(), tls.server_cert.read_bytes())],
                                        root_certificates=tls.ca.read_bytes(), require_client_auth=True)
    port = server.add_secure_port("localhost:0", creds)
    server.start()
    yield tls, collector, f"https://localhost:{port}"
    server.stop(0)


def _emit(run_id: str) -> None:
    with pipetrace.task_span("python", "tls_etl", run_id, "extract"):
        pass
    pipetrace.run_span("python", "tls_etl", run_id, start=time.time() - 1, end=time.time(), result="success")


def test_grpc_mtls_collector_accepts_our_client_certificate(traced, mtls_grpc) -> None:
    tls, collector, endpoint = mtls_grpc
    pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=endpoint, otlp_protocol="grpc",
                        otlp_certificate=str(tls.ca), otlp_client_certificate=str(tls.client_cert),
                        otlp_client_key=str(tls.client_key), otlp_headers="x-api-key=grpc-s3cret",
                        require_tls=True, export_interval_s=0.05)
    _emit("grpc-mtls-1")
    assert pipetrace.force_flush(15)
    deadline = time.monotonic() + 10
    while len(collector.span_names()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(collector.span_names()) == ["run tls_etl", "task extract"]
    assert collector.metadata[0]["x-api-key"] == "grpc-s3cret"
    assert pipetrace.stats()["otlp"]["exported"] == 2


def test_grpc_mtls_collector_rejects_a_client_without_certificate(traced, mtls_grpc) -> None:
    tls, collector, endpoint = mtls_grpc
    pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=endpoint, otlp_protocol="grpc",
                        otlp_certificate=str(tls.ca), otlp_timeout_s=2, export_interval_s=0.05)
    _emit("grpc-mtls-2")
    pipetrace.force_flush(10)
    time.sleep(0.3)
    assert collector.span_names() == []
    stats = pipetrace.stats()["otlp"]
    assert stats["exported"] == 0 and stats["failed"] + stats["queued"] >= 2
    assert len(traced.spans()) == 2  # the local store still has the run


@pytest.mark.parametrize("endpoint, protocol, insecure", [
    ("http://collector.example.com:4318", "http/protobuf", False),
    ("http://10.0.0.5:4318", "http/protobuf", False),
    ("collector.example.com:4317", "grpc", True),
    ("http://collector.example.com:4317", "grpc", False),
])
def test_require_tls_refuses_plaintext_to_another_host(endpoint: str, protocol: str, insecure: bool) -> None:
    with pytest.raises(pipetrace.ConfigError, match="PIPETRACE_REQUIRE_TLS=1 refuses the plaintext"):
        load({"PIPETRACE_REQUIRE_TLS": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
              "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_INSECURE": str(insecure).lower()})


@pytest.mark.parametrize("endpoint, protocol", [
    ("https://collector.example.com:4318", "http/protobuf"),
    ("collector.example.com:4317", "grpc"),  # grpc without scheme is TLS unless INSECURE
    ("http://127.0.0.1:4318", "http/protobuf"),  # loopback: a local agent
    ("http://localhost:4318", "http/protobuf"),
    ("http://[::1]:4318", "http/protobuf"),
])
def test_require_tls_accepts_tls_and_loopback(endpoint: str, protocol: str) -> None:
    settings = load({"PIPETRACE_REQUIRE_TLS": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                     "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    assert settings.require_tls and settings.otlp_endpoint == endpoint


def test_require_tls_error_at_configure_time(traced) -> None:
    with pytest.raises(pipetrace.ConfigError, match="collector.example.com"):
        pipetrace.configure(home=traced.home, exporters="store,otlp", require_tls=True,
                            otlp_endpoint="http://collector.example.com:4318")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRET_HEADER = "Bearer hdr-9f8e7d6c5b4a39281706"


def test_exporter_headers_never_reach_logs(traced, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, from every logger (ours, the OTLP exporter, urllib3)
    with OTLPReceiver(status=500) as receiver:
        pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=receiver.endpoint,
                            otlp_headers=f"authorization={SECRET_HEADER}", otlp_timeout_s=1,
                            export_interval_s=0.05)
        _emit("hdr-1")
        pipetrace.force_flush(10)
    pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=f"http://127.0.0.1:{_closed_port()}",
                        otlp_headers=f"authorization={SECRET_HEADER}", otlp_timeout_s=1, export_interval_s=0.05)
    _emit("hdr-2")
    pipetrace.force_flush(10)
    settings = pipetrace.settings()
    logging.getLogger("test").info("settings in a log line: %r", settings)
    pipetrace.shutdown(5)
    assert caplog.records, "the failing exports logged nothing: this test would prove nothing"
    assert "hdr-9f8e7d6c5b4a39281706" not in caplog.text
    assert "hdr-9f8e7d6c5b4a39281706" not in repr(settings)


def test_malformed_header_error_does_not_echo_the_value() -> None:
    with pytest.raises(pipetrace.ConfigError) as err:
        load({"OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key=ok,{SECRET_HEADER}"})
    assert "hdr-9f8e7d6c5b4a39281706" not in str(err.value) and "item 2" in str(err.value)


def test_doctor_hides_headers_and_the_redaction_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETRACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={SECRET_HEADER.replace(' ', '%20')}")
    monkeypatch.setenv("PIPETRACE_REDACTION_KEY", "hmac-key-1a2b3c4d5e6f")
    monkeypatch.setenv("PIPETRACE_REDACTION_MODES", "email=token")
    result = CliRunner().invoke(app, ["doctor"])
    assert "otlp_headers" in result.output and "authorization" in result.output
    assert "hdr-9f8e7d6c5b4a39281706" not in result.output
    assert "hmac-key-1a2b3c4d5e6f" not in result.output
    assert "redaction_key = '***'" in result.output
