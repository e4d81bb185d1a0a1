"""Where the store lives: the SQLite file under ``PIPETRACE_HOME`` (default) or ``PIPETRACE_STORE``'s server.

``PIPETRACE_STORE=postgresql://user:password@host:5432/db?schema=pipetrace`` moves a home's shared state
(``traces.db``: spans, anomalies, alerts; ``tail.db``: held spans and tail decisions) to PostgreSQL so
every host of a fleet reads and writes one store. Files that are per-host by nature (the write buffer)
stay local. The URL's password never leaves this module unmasked except to the driver.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ENV = "PIPETRACE_STORE"
SHARED_FILES = ("traces.db", "tail.db")  # a home's files that move to the server when one is configured
DEFAULT_SCHEMA = "pipetrace"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class StoreConfigError(ValueError):
    """PIPETRACE_STORE has a value pipetrace cannot use (the message never shows the password)."""


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL store: the driver's connection string and the schema holding pipetrace's tables."""

    conninfo: str
    schema: str

    @property
    def masked(self) -> str:
        return mask(self.conninfo) + f" (schema {self.schema})"


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs, errors and ``doctor``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def mask_text(text: str, target: PgTarget | None) -> str:
    """An error message from the driver with the password (if it quoted it) masked."""
    if target is None:
        return text
    password = urlsplit(target.conninfo).password
    return text.replace(password, "***") if password else text


def parse(url: str) -> PgTarget:
    """A PgTarget from a ``postgresql://`` URL; ``?schema=`` picks the schema (default ``pipetrace``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreConfigError(f"{ENV}={mask(url)}: only postgresql:// URLs are supported "
                               f"(unset it to use the SQLite file under PIPETRACE_HOME)")
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", DEFAULT_SCHEMA).lower()
    if not _SCHEMA_RE.match(schema.replace("*", "h", 1)):
        raise StoreConfigError(f"{ENV}: schema {schema!r} is not a plain identifier (letters, digits, _)")
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
    return PgTarget(conninfo, schema)


def configured() -> PgTarget | None:
    """The PostgreSQL store named by ``PIPETRACE_STORE``, or None for the SQLite default."""
    value = os.environ.get(ENV, "").strip()
    if not value or value.lower() in ("sqlite", "local"):
        return None
    return parse(value)


def for_path(path: Path) -> PgTarget | None:
    """The server a home file maps to: only the shared files move, and only when a server is configured.

    A ``*`` in the schema stands for a hash of the home directory: one schema per ``PIPETRACE_HOME`` on a
    shared server (isolated environments, test rigs)."""
    if path.name not in SHARED_FILES:
        return None
    pg = configured()
    if pg is None or "*" not in pg.schema:
        return pg
    digest = hashlib.sha1(str(Path(path).parent.resolve()).encode()).hexdigest()[:12]
    return PgTarget(pg.conninfo, pg.schema.replace("*", digest, 1)[:63])
