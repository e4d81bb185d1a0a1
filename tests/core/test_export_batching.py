"""The OTLP queue batches as the SDK's BatchSpanProcessor does (5 s, OTEL_BSP_* honoured) unless
pipetrace's own setting is given; the store queue waits up to 2 s but writes a run when its run span
ends; a flush and a shutdown still send everything at once."""

from __future__ import annotations

import logging
import time

import pipetrace
import pytest
from otlp_receiver import OTLPReceiver
from pipetrace.config import load
from pipetrace.processing.export import OTLP_INTERVAL_S, STORE_INTERVAL_S, STORE_RUN_END_GAP_S, queue_options


def test_defaults_otlp_waits_like_the_sdk_and_the_store_commits_per_run() -> None:
    settings = load(env={})
    assert queue_options(settings, "otlp", env={}) == {"max_queue_size": 20_000, "max_batch_size": 512,
                                                         "interval_s": OTLP_INTERVAL_S}
    assert queue_options(settings, "store", env={}) == {"max_queue_size": 20_000, "max_batch_size": 512,
                                                          "interval_s": STORE_INTERVAL_S,
                                                          "run_end_gap_s": STORE_RUN_END_GAP_S}
    assert STORE_INTERVAL_S == 2.0 and STORE_RUN_END_GAP_S == 0.5
    assert settings.export_interval_s is None  # unset: each exporter's own wait
    # a Celery/kombu run is judged quiet only well after a span published at an attempt's end is stored
    assert settings.run_settle_s >= STORE_INTERVAL_S + 1.5


def test_otel_bsp_variables_are_honoured() -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "1500", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100",
           "OTEL_BSP_MAX_QUEUE_SIZE": "4096"}
    assert queue_options(load(env=env), "otlp", env=env) == {"max_queue_size": 4096, "max_batch_size": 100,
                                                             "interval_s": 1.5}
    assert queue_options(load(env=env), "store", env=env)["interval_s"] == STORE_INTERVAL_S  # the SDK's: OTLP only


def test_pipetraces_own_settings_win(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "1500", "PIPETRACE_EXPORT_INTERVAL": "0.5",
           "PIPETRACE_MAX_EXPORT_BATCH_SIZE": "64"}
    assert queue_options(load(env=env), "otlp", env=env) == {"max_queue_size": 20_000, "max_batch_size": 64,
                                                             "interval_s": 0.5}
    assert queue_options(load(env={}, export_interval_s=0.05), "otlp", env={})["interval_s"] == 0.05
    # the store honours PIPETRACE_EXPORT_INTERVAL too (given in the environment or to configure), and a
    # run's end never waits longer than that
    assert queue_options(load(env=env), "store", env=env)["interval_s"] == 0.5
    assert queue_options(load(env={}, export_interval_s=0.05), "store", env={})["run_end_gap_s"] == 0.05
    assert queue_options(load(env={}, export_interval_s=30), "store", env={})["interval_s"] == 30
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


def test_the_store_writes_a_run_when_it_ends_and_not_before(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default store queue: a run's task spans wait (no commit of their own), the run span's end writes the
    run in one batch at once; a flush still writes at once what is queued."""
    from pipetrace.processing import runtime
    from pipetrace.store import SpanStore

    monkeypatch.delenv("PIPETRACE_EXPORT_INTERVAL", raising=False)
    pipetrace.configure(home=traced.home, exporters="store")
    processor = runtime._state.processor  # noqa: SLF001 - the chain as configure built it
    assert processor is not None
    [queue] = processor.queues
    assert queue.interval_s == STORE_INTERVAL_S
    batches: list[int] = []
    export = queue.exporter.export
    queue.exporter.export = lambda spans: batches.append(len(spans)) or export(spans)  # type: ignore[method-assign]
    time.sleep(STORE_RUN_END_GAP_S)  # the gap after any earlier write has passed
    started_ns = time.time_ns()
    for task in ("extract", "transform", "load"):
        with pipetrace.task_span("python", "etl", "batch-1", task):
            pass
    time.sleep(0.6)
    assert batches == []  # the task spans wait for their run (0.5 s would have written them by now)
    assert pipetrace.run_span("python", "etl", "batch-1", start=started_ns, end=time.time_ns(), result="success")
    deadline = time.monotonic() + STORE_INTERVAL_S / 2
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches == [4], "the run's end writes the run and its tasks in one batch, before the interval"
    store, deadline = SpanStore(pipetrace.settings().store_path), time.monotonic() + 5
    while len(store.trace("batch-1")) < 4 and time.monotonic() < deadline:  # the batch is counted as it starts
        time.sleep(0.02)
    assert len(store.trace("batch-1")) == 4
    with pipetrace.task_span("python", "etl", "batch-2", "extract"):
        pass
    started = time.monotonic()
    assert pipetrace.force_flush(10)
    assert batches == [4, 1] and time.monotonic() - started < STORE_INTERVAL_S / 2
