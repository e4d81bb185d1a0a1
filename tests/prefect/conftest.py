"""Prefect test set-up: one PREFECT_HOME (and so one ephemeral server) per session, instrumentation on
per test, the examples importable, span trees as text."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before prefect is imported anywhere: a private Prefect home and a quiet, offline ephemeral server.
_PREFECT_HOME = tempfile.mkdtemp(prefix="pipetrace-prefect-tests-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.pop("PREFECT_API_URL", None)

from pipetrace.store import SpanRecord  # noqa: E402
from span_tree import span_tree  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_dags" / "prefect"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture
def instrumented(traced) -> Iterator[object]:  # noqa: ANN001 - the shared fixture from tests/conftest.py
    from pipetrace.integrations.prefect import instrument, uninstrument

    assert instrument()
    yield traced
    uninstrument()


@pytest.fixture(params=["native-on", "native-off"])
def native(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Prefect's own run telemetry on (its default) or off."""
    from prefect.settings import PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY, temporary_settings

    on = request.param == "native-on"
    with temporary_settings(updates={PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY: on}):
        yield on


SHOW = ("pipetrace.task.try_number", "pipetrace.task.map_index", "cicd.pipeline.task.run.result",
        "cicd.pipeline.result", "pipetrace.batch.size")
SHORT = {"pipetrace.task.try_number": "try", "pipetrace.task.map_index": "i",
         "cicd.pipeline.task.run.result": "result", "cicd.pipeline.result": "result",
         "pipetrace.batch.size": "size"}


def tree(spans: list[SpanRecord], show: tuple[str, ...] = SHOW) -> str:
    """Every span as an indented line ``name k=v ...`` (see span_tree), with short attribute names."""
    return span_tree(spans, show, SHORT)


def dedent(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    pad = min(len(ln) - len(ln.lstrip()) for ln in lines)
    return "\n".join(ln[pad:].rstrip() for ln in lines)
