"""The caller's context read from a run's metadata (Dagster run tags, Airflow dag_run.conf)."""

from __future__ import annotations

import logging

import pytest
from pipetrace.adapter import upstream_carrier, upstream_from
from pipetrace.util import ratelimit

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _fresh_ratelimit() -> None:
    ratelimit.reset()


def test_carrier_takes_traceparent_and_a_non_empty_tracestate() -> None:
    assert upstream_carrier({"traceparent": TP, "other": 1}) == {"traceparent": TP}
    assert upstream_carrier({"traceparent": TP, "tracestate": "k=v"}) == {"traceparent": TP, "tracestate": "k=v"}
    assert upstream_carrier({"traceparent": TP, "tracestate": ""}) == {"traceparent": TP}
    assert upstream_carrier({"traceparent": TP, "tracestate": 7}) == {"traceparent": TP}


@pytest.mark.parametrize("fields", [None, "x", ["traceparent"], {}, {"tracestate": "k=v"}], ids=repr)
def test_no_carrier_without_a_traceparent_mapping(fields: object) -> None:
    assert upstream_carrier(fields) is None
    assert upstream_from(fields, source="test") is None


def test_custom_keys() -> None:
    tags = {"my/traceparent": TP, "my/tracestate": "k=v"}
    assert upstream_carrier(tags, "my/traceparent", "my/tracestate") == {"traceparent": TP, "tracestate": "k=v"}


def test_span_context_from_fields() -> None:
    sc = upstream_from({"traceparent": TP, "tracestate": "k=v"}, source="test")
    assert sc is not None and sc.is_valid and sc.is_remote
    assert sc.trace_id == 0x0AF7651916CD43DD8448EB211C80319C and sc.span_id == 0xB7AD6B7169203331
    assert sc.trace_state.get("k") == "v"


def test_garbage_is_none_with_one_warning_naming_the_source(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipetrace")
    for _ in range(5):
        assert upstream_from({"traceparent": "garbage"}, source="dagster run tag traceparent") is None
    assert len([r for r in caplog.records if "dagster run tag traceparent" in r.getMessage()]) == 1
