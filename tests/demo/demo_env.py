"""Shared helpers of the demo and docs tests: the checkout, the env's executables, a clean environment."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrace.store import SpanStore

if TYPE_CHECKING:
    from docs_runner import Session

REPO = Path(__file__).resolve().parents[2]
# The cross-system example's Celery queue, one per test session: the machine's RabbitMQ is shared, and the
# example purges its queue before it runs.
DEMO_QUEUE = f"pipetrace_demo_cross-{uuid.uuid4().hex[:8]}"
BIN = Path(sys.executable).parent

# Variables of the developer's shell that would change what the demo does.
_DROP = ("AIRFLOW_HOME", "DAGSTER_HOME", "PREFECT_HOME", "PIPETRACE_DEMO_PARTS", "PIPETRACE_DEMO_BROKER",
         "PIPETRACE_EXPORTERS", "PIPETRACE_ENABLED", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT",
         "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "PIPETRACE_AUTO")


def ctrl_c_works() -> None:
    """``preexec_fn`` for a command the test stops with Ctrl+C (SIGINT): a test runner started in the
    background of a non-interactive shell ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler — the command would never see the test's Ctrl+C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with its own PIPETRACE_HOME and the env's executables first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(PIPETRACE_HOME=str(home), COLUMNS="200", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1", PIPETRACE_DEMO_QUEUE=DEMO_QUEUE)
    # Prefect's ephemeral API server is given 20 s to start by default; on a loaded 2-core CI machine that
    # is not always enough (tests/prefect/conftest.py gives it the same 180 s); a user's own setting wins
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    env.update(extra)
    return env


@dataclass
class DemoRun:
    session: Session
    out: str
    seconds: float  # of the demo alone, as it reports

    @property
    def home(self) -> Path:
        return self.session.home

    @property
    def store(self) -> SpanStore:
        return SpanStore(self.home / "traces.db")
