"""A small Celery app for the examples, tests and benchmark: arithmetic tasks, a flaky task, a failing
task. Broker, result backend and queue come from the environment, so one module serves RabbitMQ,
Redis and ``memory://``:

    PIPETRACE_EXAMPLE_BROKER=redis://127.0.0.1:6379/0 PIPETRACE_EXAMPLE_QUEUE=etl \\
        pipetrace run -- celery -A pipeline_app worker -c 2

On a Redis shared with others, ``PIPETRACE_EXAMPLE_KEYPREFIX=mine:`` keeps every key of the broker and the
result backend under that prefix (kombu's and Celery's ``global_keyprefix``).
"""

from __future__ import annotations

import os
import signal

from celery import Celery

app = Celery(
    "pipeline_app",
    broker=os.environ.get("PIPETRACE_EXAMPLE_BROKER", "memory://"),
    backend=os.environ.get("PIPETRACE_EXAMPLE_BACKEND", "cache+memory://"),
)
app.conf.update(
    task_default_queue=os.environ.get("PIPETRACE_EXAMPLE_QUEUE", "celery"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
if os.environ.get("PIPETRACE_EXAMPLE_KEYPREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["PIPETRACE_EXAMPLE_KEYPREFIX"]}
    app.conf.result_backend_transport_options = {"global_keyprefix": os.environ["PIPETRACE_EXAMPLE_KEYPREFIX"]}


class ExpectedError(Exception):
    """A failure the task declares in ``throws``: an outcome, not an error."""


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(bind=True, max_retries=5)
def flaky(self, x: int) -> int:  # type: ignore[no-untyped-def]
    """Fails on its first two attempts, succeeds on the third."""
    if self.request.retries < 2:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries + 1} failed"), countdown=0.05)
    return x


@app.task
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@app.task(throws=(ExpectedError,))
def expected(x: int) -> int:
    raise ExpectedError(f"expected {x}")


@app.task(acks_late=True)
def die(x: int) -> int:
    """Kills its own pool process (SIGKILL, as the OOM killer would): acks_late, so Celery fails it."""
    os.kill(os.getpid(), signal.SIGKILL)
    return x


@app.task
def noop() -> None:
    return None


@app.task
def whoami() -> int:
    return os.getpid()


if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "1":
    # Interop examples: opentelemetry-instrumentation-celery in this process, exporting to pipetrace's store
    # (pipetrace's provider; the benchmarks' reference is ``setup_reference_tracing`` below, without pipetrace).
    import pipetrace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    pipetrace.get_tracer()
    CeleryInstrumentor().instrument()


def setup_reference_tracing() -> None:
    """``opentelemetry-instrumentation-celery`` set up as its own docs show a user, with no pipetrace:
    a plain SDK ``TracerProvider``, a ``BatchSpanProcessor`` and the OTLP/HTTP exporter (endpoint from
    ``OTEL_EXPORTER_OTLP_ENDPOINT``). The benchmarks' reference; a producer calls it at start, a prefork
    worker in each pool child (``worker_process_init``, as the instrumentation's docs advise)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "pipeline_app"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()


if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    from celery.signals import worker_process_init

    worker_process_init.connect(lambda *args, **kwargs: setup_reference_tracing(), weak=False)
