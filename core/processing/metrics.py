"""OTel metrics derived from spans: run and task durations and error counts.

Names follow the OTel CICD semantic conventions where they exist (``cicd.pipeline.run.duration``,
``cicd.pipeline.run.errors``, ``cicd.pipeline.run.active`` is left to orchestrators that know it); tasks,
which the conventions do not cover, use the ``pipetrace.`` namespace. Each span is turned into
measurements once, as it ends (a span processor), or from the store (``record_store``) to backfill.

Enable live with PIPETRACE_METRICS=true or ``pipetrace.processing.metrics.enable()``: it adds the
processor to pipetrace's tracer provider and, unless given a ``MeterProvider``, builds one exporting like
the traces do (OTLP when an endpoint is configured; console when the console exporter is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import attributes as A
from ..config import Settings
from ..store.records import SpanRecord, from_readable
from ..util.ratelimit import warn_once_per
from . import runtime

log = logging.getLogger("pipetrace.metrics")

RUN_DURATION = "cicd.pipeline.run.duration"
RUN_ERRORS = "cicd.pipeline.run.errors"
TASK_DURATION = "pipetrace.task.duration"
TASK_ERRORS = "pipetrace.task.errors"
TASK_QUEUE_WAIT = "pipetrace.task.queue_wait"
# Explicit buckets in seconds: pipeline work spans sub-second tasks to multi-hour runs.
BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
RUN_STATE_FINALIZING = "finalizing"


class SpanMetrics:
    """Instruments on one meter; ``record(span_record)`` turns a finished span into measurements."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        meter = meter_provider.get_meter("pipetrace")
        self.run_duration = meter.create_histogram(
            RUN_DURATION, unit="s", description="Duration of a pipeline run.",
            explicit_bucket_boundaries_advisory=list(BUCKETS_S))
        self.run_errors = meter.create_counter(
            RUN_ERRORS, unit="{error}", description="Pipeline runs that ended in an error.")
        self.task_duration = meter.create_histogram(
            TASK_DURATION, unit="s", description="Duration of a task attempt.",
            explicit_bucket_boundaries_advisory=list(BUCKETS_S))
        self.task_errors = meter.create_counter(
            TASK_ERRORS, unit="{error}", description="Task attempts that ended in an error.")
        self.queue_wait = meter.create_histogram(
            TASK_QUEUE_WAIT, unit="s", description="Time a task attempt waited in a queue before it started.",
            explicit_bucket_boundaries_advisory=list(BUCKETS_S))

    def record(self, span: SpanRecord) -> None:
        attrs = span.attributes
        seconds = max(0, span.end_ns - span.start_ns) / 1e9
        failed = span.status == "ERROR" or (span.result or "") in A.FAILED_RESULTS
        if span.is_run:
            labels: dict[str, Any] = {A.PIPELINE_NAME: span.pipeline or "", "cicd.pipeline.run.state":
                                      RUN_STATE_FINALIZING, A.PIPELINE_RESULT: span.result or
                                      (A.RESULT_FAILURE if failed else A.RESULT_SUCCESS)}
            if span.system:
                labels[A.SYSTEM] = span.system
            self.run_duration.record(seconds, labels)
            if failed:
                self.run_errors.add(1, {A.PIPELINE_NAME: span.pipeline or "",
                                        A.ERROR_TYPE: str(attrs.get(A.ERROR_TYPE) or "_OTHER")})
            return
        if span.task is None or not span.name.startswith("task "):
            return
        labels = {A.PIPELINE_NAME: span.pipeline or "", A.TASK_NAME: span.task,
                  A.TASK_RESULT: span.result or (A.RESULT_FAILURE if failed else A.RESULT_SUCCESS)}
        if span.system:
            labels[A.SYSTEM] = span.system
        self.task_duration.record(seconds, labels)
        if failed:
            self.task_errors.add(1, {A.PIPELINE_NAME: span.pipeline or "", A.TASK_NAME: span.task,
                                     A.ERROR_TYPE: str(attrs.get(A.ERROR_TYPE) or "_OTHER")})
        queued = attrs.get(A.QUEUED_MS)
        if isinstance(queued, (int, float)) and queued >= 0:
            self.queue_wait.record(queued / 1000, {A.PIPELINE_NAME: span.pipeline or "", A.TASK_NAME: span.task})

    def record_store(self, spans: Iterable[SpanRecord]) -> int:
        n = 0
        for span in spans:
            self.record(span)
            n += 1
        return n


class SpanMetricsProcessor(SpanProcessor):
    """Records metrics as spans end; never raises into the traced code."""

    ignores_running_spans = True  # only ended spans count: see pipetrace.machinery.handle

    def __init__(self, metrics: SpanMetrics) -> None:
        self.metrics = metrics

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            name = span.name
            if name.startswith("run ") or name.startswith("task "):
                self.metrics.record(from_readable(span))
        except Exception as exc:
            warn_once_per(log, "span-metrics", "pipetrace: span metrics failed: %r", exc)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def default_meter_provider() -> MeterProvider:
    """A MeterProvider exporting where the traces go (OTLP and/or console), from pipetrace's settings."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader

    settings = runtime.settings()
    readers: list[MetricReader] = []
    if "otlp" in settings.exporters and settings.otlp_endpoint:
        endpoint = settings.otlp_endpoint
        if settings.otlp_protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

            readers.append(PeriodicExportingMetricReader(Grpc(endpoint=endpoint.split("://", 1)[-1],
                                                               headers=dict(settings.otlp_headers) or None)))
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

            url = endpoint if "://" in endpoint else f"http://{endpoint}"
            if url.rstrip("/").endswith("/v1/traces"):
                url = url.rstrip("/")[: -len("/v1/traces")]
            readers.append(PeriodicExportingMetricReader(Http(endpoint=url.rstrip("/") + "/v1/metrics",
                                                               headers=dict(settings.otlp_headers) or None)))
    if "console" in settings.exporters:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    return SdkMeterProvider(metric_readers=readers, resource=runtime.resource())


_enabled: SpanMetricsProcessor | None = None


def enable(meter_provider: MeterProvider | None = None) -> SpanMetricsProcessor | None:
    """Record span metrics from now on in this process (idempotent). Returns the processor, or None if
    pipetrace has no SDK tracer provider here (disabled)."""
    global _enabled
    if _enabled is not None:
        return _enabled
    processor = SpanMetricsProcessor(SpanMetrics(meter_provider or default_meter_provider()))
    if not runtime.add_processor(processor):
        return None
    _enabled = processor
    return processor


def disable() -> None:
    """Stop recording span metrics (removes the processor ``enable`` added)."""
    global _enabled
    if _enabled is not None:
        runtime.remove_processor(_enabled)
    _enabled = None


def _follow_setting(settings: Settings) -> None:
    """Span-derived metrics (PIPETRACE_METRICS): one processor, replaced on every configure()."""
    disable()
    if settings.metrics:
        enable()


runtime.on_configure(_follow_setting)
