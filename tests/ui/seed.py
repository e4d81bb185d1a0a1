"""Seed a store through the public core API (run in a subprocess with PIPETRACE_HOME set).

``python seed.py basic`` writes a few pipelines' runs with failures, a retry, queue wait, data links
inside a run and across runs, and one run still in progress; it prints a JSON summary of what it wrote
(trace ids, span ids) for the tests. ``showcase`` adds a richer pipeline for the documentation
pictures, ``hostile`` a run whose names are HTML, ``big=N`` one run of N spans.
Several kinds can be given at once.
"""

from __future__ import annotations

import json
import sys
import time

import pipetrace
from opentelemetry import trace
from pipetrace import attributes as A
from pipetrace.carriers import inject
from pipetrace.identity import RunIdentity
from pipetrace.spans import end_task_span, link, record_span, run_span, start_task_span

BASE = time.time() - 6 * 3600  # six hours ago: inside "last 24 h", clearly in the past


def carrier_of(span: trace.Span) -> dict[str, str]:
    return inject({}, context=trace.set_span_in_context(span))


def task(system: str, pipeline: str, run_id: str, name: str, start: float, end: float, *,
         error: BaseException | None = None, result: str | None = None, **kw: object) -> trace.Span:
    span = start_task_span(system, pipeline, run_id, name, start_time=start, **kw)  # type: ignore[arg-type]
    end_task_span(span, error=error, result=result, end_time=end)
    return span


def sales_run(n: int, t0: float, *, slow: float = 1.0, fail_load: bool = False) -> dict[str, object]:
    """extract → batch of 3 mapped transforms (index 1 slowest) → load (links to each transform)."""
    system, pipeline, run_id = "airflow", "daily_sales", f"scheduled__{n:02d}"
    ident = RunIdentity(system, pipeline, run_id)
    ext = task(system, pipeline, run_id, "extract", t0 + 0.4, t0 + 1.0, attributes={A.QUEUED_MS: 350.0})
    hand = carrier_of(ext)
    durations = [0.8 * slow, 2.6 * slow, 1.2 * slow]
    outs = []
    for i, d in enumerate(durations):
        sp = task(system, pipeline, run_id, "transform", t0 + 1.0, t0 + 1.0 + d, map_index=i, batch="transform",
                  links=[link(hand, "xcom")])
        outs.append(sp)
    batch_end = t0 + 1.0 + max(durations)
    record_span(ident, ident.batch_span_id("transform"), A.batch_span_name("transform"), start=t0 + 1.0,
                end=batch_end, parent_span_id=ident.run_span_id, synthetic=False,
                attributes={A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.BATCH_SIZE: 3})
    load_start = batch_end + 0.1
    links = [link(carrier_of(o), "xcom") for o in outs]
    tries = []
    if fail_load:
        tries.append(task(system, pipeline, run_id, "load", load_start, load_start + 0.3, links=links,
                          error=ConnectionError("warehouse connection reset"), result=A.RESULT_RETRY))
        load_start += 0.6
    tries.append(task(system, pipeline, run_id, "load", load_start, load_start + 0.7, links=links,
                      try_number=len(tries) + 1))
    end = load_start + 0.8
    run_span(system, pipeline, run_id, start=t0, end=end, result=A.RESULT_SUCCESS)
    sc = tries[-1].get_span_context()
    return {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id,
            "extract": f"{ext.get_span_context().span_id:016x}",
            "transforms": [f"{o.get_span_context().span_id:016x}" for o in outs],
            "load": f"{sc.span_id:016x}", "load_carrier": inject({}, context=trace.set_span_in_context(tries[-1])),
            "batch": f"{ident.batch_span_id('transform'):016x}", "run_span": f"{ident.run_span_id:016x}"}


def events_run(n: int, t0: float, upstream_load: dict[str, str], *, fail: bool = False) -> dict[str, object]:
    """A Celery-style run whose consume task links to another run's load (a cross-trace hand-off)."""
    system, pipeline, run_id = "celery", "ingest_events", f"batch-{n}"
    ident = RunIdentity(system, pipeline, run_id)
    consume = task(system, pipeline, run_id, "consume", t0, t0 + 0.9 + 0.1 * n,
                   links=[link(upstream_load, "message")], attributes={A.QUEUED_MS: 120.0 + 40 * n})
    err = ValueError("bad row 17: 'amount' is not a number") if fail else None
    task(system, pipeline, run_id, "validate", t0 + 1.0 + 0.1 * n, t0 + 1.5 + 0.1 * n, error=err)
    run_span(system, pipeline, run_id, start=t0, end=t0 + 1.6 + 0.1 * n,
             result=A.RESULT_FAILURE if fail else A.RESULT_SUCCESS, error="ValueError" if fail else None)
    return {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id,
            "consume": f"{consume.get_span_context().span_id:016x}"}


def in_progress(t0: float) -> dict[str, object]:
    """A run with tasks recorded but no run span yet (the viewer lists it as running)."""
    system, pipeline, run_id = "dagster", "hourly_rollup", "run-live-1"
    ident = RunIdentity(system, pipeline, run_id)
    task(system, pipeline, run_id, "aggregate", t0, t0 + 2.0)
    return {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id}


def basic() -> dict[str, object]:
    sales = [sales_run(i, BASE + i * 600, slow=1.0 + 0.15 * (i % 3), fail_load=(i == 3)) for i in range(6)]
    events = [events_run(i, BASE + 3 * 600 + 60 + i * 300, sales[3]["load_carrier"], fail=(i == 1))  # type: ignore[arg-type]
              for i in range(3)]
    live = in_progress(time.time() - 5)
    return {"sales": sales, "events": events, "live": live}


def big(n: int) -> dict[str, object]:
    """One run with ``n`` spans: 100 task spans, the rest batch spans spread over them."""
    system, pipeline, run_id = "python", "backfill_big", "big-1"
    ident = RunIdentity(system, pipeline, run_id)
    tasks = 100
    per = max(0, (n - 1 - tasks) // tasks)
    extra = (n - 1 - tasks) - per * tasks
    t0 = BASE
    for t in range(tasks):
        ts = t0 + t * 0.5
        span = start_task_span(system, pipeline, run_id, f"chunk_{t:03d}", start_time=ts)
        tid = span.get_span_context().span_id
        count = per + (1 if t < extra else 0)
        for b in range(count):
            bs = ts + b * 0.004
            record_span(ident, ident.batch_span_id(f"chunk_{t:03d}", index=b), A.batch_span_name(f"chunk_{t:03d}"),
                        start=bs, end=bs + 0.0035, parent_span_id=tid, synthetic=False,
                        attributes={A.BATCH_INDEX: b, A.SYSTEM: system, A.PIPELINE_NAME: pipeline})
        end_task_span(span, end_time=ts + count * 0.004 + 0.01)
    run_span(system, pipeline, run_id, start=t0, end=t0 + tasks * 0.5 + 1, result=A.RESULT_SUCCESS)
    return {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id, "spans": 1 + tasks + per * tasks + extra}


def showcase_run(n: int, t0: float, *, fail: bool) -> dict[str, object]:
    """A richer run for the documentation pictures: sensors with queue wait, parallel extracts, a
    mapped validation batch, a failed attempt and its retry, chunked loading, a publish step."""
    system, pipeline, run_id = "airflow", "warehouse_refresh", f"scheduled__2026-11-{10 + n:02d}"
    ident = RunIdentity(system, pipeline, run_id)
    k = 1.0 + 0.12 * ((n * 7) % 5)
    wait = task(system, pipeline, run_id, "wait_for_upstream", t0 + 1.2, t0 + 4.0 * k,
                attributes={A.QUEUED_MS: 1200.0})
    t = t0 + 4.0 * k
    sources = [("extract_orders", 6.5), ("extract_customers", 3.2), ("extract_products", 2.1)]
    ext = [task(system, pipeline, run_id, name, t + 0.3 * i, t + 0.3 * i + d * k,
                links=[link(carrier_of(wait), "asset")], attributes={A.QUEUED_MS: 300.0 * (i + 1)})
           for i, (name, d) in enumerate(sources)]
    t = max(t + 0.3 * i + d * k for i, d in enumerate([6.5, 3.2, 2.1])) + 0.2
    parts = [1.1, 2.4, 0.9, 3.8, 1.6, 1.2]
    for i, d in enumerate(parts):
        task(system, pipeline, run_id, "validate", t + 0.05 * i, t + 0.05 * i + d * k, map_index=i, batch="validate",
             links=[link(carrier_of(ext[i % 3]), "xcom")])
    bend = t + max(0.05 * i + d * k for i, d in enumerate(parts))
    record_span(ident, ident.batch_span_id("validate"), A.batch_span_name("validate"), start=t, end=bend,
                parent_span_id=ident.run_span_id, synthetic=False,
                attributes={A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.BATCH_SIZE: len(parts)})
    t = bend + 0.2
    if fail:
        task(system, pipeline, run_id, "transform_facts", t, t + 1.4 * k,
             error=TimeoutError("lock wait timeout on facts"), result=A.RESULT_RETRY)
        t += 1.4 * k + 1.0
    tf = start_task_span(system, pipeline, run_id, "transform_facts", start_time=t, try_number=2 if fail else 1)
    ctx = trace.set_span_in_context(tf)
    tracer = pipetrace.get_tracer()
    for j, (name, d) in enumerate([("dbt run stg_orders", 1.2), ("dbt run fct_sales", 2.8), ("dbt test", 0.9)]):
        st = t + 0.1 + sum(x for _, x in [("", 1.2), ("", 2.8), ("", 0.9)][:j]) * k
        child = tracer.start_span(name, context=ctx, start_time=int(st * 1e9))
        child.end(end_time=int((st + d * k) * 1e9))
    t_end = t + 5.2 * k
    end_task_span(tf, end_time=t_end)
    t = t_end + 0.2
    ld = start_task_span(system, pipeline, run_id, "load_warehouse", start_time=t, attributes={A.QUEUED_MS: 800.0},
                         links=[link(carrier_of(tf), "xcom")])
    lctx = trace.set_span_in_context(ld)
    for b in range(8):
        st = t + b * 0.55 * k
        child = tracer.start_span(A.batch_span_name("load_warehouse"), context=lctx, start_time=int(st * 1e9),
                                  attributes={A.BATCH_INDEX: b, A.BATCH_SIZE: 50_000})
        child.end(end_time=int((st + 0.5 * k) * 1e9))
    t_end = t + 8 * 0.55 * k + 0.1
    end_task_span(ld, end_time=t_end)
    pub = task(system, pipeline, run_id, "publish_report", t_end + 0.1, t_end + 0.9,
               links=[link(carrier_of(ld), "xcom")])
    run_span(system, pipeline, run_id, start=t0, end=t_end + 1.0, result=A.RESULT_SUCCESS)
    return {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id,
            "publish": f"{pub.get_span_context().span_id:016x}"}


def showcase() -> dict[str, object]:
    runs = [showcase_run(i, BASE - 4 * 3600 + i * 1800, fail=(i == 7)) for i in range(8)]
    return {"showcase": runs}


NASTY = "</script><img src=x onerror=\"document.body.dataset.pwned=1\"><!--"


def hostile() -> dict[str, object]:
    """Names and attributes that would run script if the viewer ever parsed data as HTML."""
    system, pipeline, run_id = "python", "etl " + NASTY, "run-" + NASTY
    span = start_task_span(system, pipeline, run_id, "task" + NASTY, start_time=BASE,
                           attributes={"note": NASTY, "\u2028line": "sep\u2029",
                                       "template": "{{SCRIPTS}} {{BOOT}} {{HEAD}} {{TITLE}} {{CSP}}"})
    end_task_span(span, end_time=BASE + 1, error=RuntimeError(NASTY))
    run_span(system, pipeline, run_id, start=BASE, end=BASE + 1.5, result=A.RESULT_FAILURE)
    ident = RunIdentity(system, pipeline, run_id)
    return {"hostile": {"trace_id": f"{ident.trace_id:032x}", "run_id": run_id, "nasty": NASTY}}


def main() -> None:
    pipetrace.configure(exporters=["store"])
    out: dict[str, object] = {}
    for kind in sys.argv[1:]:
        if kind == "basic":
            out.update(basic())
        elif kind == "hostile":
            out.update(hostile())
        elif kind == "showcase":
            out.update(showcase())
        elif kind.startswith("big="):
            out["big"] = big(int(kind[4:]))
        else:
            raise SystemExit(f"unknown seed {kind!r}")
    if not pipetrace.force_flush(60):
        raise SystemExit("flush timed out")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
