"""CLI commands of the analysis package (registered by core/cli/__init__.py): critical-path, anomalies, alerts,
prune, audit."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..store import SpanStore

console = Console()
err = Console(stderr=True)


def _home_store() -> tuple[SpanStore, Path]:
    from .. import config as _config

    try:
        settings = _config.load()
    except _config.ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    from .errors import check_store_path

    check_store_path(Path(settings.store_path))  # PIPETRACE_HOME under a file: one line, not a traceback
    return SpanStore(settings.store_path), settings.home


def _seconds(option: str, value: str) -> float:
    from ..analysis.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        err.print(f"[red]{option}: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def critical_path_cmd(
    ident: Annotated[str, typer.Argument(help="trace id or run id")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The chain of spans and waits that decided when the run ended, with each step's share."""
    from ..analysis.critical_path import QUEUE, WAIT, critical_path
    from .waterfall import human_ms

    store, _ = _home_store()
    spans = store.trace(ident)
    if not spans:
        err.print(f"[red]no trace found for {escape(ident)!r}[/red]")
        raise typer.Exit(1)
    path = critical_path(spans)
    if as_json:
        sys.stdout.write(json.dumps(path.to_json(), indent=2) + "\n")
        return
    root = path.root
    assert root is not None
    console.print(f"[bold]critical path of {escape(root.name)}[/bold]  trace {root.trace_id}  "
                  f"total {human_ms(path.total_ns / 1e6)}")
    table = Table(box=None, header_style="bold")
    for col, justify in (("at", "right"), ("step", "left"), ("duration", "right"), ("share", "right"),
                         ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for step in path.steps:
        share = path.share(step)
        style = "yellow" if step.kind in (QUEUE, WAIT) else ("red" if step.span.status == "ERROR" else "green")
        table.add_row(human_ms((step.start_ns - root.start_ns) / 1e6), f"[{style}]{escape(step.label())}[/{style}]",
                      human_ms(step.duration_ms), f"{share * 100:5.1f}%", "█" * max(1, round(share * 30)))
    console.print(table)


def anomalies_cmd(
    since: Annotated[str, typer.Option(help="judge spans that started within this long ago (e.g. 24h, 7d)")] = "24h",
    threshold: Annotated[float | None, typer.Option(help="robust z-score threshold (default 4.0)")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    save: Annotated[bool, typer.Option(help="store the flags (table + span attributes)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Spans and runs slower than their baseline, worst first, with trace ids."""
    from dataclasses import replace

    from ..analysis.anomalies import detect
    from ..analysis.baselines import BaselineConfig
    from .waterfall import human_ms

    store, _ = _home_store()
    config = BaselineConfig() if threshold is None else replace(BaselineConfig(), threshold=threshold)
    since_ns = time.time_ns() - int(_seconds("--since", since) * 1e9)
    with err.status("scoring spans against their baselines…", spinner="dots") if err.is_terminal else _null():
        found = detect(store, since_ns=since_ns, config=config, save=save)
    if as_json:
        sys.stdout.write(json.dumps([a.to_json() for a in found[:limit]], indent=2) + "\n")
        return
    if not found:
        console.print(f"no anomalies since {since} (threshold {config.threshold})")
        return
    table = Table(title=f"anomalies since {since}: {len(found)} (threshold {config.threshold})")
    for col in ("start", "pipeline", "task", "duration", "baseline", "×", "score", "basis", "trace id"):
        table.add_column(col)
    for a in found[:limit]:
        table.add_row(datetime.fromtimestamp(a.start_ns / 1e9).strftime("%Y-%m-%d %H:%M"), escape(a.pipeline or ""),
                      escape(a.task or "(run)"), human_ms(a.duration_ms), human_ms(a.baseline_ms), f"{a.ratio:.1f}",
                      f"{a.score:.1f}", a.basis, a.trace_id)
    console.print(table)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


alerts_app = typer.Typer(help="Alert rules over the store: check once or watch continuously.", no_args_is_help=True)


def _alert_config(path: Path | None, home: Path):  # type: ignore[no-untyped-def]
    from ..analysis.alert_config import AlertConfigError, load

    path = path or next((p for p in (home / "alerts.toml", home / "alerts.json") if p.exists()), None)
    if path is None:
        err.print(f"[red]no alert rules: write {home / 'alerts.toml'} or pass --config (see docs/analysis.md)[/red]")
        raise typer.Exit(2)
    try:
        return load(path)
    except AlertConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


def _print_check(report, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        sys.stdout.write(json.dumps({
            "fired": [a.payload("") for a in report.fired], "duplicates": len(report.duplicates),
            "rate_limited": len(report.limited), "failed": [{"key": a.key, "error": e} for a, e in report.failed],
        }, indent=2) + "\n")
        return
    for alert in report.fired:
        console.print(f"[red]ALERT[/red] [{escape(alert.rule)}] {escape(alert.message)}  {alert.trace_id or ''}")
    for alert, error in report.failed:
        err.print(f"[yellow]delivery failed[/yellow] [{escape(alert.rule)}]: {escape(error)}")
    console.print(f"{len(report.fired)} sent, {len(report.duplicates)} duplicate, "
                  f"{len(report.limited)} rate-limited, {len(report.failed)} delivery failures")


@alerts_app.command("check")
def alerts_check(
    config: Annotated[Path | None, typer.Option(help="rules file (default $PIPETRACE_HOME/alerts.toml)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="evaluate and print, send nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate every rule once and send new alerts."""
    from ..analysis.alerts import check

    store, home = _home_store()
    report = check(store, _alert_config(config, home), dry_run=dry_run)
    _print_check(report, as_json)
    if report.failed:
        raise typer.Exit(1)


@alerts_app.command("watch")
def alerts_watch(
    config: Annotated[Path | None, typer.Option(help="rules file (default $PIPETRACE_HOME/alerts.toml)")] = None,
    interval: Annotated[str, typer.Option(help="time between checks")] = "60s",
    retention: Annotated[bool, typer.Option(help="also apply the default retention policy hourly")] = True,
) -> None:
    """Check the rules every --interval until interrupted."""
    from ..analysis.alerts import watch
    from ..analysis.retention import BackgroundRetention

    store, home = _home_store()
    cfg = _alert_config(config, home)
    bg = BackgroundRetention(store.path).start() if retention else None
    console.print(f"watching {len(cfg.rules)} rules every {interval} (Ctrl-C stops)")
    try:
        watch(store, cfg, interval_s=_seconds("--interval", interval),
              on_report=lambda r: _print_check(r, False) if (r.fired or r.failed) else None)
    except KeyboardInterrupt:
        pass
    finally:
        if bg is not None:
            bg.stop()


def prune_cmd(
    failed: Annotated[str, typer.Option(help="keep failed runs this long")] = "90d",
    normal: Annotated[str, typer.Option(help="keep other finished runs this long")] = "14d",
    sampled_out: Annotated[str, typer.Option(help="keep runs the sampler reduced to a summary this long")] = "1d",
    archive: Annotated[Path | None, typer.Option(help="first archive pruned traces into DIR (see pipetrace archive)")
                       ] = None,
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="encrypt and sign the archive with this key (default: $PIPETRACE_ARCHIVE_KEY)")] = None,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="refuse to archive without a key")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would go, delete nothing")] = False,
    vacuum: Annotated[bool, typer.Option(help="VACUUM afterwards to return the space to the OS")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply the retention policy (runs in progress are never removed)."""
    from ..analysis.archive import ArchiveError
    from ..analysis.retention import RetentionPolicy, prune
    from .archive_commands import key_or_exit

    key = key_or_exit(key_file) if archive is not None else None
    if archive is not None and encrypt and key is None:
        err.print("[red]--encrypt: no key (pass --key-file or set PIPETRACE_ARCHIVE_KEY; "
                  "make one with pipetrace archive keygen)[/red]")
        raise typer.Exit(2)
    store, _ = _home_store()
    policy = RetentionPolicy(_seconds("--failed", failed), _seconds("--normal", normal),
                             _seconds("--sampled-out", sampled_out))
    with _progress() as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        try:
            report = prune(store, policy, archive_dir=archive, dry_run=dry_run, vacuum=vacuum, progress=progress,
                           archive_key=key)
        except ArchiveError as exc:
            err.print(f"[red]archive failed, nothing was removed:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
        return
    verb = "would remove" if dry_run else "removed"
    tiers = ", ".join(f"{n} {t}" for t, n in sorted(report.by_tier.items())) or "nothing expired"
    console.print(f"policy: {policy.describe()}")
    console.print(f"{verb} {report.runs} runs in {report.traces} traces ({tiers})"
                  + ("" if dry_run else f", {report.spans} spans; freed {_human_bytes(report.freed_bytes)}"
                     f" (store now {_human_bytes(report.bytes_after)})"))
    if report.archive:
        console.print(f"archived to {report.archive}" + (" (encrypted, signed manifest)" if key else ""))


def audit_cmd(
    skew: Annotated[str, typer.Option(help="clock-skew tolerance for child-outside-parent")] = "1s",
    stale: Annotated[str, typer.Option(help="a trace without run span this old is reported")] = "24h",
    details: Annotated[int, typer.Option(help="findings listed per kind")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    secrets: Annotated[bool, typer.Option("--secrets", help="scan stored spans for secrets instead "
                                          "(detectors + this process's known secrets)")] = False,
    mask: Annotated[bool, typer.Option("--mask", help="with --secrets: rewrite affected spans masked")] = False,
    since: Annotated[str | None, typer.Option(help="with --secrets: only traces with a span this recent")] = None,
) -> None:
    """Broken traces, runs with untraced tasks, coverage % per pipeline. Exit 1 when anything is found.

    With ``--secrets``: where stored spans hold secrets (trace, span, field, detector — never the value);
    ``--mask`` masks them in place."""
    from ..analysis.audit import audit

    if mask and not secrets:
        err.print("[red]--mask needs --secrets[/red]")
        raise typer.Exit(2)
    if secrets:
        _audit_secrets(mask=mask, since=since, details=details, as_json=as_json)
        return
    store, _ = _home_store()
    with _progress() as bar:
        task = bar.add_task("auditing traces", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = audit(store, skew_ms=_seconds("--skew", skew) * 1000, stale_after_s=_seconds("--stale", stale),
                       progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        console.print(f"{report.traces} traces, {report.runs} runs, {report.spans} spans, "
                      f"{report.in_progress} in progress")
        table = Table(title="coverage per pipeline")
        for col in ("pipeline", "runs", "tasks expected", "tasks traced", "coverage", "expected from"):
            table.add_column(col)
        for pipeline, cov in sorted(report.coverage.items()):
            style = "green" if cov.percent >= 99.999 else "yellow"
            table.add_row(escape(pipeline), str(cov.runs), str(cov.expected), str(cov.traced),
                          f"[{style}]{cov.percent:.1f}%[/{style}]", cov.source)
        console.print(table)
        if report.clean:
            console.print("[green]clean: no broken traces, every expected task traced[/green]")
        _print_findings(report.counts(), report.findings, "kind", details, lambda f: (
            f"{f.trace_id} {escape(f.pipeline or '')} {escape(f.run_id or '')}: {escape(f.detail)}"))
    if not report.clean:
        raise typer.Exit(1)


def _print_findings(counts: Mapping[str, int], findings: Sequence[Any], group: str, details: int,
                    line: Callable[[Any], str]) -> None:
    """Each group's count in red, then at most ``details`` of its findings, one line each."""
    for name, count in sorted(counts.items()):
        console.print(f"[red]{name}[/red]: {count}")
        for f in [f for f in findings if getattr(f, group) == name][:details]:
            console.print(f"  {line(f)}")


def _audit_secrets(*, mask: bool, since: str | None, details: int, as_json: bool) -> None:
    from ..analysis.secrets_audit import audit_secrets

    store, _ = _home_store()
    since_ns = time.time_ns() - int(_seconds("--since", since) * 1e9) if since else None
    with _progress() as bar:
        task = bar.add_task("scanning spans for secrets", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = audit_secrets(store, mask=mask, since_ns=since_ns, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        console.print(f"{report.traces} traces, {report.spans} spans scanned")
        if report.clean:
            console.print("[green]clean: no secret found[/green]")
        _print_findings(report.by_detector(), report.findings, "detector", details,
                        lambda f: f"{f.trace_id} {f.span_id} {escape(f.span_name)}: {escape(f.field)}")
        if mask:
            console.print(f"masked {report.masked_spans} spans in place")
    if not report.clean and not mask:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("critical-path")(critical_path_cmd)
    app.command("anomalies")(anomalies_cmd)
    app.add_typer(alerts_app, name="alerts")
    app.command("prune")(prune_cmd)
    from .archive_commands import archive_app

    app.add_typer(archive_app, name="archive")
    app.command("audit")(audit_cmd)
