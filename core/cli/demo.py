"""``pipetrace demo``: runs example pipelines with tracing into the embedded store and shows them.

Parts, in order: a plain-Python ETL (always), each installed orchestrator's own part (the
``pipetrace.demos`` entry-point group: a callable returning a trace id), and the cross-system scenario
(``example_dags/cross_system``: Airflow → Celery → Dagster in one trace). A part whose orchestrator is
missing is skipped with the reason. What the orchestrators print goes to ``$PIPETRACE_HOME/demo.log``
so the terminal shows the progress, the cross-system waterfall and where to look next.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import attributes as A
from ..processing.runtime import configure, force_flush, settings
from ..spans import batch_span, link, run_span, task_span
from ..store import SpanStore
from .tables import Cell, Column, print_table
from .waterfall import legend, render

# Orchestrator parts in the order they run: (entry-point name, module that must be importable, label).
PARTS = (("airflow", "airflow", "Airflow"), ("dagster", "dagster", "Dagster"),
         ("celery", "celery", "Celery + kombu"), ("prefect", "prefect", "Prefect"))
CROSS_SYSTEM = "cross_system"
CROSS_NEEDS = ("airflow", "celery", "dagster")
UI_PORT = 8765
PART_TIMEOUT_S = 150.0


@dataclass
class Outcome:
    name: str
    label: str
    status: str  # ok | failed | skipped
    detail: str = ""
    trace_id: str | None = None
    seconds: float = 0.0
    systems: list[str] = field(default_factory=list)
    spans: int = 0
    notes: list[str] = field(default_factory=list)


def python_etl() -> str:
    """A small ETL (extract → 3 parallel transforms → load) traced with the core helpers."""
    from ..carriers import inject
    from ..identity import RunIdentity
    from ..spans import record_span

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
    ident = RunIdentity("python", pipeline, run_id)
    record_span(ident, ident.batch_span_id("transform"), A.batch_span_name("transform"), start=t0,
                end=time.time(), parent_span_id=ident.run_span_id, synthetic=False,
                attributes={A.BATCH_SIZE: 3, A.SYSTEM: "python", A.PIPELINE_NAME: pipeline})
    with task_span("python", pipeline, run_id, "load", links=[link(o, "xcom") for o in outputs]):
        with batch_span("rows", size=2, index=0):
            time.sleep(0.02)
    run_span("python", pipeline, run_id, start=start, end=time.time(), result=A.RESULT_SUCCESS)
    return f"{ident.trace_id:032x}"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (an already-imported module may have no ``__spec__``)."""
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cross_system_dir() -> Path:
    """``example_dags/cross_system`` of the source checkout this pipetrace is installed from."""
    return Path(__file__).resolve().parents[2] / "example_dags" / "cross_system"


def _load_cross_system() -> ModuleType:
    folder = cross_system_dir()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # its modules import their siblings by name
    spec = importlib.util.spec_from_file_location("pipetrace_demo_cross_system", folder / "scenario.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {folder / 'scenario.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _skip_reason(module: str) -> str:
    if module == "prefect" and installed("airflow"):
        return ("not installed: Prefect 3.9 and Airflow 3.3 cannot share one environment, so pipetrace[all] "
                "leaves Prefect out; run `pipetrace demo` in an env with pipetrace[prefect] for this part")
    return f"{module} is not installed (pip install 'pipetrace[{module}]')"


Runner = Callable[[Callable[[str], None]], "str | None"]


@dataclass(frozen=True)
class Part:
    name: str
    label: str
    runner: Runner | None  # None: skipped, for the reason in ``skip``
    skip: str = ""


def _entry_point_runner(ep: EntryPoint) -> Runner:
    return lambda say: ep.load()()


def plan() -> list[Part]:
    """Every part in running order, each with its runner or the reason it is skipped."""
    eps = {ep.name: ep for ep in entry_points(group="pipetrace.demos")}
    parts = [Part("python", "plain Python (core API)", lambda say: python_etl())]
    for name, module, label in PARTS:
        if not installed(module):
            parts.append(Part(name, label, None, _skip_reason(module)))
        elif name not in eps:
            parts.append(Part(name, label, None, f"{module} is installed but this pipetrace has no {name} demo"))
        else:
            parts.append(Part(name, label, _entry_point_runner(eps[name])))
    known = {name for name, _, _ in PARTS}
    parts += [Part(name, name, _entry_point_runner(eps[name])) for name in sorted(set(eps) - known)]
    label = "Airflow → Celery → Dagster, one trace"
    missing = [m for m in CROSS_NEEDS if not installed(m)]
    if missing:
        parts.append(Part(CROSS_SYSTEM, label, None, f"needs {' + '.join(CROSS_NEEDS)}; not installed: "
                          f"{', '.join(missing)} (pip install 'pipetrace[all]')"))
    elif not (cross_system_dir() / "scenario.py").is_file():
        parts.append(Part(CROSS_SYSTEM, label, None, f"{cross_system_dir()} not found (needs a source checkout)"))
    else:
        parts.append(Part(CROSS_SYSTEM, label, lambda say: _load_cross_system().run(say)))
    return parts


def run_part_here(name: str, result_path: Path) -> int:
    """Child-process side: run one part, write ``{trace_id, notes, error}`` as JSON to ``result_path``."""
    notes: list[str] = []
    doc: dict[str, object] = {"trace_id": None, "notes": notes, "error": None}
    try:
        configure()
        part = next(p for p in plan() if p.name == name)
        if part.runner is None:
            raise RuntimeError(part.skip)
        doc["trace_id"] = part.runner(notes.append)
    except BaseException as exc:  # reported by the parent; the traceback goes to the log
        import traceback

        traceback.print_exc()
        doc["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        force_flush(10)
        result_path.write_text(json.dumps(doc))
    return 0 if doc["error"] is None else 1


def _run_child(part: Part, log_path: Path, timeout_s: float) -> Outcome:
    """Run one part in its own process (each orchestrator reads its configuration once per process and
    sets up logging its own way); what it prints goes to the log file, not the terminal."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pipetrace-demo-") as tmp:
        result = Path(tmp) / "result.json"
        with open(log_path, "ab") as log:
            log.write(f"\n===== {part.name} =====\n".encode())
            log.flush()
            proc = subprocess.Popen([sys.executable, "-m", "pipetrace.cli.demo", part.name, str(result)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return Outcome(part.name, part.label, "failed", f"timed out after {timeout_s:.0f}s",
                               seconds=time.monotonic() - t0)
        seconds = time.monotonic() - t0
        try:
            doc = json.loads(result.read_text())
        except (OSError, ValueError):
            return Outcome(part.name, part.label, "failed", f"exited {proc.returncode} without a result",
                           seconds=seconds)
    notes = [str(n) for n in doc.get("notes") or []]
    tid, error = doc.get("trace_id"), doc.get("error")
    if error or not tid:
        return Outcome(part.name, part.label, "failed", str(error or "returned no trace id"), seconds=seconds,
                       notes=notes)
    return Outcome(part.name, part.label, "ok", trace_id=str(tid), seconds=seconds, notes=notes)


def selected(parts: list[Part]) -> list[Part]:
    """``PIPETRACE_DEMO_PARTS=python,cross_system`` runs only those parts (the others are listed as skipped)."""
    wanted = {p.strip() for p in os.environ.get("PIPETRACE_DEMO_PARTS", "").split(",") if p.strip()}
    if not wanted:
        return parts
    unknown = wanted - {p.name for p in parts}
    if unknown:
        raise ValueError(f"PIPETRACE_DEMO_PARTS: unknown part(s) {', '.join(sorted(unknown))}; "
                         f"parts: {', '.join(p.name for p in parts)}")
    return [p if p.name in wanted or p.runner is None else Part(p.name, p.label, None, "not selected "
            "(PIPETRACE_DEMO_PARTS)") for p in parts]


def _run_parts(console: Console, log_path: Path) -> list[Outcome]:
    parts = selected(plan())
    outcomes: list[Outcome] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        overall = bar.add_task("example pipelines", total=len(parts))
        for part in parts:
            bar.update(overall, description=f"running {part.label}")
            if part.runner is None:
                outcome = Outcome(part.name, part.label, "skipped", part.skip)
                console.print(f"[yellow]- skipped[/yellow] {escape(part.label)}: {escape(part.skip)}")
            else:
                outcome = _run_child(part, log_path, PART_TIMEOUT_S)
                mark = "[green]✓[/green]" if outcome.status == "ok" else "[red]✗[/red]"
                note = f": {escape(outcome.detail)} (see {log_path})" if outcome.detail else ""
                console.print(f"{mark} {escape(part.label)} ({outcome.seconds:.1f}s){note}")
                for line in outcome.notes:
                    console.print(f"    {escape(line)}")
            outcomes.append(outcome)
            bar.advance(overall)
    return outcomes


SUMMARY_COLUMNS = (Column("part", keep=9, wraps=True), Column("result", keep=8),
                   Column("time", keep=3, justify="right"), Column("spans", keep=2, justify="right"),
                   Column("systems", keep=1), Column("trace id", is_id=True))


def _summary(console: Console, outcomes: list[Outcome], store: SpanStore) -> None:
    """The parts' results; trace ids whole (a narrow terminal drops other columns first)."""
    rows: list[list[Cell]] = []
    for o in outcomes:
        if o.trace_id:
            spans = store.trace(o.trace_id)
            o.spans = len(spans)
            o.systems = sorted({str(s.attributes.get(A.SYSTEM)) for s in spans if s.attributes.get(A.SYSTEM)})
        style = {"ok": "green", "failed": "red", "skipped": "yellow"}[o.status]
        rows.append([escape(o.label), f"[{style}]{o.status}[/{style}]", f"{o.seconds:.1f}s" if o.seconds else "",
                     str(o.spans) if o.trace_id else "", ",".join(o.systems), o.trace_id or ""])
    print_table(console, SUMMARY_COLUMNS, rows, title="pipetrace demo")


def _has_gui() -> bool:
    """Whether a browser can open a window: a text-mode browser would take over this terminal."""
    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("BROWSER"))
            or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))


def _serve(store: SpanStore, trace_id: str, console: Console) -> None:
    """Serve the viewer on loopback, open a browser tab at the trace, run until Ctrl+C."""
    import webbrowser

    from ..ui.server import make_server, serve_until_interrupted

    try:
        server = make_server(store, port=UI_PORT)
    except OSError:
        server = make_server(store, port=0)  # 8765 taken (another viewer?): any free port
    url = f"{server.url}#/run/{trace_id}"
    console.print(f"[bold]viewer:[/bold] {url}   (Ctrl+C to stop)", soft_wrap=True)
    if not (_has_gui() and webbrowser.open(url)):
        console.print("no graphical browser found here: open the address above yourself")
    serve_until_interrupted(server)


def run_demo(console: Console, open_browser: bool = True) -> int:
    """Run every available part, show the cross-system trace; 1 if a part that ran failed."""
    started = time.monotonic()
    configure()
    home = Path(settings().store_path).parent
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "demo.log"
    log_path.write_text("")  # this run only
    console.print(f"[bold]pipetrace demo[/bold]: tracing example pipelines into {settings().store_path}",
                  soft_wrap=True)  # paths, ids and URLs are never broken over lines: they are copied
    try:
        outcomes = _run_parts(console, log_path)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return 2
    store = SpanStore(settings().store_path)
    _summary(console, outcomes, store)
    done = [o for o in outcomes if o.status == "ok" and o.trace_id]
    cross = next((o for o in done if o.name == CROSS_SYSTEM), None)
    show = cross or (done[-1] if done else None)
    if show is not None and show.trace_id:
        spans = store.trace(show.trace_id)
        title = "one trace across " + ", ".join(show.systems) if show is cross else show.label
        console.print(f"\n[bold]{escape(title)}[/bold] — trace {show.trace_id} ({len(spans)} spans)", soft_wrap=True)
        console.print(render(spans, console_width=console.width))
        for line in legend(spans):
            console.print(line, style="dim", markup=False, highlight=False)
    console.print(f"\ndemo finished in {time.monotonic() - started:.1f}s. List the runs: [bold]pipetrace runs[/bold]"
                  f"   one run: [bold]pipetrace show TRACE_ID[/bold]   orchestrator output: {log_path}", soft_wrap=True)
    failed = any(o.status == "failed" for o in outcomes)
    if show is None or not show.trace_id:
        return 1
    if open_browser:
        _serve(store, show.trace_id, console)
    else:
        console.print(f"see it in the browser: [bold]pipetrace ui[/bold] → "
                      f"http://127.0.0.1:{UI_PORT}/#/run/{show.trace_id}", soft_wrap=True)
    return 1 if failed else 0


if __name__ == "__main__":  # a part's child process: python -m pipetrace.cli.demo PART RESULT_JSON
    raise SystemExit(run_part_here(sys.argv[1], Path(sys.argv[2])))
