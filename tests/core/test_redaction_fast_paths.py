"""Redaction's fast paths give the same output as the slow ones.

* A string without 40 characters of ``aws_secret``'s class in a row cannot hold an AWS secret: ``find``
  rejects it with a C-speed shape test instead of running that detector's regex (task-run ids such as
  ``<uuid>/stage_01#1`` on every Dagster step span), and finds exactly what the regex finds otherwise.
* An inert value (an id) is kept in a small cache of its own: a run id on every span of its run is
  checked once, and a secret learnt meanwhile still masks it.
* An empty tuple (Prefect's tags) does not make the length limit walk the attributes a second time."""

from __future__ import annotations

import random
import re
import string
import uuid

import pytest
from pipetrace.redaction import detectors as D
from pipetrace.redaction import find

_RUN = re.compile(r"[A-Za-z0-9/+]{40}")


def _texts() -> list[str]:
    rng = random.Random(24)
    alphabet = string.ascii_letters + string.digits + "/+=-_ .#:é١"
    out = [f"{uuid.uuid4()}/stage_{i:02d}#1" for i in range(20)]
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(30, 120))) for _ in range(3000)]
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret (40 characters)
    out += [secret, f"id {secret} end", f"4111 1111 {secret}", f"é{secret}é", f"{secret}A", "a" * 39 + "é" + "a" * 39]
    return out


def test_the_shape_test_agrees_with_the_detectors_character_class() -> None:
    for text in _texts():
        assert D._aws_run(text) == (_RUN.search(text) is not None), text  # noqa: SLF001


def test_find_with_the_shape_test_finds_what_the_aws_regex_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _texts()
    fast = [find(t) for t in texts]
    assert any(f and f[0].detector == "aws_secret" for f in fast)
    monkeypatch.setattr(D, "_aws_run", lambda text: True)  # every long string runs the regex, as before
    assert fast == [find(t) for t in texts]


def test_a_task_run_id_never_runs_the_aws_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(entries: tuple[tuple, ...]) -> tuple[tuple, ...]:  # type: ignore[type-arg]
        return tuple((p, n, d, r, lambda text, lower, hint=hint: calls.append(text) or hint(text, lower))
                     for p, n, d, r, hint in entries)

    monkeypatch.setattr(D, "_LONG_ONLY", counted(D._LONG_ONLY))  # noqa: SLF001
    monkeypatch.setattr(D, "_CARD_ONLY", counted(D._CARD_ONLY))  # noqa: SLF001
    ids = [f"{uuid.uuid4()}/stage_{i:02d}#1" for i in range(50)]
    assert all(D.trigger_level(t) < 2 and len(t) >= 40 for t in ids)
    assert [find(t) for t in ids] == [[] for _ in ids]
    assert calls == []
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert [f.detector for f in find(f"id {secret} end")] == ["aws_secret"]
    assert calls  # a string with such a run still runs the detector


def test_a_repeated_id_is_checked_once_and_a_secret_learnt_meanwhile_still_masks_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrace.redaction import KNOWN, Redactor, mask_secret

    run_id = str(uuid.uuid4())
    checks: list[str] = []
    inert = D.inert
    monkeypatch.setattr(D, "inert", lambda text: checks.append(text) or inert(text))
    redactor = Redactor()
    assert [redactor.value(run_id) for _ in range(31)] == [run_id] * 31
    assert checks == [run_id]
    try:
        assert mask_secret(run_id)
        redactor.refresh()
        assert redactor.value(run_id) == "***"
        assert redactor.attributes({"cicd.pipeline.run.id": run_id, "n": 1}) == {"cicd.pipeline.run.id": "***", "n": 1}
    finally:
        KNOWN.clear()


def _span(attributes: dict[str, object]) -> object:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    return ReadableSpan(name="task t", context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        attributes=attributes, start_time=1, end_time=2)


def test_an_empty_or_short_tuple_does_not_walk_the_attributes_again_for_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrace.redaction import Redactor
    from pipetrace.redaction.spans import RedactionTransform

    transform = RedactionTransform(Redactor(), limit=40)
    walks: list[int] = []
    limited = transform._limited  # noqa: SLF001
    monkeypatch.setattr(transform, "_limited", lambda attrs: walks.append(1) or limited(attrs))
    for tags in [(), ("etl", "nightly"), ["x" * 40]]:
        span = _span({"prefect.tags": tags, "n": 1})
        assert transform(span) is span
    assert walks == []
    (cut,) = [transform(_span({"prefect.tags": ("ok", "y" * 100)}))]
    ok, long = cut.attributes["prefect.tags"]  # type: ignore[union-attr]
    assert ok == "ok" and long.startswith("y" * 30) and len(long) <= 40 and walks == [1]


def _flat_trigger_level(text: str) -> int:
    """``trigger_level`` as written before the literals were grouped: every literal tested."""
    if any(literal in text for literal in D._TRIGGER_LITERALS):  # noqa: SLF001
        return 2
    if any(word in text.lower() for word in D._TRIGGER_WORDS):  # noqa: SLF001
        return 2
    return 1 if D._card_hint(text) else 0  # noqa: SLF001


def test_the_grouped_trigger_literals_decide_as_every_literal_tested() -> None:
    rng = random.Random(7)
    literals = list(D._TRIGGER_LITERALS)  # noqa: SLF001
    texts = _texts() + [f"{uuid.uuid4()} {lit} x" for lit in literals] + [lit for lit in literals]
    texts += ["".join(rng.choice(["A", "g", "h", "K", "I", "S", "_", "p", "x", "1234 ", "é"]) for _ in range(30))
              for _ in range(2000)]
    assert {D.trigger_level(t) for t in texts} == {0, 1, 2}
    assert [D.trigger_level(t) for t in texts] == [_flat_trigger_level(t) for t in texts]
    assert sum(len(group) for _, group in D._TRIGGER_GROUPS) + len(D._TRIGGER_REST) == len(literals)  # noqa: SLF001


def test_the_last_resource_is_redacted_again_when_a_secret_becomes_known() -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags
    from pipetrace.redaction import KNOWN, Redactor, mask_secret
    from pipetrace.redaction.spans import RedactionTransform

    resource = Resource({"deploy.note": "built-with-Qw7rTy2uIo9p"})
    span = ReadableSpan(name="t", context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        resource=resource, attributes={"n": 1}, start_time=1, end_time=2)
    transform = RedactionTransform(Redactor())
    try:
        assert transform(span) is span and transform(span) is span  # the second from the last-resource check
        assert mask_secret("Qw7rTy2uIo9p")
        out = transform(span)
        assert out is not None and out.resource.attributes["deploy.note"] == "built-with-***"
        assert transform(span).resource is out.resource  # type: ignore[union-attr]
    finally:
        KNOWN.clear()
