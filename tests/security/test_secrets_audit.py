"""``pipetrace audit --secrets``: where stored spans hold secrets (data stored with redaction off), ``--mask``
rewrites them so no byte of the secret is left in the store file or its WAL; the ``secrets`` alert rule."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pipetrace
import pytest
from corpus import make
from pipetrace.analysis.alert_config import parse
from pipetrace.analysis.alerts import check
from pipetrace.cli import app
from pipetrace.store import SpanStore
from typer.testing import CliRunner

KINDS = ("aws_key_id", "github", "uri_password", "jwt", "card", "email", "stripe", "google")


def _store_unredacted(home: Path) -> tuple[list[str], str]:
    """Spans written with redaction off, a secret in every field; returns the needles and the trace id."""
    secrets = [make(kind) for kind in KINDS]
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05, redaction=False)
    tracer = pipetrace.get_tracer()
    upstream = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    with pytest.raises(RuntimeError), pipetrace.task_span(
            "python", "audit_etl", "a-1", f"load {secrets[0].text}",
            attributes={"note": secrets[1].text, "warehouse_password": "Plain9Pass7word", "rows": 5,
                        "file.name": "orders.csv"},
            links=[pipetrace.link(upstream, "xcom", {"xcom.value": secrets[2].text})]):
        span = tracer.start_span("emit")
        span.add_event(f"log {secrets[3].text}", {"message": secrets[4].text})
        span.end()
        raise RuntimeError(f"failed: {secrets[5].text} {secrets[6].text}")
    pipetrace.run_span("python", "audit_etl", "a-1", start=time.time() - 5, end=time.time(), result="failure",
                       attributes={"conf": secrets[7].text})
    assert pipetrace.force_flush(10)
    pipetrace.shutdown(5)
    trace_id = f"{pipetrace.run_identity('python', 'audit_etl', 'a-1').trace_id:032x}"
    return [s.needle for s in secrets] + ["Plain9Pass7word"], trace_id


def _raw(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.glob("traces.db*")))


def test_audit_finds_then_masks_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    needles, trace_id = _store_unredacted(home)
    assert all(n.encode() in _raw(home) for n in needles)  # the control: they are there
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "--secrets", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    fields = {f["field"] for f in report["findings"]}
    assert {"name", "status_message", "attributes.note", "attributes.warehouse_password", "attributes.conf",
            "events[0].name", "events[0].attributes.message", "links[0].attributes.xcom.value",
            "events[0].attributes.exception.message"} <= fields, fields
    assert {f["trace_id"] for f in report["findings"]} == {trace_id}
    assert {"key", "aws_key_id", "github", "uri_password", "jwt", "card", "email"} <= set(report["by_detector"])
    assert not [n for n in needles if n in result.output]  # the report never shows a value

    result = runner.invoke(app, ["audit", "--secrets", "--mask"])
    assert result.exit_code == 0, result.output
    assert "masked 3 spans in place" in result.output
    blob = _raw(home)
    assert [n for n in needles if n.encode() in blob] == []  # not in the file, free pages or the WAL
    clean = runner.invoke(app, ["audit", "--secrets"])
    assert clean.exit_code == 0 and "clean" in clean.output
    spans = {s.name: s for s in SpanStore(home / "traces.db").trace(trace_id)}
    assert set(spans) == {"task load aws key *** in use", "emit", "run audit_etl"}
    task = spans["task load aws key *** in use"]
    assert task.attributes["rows"] == 5 and task.attributes["file.name"] == "orders.csv"
    assert task.attributes["warehouse_password"] == "***"


def test_secrets_alert_rule_fires_once_per_trace(tmp_path: Path) -> None:
    home = tmp_path / "home"
    needles, trace_id = _store_unredacted(home)
    store = SpanStore(home / "traces.db")
    config = parse({"rule": [{"name": "leaks", "type": "secrets", "window": "1h"}], "sink": [{"type": "log"}]})
    report = check(store, config)
    assert [a.trace_id for a in report.fired] == [trace_id]
    alert = report.fired[0]
    assert alert.type == "secrets" and "audit --secrets --mask" in alert.message
    assert not [n for n in needles if n in json.dumps(alert.payload("http://x"))]
    assert check(store, config).fired == []  # deduplicated
    old = parse({"rule": [{"name": "old", "type": "secrets", "window": "1h"}]})
    assert check(store, old, now_ns=time.time_ns() + 7200 * 10**9, dry_run=True).fired == []  # out of the window
