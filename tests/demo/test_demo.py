"""``pipetrace demo`` end to end: a subprocess with its own PIPETRACE_HOME, then the store is checked."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from demo_chain import AIRFLOW_DAG, DAGSTER_JOB, assert_cross_system_trace
from demo_env import BIN, REPO, DemoRun, clean_env, ctrl_c_works
from pipetrace.identity import RunIdentity
from pipetrace.store import SpanStore


@pytest.fixture
def demo(readme_demo: DemoRun) -> DemoRun:
    """``pipetrace demo --no-browser`` as the README runs it: a subprocess in a fresh virtualenv with this
    checkout installed, its own PIPETRACE_HOME (see conftest.py)."""
    return readme_demo


def test_demo_reports_parts_waterfall_and_viewer(demo: DemoRun) -> None:
    out = demo.out
    for label in ("plain Python (core API)", "Airflow", "Dagster", "Celery + kombu",
                  "Airflow → Celery → Dagster, one trace"):
        assert f"✓ {label} (" in out, label
    if importlib.util.find_spec("prefect") is None:
        assert "- skipped Prefect: not installed" in out
        assert "cannot share one environment" in out
    assert "one trace across airflow, celery, dagster" in out
    for name in ("run pt_cross_system", "send pipetrace_demo_cross", "task cross_system.run_report",
                 "run cross_system_report", "task publish"):
        assert name in out, name  # the terminal waterfall of the cross-system trace
    assert "see it in the browser: pipetrace ui → http://127.0.0.1:8765/#/run/" in out
    assert "broker: " in out  # which broker the cross-system part used, and why
    assert demo.seconds < 120, f"the demo took {demo.seconds:.0f}s (budget: 2 minutes)"


def test_store_has_runs_of_three_systems(demo: DemoRun) -> None:
    runs = demo.store.runs(limit=100)
    finished = {r.system for r in runs if not r.in_progress}
    assert {"python", "airflow", "dagster"} <= finished
    assert "celery" in {s for r in runs for s in r.systems}
    assert all(r.status == "success" for r in runs if not r.in_progress)


def test_cross_system_trace_has_exact_parent_chain(demo: DemoRun) -> None:
    (airflow_run,) = demo.store.runs(pipeline=AIRFLOW_DAG)
    spans = demo.store.trace(airflow_run.trace_id)
    messaging = "rabbitmq" if "broker: RabbitMQ" in demo.out else "redis" if "broker: Redis" in demo.out \
        else "memory"
    assert_cross_system_trace(spans, messaging)
    # the trace id is the one derived from the Airflow run (no upstream caller), as the design says
    assert airflow_run.trace_id == f"{RunIdentity('airflow', AIRFLOW_DAG, airflow_run.run_id).trace_id:032x}"
    (dagster_run,) = demo.store.runs(pipeline=DAGSTER_JOB)
    assert dagster_run.trace_id == airflow_run.trace_id  # the Dagster run joined the caller's trace


def test_runs_json_lists_systems_of_each_run(demo: DemoRun) -> None:
    proc = subprocess.run([str(BIN / "pipetrace"), "runs", "--json", "--limit", "100"], env=clean_env(demo.home),
                          capture_output=True, text=True, timeout=60, check=True)
    rows = json.loads(proc.stdout)
    assert rows and all(isinstance(r["systems"], list) and r["systems"] for r in rows)
    by_pipeline = {r["pipeline"]: r for r in rows}
    assert by_pipeline[AIRFLOW_DAG]["systems"] == ["airflow", "celery", "dagster"]
    assert by_pipeline[DAGSTER_JOB]["systems"] == ["airflow", "celery", "dagster"]
    assert by_pipeline["pt_etl"]["systems"] == ["airflow"]
    assert by_pipeline["demo_dagster_etl"]["systems"] == ["dagster"]
    assert by_pipeline["demo_etl"]["systems"] == ["python"]


def test_cross_system_falls_back_to_memory_transport(tmp_path: Path) -> None:
    """With no broker (forced here), the scenario uses kombu's memory:// transport, says so, and the
    trace is the same chain."""
    env = clean_env(tmp_path, PIPETRACE_DEMO_BROKER="memory://")
    proc = subprocess.run([sys.executable, str(REPO / "example_dags" / "cross_system" / "scenario.py")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "broker: memory:// (from PIPETRACE_DEMO_BROKER)"
    spans = SpanStore(tmp_path / "traces.db").trace(lines[-1])
    assert_cross_system_trace(spans, "memory")


def test_demo_serves_viewer_and_opens_browser(tmp_path: Path) -> None:
    """Without --no-browser: the viewer serves the store, a browser is sent to the trace, Ctrl+C stops it."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = clean_env(tmp_path / "home", PIPETRACE_DEMO_PARTS="python", BROWSER=str(browser))
    proc = subprocess.Popen([str(BIN / "pipetrace"), "demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_works)
    try:
        deadline = time.monotonic() + 90
        while not opened.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert opened.exists(), "no browser was opened"
        url = opened.read_text().strip()
        base, _, fragment = url.partition("#/run/")
        assert base.startswith("http://127.0.0.1:") and len(fragment) == 32
        with urllib.request.urlopen(base + "api/health", timeout=10) as resp:
            assert json.load(resp)["ok"] is True
        with urllib.request.urlopen(f"{base}api/trace/{fragment}", timeout=10) as resp:
            doc = json.load(resp)
        assert "run demo_etl" in json.dumps(doc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert f"viewer: {url}" in out.replace("\n", "")
