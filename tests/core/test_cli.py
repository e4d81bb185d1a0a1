import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pipetrace
import pytest
from cli_run import in_terminal


def _cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PIPETRACE_HOME": str(home), "COLUMNS": "160", **env}
    full_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run([sys.executable, "-m", "pipetrace", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


@pytest.fixture
def seeded(traced):
    t0 = time.time() - 3
    with pipetrace.task_span("python", "etl", "cli-run", "extract"):
        carrier = pipetrace.inject()
    with pytest.raises(RuntimeError):
        with pipetrace.task_span("python", "etl", "cli-run", "load", links=[pipetrace.link(carrier, "xcom")]):
            raise RuntimeError("disk full")
    pipetrace.run_span("python", "etl", "cli-run", start=t0, end=time.time(), result="failure")
    traced.flush()
    return traced


def test_runs_json_lists_systems(seeded) -> None:
    out = _cli("runs", "--json", home=seeded.home)
    assert out.returncode == 0, out.stderr
    (run,) = json.loads(out.stdout)
    assert run["run_id"] == "cli-run" and run["status"] == "failure"
    assert run["systems"] == ["python"] and run["span_count"] == 3


def test_show_prints_a_waterfall(seeded) -> None:
    code, screen = in_terminal("show", "cli-run", home=seeded.home, columns=120)
    assert code == 0, screen
    lines = screen.splitlines()
    assert any("run etl" in line and "failure" in line for line in lines)
    assert any("task extract" in line and "success" in line for line in lines)
    assert any("task load" in line and "failure" in line for line in lines)
    assert "█" in screen
    missing = _cli("show", "nope", home=seeded.home)
    assert missing.returncode == 1 and "no trace found" in missing.stderr


def test_export_otlp_json_and_jaeger_json(seeded, tmp_path: Path) -> None:
    out = _cli("export", "cli-run", "--format", "otlp-json", "-o", str(tmp_path / "t.json"), home=seeded.home)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "t.json").read_text())
    spans = [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {s["name"] for s in spans} == {"run etl", "task extract", "task load"}
    load = next(s for s in spans if s["name"] == "task load")
    assert load["status"]["code"] == 2 and load["links"][0]["attributes"][0]["key"] == "pipetrace.link.kind"
    out = _cli("export", "cli-run", "-f", "jaeger-json", home=seeded.home)
    jaeger = json.loads(out.stdout)
    (trace,) = jaeger["data"]
    assert len(trace["spans"]) == 3
    root = next(s for s in trace["spans"] if s["operationName"] == "run etl")
    load_j = next(s for s in trace["spans"] if s["operationName"] == "task load")
    assert {"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": root["spanID"]} in load_j["references"]
    assert any(r["refType"] == "FOLLOWS_FROM" for r in load_j["references"])
    assert {"key": "error", "type": "bool", "value": True} in load_j["tags"]
    assert all(s["processID"] in trace["processes"] for s in trace["spans"])
    bad = _cli("export", "cli-run", "-f", "zipkin", home=seeded.home)
    assert bad.returncode == 2


def test_doctor_reports_config_store_and_endpoint(seeded) -> None:
    out = _cli("doctor", home=seeded.home, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9",
               OTEL_EXPORTER_OTLP_HEADERS="api-key=topsecret")
    assert "store" in out.stdout and "writable" in out.stdout
    assert "127.0.0.1:9" in out.stdout
    assert "topsecret" not in out.stdout + out.stderr
    assert out.returncode == 1  # endpoint unreachable
    bad = _cli("doctor", home=seeded.home, PIPETRACE_EXPORTERS="kafka")
    assert bad.returncode == 2 and "PIPETRACE_EXPORTERS" in bad.stderr


def test_demo_runs_and_shows_the_waterfall(tmp_path: Path) -> None:
    out = _cli("demo", "--no-browser", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "run demo_etl" in out.stdout
    runs = json.loads(_cli("runs", "--json", home=tmp_path).stdout)
    assert any(r["pipeline"] == "demo_etl" and r["span_count"] == 8 for r in runs)
