"""Background loops hand the GIL back by time, not by span count: a quick batch is done in one go (no
context switch forced on the export thread every few spans), a slow one still lets the task's thread in."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext
from pipetrace.machinery import otlpwire
from pipetrace.store import exporter as store_exporter
from pipetrace.util import gil


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    real = time.sleep

    def counting(seconds: float) -> None:
        calls.append(seconds)
        real(seconds)

    monkeypatch.setattr(gil.time, "sleep", counting)  # the module's own reference: time.sleep itself
    return calls


def test_hand_back_lets_go_only_after_the_thread_has_worked_long_enough(sleeps: list[float]) -> None:
    now = time.perf_counter()
    assert gil.hand_back(now) == now  # just started: keeps the GIL
    assert sleeps == []
    long_ago = now - 10 * gil.YIELD_AFTER_S
    since = gil.hand_back(long_ago)
    assert sleeps == [0]  # worked long enough: lets go once
    assert since >= now  # and counts again from the hand-back


def _span(i: int) -> ReadableSpan:
    return ReadableSpan(name=f"s{i}", context=SpanContext(1, i + 1, False), attributes={"k": i})


def test_a_batch_done_within_the_time_is_encoded_without_handing_back_the_gil(
        sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gil, "YIELD_AFTER_S", 3600.0)  # whatever the machine's speed: done "within the time"
    otlpwire.encode_request([_span(i) for i in range(512)])
    assert sleeps == []  # (by span count, as before: 8 hand-backs)


def test_a_slow_loop_still_hands_back_the_gil(sleeps: list[float]) -> None:
    def slow_row(span: Any) -> tuple[Any, ...]:
        deadline = time.perf_counter() + gil.YIELD_AFTER_S / 4
        while time.perf_counter() < deadline:
            pass
        return (span.name,)

    store_exporter._rows([_span(i) for i in range(64)], slow_row)  # noqa: SLF001 - the loop itself
    # 64 spans of YIELD_AFTER_S / 4 each: a look at the clock every YIELD_EVERY spans, each after enough work
    assert len(sleeps) == 64 // gil.YIELD_EVERY
