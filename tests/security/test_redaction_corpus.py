"""Acceptance: ≥100 planted secrets of ≥16 kinds in every field — span names, attributes, events (name and
attributes), exception and status messages straddling the 1,024-character cut, links, the resource,
Celery-style task args, an Airflow-style run conf, and values known only through ``mask_secret`` — and
every sink scanned: the store file and its WAL (raw bytes), the OTLP payloads a real local receiver
captured, the console exporter's output, both export formats, the HTML report and the viewer's API JSON.
0 leaks, with the ordinary attributes kept exactly."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path

import pipetrace
import pytest
from corpus import KINDS, ORDINARY, Secret, make
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from otlp_receiver import OTLPReceiver, attrs
from pipetrace import attributes as A
from pipetrace.cli import app
from pipetrace.processing import export
from pipetrace.redaction.text import STATUS_LIMIT
from pipetrace.store import SpanStore
from pipetrace.ui.report import build_report
from pipetrace.ui.server import make_server, serve_in_thread
from typer.testing import CliRunner

PLACES = ("attribute", "span_name", "event", "event_name", "exception", "status_cut", "exception_cut",
          "parameters", "celery_args", "airflow_conf", "link", "sensitive_key", "known")
RUN_ID = "leak-1"


def _straddling(text: str, head: int) -> str:
    """Padding so that ``text`` starts ``head`` characters before the 1,024 cut of a status message."""
    return "p" * max(STATUS_LIMIT - head - len(text) // 2 - 1, 0) + " " + text + " and the rest"


def _plant(secrets: list[tuple[Secret, str]], run_id: str) -> None:
    """Emit one run whose spans carry every secret in its place."""
    tracer = pipetrace.get_tracer()
    upstream = pipetrace.inject()
    for i, (secret, place) in enumerate(secrets):
        task = f"task_{i}"
        params: dict[str, object] = dict(ORDINARY)
        links = []
        # a bare random value is a secret only by the key it sits under
        keyed = secret.kind == "sensitive_key"
        text = f"token={secret.text}" if keyed else secret.text
        if place == "known":
            pipetrace.mask_secret(secret.needle)  # known by the API only: planted bare, no context at all
            text = secret.needle
        if place == "attribute":
            params["api_token" if keyed else "note"] = secret.text
        elif place == "parameters":
            params["params"] = json.dumps({"conf": {"password" if keyed else "target": secret.text, "retries": 3}})
        elif place == "celery_args":  # how a Celery task's args/kwargs look when a user records them
            params["celery.args"] = repr((text, 3))
            params["celery.kwargs"] = repr({"password" if keyed else "target": secret.text})
        elif place == "airflow_conf":
            params["airflow.dag_run.conf"] = json.dumps({"password" if keyed else "source": secret.text})
        elif place == "sensitive_key":
            params["warehouse_password"] = secret.text
        elif place == "link":
            links.append(pipetrace.link(upstream or {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
                                        "xcom", {"access_token" if keyed else "xcom.value": secret.text}))
        elif place == "known":
            params["note"] = f"value {text}"
        if place == "status_cut":  # a string error: the status message is the text itself
            ident = pipetrace.run_identity("python", "secrets_etl", run_id)
            pipetrace.record_span(ident, ident.task_span_id(task, None, 1), f"task {task}", start=time.time() - 1,
                                  end=time.time(), parent_span_id=ident.run_span_id, attributes=params,
                                  result="failure", error=_straddling(text, 0))
            continue
        try:
            with pipetrace.task_span("python", "secrets_etl", run_id, task, attributes=params, links=links):
                if place in ("span_name", "known"):
                    with tracer.start_as_current_span(f"call {text}"):
                        pass
                if place in ("event", "event_name", "known"):
                    tracer_span = pipetrace.get_tracer().start_span("emit")
                    name = f"log {text}" if place != "event" else "log"
                    tracer_span.add_event(name, {"secret" if keyed else "message": f"connecting: {text}"})
                    tracer_span.end()
                if place in ("exception", "known"):
                    raise RuntimeError(f"login failed for {text}")
                if place == "exception_cut":
                    raise RuntimeError(_straddling(text, len("RuntimeError: ")))
        except RuntimeError:
            pass
    pipetrace.run_span("python", "secrets_etl", run_id, start=time.time() - 5, end=time.time(),
                       result="failure", attributes={"conf": secrets[0][0].text})


def _corpus() -> list[tuple[Secret, str]]:
    out = []
    for i in range(len(PLACES) * len(KINDS)):  # 221 secrets: every kind in every place
        kind = KINDS[i % len(KINDS)]
        place = PLACES[(i // len(KINDS) + i) % len(PLACES)]
        out.append((make(kind), place))
    return out


def _leaks(blob: bytes, secrets: list[tuple[Secret, str]]) -> list[str]:
    return [f"{s.kind}@{place}" for s, place in secrets if s.needle.encode() in blob or s.probe.encode() in blob]


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.glob("traces.db*")))


def _api(home: Path, trace_id: str) -> bytes:
    """Every API document the viewer serves for the run, as the browser receives it."""
    server = make_server(SpanStore(home / "traces.db"), "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = []
        for path in ("/api/runs", f"/api/trace/{trace_id}", f"/api/trace/{RUN_ID}",
                     "/api/history?pipeline=secrets_etl&task=task_0", f"/api/export/{trace_id}?format=otlp-json",
                     f"/api/export/{trace_id}?format=jaeger-json"):
            with urllib.request.urlopen(base + path, timeout=30) as response:  # noqa: S310 - loopback
                assert response.status == 200, path
                out.append(response.read())
        assert len(out[1]) > 10_000
        return b"".join(out)
    finally:
        server.shutdown()
        server.server_close()


def test_no_planted_secret_leaves_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    secrets = _corpus()
    assert len(secrets) >= 100 and len({s.kind for s, _ in secrets}) >= 16
    assert {place for _, place in secrets} == set(PLACES)
    resource_secret = make("slack")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"team=data,alerts.webhook=https://hooks.slack.com/services/"
                                                   f"T000/B000/{resource_secret.needle}")
    console_out = io.StringIO()  # what the console exporter prints (it binds sys.stdout at import time)
    monkeypatch.setattr(export, "ConsoleSpanExporter", lambda: ConsoleSpanExporter(out=console_out))
    with OTLPReceiver() as receiver:
        pipetrace.configure(home=home, exporters="store,otlp,console", otlp_endpoint=receiver.endpoint,
                            export_interval_s=0.05)
        _plant(secrets, RUN_ID)
        assert pipetrace.force_flush(20)
        store_bytes = _files(home)
        assert (home / "traces.db-wal").exists()  # the WAL was read too, not only the main file
        payload = b"".join(receiver.raw)
        spans = receiver.spans()
    pipetrace.shutdown(5)
    console = console_out.getvalue().encode()
    assert len(spans) >= len(secrets) + 1
    assert console.count(b'"trace_id"') >= len(secrets)
    sinks = {"store": store_bytes, "otlp": payload, "console": console}

    trace_id = f"{pipetrace.run_identity('python', 'secrets_etl', RUN_ID).trace_id:032x}"
    runner = CliRunner()
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    for fmt in ("otlp-json", "jaeger-json"):
        result = runner.invoke(app, ["export", RUN_ID, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert len(result.output) > 10_000
        sinks[fmt] = result.output.encode()
    report = build_report(SpanStore(home / "traces.db"), RUN_ID)
    assert report is not None and "task_0" in report
    sinks["report"] = report.encode()
    sinks["api"] = _api(home, trace_id)
    sinks["store after close"] = _files(home)

    for sink, blob in sinks.items():
        assert _leaks(blob, secrets) == [], sink
        assert resource_secret.needle.encode() not in blob, sink

    # ordinary data is untouched, on the wire exactly as planted
    task0 = next(span for _, span in spans if span.name == "task task_0")
    got = attrs(task0.attributes)
    for key, value in ORDINARY.items():
        assert got[key] == value, key
    assert got[A.TASK_NAME] == "task_0" and got[A.PIPELINE_NAME] == "secrets_etl"
    names = {span.name for _, span in spans}
    assert "run secrets_etl" in names and "emit" in names
    # the cut messages were cut (after redaction), not dropped
    cut = [span for _, span in spans if span.status.message and len(span.status.message) == STATUS_LIMIT]
    assert len(cut) >= len(KINDS)  # (a masked secret can make a message short enough to keep whole)


def test_the_scan_finds_secrets_when_redaction_is_off(tmp_path: Path) -> None:
    """Control: the same corpus with redaction off is found — the scan above can see a leak."""
    home = tmp_path / "home"
    secrets = _corpus()
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05, redaction=False)
    _plant(secrets, "leak-2")
    assert pipetrace.force_flush(20)
    leaked = _leaks(_files(home), secrets)
    pipetrace.shutdown(5)
    assert len(leaked) == len(secrets)
