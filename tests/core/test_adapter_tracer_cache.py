"""``cached_get_tracer``: a library that looks its tracer up per run gets one tracer per provider and
(name, version), not a new lookup each time; anything else goes to the wrapped ``get_tracer``."""

from __future__ import annotations

from typing import Any
from unittest import mock

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pipetrace.adapter import cached_get_tracer


def test_same_provider_same_tracer_and_a_new_provider_a_new_one() -> None:
    calls: list[tuple[Any, ...]] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return trace.get_tracer(*args, **kwargs)

    first, second = TracerProvider(), TracerProvider()
    with mock.patch.object(trace, "get_tracer_provider", return_value=first):
        a = cached_get_tracer(wrapped, None, ("lib", "1.0"), {})
        assert cached_get_tracer(wrapped, None, ("lib", "1.0"), {}) is a
        assert cached_get_tracer(wrapped, None, ("lib", "2.0"), {}) is not a
        assert a._instrumentation_scope.name == "lib" and a.resource is first.resource
    with mock.patch.object(trace, "get_tracer_provider", return_value=second):
        b = cached_get_tracer(wrapped, None, ("lib", "1.0"), {})
        assert b is not a and b.resource is second.resource
    assert calls == []  # the provider is asked directly


def test_other_arguments_go_to_the_wrapped_lookup() -> None:
    sentinel = object()
    got: list[Any] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        got.append((args, kwargs))
        return sentinel

    assert cached_get_tracer(wrapped, None, ("lib",), {"schema_url": "x"}) is sentinel
    assert cached_get_tracer(wrapped, None, ("lib", "1", None, "s"), {}) is sentinel
    assert got == [(("lib",), {"schema_url": "x"}), (("lib", "1", None, "s"), {})]
