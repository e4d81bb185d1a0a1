"""The chain's redaction reads real SDK spans' attributes from the plain dicts under their
``BoundedAttributes`` (the processing layer hands it the machinery's readers: redaction may not import
the machinery), and redacts exactly as through the public mappings."""

from __future__ import annotations

import pytest


def _span_with_secrets() -> object:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, SpanContext

    tracer = TracerProvider().get_tracer("lib")
    span = tracer.start_span("task t", attributes={"cicd.pipeline.task.name": "t", "db.password": "hunter2-x9",
                                                   "n": 3, "ids": ("a", "b")},
                             links=[Link(SpanContext(0x12, 0x34, False), {"api_key": "k-77-secret"})])
    span.add_event("connect", {"token": "tok-s3cr3t-value", "host": "db"})
    span.end()
    return span


def test_the_chains_redaction_reads_the_plain_dicts_and_redacts_as_the_public_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.attributes import BoundedAttributes
    from pipetrace.config import Settings
    from pipetrace.processing.runtime import _builtin_transforms
    from pipetrace.redaction import transform_for

    public = transform_for(Settings())
    assert public is not None
    span = _span_with_secrets()
    expected = public(span)  # type: ignore[arg-type]
    [chain] = _builtin_transforms(Settings())

    def walked(self: object) -> object:
        raise AssertionError("a BoundedAttributes was walked key by key")

    monkeypatch.setattr(BoundedAttributes, "__iter__", walked)
    got = chain(span)  # type: ignore[arg-type]
    monkeypatch.undo()
    assert got is not None and expected is not None and got is not span
    assert dict(got.attributes) == dict(expected.attributes)
    assert "hunter2-x9" not in str(dict(got.attributes)) and got.attributes["n"] == 3
    assert [dict(e.attributes) for e in got.events] == [dict(e.attributes) for e in expected.events]
    assert "tok-s3cr3t-value" not in str([dict(e.attributes) for e in got.events])
    assert [dict(lk.attributes) for lk in got.links] == [dict(lk.attributes) for lk in expected.links]
    assert "k-77-secret" not in str([dict(lk.attributes) for lk in got.links])


def test_a_span_without_secrets_passes_through_as_the_same_object() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from pipetrace.config import Settings
    from pipetrace.processing.runtime import _builtin_transforms

    span = TracerProvider().get_tracer("lib").start_span("task t", attributes={"cicd.pipeline.task.name": "t"})
    span.add_event("state", {"state": "RUNNING"})
    span.end()
    [chain] = _builtin_transforms(Settings())
    assert chain(span) is span  # type: ignore[arg-type]
