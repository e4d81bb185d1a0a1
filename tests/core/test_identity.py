import subprocess
import sys

import pipetrace.identity as ident_mod
import pytest
from pipetrace.carriers import span_context_of
from pipetrace.identity import RunIdentity, derive_run_span_id, derive_task_span_id, derive_trace_id

SNIPPET = (
    "from pipetrace.identity import RunIdentity as R;"
    "r=R('airflow','etl','manual__2026-01-01');"
    "print(r.trace_id, r.run_span_id, r.task_span_id('load', None, 2), r.batch_span_id('map'))"
)


def _ids(r: RunIdentity) -> str:
    return f"{r.trace_id} {r.run_span_id} {r.task_span_id('load', None, 2)} {r.batch_span_id('map')}"


def test_ids_equal_across_processes() -> None:
    outputs = {subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True)
               .stdout.strip() for _ in range(2)}
    assert outputs == {_ids(RunIdentity("airflow", "etl", "manual__2026-01-01"))}


def test_trace_id_follows_the_documented_formula() -> None:
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"pipetrace/1|airflow|etl|r1").digest()[:16], "big")
    assert derive_trace_id("airflow", "etl", "r1") == expected


def test_different_runs_tasks_tries_and_systems_differ() -> None:
    ids = {
        derive_trace_id("airflow", "etl", "r1"), derive_trace_id("airflow", "etl", "r2"),
        derive_trace_id("dagster", "etl", "r1"), derive_trace_id("airflow", "etl2", "r1"),
    }
    assert len(ids) == 4
    spans = {
        derive_run_span_id("airflow", "etl", "r1"),
        derive_task_span_id("airflow", "etl", "r1", "t", None, 1),
        derive_task_span_id("airflow", "etl", "r1", "t", None, 2),
        derive_task_span_id("airflow", "etl", "r1", "t", 0, 1),
        derive_task_span_id("airflow", "etl", "r1", "t", 1, 1),
        derive_task_span_id("airflow", "etl", "r1", "u", None, 1),
    }
    assert len(spans) == 6



def test_upstream_traceparent_wins() -> None:
    up = span_context_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert up is not None
    r = RunIdentity("airflow", "etl", "r1", up)
    assert r.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert r.run_span_id == derive_run_span_id("airflow", "etl", "r1")
    ctx = r.upstream_context()
    assert ctx is not None


def test_garbage_upstream_falls_back_to_derived() -> None:
    assert span_context_of("00-zzzz-b7ad6b7169203331-01") is None
    r = RunIdentity("airflow", "etl", "r1", None)
    assert r.trace_id == derive_trace_id("airflow", "etl", "r1")


def test_never_an_all_zero_id(monkeypatch: pytest.MonkeyPatch) -> None:
    class ZeroHash:
        def __init__(self, *args: object) -> None:
            pass

        def digest(self) -> bytes:
            return b"\x00" * 32

    monkeypatch.setattr(ident_mod, "_sha256", ZeroHash)
    for fn in (derive_trace_id, derive_run_span_id, ident_mod.derive_batch_span_id):
        fn.cache_clear()  # type: ignore[attr-defined]
    try:
        assert derive_trace_id("a", "b", "zero") == 1
        assert derive_run_span_id("a", "b", "zero") == 1
        assert derive_task_span_id("a", "b", "zero", "t") == 1
        assert ident_mod.derive_batch_span_id("a", "b", "zero", "t") == 1
    finally:
        for fn in (derive_trace_id, derive_run_span_id, ident_mod.derive_batch_span_id):
            fn.cache_clear()  # type: ignore[attr-defined]


def test_ids_are_sha256_as_documented() -> None:
    """identity uses CPython's own SHA-256 (cheaper per call than OpenSSL's); the ids are the same."""
    import hashlib

    key = "pipetrace/1|celery|celery|6f1c5c8e-2d6b-4a43-9b0d-3c2f1c9e8a11"
    assert derive_trace_id("celery", "celery", "6f1c5c8e-2d6b-4a43-9b0d-3c2f1c9e8a11") == int.from_bytes(
        hashlib.sha256(key.encode()).digest()[:16], "big")
    task_key = "pipetrace/1|airflow|etl|r1|task|load|-1|2"
    assert derive_task_span_id("airflow", "etl", "r1", "load", None, 2) == int.from_bytes(
        hashlib.sha256(task_key.encode()).digest()[:8], "big")


@pytest.mark.parametrize("run_id", ["r1", "caf\u00e9-\u65e5\u672c", "lone-\ud800-surrogate", "\udfff"])
@pytest.mark.parametrize(("map_index", "try_number"), [(None, 1), (0, 3), (17, 2)])
def test_task_span_ids_are_the_documented_digest_of_any_run_id(run_id: str, map_index: int | None,
                                                                try_number: int) -> None:
    """Task span ids are the first 8 bytes of SHA-256 over the key in UTF-8, a lone surrogate kept
    (``surrogatepass``), whichever way the key is encoded."""
    import hashlib

    mi = -1 if map_index is None else map_index
    key = f"pipetrace/1|celery|etl|{run_id}|task|attempt|{mi}|{try_number}"
    want = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    assert derive_task_span_id("celery", "etl", run_id, "attempt", map_index, try_number) == want
    assert derive_task_span_id("celery", "etl", run_id, "attempt", map_index, try_number) == int.from_bytes(
        ident_mod._digest("celery", "etl", run_id, "task", "attempt", mi, try_number)[:8], "big")


def test_one_rule_tells_a_run_span_wherever_a_span_is_read() -> None:
    """``is_run_span`` is the store's ``is_run`` column, tail sampling's trigger and the store queue's run-end
    write: named ``run …``, kind SERVER (enum or the store's name) and carrying the run id; nothing less."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanKind
    from pipetrace import attributes as A
    from pipetrace.sampling.tail import is_run_span as tail_rule
    from pipetrace.store.records import derived_columns

    run = {A.PIPELINE_RUN_ID: "r1"}
    assert A.is_run_span(A.run_span_name("etl"), SpanKind.SERVER, run)
    assert A.is_run_span("run etl", "SERVER", run)
    assert not A.is_run_span("run etl", SpanKind.INTERNAL, run)
    assert not A.is_run_span("run etl", "SERVER", {})  # a user's span only named "run …"
    assert not A.is_run_span("task etl", "SERVER", run)
    assert tail_rule(ReadableSpan(name="run etl", kind=SpanKind.SERVER, attributes=run))
    assert not tail_rule(ReadableSpan(name="run etl", kind=SpanKind.SERVER))
    assert derived_columns("run etl", "SERVER", run)[5] == 1
    assert derived_columns("run etl", "CLIENT", run)[5] == 0
