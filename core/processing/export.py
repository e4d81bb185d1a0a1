"""Exporter set-up from settings: store (default), OTLP http/protobuf or gRPC with TLS/mTLS, console."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from ..config import ConfigError, Settings
from ..machinery import sdk
from ..store import SpanStore, StoreSpanExporter
from .processors import ExportQueue

log = logging.getLogger("pipetrace.export")

OTLP_INSTALL = 'pip install "pipetrace[otlp]"'
OTLP_MODULES = {"http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"}


STORE_LOCK_WAIT_S = 2.0
"""How long one store write waits for another process's write lock before the export thread gives up,
keeps the batch and retries (warning while the store stays locked). SQLite's own wait (60 s) would hold
the batch, later batches and shutdown behind one lock."""


class MissingExtra(ConfigError):
    """An exporter's optional packages are not installed: an install problem, not a bad setting. The
    rest of pipetrace (the local store) keeps working; the message says what to install."""


def otlp_missing(protocol: str) -> str | None:
    """Why the OTLP exporter for ``protocol`` cannot be imported here (None: it can)."""
    import importlib

    try:
        importlib.import_module(OTLP_MODULES.get(protocol, OTLP_MODULES["http/protobuf"]))
        if protocol == "grpc":
            importlib.import_module("grpc")
    except ImportError as exc:
        return f"{exc.name or exc} is not importable ({exc})"
    return None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def otlp_exporter(settings: Settings) -> SpanExporter:
    endpoint = settings.otlp_endpoint
    if not endpoint:
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT is required for the otlp exporter")
    headers = dict(settings.otlp_headers)
    if settings.otlp_protocol == "grpc":
        try:
            import grpc
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise MissingExtra(f"OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs `{OTLP_INSTALL}` ({exc})") from exc
        secure = endpoint.startswith("https://") or (not endpoint.startswith("http://") and not settings.otlp_insecure)
        credentials = None
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(settings.otlp_certificate),
                private_key=_read(settings.otlp_client_key),
                certificate_chain=_read(settings.otlp_client_certificate),
            )
        target = endpoint.split("://", 1)[-1]
        return GrpcExporter(endpoint=target, insecure=not secure, credentials=credentials,
                            headers=headers or None, timeout=settings.otlp_timeout_s)
    try:
        from ..machinery.otlpwire import http_exporter_class

        HttpExporter = http_exporter_class()  # the SDK's exporter, batches encoded to wire bytes directly
    except ImportError as exc:
        raise MissingExtra(f"the otlp exporter needs `{OTLP_INSTALL}` ({exc})") from exc
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    if not url.rstrip("/").endswith("/v1/traces"):
        url = url.rstrip("/") + "/v1/traces"
    client_cert = settings.otlp_client_certificate
    return HttpExporter(endpoint=url, headers=headers or None, timeout=settings.otlp_timeout_s,
                        certificate_file=settings.otlp_certificate or None,
                        client_certificate_file=client_cert or None,
                        client_key_file=settings.otlp_client_key or None,
                        session=_pinned_ca_session() if settings.otlp_certificate else None)


def _pinned_ca_session() -> Any:
    """A requests session that keeps the configured CA bundle.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session-level ``verify`` path
    (psf/requests#3829), which silently swaps OTEL_EXPORTER_OTLP_CERTIFICATE for the system bundle.
    """
    import requests

    class PinnedCASession(requests.Session):
        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                       cert: Any) -> dict[str, Any]:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if isinstance(self.verify, str) and verify is None:
                merged["verify"] = self.verify
            return merged

    return PinnedCASession()


OTLP_INTERVAL_S = 5.0
"""The OTLP queue's longest wait for a batch, as the SDK's ``BatchSpanProcessor`` (``OTEL_BSP_SCHEDULE_DELAY``,
5,000 ms): an HTTP request costs about as much as encoding 15 spans, so 20-span batches cost ~3x what full
512-span batches do per span. A full batch goes at once, and a flush or shutdown sends what is queued."""

STORE_INTERVAL_S = 2.0
"""The store queue's longest wait for a batch unless ``PIPETRACE_EXPORT_INTERVAL`` is set. A commit has a
fixed cost (~0.3 ms, and a WAL checkpoint every few dozen commits) whatever it holds: a 1.2 s, 50-task
Prefect flow made ~3 commits at 0.5 s, one now. A run span's end commits at once (``STORE_RUN_END_GAP_S``),
so a finished run is in the store as soon as before; a running one's spans are at most 2 s behind (the
viewer refreshes every 3 s, Celery's sweeper every 5 s, and its settle time, ``run_settle_s``, is 3.5 s so
that a message published as an attempt ends still reaches the store before its run is judged quiet). A
flush or exit still writes everything at once."""

STORE_RUN_END_GAP_S = 0.5
"""A run span's end writes the store queue's batch at once, or this long after its last write: many short
runs cost at most the commits the old 0.5 s interval made."""

CONSOLE_INTERVAL_S = 0.5
"""The console exporter's wait: a person watching it."""

_DEFAULTS = Settings()


def _bsp(env: Mapping[str, str], name: str, scale: float, fallback: float) -> float:
    """``OTEL_BSP_*`` variable ``name`` divided by ``scale``; ``fallback`` if unset or not a positive number."""
    raw = env.get(name, "").strip()
    if raw:
        try:
            value = float(raw) / scale
            if value > 0:
                return value
        except ValueError:
            pass
        log.warning("pipetrace: %s=%r is not a positive number; using %s", name, raw, fallback)
    return fallback


def queue_options(settings: Settings, name: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Batch size, queue bound and wait of exporter ``name``'s queue. ``PIPETRACE_EXPORT_INTERVAL`` (or
    ``configure(export_interval_s=…)``), when given, is every queue's wait. Unset: the store queue waits up
    to 2 s (``STORE_INTERVAL_S``) and writes at once when a run span ends (``run_end_gap_s``); the OTLP
    queue takes the OTel SDK's ``OTEL_BSP_SCHEDULE_DELAY`` (ms) and its 5 s default, and
    ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``/``OTEL_BSP_MAX_QUEUE_SIZE`` unless pipetrace's own are given."""
    env = os.environ if env is None else env
    interval, batch, size = settings.export_interval_s, settings.max_export_batch_size, settings.max_queue_size
    if name == "store":
        interval = STORE_INTERVAL_S if interval is None else interval
        return {"max_queue_size": size, "max_batch_size": min(batch, size), "interval_s": interval,
                "run_end_gap_s": min(STORE_RUN_END_GAP_S, interval)}
    if name == "otlp":
        def own(value: float, default: float, var: str) -> bool:
            return value != default or var in env

        if interval is None:
            interval = _bsp(env, "OTEL_BSP_SCHEDULE_DELAY", 1000, OTLP_INTERVAL_S)
        if not own(batch, _DEFAULTS.max_export_batch_size, "PIPETRACE_MAX_EXPORT_BATCH_SIZE"):
            batch = int(_bsp(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, batch))
        if not own(size, _DEFAULTS.max_queue_size, "PIPETRACE_MAX_QUEUE_SIZE"):
            size = int(_bsp(env, "OTEL_BSP_MAX_QUEUE_SIZE", 1, size))
    interval = CONSOLE_INTERVAL_S if interval is None else interval
    return {"max_queue_size": size, "max_batch_size": min(batch, size), "interval_s": interval}


def build_queues(settings: Settings) -> list[ExportQueue]:
    """One bounded background queue per configured exporter."""
    queues: list[ExportQueue] = []
    for name in settings.exporters:
        exporter: SpanExporter
        if name == "store":
            # rows read the plain dicts under the SDK's attribute mappings (the store may not reach into
            # the SDK itself; the machinery owns that)
            exporter = StoreSpanExporter(SpanStore(settings.store_path, repair=True, busy_timeout_s=STORE_LOCK_WAIT_S),
                                         span_attributes=sdk.span_attributes, attributes=sdk.plain_attributes)
        elif name == "otlp":
            from ..sampling import tail_exporter

            try:
                otlp = otlp_exporter(settings)
            except MissingExtra as exc:  # tracing and the other exporters go on without it
                others = [e for e in settings.exporters if e != "otlp"]
                log.warning("pipetrace: OTLP export is off in this process: %s; spans still go to %s",
                            exc, " and ".join(others) or "no exporter")
                continue
            exporter = tail_exporter(otlp, settings)  # itself unless tail sampling is on
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            continue
        # the local store keeps failed batches and retries them: its failures (a lock, a full disk) pass
        queues.append(ExportQueue(exporter, name=name, retry_failures=name == "store", **queue_options(settings, name)))
    return queues
