"""``pipetrace archive``: make a key, verify an archive directory, restore it into the store."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..analysis.archive import KEY_ENV, ArchiveError, generate_key, load_key, restore, verify

console = Console()
err = Console(stderr=True)
archive_app = typer.Typer(help="Encrypted, tamper-evident archives written by pipetrace prune --archive.",
                          no_args_is_help=True)

KeyFile = Annotated[Path | None, typer.Option("--key-file", help=f"archive key file (default: ${KEY_ENV}, base64)")]


def key_or_exit(key_file: Path | None) -> bytes | None:
    try:
        return load_key(key_file)
    except ArchiveError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


@archive_app.command("keygen")
def keygen(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write the key here (mode 0600)")] = None,
) -> None:
    """Make a new 32-byte archive key (base64). Keep it apart from the archives: whoever holds both reads them."""
    key = generate_key()
    if output is None:
        sys.stdout.write(key + "\n")
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        err.print(f"[red]{escape(str(output))} exists: refusing to overwrite a key[/red]")
        raise typer.Exit(1) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    err.print(f"wrote a new archive key to {escape(str(output))}", soft_wrap=True)


@archive_app.command("verify")
def verify_cmd(
    directory: Annotated[Path, typer.Argument(help="archive directory (holds manifest.json)")],
    key_file: KeyFile = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the manifest's signature and hash chain and every file's SHA-256 and encryption; exit 1 naming
    each file that fails."""
    report = verify(directory, key_or_exit(key_file))
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        for finding in report.findings:
            console.print(f"[red]FAILED[/red] {escape(str(finding))}", soft_wrap=True)
        if report.ok:
            doc = report.to_json()
            how = "signed manifest" if report.authenticated else "unsigned manifest (written without a key)"
            console.print(f"[green]ok[/green]: {doc['files']} files, {doc['traces']} traces, {doc['spans']} spans; "
                          f"{how}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@archive_app.command("restore")
def restore_cmd(
    directory: Annotated[Path, typer.Argument(help="archive directory (holds manifest.json)")],
    key_file: KeyFile = None,
) -> None:
    """Verify the whole archive, then load its spans back into the store (refused if anything fails)."""
    from .analysis_commands import _home_store

    key = key_or_exit(key_file)
    store, _ = _home_store()
    try:
        done = restore(directory, key, store)
    except ArchiveError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"restored {done.spans} spans in {done.traces} traces from {done.files} files", soft_wrap=True)
