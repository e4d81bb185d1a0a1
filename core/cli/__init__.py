"""The ``pipetrace`` command: runs, show, export, doctor, demo, run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import config as _config
from ..store import SpanStore
from ..store.records import SpanRecord
from .errors import check_output, fail, open_store, write_output
from .errors import err as _errors_console
from .tables import Cell, Column, print_table, tsv
from .waterfall import human_ms, label, legend, ordered_tree, render

SYSTEMS = ("airflow", "dagster", "prefect", "celery", "kombu", "python")

app = typer.Typer(help="pipetrace: one pipeline run = one OpenTelemetry trace.", no_args_is_help=True,
                  add_completion=False)
console = Console()
err = _errors_console


def _settings() -> _config.Settings:
    try:
        return _config.load()
    except _config.ConfigError as exc:
        fail(f"configuration: {exc}", "`pipetrace doctor` shows the effective configuration", code=2)


def _store() -> SpanStore:
    """The configured store, or one line saying why it cannot be opened."""
    return open_store(Path(_settings().store_path))


def _check_system(store: SpanStore, system: str) -> None:
    """A ``--system`` that is neither a known system nor one in this store is a typo: say which exist."""
    if system in SYSTEMS:
        return
    seen = {s for r in store.runs(limit=500) for s in (r.system, *r.systems) if s}
    if system not in seen:
        valid = ", ".join(sorted(set(SYSTEMS) | seen))
        fail(f"--system {system!r} is not a system pipetrace knows or has stored", f"use one of: {valid}", code=2)


RUN_COLUMNS = (Column("start", keep=3), Column("system", keep=2), Column("pipeline", keep=5, wraps=True),
               Column("run id", is_id=True), Column("status", keep=9), Column("duration", keep=6, justify="right"),
               Column("spans", keep=1, justify="right"), Column("systems", keep=0), Column("trace id", is_id=True))


@app.command()
def runs(
    pipeline: Annotated[str | None, typer.Option(help="pipeline name or glob")] = None,
    system: Annotated[str | None, typer.Option(help=", ".join(SYSTEMS))] = None,
    status: Annotated[str | None, typer.Option(help="success, failure, running, …")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column, whatever the terminal's width")] = False,
) -> None:
    """List recent runs, newest first. Ids are never cut: a narrow terminal drops other columns; a pipe
    gets tab-separated rows."""
    from ..adapter.message_runs import close_ended_runs

    store = _store()
    if system is not None:
        _check_system(store, system)
    close_ended_runs(store)  # Celery/kombu runs that ended since a worker last swept get their run span
    rows = store.runs(pipeline=pipeline, system=system, status=status, limit=limit)
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
        return
    from datetime import datetime

    table: list[list[Cell]] = []
    for r in rows:
        style = "red" if r.status in ("failure", "error", "timeout") else (
            "yellow" if r.in_progress else "green")
        table.append([datetime.fromtimestamp(r.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S"), r.system or "",
                      escape(r.pipeline or ""), escape(r.run_id or ""), f"[{style}]{escape(r.status)}[/{style}]",
                      human_ms(r.duration_ms), str(r.span_count), ",".join(r.systems), r.trace_id])
    print_table(console, RUN_COLUMNS, table, title=f"runs ({len(rows)})", wide=wide)
    if not rows:
        err.print("no runs match" if (pipeline or system or status) else
                  f"no runs in {_settings().store_path} yet: trace something with `pipetrace run -- COMMAND`")


def _spans_or_exit(ident: str) -> list[SpanRecord]:
    spans = _store().trace(ident)
    if not spans:
        fail(f"no trace found for {ident!r}", "`pipetrace runs` lists the run ids and trace ids in this store")
    return spans


SPAN_COLUMNS = (Column("depth"), Column("span"), Column("system"), Column("result"), Column("duration_ms"),
                Column("span id", is_id=True), Column("parent span id", is_id=True))


@app.command()
def show(
    ident: Annotated[str, typer.Argument(help="trace id or run id")],
    as_json: Annotated[bool, typer.Option("--json", help="the spans as JSON")] = False,
) -> None:
    """Terminal waterfall of one run: span tree, bars to scale, durations, results (tab-separated span
    rows when stdout is not a terminal)."""
    spans = _spans_or_exit(ident)
    if as_json:
        sys.stdout.write(json.dumps([s.to_json() for s in spans], indent=2) + "\n")
        return
    if not console.is_terminal:
        rows: list[list[Cell]] = [[str(depth), label(s), s.system or "", s.result or "", f"{s.duration_ms:.3f}",
                                   s.span_id, s.parent_span_id or ""] for depth, s in ordered_tree(spans)]
        sys.stdout.write(f"# trace {spans[0].trace_id}\n" + tsv(SPAN_COLUMNS, rows))
        return
    console.print(f"[bold]trace {spans[0].trace_id}[/bold]  {len(spans)} spans", no_wrap=True, crop=False)
    console.print(render(spans, console_width=console.width))
    for line in legend(spans):
        console.print(line, style="dim", markup=False, highlight=False)


@app.command()
def export(
    ident: Annotated[str, typer.Argument(help="trace id or run id")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="otlp-json or jaeger-json")] = "otlp-json",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file (default: stdout)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite the output file if it exists")] = False,
) -> None:
    """Write one trace as OTLP JSON or Jaeger JSON (the Jaeger UI's "JSON File" upload)."""
    from ..store.formats import to_jaeger_json, to_otlp_json

    if fmt not in ("otlp-json", "jaeger-json"):
        fail(f"--format {fmt!r} is not a format pipetrace writes", "use otlp-json or jaeger-json", code=2)
    if output is not None:
        check_output(output, force=force)  # before the work: a typo in the path costs nothing
    spans = _spans_or_exit(ident)
    doc = to_otlp_json(spans) if fmt == "otlp-json" else to_jaeger_json(spans)
    text = json.dumps(doc, indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        write_output(output, text, force=force)
        err.print(f"wrote {len(spans)} spans to {output}")


@app.command()
def doctor() -> None:
    """Effective configuration, then what really works here: store, each exporter (installed, reachable),
    the orchestrators that import (with versions). Exit 1 when something will not work."""
    from .doctor import run_checks

    try:
        settings = _config.load()
    except _config.ConfigError as exc:
        fail(f"configuration: {exc}", "fix the variable it names (docs/configuration.md)", code=2)
    console.print("[bold]effective configuration[/bold]")
    for f in settings.__dataclass_fields__:
        value = getattr(settings, f)
        if f == "otlp_headers":
            value = settings.redacted_headers()
        console.print(f"  {f} = {value!r}", markup=False, highlight=False)
    findings = run_checks(settings)
    for finding in findings:
        style = {True: "green", False: "red", None: ""}[finding.ok]
        console.print(finding.line(), style=style, markup=False, highlight=False, soft_wrap=True)
    if any(f.ok is False for f in findings):
        raise typer.Exit(1)


@app.command()
def demo(
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser")] = False,
) -> None:
    """Run the example pipelines with tracing into the embedded store and show them."""
    from .demo import run_demo

    raise typer.Exit(run_demo(console, open_browser=not no_browser))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Run COMMAND with pipetrace enabled in it and its children: pipetrace run -- COMMAND ..."""
    from ..startup.launcher import launch

    if not ctx.args:
        err.print("usage: pipetrace run -- COMMAND [ARGS...]")
        raise typer.Exit(2)
    raise typer.Exit(launch(list(ctx.args)))


# Command groups living next to the code they drive register themselves here (each module exposes
# ``register(app)``): the viewer (ui, report) and analysis (critical-path, anomalies, alerts, prune, audit).
EXTENSIONS = ("pipetrace.cli.ui_commands", "pipetrace.cli.analysis_commands")


def _register_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet; anything else missing is a real error
                continue
            raise
        module.register(app)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
