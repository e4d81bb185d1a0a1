"""Values whose shape cannot hold a detectable secret (ids, hex, numbers) skip the detectors; ordinary
strings are decided by one scan; neither lets a secret through, and known secrets are still masked."""

from __future__ import annotations

import pytest
from corpus import KINDS, ORDINARY, make
from pipetrace.redaction import KNOWN, Redactor, find, mask_secret
from pipetrace.redaction import detectors as D

IDS = ["3f2a6c1e-9b7d-4e2f-8a61-0c5d9e7f1b24", "3F2A6C1E-9B7D-4E2F-8A61-0C5D9E7F1B24",
       "d41d8cd98f00b204e9800998ecf8427e4a1b2c3d", "9f3c2a1b0d4e5f60", "123456789012", "-42.125", "1e-07"]


@pytest.mark.parametrize("value", IDS)
def test_ids_hex_and_numbers_are_inert(value: str) -> None:
    assert D.inert(value) and find(value) == []


@pytest.mark.parametrize("value", ["4111111111111111", "AKIA0123456789ABCDEF", "ACCA0123456789ABCDEF",
                                   "1234567890123", "pipeline_app.noop", "d41d8cd9 8f00b204"])
def test_shapes_a_detector_can_match_are_not_inert(value: str) -> None:
    assert not D.inert(value)  # a card number, an AWS key id made of hex letters, a word


@pytest.mark.parametrize("kind", KINDS)
def test_no_corpus_secret_has_an_inert_shape_and_each_is_still_found(kind: str) -> None:
    for _ in range(20):  # random secrets: many draws
        secret = make(kind)
        assert not D.inert(secret.needle) and not D.inert(secret.text)
        if kind != "sensitive_key":  # found by its key, not its value
            assert find(secret.text), secret.text


def test_a_known_secret_with_an_id_shape_is_still_masked() -> None:
    uuid_key = "0e4d7c2a-1f3b-4a5c-9d8e-7f6a5b4c3d2e"  # e.g. an API key that is a UUID
    redactor = Redactor()
    assert redactor.value(uuid_key) == uuid_key  # not a secret until known
    assert mask_secret(uuid_key)
    redactor.refresh()
    assert redactor.value(uuid_key) == "***"
    assert redactor.attributes({"task.id": uuid_key, "n": 1}) == {"task.id": "***", "n": 1}
    KNOWN.clear()


def test_ordinary_values_without_a_trigger_come_out_unchanged() -> None:
    redactor = Redactor()
    assert redactor.attributes({k: v for k, v in ORDINARY.items()}) is None
    assert find("task pipeline_app.noop on worker-7.etl.internal") == []


def _span(attributes: dict[str, object]) -> object:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    return ReadableSpan(name="task t", context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        attributes=attributes, start_time=1, end_time=2)


def test_the_length_limit_is_checked_in_the_redaction_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass over a span's attributes: all values short, nothing changed -> no second walk for the limit;
    a long value, a sequence or a changed value (a token can be longer than its secret) is still cut."""
    from pipetrace.redaction.spans import RedactionTransform

    transform = RedactionTransform(Redactor(modes={"default": "token"}, key="k" * 32), limit=40)
    walks: list[int] = []
    limited = transform._limited
    monkeypatch.setattr(transform, "_limited", lambda attrs: walks.append(1) or limited(attrs))
    short = _span({"id": "3f2a6c1e-9b7d-4e2f-8a61-0c5d9e7f1b24", "n": 1, "name": "pipeline_app.noop"})
    assert transform(short) is short and walks == []
    (long,) = [transform(_span({"big": "y" * 100}))]
    assert len(long.attributes["big"]) == 40 and walks == [1]  # type: ignore[union-attr]
    (listed,) = [transform(_span({"many": ("y" * 100, "ok")}))]
    assert len(listed.attributes["many"][0]) == 40  # type: ignore[union-attr]
    secret = make("uri_password")
    grown = transform(_span({"dsn": "x" * 30 + " " + secret.text}))  # the token makes it longer than 40
    assert secret.needle not in grown.attributes["dsn"] and len(grown.attributes["dsn"]) <= 40  # type: ignore[union-attr]


def _strings() -> list[str]:
    import random
    import string
    import uuid

    rng = random.Random(24)
    out = [str(v) for v in ORDINARY.values()] + [f"{uuid.uuid4()}/stage_{i:02d}#1" for i in range(20)]
    for kind in KINDS:
        out += [make(kind).text for _ in range(5)]
    alphabet = string.ascii_letters + string.digits + " -_./#:=@"
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(8, 90))) for _ in range(3000)]
    out += ["4111 1111 x", "12-3456-7890", "١٢٣٤٥٦٧٨ digits", "Token abc", "BEARER x", "ghs_", "ya29.x"]
    return out


def test_the_literal_trigger_passes_whatever_a_detector_prefilter_passes() -> None:
    """``triggered`` replaced one regex alternation: no string may reach a detector's prefilter (the AWS
    secret's aside: length only) without it, or find() would skip a detector."""
    for text in _strings():
        lower = text.lower()
        for _priority, name, detector, _regex, hint in D.COMPILED:
            if detector != "aws_secret" and hint(text, lower):
                assert D.triggered(text), (name, text)
        assert D._card_hint(text) == (D._CARD_HINT.search(text) is not None), text  # noqa: SLF001


def test_find_with_the_trigger_levels_finds_what_every_detector_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A string with only the card hint runs ``card`` and ``aws_secret`` alone, one without any trigger
    ``aws_secret`` alone: over the same strings (ids with UUIDs, random text, every kind of secret, card
    numbers) the findings equal those of all detectors run on every string."""
    texts = [*_strings(), "4111 1111 1111 1111", "id 4111-1111-1111-1111 end",
             "12345678-1234-4234-8234-123456789012/s#1"]
    texts += [make("card").text for _ in range(20)] + [f"{make('aws_secret').needle} 1234 5678" for _ in range(5)]
    levels = {D.trigger_level(t) for t in texts}
    assert levels == {0, 1, 2}
    fast = [find(t) for t in texts]
    monkeypatch.setattr(D, "trigger_level", lambda text: 2)
    assert fast == [find(t) for t in texts]
    assert any(f and f[0].detector == "card" for f in fast)


def test_a_long_value_without_a_trigger_is_still_checked_for_an_aws_secret() -> None:
    secret = make("aws_secret")
    text = f"{secret.needle} plus words"
    assert not D.triggered(text) and len(text) >= 40
    assert [f.detector for f in find(text)] == ["aws_secret"]


def test_a_str_enum_value_that_needs_no_redaction_leaves_the_span_as_it_was() -> None:
    """Prefect's state events carry its ``StateType`` (a str enum): unchanged, it must not make a copy
    of every span (nor turn into a plain str), and a secret-shaped one is still redacted."""
    import enum

    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags
    from pipetrace.redaction.spans import RedactionTransform

    class State(str, enum.Enum):
        RUNNING = "RUNNING"
        LEAK = "postgresql://u:hunter2xyz@db/x"

    transform = RedactionTransform(Redactor(), limit=8192)
    span = ReadableSpan(name="task t", context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        attributes={"state": State.RUNNING}, start_time=1, end_time=2,
                        events=[Event("Running", {"prefect.state.type": State.RUNNING}, 1)])
    assert transform(span) is span
    leaky = ReadableSpan(name="task t", context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                         attributes={"state": State.LEAK}, start_time=1, end_time=2)
    out = transform(leaky)
    assert out is not None and "hunter2xyz" not in str(out.attributes["state"])  # type: ignore[index]


class _AlwaysEqual(str):
    """A str subclass whose ``==`` says "equal" to anything, hashed like another string: the redactor must
    judge its characters, not its own ``__eq__``/``__hash__``."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash("an ordinary cached value")


class _LyingBytes(bytes):
    def decode(self, *args: object, **kwargs: object) -> str:  # type: ignore[override]
        return "nothing to see"

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = bytes.__hash__


SECRET_URI = "postgresql://u:hunter2xyz@db/x"


def test_a_str_subclass_whose_eq_says_equal_cannot_keep_a_secret() -> None:
    """Before: ``_one`` kept a subclass value whenever ``out == value``, which its own ``__eq__`` decides,
    and the result cache could hand it another string's result (same hash, "equal")."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags
    from pipetrace.redaction.spans import RedactionTransform

    redactor = Redactor()
    assert redactor.value("an ordinary cached value") == "an ordinary cached value"  # in the cache now
    evil = _AlwaysEqual(SECRET_URI)
    out = redactor.attributes({"db": evil, "many": [evil, "x"], "raw": _LyingBytes(SECRET_URI.encode())})
    assert out is not None
    for key in ("db", "many", "raw"):
        assert "hunter2xyz" not in str.__str__(str(out[key])), key
        assert type(out[key]) is not _AlwaysEqual and not isinstance(out[key], _LyingBytes), key
    assert "hunter2xyz" not in redactor.text(_AlwaysEqual("login " + SECRET_URI))
    assert "hunter2xyz" not in redactor.value(_AlwaysEqual(SECRET_URI))  # type: ignore[operator]

    transform = RedactionTransform(Redactor(), limit=8192)
    span = ReadableSpan(name=_AlwaysEqual("connect " + SECRET_URI),
                        context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        attributes={"db": evil}, start_time=1, end_time=2,
                        events=[Event("query", {"db": _AlwaysEqual(SECRET_URI)}, 1)])
    redacted = transform(span)
    assert redacted is not None
    assert "hunter2xyz" not in str.__str__(redacted.name)
    assert "hunter2xyz" not in str.__str__(str(redacted.attributes["db"]))  # type: ignore[index]
    assert "hunter2xyz" not in str.__str__(str(redacted.events[0].attributes["db"]))  # type: ignore[index]


def test_a_str_subclass_that_needs_no_redaction_is_still_kept_as_itself() -> None:
    plain = _AlwaysEqual("RUNNING")
    assert Redactor().attributes({"state": plain}) is None


@pytest.mark.parametrize("with_list", [False, True], ids=["fast path", "key-by-key walk"])
def test_a_tuple_of_clean_strings_stays_the_same_tuple_when_the_cache_holds_an_equal_string(with_list: bool) -> None:
    """Prefect's tags arrive as a fresh tuple of fresh strings each run; the cache answers with the equal string
    of an earlier run. That is no change: the attributes are passed on as they were (before, the tuple came out
    as a list, the span was copied and its value type changed), on the fast path and on the walk alike."""
    redactor = Redactor()
    first = "".join(["Nightly ", "Orders"])
    assert redactor.value(first) == first  # cached as clean
    fresh = "".join(["Nightly ", "Orders"])
    assert fresh == first and fresh is not first
    attrs: dict[str, object] = {"tags": (fresh, "Load")}
    if with_list:
        attrs["batches"] = [1, 2]  # a list: not a fast-path type, so every key is walked
    assert redactor.attributes(attrs) is None
    assert redactor._one(attrs["tags"]) is attrs["tags"]
