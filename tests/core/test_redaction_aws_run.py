"""A string without 40 characters of ``aws_secret``'s class in a row cannot hold an AWS secret: ``find`` rejects
it with a C-speed shape test instead of running that detector's regex (task-run ids such as
``<uuid>/stage_01#1`` on every Dagster step span), and finds exactly what the regex finds otherwise."""

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
