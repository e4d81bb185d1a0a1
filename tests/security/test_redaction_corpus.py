"""Acceptance: ≥100 planted secrets of ≥12 kinds, in span names, attributes, events, exception
messages, task parameters, links and the resource → none in the store file (WAL included), in the OTLP
payloads a real local receiver captured, or in exports; ordinary attributes intact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pipetrace
import pytest
from corpus import KINDS, ORDINARY, Secret, make
from otlp_receiver import OTLPReceiver, attrs
from pipetrace import attributes as A
from pipetrace.cli import app
from typer.testing import CliRunner

PLACES = ("attribute", "span_name", "event", "exception", "parameters", "link", "sensitive_key")


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
        if place == "attribute":
            params["api_token" if keyed else "note"] = secret.text
        elif place == "parameters":
            params["params"] = json.dumps({"conf": {"password" if keyed else "target": secret.text, "retries": 3}})
        elif place == "sensitive_key":
            params["warehouse_password"] = secret.text
        elif place == "link":
            links.append(pipetrace.link(upstream or {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
                                        "xcom", {"access_token" if keyed else "xcom.value": secret.text}))
        try:
            with pipetrace.task_span("python", "secrets_etl", run_id, task, attributes=params, links=links):
                if place == "span_name":
                    with tracer.start_as_current_span(f"call {text}"):
                        pass
                if place == "event":
                    tracer_span = pipetrace.get_tracer().start_span("emit")
                    tracer_span.add_event("log", {"secret" if keyed else "message": f"connecting: {text}"})
                    tracer_span.end()
                if place == "exception":
                    raise RuntimeError(f"login failed for {text}")
        except RuntimeError:
            pass
    pipetrace.run_span("python", "secrets_etl", run_id, start=time.time() - 5, end=time.time(),
                       result="failure", attributes={"conf": secrets[0][0].text})


def _corpus() -> list[tuple[Secret, str]]:
    out = []
    for i in range(7 * len(KINDS)):  # 112 secrets, every kind in every place at least once
        kind = KINDS[i % len(KINDS)]
        place = PLACES[(i // len(KINDS) + i) % len(PLACES)]
        out.append((make(kind), place))
    return out


def _leaks(blob: bytes, secrets: list[tuple[Secret, str]]) -> list[str]:
    return [f"{s.kind}@{place}" for s, place in secrets if s.needle.encode() in blob]


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.glob("traces.db*")))


def test_no_planted_secret_leaves_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    secrets = _corpus()
    assert len(secrets) >= 100 and len({s.kind for s, _ in secrets}) >= 12
    resource_secret = make("slack")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"team=data,alerts.webhook=https://hooks.slack.com/services/"
                                                   f"T000/B000/{resource_secret.needle}")
    with OTLPReceiver() as receiver:
        pipetrace.configure(home=home, exporters="store,otlp", otlp_endpoint=receiver.endpoint,
                            export_interval_s=0.05)
        _plant(secrets, "leak-1")
        assert pipetrace.force_flush(20)
        store_bytes = _files(home)
        assert (home / "traces.db-wal").exists()  # the WAL was read too, not only the main file
        payload = b"".join(receiver.raw)
        spans = receiver.spans()
    pipetrace.shutdown(5)
    assert len(spans) >= len(secrets) + 1
    assert _leaks(store_bytes, secrets) == []
    assert resource_secret.needle.encode() not in store_bytes
    assert _leaks(payload, secrets) == []
    assert resource_secret.needle.encode() not in payload
    assert _leaks(_files(home), secrets) == []  # after the checkpoint at close

    runner = CliRunner()
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    for fmt in ("otlp-json", "jaeger-json"):
        result = runner.invoke(app, ["export", "leak-1", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert len(result.output) > 10_000
        assert _leaks(result.output.encode(), secrets) == []
        assert resource_secret.needle not in result.output

    # ordinary data is untouched, on the wire exactly as planted
    task0 = next(span for _, span in spans if span.name == "task task_0")
    got = attrs(task0.attributes)
    for key, value in ORDINARY.items():
        assert got[key] == value, key
    assert got[A.TASK_NAME] == "task_0" and got[A.PIPELINE_NAME] == "secrets_etl"
    names = {span.name for _, span in spans}
    assert "run secrets_etl" in names and "emit" in names


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
