"""Real Celery workers of ``queue_app`` started through ``pipetrace run --``, and what the tests read
from them: their processes' RSS and the spans they stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared_services import RABBIT, REDIS, delete_prefixed_keys

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def key_prefix_of(queue: str) -> str:
    """Every Redis key of a test lives under its queue's name (queue names carry a random suffix): the
    machine's Redis is shared, so a test deletes its own keys and never flushes a database."""
    return f"pipetrace-test:{queue}:"


def queue_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def delete_rabbit_queue(name: str) -> None:
    """RabbitMQ keeps Celery's durable queues after a test: remove this test's queue."""
    from kombu import Connection

    with Connection(RABBIT, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def redis_url() -> str:
    """The shared Redis, DB 0: keys are kept apart by ``RQ_KEYPREFIX``, never by database number."""
    return REDIS


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PIPETRACE_HOME=str(home), PIPETRACE_EXPORT_INTERVAL="0.2",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PIPETRACE_AUTO", None)
    for var in ("PIPETRACE_EXPORTERS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", "PIPETRACE_ENABLED"):
        env.pop(var, None)
    env.update(extra)
    return env


class Worker:
    """One ``celery worker`` (prefork) on its own queue; ``stop()`` is a warm shutdown (SIGTERM)."""

    def __init__(self, name: str, env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.env, self.proc, self.log = name, env, proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def rss_mb(self) -> dict[str, float]:
        """RSS of the main process and of each pool child, in MB."""
        rss = {"main": rss_of(self.pid)}
        for i, child in enumerate(sorted(self.children())):
            rss[f"child{i}"] = rss_of(child)
        return rss

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"worker {self.name} did not stop within {timeout} s (warm shutdown)") from exc
        delete_prefixed_keys(self.env["RQ_KEYPREFIX"])
        return self.proc.returncode


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_worker(home: Path, broker: str, queue: str, *, concurrency: int = 2, name: str | None = None,
                 env: Mapping[str, str] | None = None, extra: list[str] | None = None) -> Worker:
    name = name or f"rq-{uuid.uuid4().hex[:8]}"
    full_env = base_env(home, RQ_BROKER=broker, RQ_QUEUE=queue, RQ_KEYPREFIX=key_prefix_of(queue), **dict(env or {}))
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"worker-{name}.log"
    cmd = [str(BIN / "pipetrace"), "run", "--", str(BIN / "celery"), "-A", "queue_app", "worker", "-P", "prefork",
           "-c", str(concurrency), "-Q", queue, "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
           "--without-heartbeat", "-l", "info", *(extra or [])]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=HERE, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if b" ready." in log.read_bytes():
            return Worker(name, full_env, proc, log)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"celery worker {name} did not start:\n" + log.read_text()[-3000:])


def run_traced(script: str, *args: str, env: Mapping[str, str], timeout: float = 240) -> str:
    """Run ``python script args`` from this folder under ``pipetrace run --``; its stdout."""
    cmd = [str(BIN / "pipetrace"), "run", "--", str(BIN / "python"), script, *args]
    out = subprocess.run(cmd, cwd=HERE, env=dict(env), capture_output=True, timeout=timeout)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return out.stdout.decode()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
