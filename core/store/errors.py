"""What the store's callers may need to recognise, without importing a database driver themselves
(only the store layer touches a driver; ``tests/core/test_store_layer.py`` checks it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"

# An error from the embedded store's driver: the file cannot be opened, is locked or is not a database.
StoreFileError = sqlite3.Error


class NotAStoreError(sqlite3.DatabaseError):
    """A file stands where the store should be, and it is not a SQLite database."""


def check_store_file(path: Path) -> None:
    """Raise :class:`NotAStoreError` when ``path`` exists and is not a SQLite file (an empty file is fine)."""
    if path.exists():
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise NotAStoreError("file is not a database")
