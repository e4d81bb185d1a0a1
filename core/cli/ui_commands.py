"""CLI commands of the viewer: ``pipetrace ui`` and ``pipetrace report`` (registered by core/cli/__init__.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ..store import SpanStore

err = Console(stderr=True)


def _settings():  # type: ignore[no-untyped-def]
    from .. import config as _config

    try:
        return _config.load()
    except _config.ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _store() -> SpanStore:
    from .errors import open_store

    return open_store(Path(_settings().store_path))


def _access(path: Path | None):  # type: ignore[no-untyped-def]
    """The access file, validated; any problem stops the viewer (fail closed)."""
    from ..ui.access import AccessConfigError, AccessFile, load

    if path is None:
        return None
    try:
        return AccessFile(path, load(path))
    except AccessConfigError as exc:
        err.print(f"[red]access file refused, the viewer does not start:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def ui(
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one)", min=0, max=65535)] = 8765,
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs a token")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(
        help="access token required from browsers (generated when --host is not loopback)",
        envvar="PIPETRACE_UI_TOKEN")] = None,
    access_file: Annotated[Path | None, typer.Option(
        help="roles, tokens and users (TOML or JSON): who may see which pipelines (see docs/viewer.md)",
        envvar="PIPETRACE_ACCESS_FILE")] = None,
    access_log: Annotated[Path | None, typer.Option(
        help="one line per request (default $PIPETRACE_HOME/ui-access.log)", envvar="PIPETRACE_UI_ACCESS_LOG")] = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="open a browser tab")] = False,
) -> None:
    """Web viewer over the local store: runs, waterfall, flame graph, task history (read-only)."""
    from ..store import SpanStore
    from ..ui.server import is_loopback, make_server, serve_until_interrupted

    access = _access(access_file)
    settings = _settings()
    if not is_loopback(host):
        if not token and access is None:
            token = secrets.token_urlsafe(24)
        who = "anyone with the token below" if access is None else "the principals of the access file"
        err.print(f"[bold yellow]warning:[/bold yellow] serving traces on {escape(host)}, reachable from other "
                  f"machines. Traces can hold parameters, host names and error messages; {who} can read them. "
                  "Plain HTTP: put TLS in front of it on untrusted networks.")
    log_path = access_log or settings.home / "ui-access.log"
    try:
        server = make_server(SpanStore(settings.store_path), host=host, port=port, token=token, access=access,
                             access_log=log_path)
    except OSError as exc:
        err.print(f"[red]cannot bind {escape(host)}:{port}:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    url = server.url + (f"?token={token}" if token else "")
    print(f"pipetrace ui: serving {url}", flush=True)
    if access is not None:
        err.print(f"access control: {len(access.config.entries)} principals from {access_file} (reloaded when it "
                  f"changes); access log {log_path}", soft_wrap=True)
    err.print("press Ctrl+C to stop")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    serve_until_interrupted(server)


def report(
    ident: Annotated[str, typer.Argument(help="trace id or run id")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path("run.html"),
    force: Annotated[bool, typer.Option("--force", help="overwrite the output file if it exists")] = False,
) -> None:
    """Write one run as a self-contained HTML page (no network needed; open it from file://)."""
    from ..ui.report import build_report
    from .errors import check_output, fail, write_output

    check_output(output, force=force)  # a bad path fails before the page is built
    text = build_report(_store(), ident)
    if text is None:
        fail(f"no trace found for {ident!r}", "`pipetrace runs` lists the run ids and trace ids in this store")
    write_output(output, text, force=force)
    err.print(f"wrote {output} ({len(text.encode()) / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    from .access_commands import access_app

    app.command(name="ui")(ui)
    app.command(name="report")(report)
    app.add_typer(access_app, name="access")
