from pathlib import Path

import pipetrace
import pytest
from pipetrace.config import ConfigError, describe, load


@pytest.mark.parametrize(("env", "named"), [
    ({"PIPETRACE_ENABLED": "maybe"}, "PIPETRACE_ENABLED"),
    ({"PIPETRACE_EXPORTERS": "store,zipkin"}, "PIPETRACE_EXPORTERS"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
    ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"),
    ({"OTEL_PROPAGATORS": "tracecontext,carrier-pigeon"}, "OTEL_PROPAGATORS"),
    ({"OTEL_SDK_DISABLED": "perhaps"}, "OTEL_SDK_DISABLED"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES"),
    ({"PIPETRACE_MAX_QUEUE_SIZE": "0"}, "PIPETRACE_MAX_QUEUE_SIZE"),
    ({"PIPETRACE_FLUSH_TIMEOUT": "-1"}, "PIPETRACE_FLUSH_TIMEOUT"),
    ({"PIPETRACE_EXPORTERS": "otlp"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
])
def test_each_invalid_setting_names_itself(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load(env)


def test_configure_rejects_unknown_and_bad_overrides() -> None:
    with pytest.raises(ConfigError, match="exporterz"):
        pipetrace.configure(exporterz="store")
    with pytest.raises(ConfigError, match="exporters"):
        pipetrace.configure(exporters="kafka")


def test_defaults_and_otlp_added_when_endpoint_set() -> None:
    assert load({}).exporters == ("store",)
    s = load({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
              "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%3D,x=y"})
    assert s.exporters == ("store", "otlp")
    assert s.otlp_headers == {"api-key": "abc=", "x": "y"}
    assert s.redacted_headers() == {"api-key": "***", "x": "***"}
    assert load({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"}
                ).otlp_endpoint == "http://a:1"
    assert load({"PIPETRACE_HOME": "~/x"}).home == Path("~/x").expanduser()
    assert load({"OTEL_SDK_DISABLED": "true"}).active is False
    assert load({"PIPETRACE_ENABLED": "0"}).active is False


def test_reference_lists_every_setting_with_env_and_description() -> None:
    rows = describe()
    assert {r[0] for r in rows} >= {"enabled", "home", "exporters", "otlp_endpoint"}
    assert all(r[1] and r[3] for r in rows)


def test_bad_environment_inside_a_task_never_raises(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from pipetrace.processing import runtime

    monkeypatch.setenv("PIPETRACE_EXPORTERS", "kafka")
    monkeypatch.setattr(runtime._state, "tracer", None)
    monkeypatch.setattr(runtime._state, "processor", None)
    monkeypatch.setattr(runtime._state, "failed", False)
    with pipetrace.task_span("python", "p", "r", "t") as span:
        pass
    assert not span.is_recording()
    assert "PIPETRACE_EXPORTERS" in caplog.text
    monkeypatch.setattr(runtime._state, "tracer", None)
