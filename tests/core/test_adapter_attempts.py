"""The bounded registry of open attempts (pipetrace.adapter.attempts): one replace rule for every user, and
the context-restore rule an attempt's end follows."""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry import trace
from pipetrace.adapter import Attempt, Attempts, OpenAttempts, activate, deactivate
from pipetrace.adapter import attempts as attempts_module
from pipetrace.adapter.messaging import Sends


def test_replace_hands_back_the_replaced_entry_and_the_evicted_ones() -> None:
    items: OpenAttempts[str, int] = OpenAttempts(bound=2)
    assert items.replace("a", 1) == (None, ())
    assert items.replace("b", 2) == (None, ())
    assert items.replace("a", 10) == (1, ())  # replaced, and "a" moved to the end
    replaced, evicted = items.replace("c", 3)
    assert replaced is None and list(evicted) == [2]  # "b" was the oldest
    assert items.put("d", 4) == [10] and items.put("d", 5) == []  # put: the evicted only, as a list
    assert items.get("d") == 5 and len(items) == 2


class _Span:
    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}
        self.ended = 0

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def end(self) -> None:
        self.ended += 1


def test_attempts_and_sends_end_what_replace_replaces_or_evicts(monkeypatch: Any) -> None:
    closed: list[Any] = []
    monkeypatch.setattr(attempts_module, "close_stale", closed.append)
    registry: Attempts[str] = Attempts(bound=1)
    spans = [_Span() for _ in range(3)]
    registry.add("a", Attempt(spans[0]))  # type: ignore[arg-type]
    registry.add("a", Attempt(spans[1]))  # type: ignore[arg-type]  # the stale "a" is ended
    registry.add("b", Attempt(spans[2]))  # type: ignore[arg-type]  # bounded: the newer "a" is evicted
    assert closed == [spans[0], spans[1]] and registry.current("b") is spans[2] and len(registry) == 1
    sends = Sends("unconfirmed", bound=1)
    first, second = _Span(), _Span()
    sends.begin("m1", first)  # type: ignore[arg-type]
    sends.begin("m2", second)  # type: ignore[arg-type]
    assert first.ended == 1 and first.attributes == {"unconfirmed": True} and second.ended == 0


def test_deactivate_says_whether_it_restored_the_context() -> None:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    assert deactivate(None) is True
    token = activate(span)
    assert trace.get_current_span() is span
    assert deactivate(token) is True and trace.get_current_span() is not span
    other = contextvars.copy_context()
    token = other.run(activate, span)
    assert deactivate(token) is False  # made in another context: quiet, and says so
