"""A Celery task's failure — args holding a secret, an exception message longer than the 1,024-character
status cut with the secret straddling it, a retry reason — never puts the secret in the store
(in-process eager execution through the real signal handlers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pipetrace
import pytest
from celery import Celery

PW = "Qy6Tn3Vc8Bx1Rm"
URI = f"postgresql://loader:{PW}@db.internal:5432/dwh"


@pytest.fixture
def app(traced: Any) -> Iterator[Celery]:
    from pipetrace.integrations.celery import instrument, uninstrument

    instrument()
    celery = Celery(f"pt-secrets-{uuid.uuid4().hex[:6]}", broker="memory://", backend="cache+memory://")
    celery.conf.task_always_eager = True
    yield celery
    uninstrument()


def test_failed_task_with_secret_args_and_long_message(app: Celery, traced: Any) -> None:
    @app.task(name="pt_secret_load")
    def load(dsn: str, pad: int) -> None:
        raise RuntimeError("p" * pad + " " + dsn)

    pipetrace.mask_secret(PW)  # the value a task would have read from a vault
    pad = 1024 - len("RuntimeError: ") - len(URI) // 2
    result = load.apply(args=(URI, pad))
    assert result.failed()
    spans = traced.spans()
    assert spans, "the eager task made no span"
    blob = b"".join(p.read_bytes() for p in sorted(traced.home.glob("traces.db*")))
    assert PW.encode() not in blob and PW[:8].encode() not in blob
    failed = [s for s in spans if s.status == "ERROR"]
    assert failed and all(len(s.status_message or "") <= 1024 for s in failed)
