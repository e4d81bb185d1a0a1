"""Process-wide set-up: the tracer provider, its processing chain and the propagators.

If the process already has an SDK TracerProvider (a vendor distro, Airflow's own) our processors are
added to it and its id generator learns derived ids; otherwise we install our own provider.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider, sampling
from opentelemetry.trace import NoOpTracer, Tracer

from .. import config as _config
from ..attributes import SERVICE_NAME
from ..carriers import use_w3c_fast_path
from ..config import ConfigError, Settings
from ..machinery import sdk
from ..machinery.ids import DerivedIdGenerator
from ..util import losses
from ..util.ratelimit import limit_third_party_warnings, warn_once_per
from .export import build_queues
from .processors import PipelineProcessor, SpanTransform, apply_transforms

log = logging.getLogger("pipetrace")
TRACER_NAME = "pipetrace"

_lock = threading.RLock()


class _State:
    settings: Settings | None = None
    provider: TracerProvider | None = None
    owns_provider: bool = False
    processor: PipelineProcessor | None = None
    tracer: Tracer | None = None
    failed: bool = False
    transforms: list[SpanTransform] = []
    component: str | None = None  # this process's part of the pipeline (set_component), e.g. "airflow-task"


_state = _State()


def _sampler(settings: Settings) -> sampling.Sampler:
    from ..sampling import sampler_for

    run_consistent = sampler_for(settings)  # per-pipeline/adaptive rates, whole runs kept or dropped
    if run_consistent is not None:
        return run_consistent
    ratio = settings.sampler_arg if settings.sampler_arg is not None else 1.0
    base = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return base[settings.sampler]


def _explicit_service_name(settings: Settings) -> str | None:
    """The service name the user chose (OTEL_SERVICE_NAME, service.name in OTEL_RESOURCE_ATTRIBUTES or
    ``configure(service_name=...)``); None when only the default is there."""
    if os.environ.get("OTEL_SERVICE_NAME", "").strip() or settings.service_name != _config.Settings.service_name:
        return settings.service_name
    named = settings.resource_attributes.get(SERVICE_NAME)
    return str(named) if named else None


def service_name(settings: Settings) -> str:
    """What ``service.name`` is in this process: the user's choice, else the component's, else the default."""
    return _explicit_service_name(settings) or _state.component or settings.service_name


def set_component(name: str, *, override: bool = True) -> None:
    """Name this process's part of the pipeline (``celery-worker``, ``airflow-scheduler``, …): it becomes
    ``service.name`` unless the user set one, so a scheduler, its workers and a producer are told apart in
    a trace backend. Adapters call it once per process; ``override=False`` names only an unnamed process
    (a producer role must not rename a worker that also publishes). Never raises."""
    if _state.component == name or (not override and _state.component is not None):
        return
    try:
        with _lock:
            _state.component = name
            provider, current = _state.provider, _state.settings
            if provider is not None and _state.owns_provider and current is not None:
                sdk.update_resource(provider, Resource({SERVICE_NAME: service_name(current)}))
    except Exception as exc:  # pragma: no cover - defensive: naming must never break the traced
        warn_once_per(log, "set-component", "pipetrace: could not set the component name: %r", exc)


def component() -> str | None:
    return _state.component


def _resource(settings: Settings) -> Resource:
    attrs: dict[str, Any] = dict(settings.resource_attributes)
    attrs[SERVICE_NAME] = service_name(settings)
    attrs.setdefault("host.name", socket.gethostname())
    attrs["process.pid"] = os.getpid()
    return Resource.create(attrs)


def _propagators(settings: Settings) -> None:
    from opentelemetry.propagators.textmap import TextMapPropagator

    items: list[TextMapPropagator] = []
    for name in settings.propagators:
        if name == "none":
            continue
        if name == "tracecontext":
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            items.append(TraceContextTextMapPropagator())
        elif name == "baggage":
            from opentelemetry.baggage.propagation import W3CBaggagePropagator

            items.append(W3CBaggagePropagator())
        else:
            try:
                from importlib.metadata import entry_points

                (ep,) = entry_points(group="opentelemetry_propagator", name=name)
                items.append(ep.load()())
            except Exception as exc:
                raise ConfigError(f"OTEL_PROPAGATORS: propagator {name!r} is not installed ({exc!r})") from None
    textmap = CompositePropagator(items)
    propagate.set_global_textmap(textmap)
    plain_w3c = "tracecontext" in settings.propagators and set(settings.propagators) <= {"tracecontext", "baggage",
                                                                                          "none"}
    use_w3c_fast_path(textmap if plain_w3c else None)


def _after_fork() -> None:
    # A forked worker (Celery prefork, multiprocessing) is a new process: new pid on the resource.
    provider = _state.provider
    if provider is not None and _state.owns_provider:
        try:
            sdk.update_resource(provider, Resource({"process.pid": os.getpid()}))
        except Exception:  # pragma: no cover - defensive
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


_refused_scopes: list[Callable[[str], bool]] = []


def refuse_scopes(refused: Callable[[str], bool]) -> None:
    """Tracers of instrumentation scopes ``refused(name)`` is true for get a no-op tracer from pipetrace's
    own provider (an orchestrator's own tracer calls that nobody asked for, once our provider is global:
    not made at all is cheaper than made, queued and dropped by a transform). Idempotent."""
    with _lock:
        if refused not in _refused_scopes:
            _refused_scopes.append(refused)


def is_refused(name: str, predicates: Sequence[Callable[[str], bool]] | None = None) -> bool:
    """Whether a refused-scope predicate (``predicates``, else every one given to :func:`refuse_scopes`)
    is true for ``name``; a predicate that raises refuses nothing (logged once)."""
    for refused in _refused_scopes if predicates is None else predicates:
        try:
            if refused(name):
                return True
        except Exception as exc:  # a broken predicate refuses nothing
            warn_once_per(log, "refused-scope", "pipetrace: scope filter failed on %r: %r", name, exc)
    return False


class _Provider(TracerProvider):
    """The SDK provider pipetrace installs when the process has none: refused scopes get a no-op tracer."""

    def get_tracer(self, instrumenting_module_name: str, *args: Any, **kwargs: Any) -> Tracer:
        if _refused_scopes and is_refused(instrumenting_module_name):
            return NoOpTracer()
        return super().get_tracer(instrumenting_module_name, *args, **kwargs)


def configure(**overrides: Any) -> Settings:
    """Set pipetrace up for this process from the environment plus ``overrides``.

    Raises :class:`ConfigError` naming the bad setting. Calling it again replaces the exporters.
    """
    settings = _config.load(**overrides)
    _check_redaction(settings)
    losses.journal_to(settings.home if settings.active else None)
    with _lock:
        _teardown(settings.flush_timeout_s)
        _state.settings = settings
        _state.failed = False
        if not settings.active:
            _state.tracer = NoOpTracer()
            return settings
        _propagators(settings)
        limit_third_party_warnings()
        processor = PipelineProcessor(build_queues(settings), [*_builtin_transforms(settings), *_state.transforms])
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider) and not getattr(existing, "_pipetrace_owned", False):
            provider = existing
            sdk.learn_derived_ids(provider)
            _state.owns_provider = False
        elif isinstance(existing, TracerProvider):
            provider = existing
            sdk.update_resource(provider, _resource(settings))  # (cached tracers follow)
            sdk.apply_sampler(provider, _sampler(settings))
            _state.owns_provider = True
        else:
            provider = _Provider(
                sampler=_sampler(settings), resource=_resource(settings), id_generator=DerivedIdGenerator(),
                # no SDK cut of attribute values (it would cut before redaction): the redaction transform
                # applies OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT after masking (attribute_value_length_limit)
                span_limits=SpanLimits(max_links=settings.span_link_limit, max_attribute_length=SpanLimits.UNSET,
                                       max_span_attribute_length=SpanLimits.UNSET),
                shutdown_on_exit=False,
            )
            provider._pipetrace_owned = True  # type: ignore[attr-defined]
            trace.set_tracer_provider(provider)
            _state.owns_provider = True
        provider.add_span_processor(processor)
        _state.provider = provider
        _state.processor = processor
        _state.tracer = provider.get_tracer(TRACER_NAME)
        for hook in _configure_hooks:
            hook(settings)
        return settings


_configure_hooks: list[Callable[[Settings], None]] = []


def on_configure(hook: Callable[[Settings], None]) -> None:
    """Call ``hook(settings)`` at the end of every :func:`configure` (span-derived metrics follow
    PIPETRACE_METRICS this way): a part of processing that needs the provider registers itself
    instead of runtime importing it."""
    if hook not in _configure_hooks:
        _configure_hooks.append(hook)


def provider() -> TracerProvider | None:
    """The SDK provider pipetrace's chain is on (None before configure or when disabled)."""
    return _state.provider


def resource() -> Resource:
    """This process's resource: the provider's, or what configure would give it."""
    current = _state.provider
    return current.resource if current is not None else _resource(settings())


def add_processor(processor: SpanProcessor) -> bool:
    """Add a span processor next to pipetrace's chain (configures first); False when tracing is off."""
    get_tracer()
    current = _state.provider
    if current is None:
        return False
    current.add_span_processor(processor)
    return True


def remove_processor(processor: SpanProcessor) -> None:
    current = _state.provider
    if current is not None:
        sdk.remove_processor(current, processor)


def transform(span: ReadableSpan) -> ReadableSpan | None:
    """``span`` through the chain's transforms (redaction, …), as an exporter would get it."""
    processor = _state.processor
    return apply_transforms(processor.transforms, span) if processor is not None else span


def _check_redaction(settings: Settings) -> None:
    """A bad PIPETRACE_REDACTION_MODES is a configuration error, raised before the old chain is torn down."""
    if settings.redaction:
        from ..redaction import redactor_for

        try:
            redactor_for(settings)
        except ValueError as exc:
            raise ConfigError(f"PIPETRACE_REDACTION_MODES: {exc}") from None


def _builtin_transforms(settings: Settings) -> list[SpanTransform]:
    """Transforms the settings ask for, ahead of any added one: redaction first, before every exporter."""
    from ..redaction import transform_for

    # it reads the plain dicts under the SDK's attribute mappings (redaction may not reach into the SDK)
    redaction = transform_for(settings, span_attributes=sdk.span_attributes, attributes=sdk.plain_attributes)
    return [redaction] if redaction is not None else []


def _teardown(timeout_s: float) -> None:
    processor = _state.processor
    if processor is not None:
        processor.shutdown_within(timeout_s)
        if _state.provider is not None:  # detach the old chain from the provider
            sdk.remove_processor(_state.provider, processor)
    _state.processor = None
    _state.tracer = None


def get_tracer() -> Tracer:
    """pipetrace's tracer; configures from the environment on first use and never raises.

    A bad environment here (inside somebody's task) logs one clear error and disables tracing for the
    process instead of raising into the task.
    """
    tracer = _state.tracer
    if tracer is not None:
        return tracer
    with _lock:
        if _state.tracer is None:
            try:
                configure()
            except Exception as exc:
                if not _state.failed:
                    log.error("pipetrace disabled in this process: %s", exc)
                _state.failed = True
                _state.tracer = NoOpTracer()
        return _state.tracer or NoOpTracer()


def settings() -> Settings:
    if _state.settings is None:
        get_tracer()
    return _state.settings or Settings()


def is_configured() -> bool:
    return _state.tracer is not None


def has_transform(transform: SpanTransform) -> bool:
    """Whether ``transform`` is in the chain already (adapters add theirs once per process)."""
    return transform in _state.transforms


def add_transform(transform: SpanTransform) -> None:
    """Add a span transform (redaction, tail buffer…) to the chain, before every exporter."""
    with _lock:
        _state.transforms.append(transform)
        if _state.processor is not None and _state.processor.transforms is not _state.transforms:
            _state.processor.transforms.append(transform)


def force_flush(timeout_s: float | None = None, exporters: tuple[str, ...] | None = None) -> bool:
    """Wait until queued spans are exported (all exporters, or only those named), within the bound."""
    processor = _state.processor
    if processor is None:
        return True
    bound = timeout_s if timeout_s is not None else (_state.settings or Settings()).flush_timeout_s
    if exporters is None:
        return processor.force_flush(int(bound * 1000))
    return processor.flush_only(exporters, bound)


def shutdown(timeout_s: float | None = None) -> None:
    """Flush and stop every exporter, within ``timeout_s`` (default ``flush_timeout_s``, 5 s)."""
    with _lock:
        bound = timeout_s if timeout_s is not None else (_state.settings or Settings()).flush_timeout_s
        try:
            _teardown(bound)
        except Exception as exc:  # pragma: no cover - defensive
            warn_once_per(log, "shutdown", "pipetrace: shutdown failed: %r", exc)


def stats() -> dict[str, dict[str, int]]:
    """Per exporter queue: exported/dropped/failed/queued; ``redaction``: strings cut to the length
    limit, spans dropped because redaction failed, known secrets held; ``store_buffer`` (PostgreSQL
    store only): spans buffered locally, drained to the server, dropped with the buffer full; ``lost``: every
    span lost in this process, by cause (:data:`pipetrace.util.losses.CAUSES`; ``<cause>.<exporter>`` for an
    exporter's)."""
    from ..redaction import stats as redaction_stats

    processor = _state.processor
    out = processor.stats() if processor is not None else {}
    redaction = redaction_stats()
    if processor is not None and redaction:
        out["redaction"] = redaction
    from ..store.buffer import stats as buffer_stats

    if processor is not None and (buffer := buffer_stats()):
        out["store_buffer"] = buffer
    out["lost"] = losses.snapshot()
    return out


atexit.register(shutdown)
