"""An existing SDK TracerProvider (vendor distro, Airflow's own) is joined, not replaced."""

import subprocess
import sys

SCRIPT = r'''
import os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

theirs = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(theirs))
trace.set_tracer_provider(provider)

import pipetrace
pipetrace.configure(home=sys.argv[1])
assert trace.get_tracer_provider() is provider
with pipetrace.task_span("python", "etl", "r1", "t"):
    with trace.get_tracer("user").start_as_current_span("user span"):
        pass
pipetrace.force_flush(5)
names = sorted(s.name for s in theirs.get_finished_spans())
ident = pipetrace.run_identity("python", "etl", "r1")
task = [s for s in theirs.get_finished_spans() if s.name == "task t"][0]
assert task.context.span_id == ident.task_span_id("t"), "derived ids on a foreign provider"
from pipetrace.store import SpanStore
stored = sorted(s.name for s in SpanStore(pipetrace.settings().store_path).trace(f"{ident.trace_id:032x}"))
print(names, stored)
'''


def test_existing_provider_gets_our_processors(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['task t', 'user span'] ['task t', 'user span']"
