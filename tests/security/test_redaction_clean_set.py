"""The fast paths for Prefect's real spans redact exactly what the slow paths redact.

* A lower-case generated name (``work-8b1``, ``smart-lemur``, ``extract_rows``) is inert: no detector can match
  it, so it skips them (checked here against every detector, on fuzzed names with detector prefixes planted).
* A mapping whose values are all known clean, numbers, or few new values ``value`` keeps is decided without
  the per-key loop (``Redactor._unchanged``); a span or event name known clean skips the redactor. Fuzzed
  with the planted-secret corpus, unique ids and names, sensitive keys, str/tuple subclasses and known secrets
  learnt midway: the same output as with those paths off.
* Neither a str subclass nor a tuple subclass can pass the clean set by its own ``__hash__``/``__eq__``, and a
  span, event or status text of a str subclass is judged by its characters.
"""

from __future__ import annotations

import random
import string
import uuid
from typing import Any

import pytest
from corpus import KINDS, ORDINARY, make
from pipetrace.redaction import KNOWN, Redactor, find, mask_secret
from pipetrace.redaction import detectors as D
from pipetrace.redaction import redactor as R
from pipetrace.redaction.spans import RedactionTransform
from test_redaction_shapes import SECRET_URI, _AlwaysEqual

_PLANTS = ("xoxb-", "xoxp-", "sk_live_", "rk_test_", "whsec_", "ghp_", "gho_", "github_pat_", "password", "token",
           "bearer", "basic", "identified", "4111", "1111-1111-1111-1111", "akia", "eyj", "aiza")


def _names(n: int, seed: int) -> list[str]:
    """Strings over the name shape's alphabet with detector prefixes and digit runs planted anywhere."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(1, 5)):
            part = "".join(rng.choice(string.ascii_lowercase + string.digits + "_") for _ in range(rng.randrange(0, 9)))
            if rng.random() < 0.5:
                cut = rng.randrange(len(part) + 1)
                plant = rng.choice(_PLANTS)
                part = part[:cut] + plant + "".join(rng.choice(string.ascii_lowercase + string.digits)
                                                    for _ in range(rng.randrange(0, 45))) + part[cut:]
            parts.append(part)
        out.append(rng.choice(("-", "--", "-", "_")).join(parts))
    return out


@pytest.mark.parametrize("value", ["work-8b1", "collect-b14", "smart-lemur", "vigilant-coua", "extract_rows",
                                   "bench_prefect", "my_sk_live_aaaaaaaaaaaaaaaaaaaa", "task_run", "a-1234-5678"])
def test_generated_names_are_inert(value: str) -> None:
    assert D.inert(value) and find(value) == []


@pytest.mark.parametrize("value", ["xoxb-123456789012-abcdefghijkl", "a-xoxb-1234567890", "sk_live_" + "a" * 24,
                                   "x-rk_test_" + "b" * 20, "whsec_" + "c" * 24, "y-github_pat_" + "d" * 22,
                                   "ghp_" + "e" * 36, "Running", "work-8B1", "4111-1111-1111-1111", "a--b", "a-"])
def test_names_a_detector_could_match_are_not_inert(value: str) -> None:
    assert not D.inert(value)


def test_no_inert_name_holds_anything_a_detector_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names(6000, 24)
    inert = [n for n in names if D.inert(n)]
    assert len(inert) > 1000 and any("xox" in n or "sk_live_" in n or "whsec_" in n for n in inert)
    monkeypatch.setattr(D, "inert", lambda text: False)  # every detector runs, as before the shape existed
    assert [n for n in inert if find(n)] == []
    assert any(find(n) for n in names)  # the planted prefixes do make secrets where a word starts


def test_a_known_secret_shaped_as_a_name_is_still_masked() -> None:
    redactor = Redactor()
    assert redactor.value("deploy-key-8b1f") == "deploy-key-8b1f"
    assert mask_secret("deploy-key-8b1f")
    redactor.refresh()
    assert redactor.value("deploy-key-8b1f") == "***"


def _values(rng: random.Random) -> list[Any]:
    secrets = [make(kind) for kind in KINDS if kind != "sensitive_key"]
    return [*ORDINARY.values(), *(s.text for s in secrets), *(s.needle for s in secrets), "", "RUNNING", "Running",
            "success", "int", (), ("a", "b"), ("x", SECRET_URI), ("etl", 1, 2.5, True), ("etl", ("nested",)),
            ("nightly", "".join(["nigh", "tly"])), ("x", _AlwaysEqual(SECRET_URI)), ("x", None), [1, 2], 0, 1, True,
            False, 2.5, 10**20,
            _AlwaysEqual(SECRET_URI), _AlwaysEqual("an ordinary cached value"), "x" * 300, "an ordinary cached value"]


def _mapping(rng: random.Random, pool: list[Any]) -> dict[str, Any]:
    keys = ["prefect.run.name", "prefect.run.id", "cicd.pipeline.run.id", "prefect.state.id", "db", "note",
            "db_password", "auth.token", "pipetrace.task.queued_ms", "n"]
    out: dict[str, Any] = {}
    for key in rng.sample(keys, rng.randrange(1, len(keys))):
        pick = rng.random()
        if pick < 0.2:
            out[key] = str(uuid.UUID(int=rng.getrandbits(128)))
        elif pick < 0.3:
            out[key] = f"work-{rng.getrandbits(12):03x}"
        elif pick < 0.35:
            out[key] = rng.random()
        elif pick < 0.4:  # tags made afresh, as a new run's are: equal strs, not the objects cached
            out[key] = ("etl", "".join(["night", "ly"]))
        else:
            out[key] = rng.choice(pool)
    return out


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R.Redactor, "_unchanged", lambda self, attrs: False)


def _run(mappings: list[dict[str, Any]], limit: int | None, learn: dict[int, str]) -> list[Any]:
    redactor = Redactor()
    out = []
    for i, attrs in enumerate(mappings):
        if i in learn:
            mask_secret(learn[i])
        redactor.refresh()
        got = redactor.attributes_within(attrs, limit)
        out.append((repr(got[0]), got[1] if got[0] is None and limit is not None else None))  # (no limit: unread)
    KNOWN.clear()
    return out


@pytest.mark.parametrize("limit", [8192, 256, 100, None])
def test_the_clean_set_decides_as_the_loop_does(monkeypatch: pytest.MonkeyPatch, limit: int | None) -> None:
    rng = random.Random(7)
    pool = _values(rng)
    mappings = [_mapping(rng, pool) for _ in range(1500)]
    for attrs in mappings[::7]:  # the same values again: clean by now
        mappings.append(dict(attrs))
    learn = {700: next(v for v in pool if isinstance(v, str) and v.startswith("3f2a6c1e")), 1100: "success"}
    unchanged, decided = R.Redactor._unchanged, []
    monkeypatch.setattr(R.Redactor, "_unchanged", lambda self, attrs: unchanged(self, attrs) and not decided.append(1))
    fast = _run(mappings, limit, learn)
    if limit is None or limit >= R.CLEAN_LONGEST:
        assert len(decided) > 100  # the fast path decided many
    else:
        assert not decided  # a limit that could cut a clean value: the loop decides every mapping
    _slow(monkeypatch)
    assert fast == _run(mappings, limit, learn)


def test_a_subclass_cannot_pass_the_clean_set_by_its_own_hash_and_eq() -> None:
    class Empty(tuple):  # type: ignore[type-arg]
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash(())

    redactor = Redactor()
    for _ in range(2):  # the keys known ordinary, the value clean
        assert redactor.attributes({"db": "an ordinary cached value", "many": (), "n": 1}) is None
    assert "an ordinary cached value" in redactor._clean and () in redactor._clean  # noqa: SLF001
    out = redactor.attributes({"db": _AlwaysEqual(SECRET_URI), "many": Empty((SECRET_URI,)), "n": 1})
    assert out is not None
    assert "hunter2xyz" not in str.__str__(out["db"]) and "hunter2xyz" not in repr(out["many"])


def test_a_value_clean_before_a_secret_became_known_is_masked_after() -> None:
    transform = RedactionTransform(Redactor(), limit=8192)
    attrs = {"prefect.run.name": "nightly-load-7f3", "n": 1}
    redactor = transform.redactor
    assert redactor is not None
    for _ in range(3):
        assert transform._attributes(attrs) is None  # noqa: SLF001
    assert "nightly-load-7f3" in redactor._clean  # noqa: SLF001
    mask_secret("nightly-load-7f3")
    redactor.refresh()
    assert transform._attributes(attrs) == {"prefect.run.name": "***", "n": 1}  # noqa: SLF001
    assert transform._text("nightly-load-7f3") == "***"  # noqa: SLF001


def _span(name: str, attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]], desc: str | None = None) -> Any:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    return ReadableSpan(name=name, context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
                        attributes=attrs, start_time=1, end_time=2,
                        events=[Event(n, a, 1) for n, a in events],
                        status=Status(StatusCode.ERROR, desc) if desc else Status(StatusCode.OK))


def _dump(span: Any) -> Any:
    return (str.__str__(span.name), repr(dict(span.attributes or {})), span.status.description,
            [(str.__str__(e.name), repr(dict(e.attributes or {}))) for e in span.events])


def test_spans_through_the_transform_come_out_as_with_the_fast_paths_off(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    pool = _values(rng)
    texts = [v for v in pool if isinstance(v, str)] + ["task work", "Running", "Completed"]
    spans = [_span(rng.choice(texts), _mapping(rng, pool), [(rng.choice(texts), _mapping(rng, pool))
                                                              for _ in range(rng.randrange(3))],
                   rng.choice([None, *texts])) for _ in range(800)]

    def through() -> list[Any]:
        transform = RedactionTransform(Redactor(), limit=8192)
        out = [_dump(transform(s)) for s in spans]
        KNOWN.clear()
        return out

    fast = through()
    _slow(monkeypatch)
    monkeypatch.setattr(RedactionTransform, "_text", lambda self, text: self._text_slow(text), raising=False)
    monkeypatch.setattr(RedactionTransform, "_text_slow",
                        lambda self, text: _text_without_clean(self, text), raising=False)
    assert fast == through()


def _text_without_clean(transform: RedactionTransform, text: str) -> str:
    from pipetrace.redaction.text import cut

    out = transform.redactor.text(text) if transform.redactor is not None else text
    if transform.limit is not None and len(out) > transform.limit:
        out = cut(out, transform.limit)
    return out


def test_a_str_subclass_name_or_message_is_judged_by_its_characters() -> None:
    """Before: the span was passed on as it was when its name's own ``!=`` said "not different"."""
    transform = RedactionTransform(Redactor(), limit=8192)
    span = _span(_AlwaysEqual("connect " + SECRET_URI), {}, [(_AlwaysEqual("query " + SECRET_URI), {})],
                 _AlwaysEqual("failed: " + SECRET_URI))
    out = transform(span)
    assert out is not None and out is not span
    assert "hunter2xyz" not in str.__str__(out.name)
    assert "hunter2xyz" not in str.__str__(out.events[0].name)
    assert "hunter2xyz" not in str.__str__(out.status.description)
    plain = _span(_AlwaysEqual("task work"), {}, [])
    assert transform(plain) is plain  # nothing to redact: the span as it was
