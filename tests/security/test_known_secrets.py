"""Known-secret propagation, redaction before every cut, and the attribute length limit."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pipetrace
import pytest
from corpus import make
from opentelemetry.trace import Status, StatusCode
from pipetrace.redaction import KNOWN, Redactor, find, install_log_filter, status_description
from pipetrace.redaction.known import KnownSecrets
from pipetrace.redaction.text import STATUS_LIMIT
from pipetrace.store import SpanRecord, SpanStore

# The kinds of the issue that leaked when cut before redaction, and the rest of its eleven.
STRADDLE_KINDS = ("aws_key_id", "aws_secret", "uri_password", "google", "email", "github", "slack", "stripe",
                  "jwt", "url_query", "bearer")


def _configure(home: Path, **overrides: object) -> SpanStore:
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05, **overrides)
    return SpanStore(home / "traces.db")


def _blob(rec: SpanRecord) -> str:
    return repr(rec.to_json())


def _all(store: SpanStore) -> list[SpanRecord]:
    assert pipetrace.force_flush(10)
    rows = store._query("SELECT DISTINCT trace_id FROM spans")  # noqa: SLF001
    return [span for (trace_id,) in rows for span in store.trace(trace_id)]


def test_mask_secret_masks_the_value_in_every_field_of_every_span(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Zq8vLr2mTx91"  # matches no detector: only the registry can know it
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"deploy.note=built-with-{secret}")
    assert pipetrace.mask_secret(secret)
    store = _configure(tmp_path)
    tracer = pipetrace.get_tracer()
    upstream = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    with pytest.raises(RuntimeError), pipetrace.task_span(
            "python", "known_etl", "k-1", f"load_{secret}", attributes={"note": f"x {secret} y", "rows": 7},
            links=[pipetrace.link(upstream, "xcom", {"xcom.value": secret})]):
        span = tracer.start_span(f"call {secret}")
        span.add_event(f"event {secret}", {"message": f"using {secret}", "list": ["a", secret]})
        span.set_status(Status(StatusCode.ERROR, f"bad {secret}"))
        span.end()
        raise RuntimeError(f"login failed with {secret}")
    spans = _all(store)
    assert len(spans) == 2
    for rec in spans:
        assert secret not in _blob(rec)
    task = next(s for s in spans if s.name.startswith("task"))
    assert task.attributes["note"] == "x *** y" and task.attributes["rows"] == 7
    assert task.status_message == "RuntimeError: login failed with ***"
    assert task.resource["deploy.note"] == "built-with-***"


def test_a_value_under_a_sensitive_key_is_masked_elsewhere(traced: object) -> None:
    pw = "Hx7pQ2wLm4sK"
    with pipetrace.task_span("python", "keyed", "r1", "connect", attributes={"warehouse_password": pw}):
        pass
    with pipetrace.task_span("python", "keyed", "r1", f"report {pw}", attributes={"note": pw}):
        pass
    spans = traced.spans()  # type: ignore[attr-defined]
    assert len(spans) == 2 and not [s for s in spans if pw in _blob(s)]


def test_a_context_detector_finding_becomes_known(traced: object) -> None:
    pw = "Lm4sKHx7pQ2w"
    with pipetrace.task_span("python", "ctx", "r1", "a", attributes={"dsn_note": "see conf",
                                                                     "cmd": f"psql password={pw}"}):
        pass
    with pipetrace.task_span("python", "ctx", "r1", "b", attributes={"echo": f"it was {pw}"}):
        pass
    spans = traced.spans()  # type: ignore[attr-defined]
    assert len(spans) == 2 and not [s for s in spans if pw in _blob(s)]


def test_plain_words_under_sensitive_keys_are_not_propagated(traced: object) -> None:
    with pipetrace.task_span("python", "words", "r1", "a", attributes={"token_type": "access",
                                                                       "secret_backend": "vaultserver"}):
        pass
    with pipetrace.task_span("python", "words", "r1", "b", attributes={"log": "access_log on vaultserver"}):
        pass
    spans = {s.name: s for s in traced.spans()}  # type: ignore[attr-defined]
    assert spans["task a"].attributes["token_type"] == "***"  # still masked under its key
    assert spans["task b"].attributes["log"] == "access_log on vaultserver"


def test_short_and_trivial_values_are_refused() -> None:
    for value in ("1", "true", "False", "abc", "null", "  x  ", 12345678):
        assert not pipetrace.mask_secret(value)
    r = Redactor()
    r.refresh()
    assert r.attributes({"flag": "true", "n": "1", "word": "abc"}) is None
    assert len(KNOWN) == 0


def test_registry_is_bounded_and_thread_safe() -> None:
    known = KnownSecrets(max_secrets=200)

    def add(base: int) -> None:
        for i in range(100):
            known.add(f"secret-{base:02d}-{i:04d}")

    threads = [threading.Thread(target=add, args=(b,)) for b in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(known) <= 200 and known.forgotten >= 600
    assert known.mask("secret-07-0099 and secret-00-0000") == "*** and secret-00-0000"  # oldest forgotten


def test_registry_matches_many_secrets_in_one_pass() -> None:
    known = KnownSecrets()
    values = [f"tok{i:05d}Zq" for i in range(3000)]
    for v in values:
        known.add(v)
    text = " ".join(values[::500]) + " tok99999Zq"
    assert known.mask(text) == " ".join(["***"] * 6) + " tok99999Zq"
    assert known.mask('{"k": "tok00001Zq"}') == '{"k": "***"}'


@pytest.mark.parametrize("kind", STRADDLE_KINDS)
def test_a_secret_straddling_the_status_cut_is_masked(kind: str) -> None:
    from pipetrace.redaction.text import set_active_redactor

    set_active_redactor(Redactor())
    try:
        secret = make(kind)
        start = STATUS_LIMIT - len(secret.text) // 2
        message = "x" * (start - 1) + " " + secret.text + " tail"
        out = status_description(message)
        assert len(out) <= STATUS_LIMIT
        needle = secret.needle
        # not even a long-enough prefix of it survives the cut
        assert needle[:12] not in out, (kind, out[-80:])
    finally:
        set_active_redactor(None)


def test_exception_status_straddling_the_cut_is_masked_in_the_store(traced: object) -> None:
    secrets = [make(kind) for kind in STRADDLE_KINDS]
    for i, secret in enumerate(secrets):
        pad = "p" * (STATUS_LIMIT - len("RuntimeError: ") - len(secret.text) // 2 - 1)
        with pytest.raises(RuntimeError), pipetrace.task_span("python", "cut", "r1", f"t{i}"):
            raise RuntimeError(f"{pad} {secret.text} and more")
    spans = traced.spans()  # type: ignore[attr-defined]
    assert len(spans) == len(secrets)
    for span in spans:
        assert span.status_message is not None and len(span.status_message) <= STATUS_LIMIT
    leaked = [s.kind for s in secrets for span in spans if s.needle[:12] in _blob(span)]
    assert leaked == []


def test_aws_secret_right_after_equals_and_kv_words() -> None:
    secret = make("aws_secret").needle
    for text in (f"aws_secret_access_key={secret}", f"AWS_SECRET_ACCESS_KEY = {secret}",
                 f"export aws_secret_access_key='{secret}'"):
        assert find(text), text
        assert secret not in Redactor().text(text)
    r = Redactor()
    for key in ("access_key", "secret_key", "private_key", "api_key", "token", "session_key", "db_password",
                "client_secret", "signing_key"):
        assert r.text(f"{key}=Vv83kdPq") == f"{key}=***", key
    for ordinary in ("max_tokens=512", "primary_key=id", "author=me", "keys=3"):
        assert r.text(ordinary) == ordinary


def test_attribute_limit_after_redaction_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100")
    store = _configure(tmp_path)
    uri = make("uri_password")
    big = "y" * 10_000_000
    straddle = "z" * 80 + " " + uri.text  # the limit falls inside the URI: redaction must come first
    with pipetrace.task_span("python", "big", "r1", "t", attributes={"big": big, "uri": straddle, "ok": "short"}):
        pass
    (span,) = [s for s in _all(store) if s.name == "task t"]
    assert len(span.attributes["big"]) == 100 and span.attributes["big"].endswith("…")
    assert uri.needle[:6] not in span.attributes["uri"] and len(span.attributes["uri"]) <= 100
    assert span.attributes["ok"] == "short"
    assert pipetrace.stats()["redaction"]["truncated"] >= 2
    pipetrace.shutdown(5)


def test_default_attribute_limit_is_8_kib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    store = _configure(tmp_path, redaction=False)
    with pipetrace.task_span("python", "big", "r1", "t", attributes={"big": "q" * 100_000}):
        pass
    (span,) = _all(store)
    assert len(span.attributes["big"]) == 8192
    pipetrace.shutdown(5)


def test_log_filter_masks_known_secrets_and_detector_findings(traced: object,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    pipetrace.mask_secret("Qm3nRz8wKp")
    logger = logging.getLogger("user.task")
    handler = logging.StreamHandler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    assert install_log_filter([handler]) == 1
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s and password=%s", "Qm3nRz8wKp", "Pz0oLk9ij")
    finally:
        logger.removeHandler(handler)
    assert records == ["connecting with *** and password=***"]


def test_redaction_logs_setting_installs_the_filter_on_root_handlers(tmp_path: Path) -> None:
    from pipetrace.redaction.known import _log_filter

    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        _configure(tmp_path, redaction_logs=True)
        assert _log_filter in handler.filters
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "dsn %s", ("postgresql://u:Pw9Zk2Lq@h/db",), None)
        assert handler.filter(record) and record.getMessage() == "dsn postgresql://u:***@h/db"
    finally:
        root.removeHandler(handler)
        handler.removeFilter(_log_filter)
        pipetrace.shutdown(5)
