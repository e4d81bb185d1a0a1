"""The store layer owns the schema: versioned migrations, one delete path, no SQL outside ``pipetrace.store``,
and credentials masked wherever the store is named."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pipetrace
import pytest
from pipetrace.store import SpanRecord, SpanStore, maintenance, schema, target

OLD_SCHEMA = """
CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status TEXT NOT NULL,
    status_message TEXT, system TEXT, pipeline TEXT, run_id TEXT, task TEXT, result TEXT,
    is_run INTEGER NOT NULL DEFAULT 0, quality INTEGER NOT NULL DEFAULT 2, attributes TEXT NOT NULL,
    events TEXT NOT NULL, links TEXT NOT NULL, resource TEXT NOT NULL, scope TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)) WITHOUT ROWID;
INSERT INTO spans VALUES ('0123456789abcdef0123456789abcdef', '0123456789abcdef', NULL, 'run nightly',
    'SERVER', 1, 2, 'OK', NULL, 'python', 'nightly', 'r1', NULL, 'success', 1, 2,
    '{"pipetrace.pipeline.run_id": "r1", "pipetrace.pipeline.name": "nightly"}', '[]', '[]', '{}', 'x');
"""


@pytest.mark.sqlite_only
def test_a_store_file_from_before_versioning_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = SpanStore(db)
    assert [s.name for s in store.trace("r1")] == ["run nightly"]
    assert store.backend.schema_version() == schema.latest(schema.SPANS)
    assert maintenance.load_anomalies(store) == []  # the analysis tables came with the upgrade
    store.close()


@pytest.mark.sqlite_only
def test_a_store_from_a_newer_pipetrace_fails_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    SpanStore(db).count()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE pipetrace_schema SET version=99 WHERE component='spans'")
    conn.commit()
    conn.close()
    with pytest.raises(schema.StoreVersionError, match=r"schema version 99 .*newer than this pipetrace"):
        SpanStore(db).count()


def test_tail_pruning_removes_anomaly_flags_with_the_spans(tmp_path: Path) -> None:
    from pipetrace.sampling import TailPolicy, TailSamplingExporter
    from pipetrace.sampling.rates import PipelineRates

    store = SpanStore(tmp_path / "traces.db")
    tid = "ab" * 16
    store.write([SpanRecord(tid, "cd" * 8, None, "task extract", "INTERNAL", 10, 20)])
    maintenance.save_anomalies(store, [(tid, "cd" * 8, "p", "extract", "task extract", 10, 5.0, 1.0, 4.0, "p95",
                                        time.time_ns())], "pipetrace.anomaly.score", "pipetrace.anomaly.baseline_ms")
    assert len(maintenance.load_anomalies(store)) == 1
    tail = TailSamplingExporter(_Null(), held_path=tmp_path / "tail.db", store_path=store.path,
                                policy=TailPolicy(PipelineRates(), slow_ms=None, history=None))
    tail._prune_store([tid])  # noqa: SLF001
    assert store.count() == 0
    assert maintenance.load_anomalies(store) == []


def test_no_sql_driver_is_used_outside_the_store_layer() -> None:
    core = Path(pipetrace.__file__).parent
    offenders = [str(p.relative_to(core)) for p in core.rglob("*.py")
                 if p.parent.name != "store" and ("import sqlite3" in p.read_text() or "psycopg" in p.read_text())]
    assert offenders == []


def test_store_urls_are_masked_everywhere_they_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://ops:s3cr3t-pw@db.internal:5432/meta?schema=tracing"
    assert target.mask(url) == "postgresql://ops:***@db.internal:5432/meta?schema=tracing"
    parsed = target.parse(url)
    assert parsed.schema == "tracing" and "s3cr3t-pw" not in parsed.masked
    with pytest.raises(target.StoreConfigError) as err:
        target.parse("mysql://ops:s3cr3t-pw@db/x")
    assert "s3cr3t-pw" not in str(err.value)
    with pytest.raises(target.StoreConfigError, match="plain identifier"):
        target.parse("postgresql://db/x?schema=a;drop")
    monkeypatch.setenv("PIPETRACE_STORE", url)
    assert target.for_path(Path("/h/traces.db")) == parsed
    assert target.for_path(Path("/h/buffer.db")) is None  # per-host files stay local


class _Null:
    def export(self, spans):  # pragma: no cover - pruning exports nothing
        raise AssertionError("nothing to export")

    def shutdown(self) -> None:
        pass


def test_a_live_span_replaces_its_placeholder_even_with_another_start(tmp_path: Path) -> None:
    from pipetrace import attributes as A

    store = SpanStore(tmp_path / "traces.db")
    tid, sid, t0 = "12" * 16, "34" * 8, time.time_ns()
    placeholder = SpanRecord(tid, sid, None, "task t", "INTERNAL", t0 - 3 * 10**9, t0, attributes={A.SYNTHETIC: True})
    live = SpanRecord(tid, sid, None, "task t", "INTERNAL", t0 - 10**9, t0, attributes={"x": 1})
    store.write([placeholder])
    store.write([live])
    store.write([placeholder])  # reported again after the fact: the live copy stays
    assert [(s.start_ns, s.attributes) for s in store.trace(tid)] == [(live.start_ns, {"x": 1})]
    store.close()


def test_runs_page_lists_in_progress_traces_without_grouping_the_whole_store(tmp_path: Path) -> None:
    from pipetrace import attributes as A

    store = SpanStore(tmp_path / "traces.db")
    t0, sec = time.time_ns() - 10**12, 10**9

    def run(i: int, start: int, *, ended: bool, task_at: int | None = None) -> list[SpanRecord]:
        tid, attrs = f"{i:032x}", {A.PIPELINE_RUN_ID: f"r{i}", A.PIPELINE_NAME: "p", A.SYSTEM: "python"}
        out = [SpanRecord(tid, f"{i + 1:016x}", None, "task t", "INTERNAL", task_at or start, (task_at or start) + sec,
                          attributes={**attrs, A.TASK_NAME: "t"})]
        if ended:
            out.append(SpanRecord(tid, f"{i:016x}", None, "run p", "SERVER", start, start + 2 * sec, attributes=attrs))
        return out

    spans = [s for i in range(1, 61) for s in run(i * 10, t0 + i * 60 * sec, ended=True)]
    spans += run(1000, t0 + 3700 * sec, ended=False)  # newest: in progress, on the page
    spans += run(2000, t0 + 5 * 60 * sec, ended=False)  # in progress but older than the page
    spans += run(3000, t0 + 20 * 60 * sec, ended=True, task_at=t0 + 3650 * sec)  # finished; a late task
    store.write(spans)
    page = store.runs(limit=50)
    assert len(page) == 50 and page[0].run_id == "r1000" and page[0].in_progress
    assert [r.run_id for r in page if r.in_progress] == ["r1000"]
    store.close()


def test_the_exporter_encodes_a_readable_span_to_the_same_row_as_a_record(tmp_path: Path) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
    from pipetrace import attributes as A
    from pipetrace.store.records import from_readable, readable_row
    from pipetrace.store.sqlite import _row

    ctx = SpanContext(0xAB, 0xCD, False)
    common = dict(context=ctx, resource=Resource({"service.name": "svc"}), start_time=5, end_time=9,
                  instrumentation_scope=InstrumentationScope("pipetrace"))
    spans = [
        ReadableSpan(name="run p", kind=SpanKind.SERVER, status=Status(StatusCode.ERROR, "boom"),
                     attributes={A.PIPELINE_RUN_ID: "r1", A.PIPELINE_NAME: "p", A.PIPELINE_RESULT: "failure"},
                     **common),
        ReadableSpan(name="task t", parent=SpanContext(0xAB, 0xEF, False), attributes={
            A.TASK_NAME: "t", A.TASK_RESULT: "success", A.SYNTHETIC: True, "n": (1, 2)},
            events=[Event("retry", {"k": "v"}, timestamp=7)],
            links=[Link(SpanContext(0x12, 0x34, False), {A.LINK_KIND: "xcom"})], **common),
        ReadableSpan(name="run q", kind=SpanKind.INTERNAL, attributes={A.PIPELINE_RUN_ID: "r2"}, **common),
    ]
    assert [readable_row(s) for s in spans] == [_row(from_readable(s)) for s in spans]
    assert [r[14:16] for r in map(readable_row, spans)] == [(1, 2), (0, 1), (0, 2)]  # is_run, quality


def test_a_span_reported_again_is_one_row_and_the_later_copy_wins(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    tid, t0 = "5a" * 16, time.time_ns()

    def span(sid: str, version: int) -> SpanRecord:
        return SpanRecord(tid, sid * 8, None, f"task {sid}", "INTERNAL", t0, t0 + 10, attributes={"v": version})

    store.write([span("01", 1), span("02", 1)])
    store.write([span("03", 1), span("01", 2)])  # an export retry: the same span, same start, in a new batch
    store.write([span("04", 1), span("04", 2)])  # twice in one batch
    assert store.count() == 4
    assert {s.span_id[:2]: s.attributes["v"] for s in store.trace(tid)} == {"01": 2, "02": 1, "03": 1, "04": 2}
    store.close()


def test_a_trace_over_several_days_is_whole_and_a_run_id_finds_the_trace_of_its_run_span(tmp_path: Path) -> None:
    from pipetrace import attributes as A

    store = SpanStore(tmp_path / "traces.db")
    day, t0 = 86_400 * 10**9, time.time_ns() - 10 * 86_400 * 10**9
    long_run = "7c" * 16
    store.write([SpanRecord(long_run, f"{d + 1:016x}", None, "task t", "INTERNAL", t0 + d * day, t0 + d * day + 5)
                 for d in range(3)])
    store.write([SpanRecord(long_run, "f" * 16, None, "task late", "INTERNAL", t0 + 6 * day, t0 + 6 * day + 5)])
    assert len(store.trace(long_run)) == 4
    parent, child = "1d" * 16, "2e" * 16
    shared = {A.PIPELINE_RUN_ID: "shared", A.PIPELINE_NAME: "p"}
    store.write([SpanRecord(parent, "a" * 16, None, "run p", "SERVER", t0, t0 + 5, attributes=shared)])
    store.write([SpanRecord(child, "b" * 16, None, "task x", "INTERNAL", t0 + day, t0 + day + 5, attributes=shared)])
    assert store.resolve("shared") == parent  # the trace with the run span, though the other is newer
    store.write([SpanRecord(child, "c" * 16, None, "task y", "INTERNAL", t0, t0 + 5,
                            attributes={A.PIPELINE_RUN_ID: "only-here"})])
    assert store.resolve("only-here") == child
    assert store.resolve("nowhere") is None and store.trace("ab" * 16) == []
    store.close()


def test_store_json_is_what_json_dumps_writes() -> None:
    """``records.dumps`` reuses one C encoder instead of making one per call: same text, every value kind
    a span can carry (a str enum, non-ASCII, floats, nan, tuples, nested events, an unknown type)."""
    import enum
    import json
    import math

    from pipetrace.store.records import dumps

    class State(str, enum.Enum):
        RUNNING = "RUNNING"

    values: list[object] = [
        {"a": 1, "b": 2.5, "c": True, "d": None, "e": "ü€\n\"q\"", "f": (1, "x", 2.0), "g": State.RUNNING},
        [{"name": "Running", "time_ns": 12, "attributes": {"prefect.state.type": State.RUNNING}}],
        {"nan": math.nan, "inf": math.inf, "big": 2**70, "obj": object.__name__, "path": Path("/tmp/x")},
        "plain", 3, [], {},
    ]
    for value in values:
        assert dumps(value) == json.dumps(value, separators=(",", ":"), default=str)


def test_the_configured_store_exporter_reads_the_dicts_under_sdk_attributes(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Real SDK spans hold ``BoundedAttributes``: the store exporter the settings build encodes rows from
    the plain dicts under them (never walking the mapping in Python), to the same row as a copy gives."""
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, SpanContext
    from pipetrace.config import Settings
    from pipetrace.processing.export import build_queues
    from pipetrace.store.records import readable_row

    tracer = TracerProvider().get_tracer("lib")
    spans = []
    for i in range(3):
        span = tracer.start_span(f"task {i}", attributes={"cicd.pipeline.task.name": f"t{i}", "n": (1, 2), "i": i},
                                 links=[Link(SpanContext(0x12, 0x34 + i, False), {"pipetrace.link.kind": "result"})])
        span.add_event("state", {"state": "RUNNING"})
        span.end()
        spans.append(span)
    expected = [readable_row(s) for s in spans]  # the default: copies through the public mapping API
    [queue] = build_queues(Settings(home=tmp_path, exporters=("store",)))

    def walked(self: object) -> object:
        raise AssertionError("a BoundedAttributes was walked key by key")

    monkeypatch.setattr(BoundedAttributes, "__iter__", walked)
    assert [queue.exporter._row(s) for s in spans] == expected  # noqa: SLF001
    assert queue.exporter.export(spans).name == "SUCCESS"
    monkeypatch.undo()
    stored = queue.exporter.store.trace(f"{spans[0].context.trace_id:032x}")
    assert [r.attributes["cicd.pipeline.task.name"] for r in stored] == ["t0"]
    queue.exporter.shutdown()


def test_events_and_links_encode_as_the_record_writes_them_whatever_their_text() -> None:
    """The row formats each event's and link's JSON around its attributes' JSON: the bytes equal what the
    record path (``dumps`` of the dicts) writes, for names that need escaping, several events and links."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanContext
    from pipetrace.store.records import from_readable, readable_row
    from pipetrace.store.sqlite import _row

    names = ['state "quoted"', "naïve \u2603 \\ / \n\t", "", "x" * 300]
    span = ReadableSpan(name="task t", context=SpanContext(0xAB, 0xCD, False), start_time=1, end_time=2,
                        events=[Event(n, {"k": n, "v": (1.5, 2)}, timestamp=i) for i, n in enumerate(names)],
                        links=[Link(SpanContext(2**128 - 1 - i, 2**64 - 1 - i, False), {"n": n} if i else {})
                               for i, n in enumerate(names)])
    row = readable_row(span)
    assert row == _row(from_readable(span))
    assert [e["name"] for e in json.loads(row[17])] == names and len(json.loads(row[18])) == len(names)


def test_the_row_names_every_kind_and_status_as_the_record_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """``readable_row`` names kinds and status codes by the members' identity and calls the C encoder
    itself: the same row as the record path (``from_readable`` + ``_row``) for every kind, every status
    code, no kind and no status, events and links, and the same again without the C encoder."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
    from pipetrace.store import records
    from pipetrace.store.sqlite import _row

    common: dict[str, Any] = dict(context=SpanContext(0xAB, 0xCD, False), start_time=5, end_time=9,
                                  resource=Resource({"service.name": "svc", "n": 1}),
                                  attributes={"cicd.pipeline.run.id": "r1", "v": (1.5, "ü")},
                                  events=[Event("Running", {"prefect.state.type": "RUNNING"}, timestamp=6)],
                                  links=[Link(SpanContext(0x12, 0x34, False), {"pipetrace.link.kind": "result"})])
    spans = [ReadableSpan(name="run p", kind=kind, status=Status(code, "boom" if code is StatusCode.ERROR else None),
                          **common) for kind in [*SpanKind, None] for code in StatusCode]
    spans.append(ReadableSpan(name="task t", status=None, **common))  # type: ignore[arg-type]
    spans.append(ReadableSpan(name="task u", context=SpanContext(1, 2, False)))  # no events, links, resource
    expected = [_row(records.from_readable(s)) for s in spans]
    assert [records.readable_row(s) for s in spans] == expected
    assert {r[4] for r in expected} == {k.name for k in SpanKind}
    assert {r[7] for r in expected} == {c.name for c in StatusCode}
    monkeypatch.setattr(records, "_iterencode", None)  # an interpreter without json's C encoder
    assert [records.readable_row(s) for s in spans] == expected
