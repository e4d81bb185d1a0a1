"""Settings from ``PIPETRACE_*`` and standard ``OTEL_*`` variables, overridable by ``configure(**kw)``.

Validation happens once, at start-up: a bad value raises :class:`ConfigError` naming the variable and
what it accepts, instead of failing later inside somebody's task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

EXPORTERS = ("store", "otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
)
PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value pipetrace cannot use; the message names the setting and what is allowed."""


class SecretStr(str):
    """A str whose repr never shows it: keys in Settings stay out of logs and ``pipetrace doctor``."""

    def __repr__(self) -> str:
        return "'***'"


class StoreUrl(str):
    """PIPETRACE_STORE: its repr masks the password (Settings are printed by ``pipetrace doctor``)."""

    def __repr__(self) -> str:
        from ..store.target import mask

        return repr(str(mask(self[:])))  # [:] is a plain str


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    home: Path = field(default_factory=lambda: Path.home() / ".pipetrace")
    exporters: tuple[str, ...] = ("store",)
    service_name: str = "pipetrace"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    otlp_endpoint: str | None = None
    otlp_protocol: str = "http/protobuf"
    otlp_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    otlp_certificate: str | None = None
    otlp_client_key: str | None = None
    otlp_client_certificate: str | None = None
    otlp_timeout_s: float = 10.0
    otlp_insecure: bool = False
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    sdk_disabled: bool = False
    flush_timeout_s: float = 5.0
    max_queue_size: int = 20_000
    max_export_batch_size: int = 512
    export_interval_s: float | None = None  # None: each exporter's own wait (processing.export.queue_options)
    span_link_limit: int = 1024
    attribute_value_length_limit: int = 8192
    redaction: bool = True
    redaction_modes: Mapping[str, str] = field(default_factory=dict)
    redaction_key: SecretStr | None = field(default=None, repr=False)
    redaction_sensitive_keys: tuple[str, ...] = ()
    redaction_allow_keys: tuple[str, ...] = ()
    redaction_logs: bool = False
    sample_rates: Mapping[str, float] = field(default_factory=dict)
    sample_targets: Mapping[str, float] = field(default_factory=dict)
    sample_adapt_interval_s: float = 10.0
    tail_sampling: bool = False
    tail_slow_ms: float | None = None
    tail_local_retention_h: float = 24.0
    tail_max_hold_h: float = 48.0
    require_tls: bool = False
    metrics: bool = False
    store: StoreUrl | None = None
    run_timeout_s: float = 21_600.0
    run_settle_s: float = 3.5
    run_sweep_s: float = 5.0

    @property
    def store_path(self) -> Path:
        return self.home / "traces.db"

    @property
    def active(self) -> bool:
        return self.enabled and not self.sdk_disabled

    def redacted_headers(self) -> dict[str, str]:
        """Header names with values hidden: exporter headers carry API keys and never reach a log."""
        return {k: "***" for k in self.otlp_headers}


# setting name -> environment variable(s), first one set wins
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "enabled": ("PIPETRACE_ENABLED",),
    "home": ("PIPETRACE_HOME",),
    "exporters": ("PIPETRACE_EXPORTERS",),
    "service_name": ("OTEL_SERVICE_NAME",),
    "resource_attributes": ("OTEL_RESOURCE_ATTRIBUTES",),
    "otlp_endpoint": ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    "otlp_protocol": ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    "otlp_headers": ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    "otlp_certificate": ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    "otlp_client_key": ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
    "otlp_client_certificate": (
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    ),
    "otlp_timeout_s": ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    "otlp_insecure": ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
    "sampler": ("OTEL_TRACES_SAMPLER",),
    "sampler_arg": ("OTEL_TRACES_SAMPLER_ARG",),
    "propagators": ("OTEL_PROPAGATORS",),
    "sdk_disabled": ("OTEL_SDK_DISABLED",),
    "flush_timeout_s": ("PIPETRACE_FLUSH_TIMEOUT",),
    "max_queue_size": ("PIPETRACE_MAX_QUEUE_SIZE",),
    "max_export_batch_size": ("PIPETRACE_MAX_EXPORT_BATCH_SIZE",),
    "export_interval_s": ("PIPETRACE_EXPORT_INTERVAL",),
    "span_link_limit": ("PIPETRACE_SPAN_LINK_LIMIT",),
    "attribute_value_length_limit": ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
    "redaction": ("PIPETRACE_REDACTION",),
    "redaction_modes": ("PIPETRACE_REDACTION_MODES",),
    "redaction_key": ("PIPETRACE_REDACTION_KEY",),
    "redaction_sensitive_keys": ("PIPETRACE_REDACTION_SENSITIVE_KEYS",),
    "redaction_allow_keys": ("PIPETRACE_REDACTION_ALLOW_KEYS",),
    "redaction_logs": ("PIPETRACE_REDACTION_LOGS",),
    "sample_rates": ("PIPETRACE_SAMPLE_RATES",),
    "sample_targets": ("PIPETRACE_SAMPLE_TARGETS",),
    "sample_adapt_interval_s": ("PIPETRACE_SAMPLE_ADAPT_INTERVAL",),
    "tail_sampling": ("PIPETRACE_TAIL_SAMPLING",),
    "tail_slow_ms": ("PIPETRACE_TAIL_SLOW_MS",),
    "tail_local_retention_h": ("PIPETRACE_TAIL_LOCAL_RETENTION",),
    "tail_max_hold_h": ("PIPETRACE_TAIL_MAX_HOLD",),
    "require_tls": ("PIPETRACE_REQUIRE_TLS",),
    "metrics": ("PIPETRACE_METRICS",),
    "store": ("PIPETRACE_STORE",),
    "run_timeout_s": ("PIPETRACE_RUN_TIMEOUT",),
    "run_settle_s": ("PIPETRACE_RUN_SETTLE",),
    "run_sweep_s": ("PIPETRACE_RUN_SWEEP",),
}

DESCRIPTIONS: dict[str, str] = {
    "enabled": "Turn pipetrace on or off everywhere (adapters, run launcher).",
    "home": "Directory of the embedded store (traces.db) and local state.",
    "exporters": f"Comma list of {', '.join(EXPORTERS)}; default store, plus otlp when an OTLP endpoint is set.",
    "service_name": ("service.name of every span's resource. Unset, each component names itself: "
                     "`<celery app>-worker` / `<celery app>-producer`, `airflow-scheduler` / `airflow-task` / "
                     "`airflow-dag-processor`, `dagster-run-worker` / `dagster-step-worker`, `prefect-flow`; "
                     "a `service.name` in OTEL_RESOURCE_ATTRIBUTES wins over those too."),
    "resource_attributes": "Extra resource attributes, key=value,key=value.",
    "otlp_endpoint": "OTLP collector endpoint (http://host:4318 or grpc host:4317).",
    "otlp_protocol": f"One of {', '.join(PROTOCOLS)}.",
    "otlp_headers": "Exporter headers key=value,… (never logged).",
    "otlp_certificate": "CA bundle to verify the collector's TLS certificate.",
    "otlp_client_key": "Client private key for mTLS.",
    "otlp_client_certificate": "Client certificate for mTLS.",
    "otlp_timeout_s": "Export timeout in seconds (OTEL_* value in seconds).",
    "otlp_insecure": "gRPC only: plaintext connection.",
    "sampler": f"One of {', '.join(SAMPLERS)}.",
    "sampler_arg": "Ratio 0..1 for the traceidratio samplers.",
    "propagators": f"Comma list of {', '.join(PROPAGATORS)}.",
    "sdk_disabled": "OTEL_SDK_DISABLED=true turns every span off.",
    "flush_timeout_s": "Upper bound of the flush at shutdown, seconds.",
    "run_timeout_s": "Celery/kombu runs: seconds without activity (after the last ETA) before an unfinished run "
                     "is closed with result timeout.",
    "run_settle_s": "Celery/kombu runs: quiet seconds after the last message was handled before the run is closed; "
                    "keep it above the store's wait (export_interval_s, 2 s unset) plus a margin: a message "
                    "published as an attempt ends may reach the store one wait after that attempt.",
    "run_sweep_s": "Celery/kombu runs: seconds between a worker's sweeps for ended runs (0: no sweeper thread).",
    "max_queue_size": "Spans held per exporter queue before new ones are dropped (and counted).",
    "max_export_batch_size": "Spans per export batch.",
    "export_interval_s": "Longest wait (seconds) of an ended span before its exporter's background write. Unset, "
                         "each exporter has its own: the store 2 s, and at once when a run span ends (at most one "
                         "such write per 0.5 s), so a run is one commit; OTLP 5 s or OTEL_BSP_SCHEDULE_DELAY; "
                         "console 0.5 s. A flush, a full batch and the process's exit write at once (docs/scale.md).",
    "span_link_limit": "Most links kept on one span (the SDK default of 128 drops links of large batches).",
    "attribute_value_length_limit": "Longest string kept in a span name, attribute, event or link (characters; "
                                    "0 = no limit); cut after redaction, counted in stats()['redaction'].",
    "redaction": "Mask secrets in span names, attributes, events, links and resource before store and export.",
    "redaction_modes": "Per detector mask|token|drop|off, e.g. email=token,card=drop,default=mask (docs/security.md).",
    "redaction_key": "HMAC-SHA256 key for token mode: the same value gives the same token (never logged).",
    "redaction_sensitive_keys": "Extra attribute-key words (comma list) whose values are always secret.",
    "redaction_logs": "Also mask secrets (detectors + known secrets) in log records, via a filter on the root "
                      "logger's handlers.",
    "redaction_allow_keys": "Allow-list mode: only these attribute keys (globs, comma list) leave the process.",
    "sample_rates": "Head sampling rate per pipeline glob, e.g. etl_*=0.1,billing=1 (run-consistent).",
    "sample_targets": "Adaptive sampling: target spans per second per pipeline glob, e.g. celery_*=50.",
    "sample_adapt_interval_s": "Seconds between adaptive rate adjustments.",
    "tail_sampling": "Hold each run's spans on disk until the run ends, then keep failed/retried/slow runs.",
    "tail_slow_ms": "Tail: a run slower than this (ms) is kept, besides the pipeline's p95.",
    "tail_local_retention_h": "Hours the local store keeps spans of runs sampled out by the tail.",
    "tail_max_hold_h": "Hours a run's spans wait for its end before being decided without it.",
    "require_tls": "Refuse a plaintext OTLP endpoint that is not loopback (configure raises).",
    "metrics": "Record run/task duration and error metrics (cicd.pipeline.run.duration, …) from spans and "
               "export them with the OTLP/console exporters.",
    "store": "Fleet store, environment only: postgresql://user:pw@host:5432/db?schema=pipetrace (spans, "
             "analysis and tail state of every host; docs/scale.md). Unset: SQLite under home. Password never shown.",
}


def _bool(name: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use one of true/false/1/0/yes/no/on/off")


def _float(name: str, raw: object, *, low: float | None = None, high: float | None = None) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value != value or (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}={raw!r} is out of range; it must be {bounds}")
    return value


def _int(name: str, raw: object, *, low: int = 1) -> int:
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} is out of range; it must be at least {low}")
    return value


def _list(name: str, raw: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = [str(x).strip().lower() for x in (raw.split(",") if isinstance(raw, str) else raw)]  # type: ignore[union-attr,attr-defined]
    items = [x for x in items if x]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise ConfigError(f"{name}: unknown value(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def _pairs(name: str, raw: object, *, secret: bool = False) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for i, part in enumerate(str(raw).split(",")):
        if not part.strip():
            continue
        if "=" not in part:
            shown = f"item {i + 1}" if secret else repr(part.strip())  # header values are API keys
            raise ConfigError(f"{name}: {shown} is not key=value (expected k1=v1,k2=v2)")
        k, v = part.split("=", 1)
        if not k.strip():
            raise ConfigError(f"{name}: empty key in {part.strip()!r}")
        out[unquote(k.strip())] = unquote(v.strip())
    return out


def _rates(name: str, raw: object, *, high: float | None) -> dict[str, float]:
    """``glob=number,…`` → {glob: number}; rates lie in 0..1, targets are ≥ 0."""
    pairs = {str(k): v for k, v in raw.items()} if isinstance(raw, Mapping) else _pairs(name, raw)
    return {k: _float(f"{name} ({k})", v, low=0.0, high=high) for k, v in pairs.items()}


def _words(raw: object) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    return tuple(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_tls(settings: Settings) -> None:
    """PIPETRACE_REQUIRE_TLS: spans leave the machine only over TLS (loopback collectors excepted)."""
    endpoint = settings.otlp_endpoint
    if not settings.require_tls or "otlp" not in settings.exporters or not endpoint:
        return
    has_scheme = "://" in endpoint
    parsed = urlparse(endpoint if has_scheme else f"http://{endpoint}")
    if parsed.scheme == "https":
        return
    if not has_scheme and settings.otlp_protocol == "grpc" and not settings.otlp_insecure:
        return  # grpc host:port without a scheme is TLS unless OTEL_EXPORTER_OTLP_INSECURE
    if _is_loopback(parsed.hostname or ""):
        return
    shown = f"{parsed.scheme}://{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    raise ConfigError(
        f"PIPETRACE_REQUIRE_TLS=1 refuses the plaintext OTLP endpoint {shown}: use https:// "
        "(with OTEL_EXPORTER_OTLP_CERTIFICATE for a private CA) or a loopback collector"
    )


def _choice(name: str, raw: object, allowed: tuple[str, ...]) -> str:
    value = str(raw).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={raw!r} is not allowed; use one of {', '.join(allowed)}")
    return value


def _endpoint(name: str, raw: object) -> str | None:
    text = str(raw).strip()
    if not text:
        return None
    parsed = urlparse(text if "://" in text else f"http://{text}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name}={raw!r} is not an endpoint URL; expected http(s)://host:port[/path]")
    try:
        _ = parsed.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name}={raw!r} has an invalid port") from None
    return text


def _existing_file(name: str, raw: object) -> str | None:
    text = str(raw).strip()
    if not text:
        return None
    if not Path(text).is_file():
        raise ConfigError(f"{name}={text!r}: no such file")
    return text


def _store(name: str, raw: object) -> StoreUrl | None:
    from ..store.target import StoreConfigError, parse

    text = str(raw).strip()
    if not text or text.lower() in ("sqlite", "local"):
        return None
    try:
        parse(text)
    except StoreConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return StoreUrl(text)


def _convert(key: str, name: str, raw: object) -> Any:
    if key in ("enabled", "sdk_disabled", "otlp_insecure", "redaction", "tail_sampling", "require_tls", "metrics",
               "redaction_logs"):
        return _bool(name, raw)
    if key == "redaction_modes":
        return {k.lower(): v.strip().lower() for k, v in _pairs(name, raw).items()}
    if key == "redaction_key":
        text = str(raw)
        return SecretStr(text) if text else None
    if key in ("redaction_sensitive_keys", "redaction_allow_keys"):
        return _words(raw)
    if key == "sample_rates":
        return _rates(name, raw, high=1.0)
    if key == "sample_targets":
        return _rates(name, raw, high=None)
    if key in ("sample_adapt_interval_s", "tail_local_retention_h", "tail_max_hold_h"):
        return _float(name, raw, low=0.0)
    if key == "tail_slow_ms":
        return None if str(raw).strip() == "" else _float(name, raw, low=0.0)
    if key == "home":
        return Path(str(raw)).expanduser()
    if key == "exporters":
        return _list(name, raw, EXPORTERS)
    if key == "propagators":
        return _list(name, raw, PROPAGATORS)
    if key in ("resource_attributes", "otlp_headers"):
        return _pairs(name, raw, secret=key == "otlp_headers")
    if key == "otlp_endpoint":
        return _endpoint(name, raw)
    if key == "otlp_protocol":
        return _choice(name, raw, PROTOCOLS)
    if key == "sampler":
        return _choice(name, raw, SAMPLERS)
    if key == "sampler_arg":
        return None if str(raw).strip() == "" else _float(name, raw, low=0.0, high=1.0)
    if key in ("otlp_certificate", "otlp_client_key", "otlp_client_certificate"):
        return _existing_file(name, raw)
    if key in ("otlp_timeout_s", "flush_timeout_s", "export_interval_s", "run_timeout_s", "run_settle_s",
               "run_sweep_s"):
        return _float(name, raw, low=0.0)
    if key in ("max_queue_size", "max_export_batch_size", "span_link_limit"):
        return _int(name, raw)
    if key == "attribute_value_length_limit":
        return 0 if str(raw).strip() == "" else _int(name, raw, low=0)
    if key == "store":
        return _store(name, raw)
    if key == "service_name":
        text = str(raw).strip()
        if not text:
            raise ConfigError(f"{name} must not be empty")
        return text
    raise ConfigError(f"unknown setting {key!r}")


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default ``os.environ``) with keyword overrides on top; validated."""
    env = os.environ if env is None else env
    known = {f.name for f in fields(Settings)}
    if "store" in overrides:
        raise ConfigError("configure(store=...): PIPETRACE_STORE is read from the environment by every process "
                          "(CLI, viewer, workers); set it there")
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"configure(): unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, names in ENV_NAMES.items():
        for name in names:
            raw = env.get(name)
            if raw is not None and (raw.strip() != "" or key == "enabled"):
                values[key] = _convert(key, name, raw)
                break
    if "exporters" not in values:
        endpoint = values.get("otlp_endpoint")
        values["exporters"] = ("store", "otlp") if endpoint else ("store",)
    for key, raw in overrides.items():
        if raw is None and key not in ("otlp_endpoint", "sampler_arg", "otlp_certificate",
                                         "otlp_client_key", "otlp_client_certificate", "redaction_key",
                                         "tail_slow_ms"):
            continue
        values[key] = raw if raw is None else _convert(key, f"configure({key}=...)", raw)
    settings = replace(Settings(), **values)
    if "otlp" in settings.exporters and not settings.otlp_endpoint:
        raise ConfigError(
            "PIPETRACE_EXPORTERS includes otlp but no endpoint is set; set OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    if settings.otlp_endpoint and settings.otlp_endpoint.startswith("http://") and (
        settings.otlp_client_key or settings.otlp_client_certificate
    ):
        raise ConfigError("OTEL_EXPORTER_OTLP_CLIENT_KEY/CERTIFICATE need an https:// endpoint")
    if bool(settings.otlp_client_key) != bool(settings.otlp_client_certificate):
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_CLIENT_KEY and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE must be set together"
        )
    if settings.sampler.endswith("traceidratio") and settings.sampler_arg is None:
        settings = replace(settings, sampler_arg=1.0)
    _check_tls(settings)
    return settings  # (the redaction modes are checked by the redaction layer: processing.runtime.configure)


def describe() -> list[tuple[str, str, str, str]]:
    """(setting, env vars, default, description) rows: the configuration reference is generated from this."""
    defaults = Settings()
    rows = []
    for f in fields(Settings):
        default = getattr(defaults, f.name)
        if f.name == "home":
            default = "~/.pipetrace"
        rows.append((f.name, " / ".join(ENV_NAMES.get(f.name, ())), repr(default), DESCRIPTIONS.get(f.name, "")))
    return rows
