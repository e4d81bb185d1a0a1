"""The OTLP queue batches as the SDK's BatchSpanProcessor does (5 s, OTEL_BSP_* honoured) unless
pipetrace's own setting is given; a flush and a shutdown still send everything at once."""

from __future__ import annotations

import logging
import time

import pipetrace
import pytest
from otlp_receiver import OTLPReceiver
from pipetrace.config import load
from pipetrace.processing.export import OTLP_INTERVAL_S, queue_options


def test_defaults_otlp_waits_like_the_sdk_and_the_store_stays_quick() -> None:
    settings = load(env={})
    assert queue_options(settings, "otlp", env={}) == {"max_queue_size": 20_000, "max_batch_size": 512,
                                                         "interval_s": OTLP_INTERVAL_S}
    assert queue_options(settings, "store", env={})["interval_s"] == 0.5


def test_otel_bsp_variables_are_honoured() -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "1500", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100",
           "OTEL_BSP_MAX_QUEUE_SIZE": "4096"}
    assert queue_options(load(env=env), "otlp", env=env) == {"max_queue_size": 4096, "max_batch_size": 100,
                                                             "interval_s": 1.5}
    assert queue_options(load(env=env), "store", env=env)["interval_s"] == 0.5  # the SDK's variables: OTLP only


def test_pipetraces_own_settings_win(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "1500", "PIPETRACE_EXPORT_INTERVAL": "0.5",
           "PIPETRACE_MAX_EXPORT_BATCH_SIZE": "64"}
    assert queue_options(load(env=env), "otlp", env=env) == {"max_queue_size": 20_000, "max_batch_size": 64,
                                                             "interval_s": 0.5}
    assert queue_options(load(env={}, export_interval_s=0.05), "otlp", env={})["interval_s"] == 0.05
    with caplog.at_level(logging.WARNING, logger="pipetrace.export"):
        bad = {"OTEL_BSP_SCHEDULE_DELAY": "soon"}
        assert queue_options(load(env={}), "otlp", env=bad)["interval_s"] == OTLP_INTERVAL_S
    assert "OTEL_BSP_SCHEDULE_DELAY" in caplog.text


def test_a_flush_does_not_wait_for_the_batch_delay(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPETRACE_EXPORT_INTERVAL", raising=False)
    with OTLPReceiver() as receiver:
        pipetrace.configure(home=traced.home, exporters="otlp", otlp_endpoint=receiver.endpoint)
        with pipetrace.task_span("python", "etl", "bsp-1", "extract"):
            pass
        started = time.monotonic()
        assert pipetrace.force_flush(10)
        assert len(receiver.wait_for(1, timeout_s=2)) == 1
        assert time.monotonic() - started < OTLP_INTERVAL_S / 2
