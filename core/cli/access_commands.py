"""``pipetrace access``: review who can see what, check an access file, make hashed entries."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..ui.access import AccessConfig, AccessConfigError, Role, entry_toml, hash_password, load, new_token

console = Console()
err = Console(stderr=True)
access_app = typer.Typer(help="Viewer access control: list who can see what, check a file, add entries.",
                         invoke_without_command=True)

FileOption = Annotated[Path | None, typer.Option("--file", "-f", help="access file (TOML or JSON)",
                                                 envvar="PIPETRACE_ACCESS_FILE")]


def _load(path: Path | None) -> AccessConfig:
    if path is None:
        err.print("[red]no access file: pass --file or set PIPETRACE_ACCESS_FILE[/red]")
        raise typer.Exit(2)
    try:
        return load(path)
    except AccessConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None


def _scope(role: Role) -> str:
    if role.admin:
        return "everything"
    systems = "" if role.systems == ("*",) else f" in {', '.join(role.systems)}"
    return ", ".join(role.pipelines) + systems


def _home() -> Path | None:
    from .. import config as _config

    try:
        return _config.load().home
    except _config.ConfigError:
        return None


def last_seen(log: Path | None) -> dict[str, str]:
    """Principal -> time of its last request, from the viewer's access log."""
    from urllib.parse import unquote

    seen: dict[str, str] = {}
    if log is None or not log.exists():
        return seen
    with open(log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split(" ")
            if len(fields) == 6 and fields[1] != "-":
                seen[unquote(fields[1])] = fields[0]
    return seen


def _pipelines_in_store() -> list[tuple[str | None, str]]:
    """(system, pipeline) pairs of the store's recent runs, to show what each principal sees today."""
    from .. import config as _config
    from ..store import SpanStore

    try:
        path = _config.load().store_path
    except _config.ConfigError:
        return []
    if not path.exists():
        return []
    store = SpanStore(path)
    try:
        return sorted({(r.system, r.pipeline) for r in store.runs(limit=100_000) if r.pipeline},
                      key=lambda p: (p[1], p[0] or ""))
    finally:
        store.close()


@access_app.callback()
def review(
    ctx: typer.Context,
    file: FileOption = None,
    log: Annotated[Path | None, typer.Option(help="viewer access log (default $PIPETRACE_HOME/ui-access.log)",
                                             envvar="PIPETRACE_UI_ACCESS_LOG")] = None,
    stale: Annotated[str | None, typer.Option(
        help="exit 1 when a principal has not used the viewer for this long (e.g. 90d), or never")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List every principal, its roles, what they let it see, which stored pipelines that is today, and
    when it last used the viewer (the periodic access review)."""
    if ctx.invoked_subcommand is not None:
        return
    config = _load(file)
    cutoff = _cutoff(stale)
    known = _pipelines_in_store()
    home = _home()
    seen = last_seen(log or (home / "ui-access.log" if home else None))
    rows: list[dict[str, Any]] = []
    for entry in config.entries:
        who = config.principal(entry)
        sees = sorted({p for s, p in known if who.may_see(s, p)})
        last = seen.get(entry.name)
        rows.append({"name": entry.name, "kind": entry.kind, "roles": list(entry.roles),
                     "scope": [_scope(r) for r in who.roles], "admin": who.admin, "pipelines_in_store": sees,
                     "last_seen": last, "stale": cutoff is not None and (last is None or last < cutoff)})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        _print_review(file, rows, known, config)
    if any(r["stale"] for r in rows):
        raise typer.Exit(1)


def _cutoff(stale: str | None) -> str | None:
    """The access-log timestamp before which a principal counts as stale."""
    if stale is None:
        return None
    import time

    from ..analysis.durations import parse_duration

    try:
        seconds = parse_duration(stale)
    except ValueError as exc:
        err.print(f"[red]--stale: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - seconds))


def _print_review(file: Path | None, rows: list[dict[str, Any]], known: list[tuple[str | None, str]],
                  config: AccessConfig) -> None:
    table = Table(title=f"access from {file} ({len(rows)} principals)")
    for col in ("principal", "kind", "roles", "may see", "stored pipelines visible", "last seen"):
        table.add_column(col)
    total = len({p for _, p in known})
    for row in rows:
        visible = "all" if row["admin"] else (f"{len(row['pipelines_in_store'])}/{total}: "
                                              + ", ".join(row["pipelines_in_store"][:8]))
        when = row["last_seen"] or "never"
        table.add_row(escape(row["name"]), row["kind"], escape(", ".join(row["roles"])),
                      escape("; ".join(row["scope"])), escape(visible), f"[red]{when}[/red]" if row["stale"] else when)
    console.print(table)
    for role in config.roles.values():
        if known and not role.admin and not any(role.allows(s, p) for s, p in known):
            console.print(f"[yellow]note[/yellow]: role {escape(role.name)!r} matches no stored pipeline "
                          f"({escape(_scope(role))}): a typo, or a pipeline that no longer runs?", soft_wrap=True)
    for row in rows:
        if row["stale"]:
            console.print(f"[red]stale[/red]: {escape(row['name'])} last used the viewer "
                          f"{row['last_seen'] or 'never'}: remove it from the file if it is not needed",
                          soft_wrap=True)


@access_app.command("check")
def check(file: FileOption = None) -> None:
    """Validate an access file: every problem listed; exit 1 when there is any."""
    config = _load(file)
    users = sum(1 for e in config.entries if e.kind == "user")
    console.print(f"[green]ok[/green]: {file}: {len(config.roles)} roles, {len(config.entries) - users} tokens, "
                  f"{users} users", soft_wrap=True)


def _roles_or_exit(roles: list[str]) -> list[str]:
    if not roles:
        err.print("[red]--role is required (repeat it for several roles)[/red]")
        raise typer.Exit(2)
    return roles


@access_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="user name (letters, digits, _ . @ -)")],
    role: Annotated[list[str], typer.Option("--role", help="role name; repeat for several")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Print a [[user]] entry with a salted scrypt hash of the password (asked for, never echoed)."""
    roles = _roles_or_exit(role)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    if len(password) < 12:
        err.print("[red]use a password of at least 12 characters[/red]")
        raise typer.Exit(2)
    sys.stdout.write(entry_toml("user", name, roles, hash_password(password)))


@access_app.command("add-token")
def add_token(
    name: Annotated[str, typer.Argument(help="what the token is for (letters, digits, _ . @ -)")],
    role: Annotated[list[str], typer.Option("--role", help="role name; repeat for several")],
) -> None:
    """Make a new random token: the token goes to stderr (hand it out once), the [[token]] entry to stdout."""
    roles = _roles_or_exit(role)
    token, digest = new_token()
    err.print(f"token for {escape(name)} (shown once, not stored): {token}", soft_wrap=True)
    sys.stdout.write(entry_toml("token", name, roles, digest))
