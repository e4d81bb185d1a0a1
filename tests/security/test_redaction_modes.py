"""Redaction modes per detector (mask, HMAC token, drop), allow-list mode, and ordinary data untouched."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pipetrace
import pytest
from corpus import ORDINARY, make
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity
from pipetrace.redaction import Redactor, find, luhn_ok


def _one_task(run_id: str, attributes: dict[str, object]) -> None:
    with pipetrace.task_span("python", "modes", run_id, "load", attributes=attributes):
        pass


def _trace(run_id: str) -> str:
    return f"{RunIdentity('python', 'modes', run_id).trace_id:032x}"


def test_token_mode_gives_the_same_token_for_the_same_value(traced, tmp_path: Path) -> None:
    key = "k-" + "9" * 30
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05,
                        redaction_modes="email=token,card=drop,default=mask", redaction_key=key)
    email = make("email").needle
    card = make("card").needle
    uri = make("uri_password")
    _one_task("tok-1", {"owner": email, "payment": f"card {card}", "conn": uri.text, "rows": 7})
    _one_task("tok-2", {"owner": f"mail to {email}", "rows": 8})
    (first,) = traced.by_name(_trace("tok-1"))["task load"]
    (second,) = traced.by_name(_trace("tok-2"))["task load"]
    expected = "tok_" + hmac.new(key.encode(), email.encode(), hashlib.sha256).hexdigest()[:20]
    assert first.attributes["owner"] == expected
    assert second.attributes["owner"] == f"mail to {expected}"  # joins across spans and runs
    assert "payment" not in first.attributes  # card → drop removes the attribute
    assert first.attributes["conn"] == uri.text.replace(uri.needle, "***")  # default mask, user@host kept
    assert first.attributes["rows"] == 7


def test_token_mode_without_a_key_is_a_configuration_error(traced) -> None:
    with pytest.raises(pipetrace.ConfigError, match="PIPETRACE_REDACTION_KEY"):
        pipetrace.configure(home=traced.home, redaction_modes="email=token")
    with pytest.raises(pipetrace.ConfigError, match="unknown detector"):
        pipetrace.configure(home=traced.home, redaction_modes="emails=mask")
    with pytest.raises(pipetrace.ConfigError, match="unknown mode"):
        pipetrace.configure(home=traced.home, redaction_modes="email=scramble")


def test_allow_list_mode_lets_only_named_keys_out(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05,
                        redaction_allow_keys="rows,db.*")
    _one_task("allow-1", {"rows": 3, "db.system": "postgresql", "customer.name": "Ada", "note": "x"})
    (span,) = traced.by_name(_trace("allow-1"))["task load"]
    assert span.attributes["rows"] == 3 and span.attributes["db.system"] == "postgresql"
    assert "customer.name" not in span.attributes and "note" not in span.attributes
    # pipetrace's own vocabulary always passes, or runs could not be shown
    assert span.attributes[A.TASK_NAME] == "load" and span.attributes[A.PIPELINE_RUN_ID] == "allow-1"


def test_extra_sensitive_key_words(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05,
                        redaction_sensitive_keys="ssn,pin_code")
    _one_task("keys-1", {"customer.ssn": "078-05-1120", "pin_code": "4321", "api_token": "plain-value-123",
                         "max_tokens": 4096})
    (span,) = traced.by_name(_trace("keys-1"))["task load"]
    assert span.attributes["customer.ssn"] == "***" and span.attributes["pin_code"] == "***"
    assert span.attributes["api_token"] == "***"
    assert span.attributes["max_tokens"] == 4096  # a number under a "token" key is a count, not a secret


def test_redaction_can_be_turned_off(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", export_interval_s=0.05, redaction=False)
    _one_task("off-1", {"password": "visible-on-purpose"})
    (span,) = traced.by_name(_trace("off-1"))["task load"]
    assert span.attributes["password"] == "visible-on-purpose"


ORDINARY_TEXT = [
    "orders_2024-06-01.csv", "s3://warehouse-raw/orders/dt=2024-06-01/part-00000.snappy.parquet",
    "SELECT id, amount FROM orders WHERE created_at > '2024-06-01' LIMIT 100",
    "https://api.example.com/v2/export?page=2&sort=asc", "scheduled__2024-06-01T00:00:00+00:00",
    "manual__2024-06-01T12:30:45.123456+00:00", "d41d8cd98f00b204e9800998ecf8427e4a1b2c3d",
    "3f2a6c1e-9b7d-4e2f-8a61-0c5d9e7f1b24",
    # a Celery task id whose digits "46-9029-4093601645" pass Luhn: ids are not card numbers
    "7d4bfa31-84c0-4e46-9029-4093601645e5", "12345678-1234-1234-1234-123456789012",
    "1718000000000", "1718000000000123456", "worker-7.etl.internal",
    "true-gazelle", "task extract_orders", "run nightly_etl", "batch load_customers",
    "celery@worker-3 ready", "amqp://rabbitmq:5672//", "postgresql://db.internal:5432/warehouse",
    "Processed 1,234,567 rows in 12.5 s", "tokenizer=bert-base-uncased", "max_tokens=512",
    "password reset flow", "SecretsManager lookup failed", "invoice 4111-1111 partial",
    "4111 1111 1111 1112", "order #1234567890123456", "/opt/airflow/dags/etl/orders.py",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "Traceback (most recent call last):\n  File \"/app/etl.py\", line 12, in load\n    rows = fetch()\n",
]


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert find(text) == [], text
    assert Redactor().value(text) == text


def test_ordinary_attributes_pass_through_unchanged() -> None:
    redactor = Redactor()
    assert redactor.attributes(ORDINARY) is None  # None: nothing changed, the span is not even copied


def test_card_numbers_are_luhn_checked() -> None:
    card = make("card").needle
    assert luhn_ok(card)
    broken = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert find(f"card {card}")[0].detector == "card"
    assert find(f"card {broken}") == []
