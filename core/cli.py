"""The ``pipetrace`` command: runs, show, export, doctor, demo, run."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console

from . import config as _config
from .store import SpanStore
from .waterfall import human_ms, render

app = typer.Typer(help="pipetrace: one pipeline run = one OpenTelemetry trace.", no_args_is_help=True,
                  add_completion=False)
console = Console()
err = Console(stderr=True)


def _settings() -> _config.Settings:
    try:
        return _config.load()
    except _config.ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _store() -> SpanStore:
    return SpanStore(_settings().store_path)


@app.command()
def runs(
    pipeline: Annotated[str | None, typer.Option(help="pipeline name or glob")] = None,
    system: Annotated[str | None, typer.Option(help="airflow, dagster, prefect, celery, kombu")] = None,
    status: Annotated[str | None, typer.Option(help="success, failure, running, …")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List recent runs, newest first."""
    from .message_runs import close_ended_runs

    store = _store()
    close_ended_runs(store)  # Celery/kombu runs that ended since a worker last swept get their run span
    rows = store.runs(pipeline=pipeline, system=system, status=status, limit=limit)
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
        return
    from datetime import datetime

    from rich.table import Table

    table = Table(title=f"runs ({len(rows)})")
    for col in ("start", "system", "pipeline", "run id", "status", "duration", "spans", "systems", "trace id"):
        table.add_column(col)
    for r in rows:
        style = "red" if r.status in ("failure", "error", "timeout") else (
            "yellow" if r.in_progress else "green")
        table.add_row(datetime.fromtimestamp(r.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S"), r.system or "",
                      r.pipeline or "", r.run_id or "", f"[{style}]{r.status}[/{style}]", human_ms(r.duration_ms),
                      str(r.span_count), ",".join(r.systems), r.trace_id)
    console.print(table)


@app.command()
def show(ident: Annotated[str, typer.Argument(help="trace id or run id")]) -> None:
    """Terminal waterfall of one run: span tree, bars to scale, durations, results."""
    spans = _store().trace(ident)
    if not spans:
        err.print(f"[red]no trace found for {ident!r}[/red]")
        raise typer.Exit(1)
    console.print(f"[bold]trace {spans[0].trace_id}[/bold]  {len(spans)} spans")
    console.print(render(spans, console_width=console.width))


@app.command()
def export(
    ident: Annotated[str, typer.Argument(help="trace id or run id")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="otlp-json or jaeger-json")] = "otlp-json",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file (default: stdout)")] = None,
) -> None:
    """Write one trace as OTLP JSON or Jaeger JSON (the Jaeger UI's "JSON File" upload)."""
    from .formats import to_jaeger_json, to_otlp_json

    if fmt not in ("otlp-json", "jaeger-json"):
        err.print(f"[red]--format {fmt!r}: use otlp-json or jaeger-json[/red]")
        raise typer.Exit(2)
    spans = _store().trace(ident)
    if not spans:
        err.print(f"[red]no trace found for {ident!r}[/red]")
        raise typer.Exit(1)
    doc = to_otlp_json(spans) if fmt == "otlp-json" else to_jaeger_json(spans)
    text = json.dumps(doc, indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text)
        err.print(f"wrote {len(spans)} spans to {output}")


def _reachable(endpoint: str, timeout: float = 2.0) -> tuple[bool, str]:
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 4318)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port}: {exc}"


@app.command()
def doctor() -> None:
    """Effective configuration, store writability and OTLP reachability."""
    try:
        settings = _config.load()
    except _config.ConfigError as exc:
        err.print(f"[red]✗ configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    ok = True
    console.print("[bold]effective configuration[/bold]")
    for f in settings.__dataclass_fields__:
        value = getattr(settings, f)
        if f == "otlp_headers":
            value = settings.redacted_headers()
        console.print(f"  {f} = {value!r}")
    try:
        store = SpanStore(settings.store_path)
        count = store.count()
        store.close()
        console.print(f"[green]✓[/green] store {settings.store_path} writable ({count} spans)")
    except Exception as exc:
        ok = False
        console.print(f"[red]✗[/red] store {settings.store_path}: {exc}")
    if "otlp" in settings.exporters and settings.otlp_endpoint:
        reachable, detail = _reachable(settings.otlp_endpoint)
        ok = ok and reachable
        mark = "[green]✓[/green]" if reachable else "[red]✗[/red]"
        console.print(f"{mark} OTLP endpoint {detail}")
    else:
        console.print("  OTLP exporter not configured (set OTEL_EXPORTER_OTLP_ENDPOINT)")
    from importlib.metadata import entry_points

    adapters = sorted(ep.name for ep in entry_points(group="pipetrace.adapters"))
    console.print(f"  adapters installed: {', '.join(adapters) or 'none'}")
    if not ok:
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
    from .launcher import launch

    if not ctx.args:
        err.print("usage: pipetrace run -- COMMAND [ARGS...]")
        raise typer.Exit(2)
    raise typer.Exit(launch(list(ctx.args)))


# Command groups living next to the code they drive register themselves here (each module exposes
# ``register(app)``): the viewer (ui, report) and analysis (critical-path, anomalies, alerts, prune, audit).
EXTENSIONS = ("pipetrace.ui.commands", "pipetrace.analysis.commands")


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
