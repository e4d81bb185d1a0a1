"""Alert rules: a webhook alert reaches a real local HTTP server once (deduplicated), other rules and sinks."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from analysis_helpers import S, run, span, tid
from pipetrace.analysis.alert_config import AlertConfigError, load, parse
from pipetrace.analysis.alerts import check
from pipetrace.cli import app
from pipetrace.store import SpanStore
from typer.testing import CliRunner


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def history(store: SpanStore, now_ns: int, *, slow_last: bool = True, runs: int = 30) -> str:
    """``runs`` hourly runs of pipeline etl (60 s each, tasks a and b), the last one 5x slower."""
    records = []
    last = ""
    for i in range(runs):
        t0 = now_ns - (runs - i) * 3600 * S
        t = tid(1000 + i)
        dur = 300 if slow_last and i == runs - 1 else 60
        records += [run(t, 0, dur, pipeline="etl", run_id=f"r{i}", t0=t0),
                    span(t, "a", "1", "task a", 0, dur / 2, pipeline="etl", run_id=f"r{i}", t0=t0),
                    span(t, "b", "1", "task b", dur / 2, dur, pipeline="etl", run_id=f"r{i}", t0=t0)]
        last = t
    store.write(records)
    return last


def test_webhook_alert_arrives_once(tmp_path: Path, hook: Hook) -> None:
    store = SpanStore(tmp_path / "traces.db")
    now = time.time_ns()
    slow_trace = history(store, now)
    config = parse({"viewer_url": "http://127.0.0.1:8765",
                    "sink": [{"name": "hook", "type": "webhook", "url": hook.url}],
                    "rule": [{"name": "etl-slow", "type": "slow_run", "pipeline": "et*", "factor": 2.0}]})
    first = check(store, config, now_ns=now)
    assert [a.trace_id for a in first.fired] == [slow_trace] and not first.failed
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["trace_id"] == slow_trace and body["rule"] == "etl-slow" and body["pipeline"] == "etl"
    assert body["viewer_link"] == f"http://127.0.0.1:8765/#/run/{slow_trace}"
    assert body["details"]["duration_ms"] == pytest.approx(300_000) and "5.0×" in body["message"]
    second = check(store, config, now_ns=now + 60 * S)
    assert not second.fired and len(second.duplicates) == 1
    assert len(hook.bodies) == 1  # the duplicate was not sent


def test_failed_delivery_is_retried_next_round(tmp_path: Path, hook: Hook) -> None:
    store = SpanStore(tmp_path / "traces.db")
    now = time.time_ns()
    history(store, now)
    dead = parse({"sink": [{"type": "webhook", "url": "http://127.0.0.1:9/nothing", "timeout": "2s"}],
                  "rule": [{"name": "slow", "type": "slow_run"}]})
    report = check(store, dead, now_ns=now)
    assert report.failed and not report.fired
    live = parse({"sink": [{"type": "webhook", "url": hook.url}], "rule": [{"name": "slow", "type": "slow_run"}]})
    assert len(check(store, live, now_ns=now).fired) == 1 and len(hook.bodies) == 1


def test_error_rate_rate_limit_and_command_sink(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    now = time.time_ns()
    records = []
    for i in range(6):  # six pipelines, task x fails in 3 of 4 attempts each
        for j in range(4):
            t = tid(5000 + i * 10 + j)
            t0 = now - (10 + j) * 60 * S
            records += [run(t, 0, 10, pipeline=f"p{i}", run_id=f"r{j}", t0=t0),
                        span(t, "x", "1", "task x", 0, 10, status="ERROR" if j else "OK", pipeline=f"p{i}",
                             run_id=f"r{j}", t0=t0)]
    store.write(records)
    out = tmp_path / "alerts.jsonl"
    config = parse({"sink": [{"type": "command", "command": f"cat >> {out}; echo >> {out}"}],
                    "rule": [{"name": "errors", "type": "error_rate", "window": "1h", "threshold": 0.5,
                              "min_count": 4, "max_per_hour": 4}]})
    report = check(store, config, now_ns=now)
    assert len(report.fired) == 4 and len(report.limited) == 2
    sent = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(sent) == 4 and all(s["task"] == "x" and s["details"]["failures"] == 3 for s in sent)
    assert all(len(s["trace_id"]) == 32 for s in sent)


def test_stopped_tracing_and_deadline_rules(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    now = time.time_ns()
    records = []
    for i in range(12):
        t, t0 = tid(7000 + i), now - (12 - i) * 3600 * S
        records += [run(t, 0, 60, pipeline="etl", run_id=f"r{i}", t0=t0),
                    span(t, "a", "1", "task a", 0, 30, pipeline="etl", run_id=f"r{i}", t0=t0)]
        if i < 9:  # task b stopped being traced three runs ago
            records.append(span(t, "b", "1", "task b", 30, 60, pipeline="etl", run_id=f"r{i}", t0=t0))
    stuck = tid(7999)  # in progress for 3 hours: no run span
    records.append(span(stuck, "a", "1", "task a", 0, 10, pipeline="etl", run_id="stuck", t0=now - 3 * 3600 * S))
    store.write(records)
    config = parse({"rule": [{"name": "gone", "type": "stopped_tracing", "runs": 3},
                             {"name": "late", "type": "deadline", "max_duration": "2h"}]})
    report = check(store, config, now_ns=now, dry_run=True)
    by_rule = {a.rule: a for a in report.fired}
    assert by_rule["gone"].task == "b" and by_rule["gone"].pipeline == "etl"
    assert by_rule["late"].trace_id == stuck


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AlertConfigError, match="type 'nope'"):
        parse({"rule": [{"type": "nope"}]})
    with pytest.raises(AlertConfigError, match="unknown sinks"):
        parse({"rule": [{"type": "slow_run", "sinks": ["x"]}]})
    with pytest.raises(AlertConfigError, match="HH:MM"):
        parse({"rule": [{"type": "deadline", "by": "25:00"}]})
    bad = tmp_path / "alerts.toml"
    bad.write_text("rule = [")
    with pytest.raises(AlertConfigError, match="not valid toml"):
        load(bad)


def test_cli_alerts_check(tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    store = SpanStore(home / "traces.db")
    slow_trace = history(store, time.time_ns())
    (home / "alerts.toml").write_text(
        f'[[sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n\n'
        '[[rule]]\nname = "slow"\ntype = "slow_run"\nfactor = 3\n')
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    first = CliRunner().invoke(app, ["alerts", "check"])
    assert first.exit_code == 0, first.output
    assert slow_trace in first.output and "1 sent" in first.output
    second = CliRunner().invoke(app, ["alerts", "check", "--json"])
    assert json.loads(second.output)["duplicates"] == 1
    assert [b["trace_id"] for b in hook.bodies] == [slow_trace]
