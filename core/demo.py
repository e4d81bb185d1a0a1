"""``pipetrace demo``: runs example pipelines with tracing into the embedded store and shows them.

The core part (a plain-Python ETL) always runs; each installed adapter contributes its own part through
the ``pipetrace.demos`` entry-point group (a callable returning a trace id or None). Parts whose
orchestrator is not installed are listed as skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from . import attributes as A
from .runtime import configure, force_flush, settings
from .spans import batch_span, link, run_span, task_span
from .store import SpanStore
from .waterfall import render

ORCHESTRATORS = {"airflow": "airflow", "dagster": "dagster", "prefect": "prefect", "celery": "celery",
                 "kombu": "kombu"}


def python_etl() -> str:
    """A small ETL (extract → 3 parallel transforms → load) traced with the core helpers."""
    from .carriers import inject

    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    pipeline = "demo_etl"
    start = time.time()
    with task_span("python", pipeline, run_id, "extract"):
        time.sleep(0.05)
        handoff = inject({})

    def transform(part: int) -> dict[str, str]:
        with task_span("python", pipeline, run_id, "transform", map_index=part, batch="transform",
                       links=[link(handoff, "xcom")]):
            time.sleep(0.02 + 0.02 * part)
            return inject({})

    t0 = time.time()
    with ThreadPoolExecutor(3) as pool:
        outputs = list(pool.map(transform, range(3)))
    from .identity import RunIdentity
    from .spans import record_span

    ident = RunIdentity("python", pipeline, run_id)
    record_span(ident, ident.batch_span_id("transform"), A.batch_span_name("transform"), start=t0,
                end=time.time(), parent_span_id=ident.run_span_id, synthetic=False,
                attributes={A.BATCH_SIZE: 3, A.SYSTEM: "python", A.PIPELINE_NAME: pipeline})
    with task_span("python", pipeline, run_id, "load", links=[link(o, "xcom") for o in outputs]):
        with batch_span("rows", size=2, index=0):
            time.sleep(0.02)
    run_span("python", pipeline, run_id, start=start, end=time.time(), result=A.RESULT_SUCCESS)
    return f"{ident.trace_id:032x}"


def run_demo(console: Console, open_browser: bool = True) -> int:
    configure()
    parts = {ep.name: ep for ep in entry_points(group="pipetrace.demos")}
    trace_ids: list[str] = []
    skipped: list[str] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("running example pipelines", total=1 + len(ORCHESTRATORS))
        trace_ids.append(python_etl())
        progress.advance(task)
        for name, module in ORCHESTRATORS.items():
            progress.update(task, description=f"{name} example")
            if importlib.util.find_spec(module) is None:
                skipped.append(f"{name}: not installed (pip install 'pipetrace[{name}]')")
            elif name not in parts:
                skipped.append(f"{name}: installed, but this pipetrace has no {name} demo yet")
            else:
                try:
                    tid = parts[name].load()()
                    if tid:
                        trace_ids.append(tid)
                except Exception as exc:
                    skipped.append(f"{name}: demo failed: {exc!r}")
            progress.advance(task)
        force_flush(10)
    store = SpanStore(settings().store_path)
    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(line)}")
    show = trace_ids[-1]
    spans = store.trace(show)
    console.print(f"[bold]trace {show}[/bold] ({len(spans)} spans) — stored in {settings().store_path}")
    console.print(render(spans, console_width=console.width))
    console.print(f"{len(trace_ids)} trace(s) recorded. See them with: pipetrace runs / pipetrace show ID")
    del open_browser  # the web viewer comes with the viewer issue; nothing to open yet
    return 0
