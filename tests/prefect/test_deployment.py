"""A real served deployment: ``prefect server start`` on 127.0.0.1 (SQLite in a tmp dir), a process
serving the flow (instrumented by Prefect's plugin hook), a run created by a traced client process
(started with ``pipetrace run --``) → one trace across the processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, dedent, tree
from pipetrace.store import SpanStore

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started and everything it started (its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    try:  # children left in the group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = _free_port()
    env = dict(os.environ)
    for key in ("PIPETRACE_AUTO", "PREFECT_PLUGINS_ENABLED"):
        env.pop(key, None)
    env.update({
        "PREFECT_HOME": str(tmp_path / "server-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    })
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        yield {"PREFECT_API_URL": api}
    finally:
        _stop(proc)
        log.close()


def _client_env(tmp_path: Path, server: dict[str, str], name: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PIPETRACE_AUTO", "PREFECT_PLUGINS_ENABLED", "PYTHONPATH"):
        env.pop(key, None)
    env.update(server)
    env.update({
        "PREFECT_HOME": str(tmp_path / f"{name}-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": str(EXAMPLES),
    })
    return env


def test_served_deployment_one_trace(traced, server, tmp_path: Path) -> None:  # noqa: ANN001
    serve_env = _client_env(tmp_path, server, "serve")
    serve_env["PREFECT_PLUGINS_ENABLED"] = "1"  # zero-edit: Prefect's own plugin hook
    serve_log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    serving = subprocess.Popen([sys.executable, str(EXAMPLES / "pt_serve.py")], env=serve_env, cwd=EXAMPLES,
                               stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        api = server["PREFECT_API_URL"]
        while True:
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            r = httpx.get(f"{api}/deployments/name/pt_fan_in/pt-serve", timeout=5)
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, "deployment was not served"
            time.sleep(0.5)
        # zero-edit: the client runs under `pipetrace run --`
        out = subprocess.run([str(BIN / "pipetrace"), "run", "--", sys.executable, str(EXAMPLES / "pt_trigger.py")],
                             env=_client_env(tmp_path, server, "client"), capture_output=True, timeout=300,
                             cwd=EXAMPLES)
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        result = json.loads(out.stdout.decode().strip().splitlines()[-1])
        assert result["state"] == "COMPLETED"
    finally:
        _stop(serving)
        serve_log.close()
    store = SpanStore(traced.home / "traces.db")
    deadline = time.monotonic() + 30  # the flow's process flushes as it exits
    while len(store.trace(result["trace_id"])) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    spans = store.trace(result["trace_id"])
    assert tree(spans) == dedent("""
        trigger pt_fan_in
          run pt_fan_in result=success
            task extract_orders try=1 result=success
            task extract_prices try=1 result=success
            task join try=1 result=success
    """)
    by = {s.name: s for s in spans}
    trigger, run = by["trigger pt_fan_in"], by["run pt_fan_in"]
    assert trigger.span_id == result["span_id"]
    assert run.parent_span_id == trigger.span_id
    assert run.attributes["cicd.pipeline.run.id"] == result["flow_run_id"]
    client_pid = trigger.resource["process.pid"]
    flow_pid = run.resource["process.pid"]
    assert client_pid != flow_pid and client_pid != serving.pid
    assert {by[n].resource["process.pid"] for n in by if n.startswith("task ")} == {flow_pid}
    assert len(store.runs(pipeline="pt_fan_in")) == 1
