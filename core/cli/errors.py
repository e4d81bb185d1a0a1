"""User mistakes at the command line end in one line that says what is wrong and what to do, never in
a traceback: an output path in a missing folder, a directory or a read-only place, a file that would be
overwritten without ``--force``, a ``PIPETRACE_HOME`` that cannot hold a store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..store import SpanStore

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, hint: str | None = None, *, code: int = 1) -> NoReturn:
    """Print ``error: MESSAGE — HINT`` on one line (stderr) and exit with ``code`` (2: bad usage)."""
    text = f"error: {message}" + (f" — {hint}" if hint else "")
    err.print(text, markup=False, highlight=False, style="red")
    raise typer.Exit(code)


def check_output(path: Path, *, force: bool) -> None:
    """Refuse an output path the write would fail on or that would overwrite a file without ``force``."""
    if path.is_dir():
        fail(f"{path} is a directory", f"name a file in it, e.g. -o {path / 'run.json'}", code=2)
    parent = path.parent
    if not parent.exists():
        fail(f"folder {parent} does not exist", f"create it first (mkdir -p {parent}) or choose another path", code=2)
    if not parent.is_dir():
        fail(f"{parent} is not a folder", "choose an output path inside a folder", code=2)
    if path.exists() and not force:
        fail(f"{path} already exists", "add --force to overwrite it, or choose another path", code=2)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"cannot write {path}: permission denied", "choose a path you can write to", code=1)


def write_output(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` after ``check_output``; an OS error is one line, not a traceback."""
    check_output(path, force=force)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", "choose a path you can write to", code=1)


def check_store_path(store_path: Path) -> None:
    """Before a command opens the store: its folder can be made and the file, if any, is a SQLite file
    (the store connects lazily, so its own errors would surface mid-command as a traceback)."""
    from ..store.errors import StoreFileError, check_store_file

    try:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        check_store_file(store_path)
    except (OSError, StoreFileError) as exc:
        store_problem(store_path, exc)


def open_store(store_path: Path) -> SpanStore:
    """The store at ``store_path``, or one line saying why it cannot be opened (never a traceback)."""
    from ..store import SpanStore
    from ..store.errors import StoreFileError

    check_store_path(store_path)
    try:
        return SpanStore(store_path)
    except (OSError, StoreFileError) as exc:
        store_problem(store_path, exc)


def store_problem(store_path: Path, exc: BaseException) -> NoReturn:
    """The store cannot be opened: say which path, why, and what ``PIPETRACE_HOME`` must be."""
    from ..store.errors import StoreFileError

    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    home = store_path.parent
    blocker = next((p for p in (home, *home.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        hint = f"{blocker} is a file; set PIPETRACE_HOME to a folder (it is created if missing)"
    elif isinstance(exc, StoreFileError):
        hint = f"{store_path} is not a pipetrace store; move it away or set PIPETRACE_HOME to another folder"
    else:
        hint = "set PIPETRACE_HOME to a folder you can write to (default ~/.pipetrace)"
    fail(f"cannot open the store {store_path}: {why}", hint, code=1)
