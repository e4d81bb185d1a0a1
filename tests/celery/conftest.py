"""Real Celery workers (prefork, concurrency 2) started through ``pipetrace run --`` on real brokers.

The brokers are shared with others: each worker has its own queue, and on Redis (DB 0) every key of its
broker and result backend lives under a prefix named after that queue, deleted when the worker stops."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_services import RABBIT, REDIS, delete_prefixed_keys

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "example_dags" / "celery"
BIN = Path(sys.executable).parent


def broker_url(kind: str) -> str:
    return RABBIT if kind == "rabbitmq" else REDIS


class Worker:
    def __init__(self, home: Path, env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
        self.home, self.env, self.proc, self.log = home, env, proc, log
        self.key_prefix = env["PIPETRACE_EXAMPLE_KEYPREFIX"]

    def produce(self, mode: str, *, traced: bool = True, extra_env: dict[str, str] | None = None) -> Any:
        env = dict(self.env, **(extra_env or {}))
        cmd = [str(BIN / "python"), "scenario.py", mode]
        if traced:
            cmd = [str(BIN / "pipetrace"), "run", "--", *cmd]
        out = subprocess.run(cmd, cwd=APP_DIR, env=env, capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        delete_prefixed_keys(self.key_prefix)


def start_worker(home: Path, broker: str, backend: str, *, traced: bool = True, extra: list[str] | None = None,
                 extra_env: dict[str, str] | None = None) -> Worker:
    queue = f"pt-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PIPETRACE_HOME=str(home), PIPETRACE_EXAMPLE_BROKER=broker,
               PIPETRACE_EXAMPLE_BACKEND=backend, PIPETRACE_EXAMPLE_QUEUE=queue,
               PIPETRACE_EXAMPLE_KEYPREFIX=f"pipetrace-test:{queue}:",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PIPETRACE_EXPORT_INTERVAL="0.2",
               **(extra_env or {}))
    env.pop("PIPETRACE_AUTO", None)
    log = home / f"worker-{queue}.log"
    cmd = [str(BIN / "celery"), "-A", "pipeline_app", "worker", "-P", "prefork", "-c", "2", "-Q", queue,
           "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info",
           *(extra or [])]
    if traced:
        cmd = [str(BIN / "pipetrace"), "run", "--", *cmd]
    home.mkdir(parents=True, exist_ok=True)
    fh = open(log, "wb")
    proc = subprocess.Popen(cmd, cwd=APP_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if b" ready." in log.read_bytes():
            return Worker(home, env, proc, log)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # it may have exited already: its log says why
        os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("celery worker did not start:\n" + log.read_text()[-3000:])


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Worker] = []

    def factory(kind: str = "redis", **kw: Any) -> Worker:
        w = start_worker(tmp_path / "home", broker_url(kind), REDIS, **kw)
        started.append(w)
        return w

    yield factory
    for w in started:
        w.stop()


def spans_of(home: Path) -> list[Any]:
    from pipetrace.store import SpanStore

    store = SpanStore(home / "traces.db")
    rows = store._query("SELECT trace_id FROM spans GROUP BY trace_id")
    out = []
    for (tid,) in rows:
        out.extend(store.trace(tid))
    store.close()
    return out
