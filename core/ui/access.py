"""Who may see what in ``pipetrace ui``: roles, principals and their hashed secrets, from one file.

```toml
[[role]]
name = "sales"
pipelines = ["daily_sales", "sales_*"]   # globs over cicd.pipeline.name
systems = ["airflow"]                    # globs over pipetrace.system; default ["*"]

[[role]]
name = "ops"
admin = true                             # sees everything ("admin" is predefined as such)

[[token]]                                # a bearer token: Authorization: Bearer, ?token=, or the cookie
name = "sales-dashboard"
roles = ["sales"]
sha256 = "9f86d0…"                       # SHA-256 of the token (pipetrace access add-token makes one)

[[user]]                                 # a person: HTTP Basic (the browser asks for name and password)
name = "alice"
roles = ["ops"]
secret = "scrypt$16384$8$1$<salt>$<hash>"  # pipetrace access add-user makes one
```

JSON with the same shape works too. Tokens are 32 random bytes, so an unsalted SHA-256 is enough to keep
the file from being a list of live tokens; passwords are chosen by people, so they get scrypt (or
PBKDF2-SHA256) with a salt per entry. Every comparison is constant-time. A file that does not validate
stops the viewer at start-up: access control fails closed.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN = "admin"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PBKDF2_MIN_ITERATIONS = 100_000
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SECTIONS = {"role": {"name", "pipelines", "systems", "admin", "description"},
             "token": {"name", "roles", "role", "sha256", "description"},
             "user": {"name", "roles", "role", "secret", "description"}}


class AccessConfigError(ValueError):
    """The access file cannot be used; the message names the file, the entry and each problem."""


@dataclass(frozen=True)
class Role:
    name: str
    pipelines: tuple[str, ...] = ("*",)
    systems: tuple[str, ...] = ("*",)
    admin: bool = False

    def allows(self, system: str | None, pipeline: str | None) -> bool:
        if self.admin:
            return True
        if pipeline is None:  # spans without a pipeline belong to no one but the admin
            return False
        return (any(fnmatch.fnmatchcase(pipeline, g) for g in self.pipelines)
                and any(fnmatch.fnmatchcase(system or "", g) for g in self.systems))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the roles it holds."""

    name: str
    kind: str                     # token | user | ui-token | anonymous
    roles: tuple[Role, ...] = ()

    @property
    def admin(self) -> bool:
        return any(r.admin for r in self.roles)

    def may_see(self, system: str | None, pipeline: str | None) -> bool:
        return any(r.allows(system, pipeline) for r in self.roles)

    def query_scopes(self) -> list[tuple[str, str | None]] | None:
        """(pipeline glob, exact system or None) pairs to query the store with, so that runs this principal
        may not see never crowd out those it may under a limit; None means everything (admin)."""
        if self.admin:
            return None
        pairs: set[tuple[str, str | None]] = set()
        for role in self.roles:
            exact = [s for s in role.systems if not any(c in s for c in "*?[")]
            systems: list[str | None] = list(exact) if len(exact) == len(role.systems) else [None]
            pairs.update((g, s) for g in role.pipelines for s in systems)
        return sorted(pairs, key=lambda p: (p[0], p[1] or ""))


FULL_ACCESS = Role(ADMIN, admin=True)


def anonymous() -> Principal:
    """The caller of a viewer without access control (loopback, no token): sees everything."""
    return Principal("-", "anonymous", (FULL_ACCESS,))


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str                     # token | user
    roles: tuple[str, ...]
    secret: str                   # token: sha256 hex; user: encoded password hash


@dataclass
class AccessConfig:
    path: Path | None
    roles: dict[str, Role] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    _cache: dict[bytes, tuple[float, str | None]] = field(default_factory=dict, repr=False)
    _pepper: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def has_users(self) -> bool:
        return any(e.kind == "user" for e in self.entries)

    def principal(self, entry: Entry) -> Principal:
        return Principal(entry.name, entry.kind, tuple(self.roles[r] for r in entry.roles))

    def by_token(self, token: str) -> Principal | None:
        """The principal of a bearer token: every entry compared, in constant time each."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest().encode()
        found: Entry | None = None
        for entry in self.entries:
            if entry.kind == "token" and hmac.compare_digest(digest, entry.secret.encode()):
                found = entry
        return self.principal(found) if found else None

    def by_password(self, name: str, password: str) -> Principal | None:
        """The principal of a user name and password. A verified pair is remembered for a few minutes
        (keyed by an HMAC under a per-process key) so that HTTP Basic does not pay scrypt per request."""
        key = hmac.new(self._pepper, f"{name}\x00{password}".encode("utf-8", "surrogatepass"), "sha256").digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            entry = next((e for e in self.entries if e.kind == "user" and e.name == hit[1]), None)
            return self.principal(entry) if entry else None
        entry = next((e for e in self.entries if e.kind == "user" and e.name == name), None)
        ok = verify_password(password, entry.secret if entry else _DUMMY_HASH)  # same work for unknown users
        result = entry.name if (entry and ok) else None
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (now + 300.0, result)
        return self.principal(entry) if (entry and ok) else None


# ---- secrets ----------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
                            maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _check_hash_format(encoded: str) -> str | None:
    """None when ``encoded`` is a password hash this module can verify, else what is wrong with it."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            if n < 2**14 or n & (n - 1) or r < 8 or p < 1:
                return "scrypt parameters too weak (need N >= 16384, a power of two; r >= 8)"
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if int(parts[1]) < PBKDF2_MIN_ITERATIONS:
                return f"pbkdf2_sha256 needs at least {PBKDF2_MIN_ITERATIONS} iterations"
        else:
            return "secret must be scrypt$N$r$p$salt$hash or pbkdf2_sha256$iterations$salt$hash"
        salt, digest = base64.b64decode(parts[-2], validate=True), base64.b64decode(parts[-1], validate=True)
    except (ValueError, IndexError):
        return "secret is not a valid encoded hash"
    if len(salt) < 8 or len(digest) < 16:
        return "secret's salt or hash is too short"
    return None


def verify_password(password: str, encoded: str) -> bool:
    parts = encoded.split("$")
    salt, want = base64.b64decode(parts[-2]), base64.b64decode(parts[-1])
    raw = password.encode("utf-8", "surrogatepass")
    if parts[0] == "scrypt":
        got = hashlib.scrypt(raw, salt=salt, n=int(parts[1]), r=int(parts[2]), p=int(parts[3]), dklen=len(want),
                             maxmem=256 * 1024 * 1024)
    else:
        got = hashlib.pbkdf2_hmac("sha256", raw, salt, int(parts[1]), dklen=len(want))
    return hmac.compare_digest(got, want)


_DUMMY_HASH = "scrypt$16384$8$1$" + _b64(b"pipetrace-dummy!") + "$" + _b64(bytes(32))


def new_token() -> tuple[str, str]:
    """(token to hand out, its sha256 for the access file)."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


# ---- the file ---------------------------------------------------------------------------------------

def _read(path: Path) -> dict[str, Any]:
    from ..config.files import read_config_file

    raw = read_config_file(path, AccessConfigError)
    if not isinstance(raw, dict):
        raise AccessConfigError(f"{path}: the top level must be a table/object")
    return raw


def _globs(value: Any, where: str, key: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{where}: {key} must be a non-empty list of globs")
        return ()
    return tuple(v.strip() for v in value)


def parse(raw: dict[str, Any], path: Path | None = None) -> AccessConfig:
    """Validate a loaded document; every problem is listed in one :class:`AccessConfigError`."""
    problems: list[str] = []
    for key in raw:
        if key not in _SECTIONS:
            problems.append(f"unknown section {key!r} (expected: role, token, user)")
    config = AccessConfig(path, roles={ADMIN: FULL_ACCESS})
    seen_roles: set[str] = set()
    for i, item in enumerate(_items(raw, "role", problems)):
        where = f"role #{i + 1}"
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{where}: name must be 1-64 letters, digits or _ . @ -")
            continue
        where = f"role {name!r}"
        problems += [f"{where}: unknown key {k!r}" for k in item if k not in _SECTIONS["role"]]
        if name in seen_roles:
            problems.append(f"{where}: defined twice")
        seen_roles.add(name)
        admin = item.get("admin", name == ADMIN)
        if not isinstance(admin, bool):
            problems.append(f"{where}: admin must be true or false")
            continue
        if admin:
            if "pipelines" in item or "systems" in item:
                problems.append(f"{where}: an admin role sees everything; drop pipelines/systems")
            config.roles[name] = Role(name, admin=True)
            continue
        if "pipelines" not in item:
            problems.append(f"{where}: pipelines is required (globs, e.g. [\"sales_*\"])")
            continue
        pipelines = _globs(item["pipelines"], where, "pipelines", problems)
        systems = _globs(item.get("systems", ["*"]), where, "systems", problems)
        config.roles[name] = Role(name, pipelines, systems)
    names: set[str] = set()
    for kind in ("token", "user"):
        for i, item in enumerate(_items(raw, kind, problems)):
            entry = _entry(kind, i, item, config, problems)
            if entry is None:
                continue
            if entry.name in names:
                problems.append(f"{kind} {entry.name!r}: the name is used twice")
            names.add(entry.name)
            config.entries.append(entry)
    if not config.entries and not problems:
        problems.append("no [[token]] or [[user]] entries: nobody could sign in")
    if problems:
        label = str(path) if path else "access config"
        raise AccessConfigError(f"{label}: " + ("; ".join(problems) if len(problems) == 1
                                                else "\n  - " + "\n  - ".join(problems)))
    return config


def _items(raw: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{key} must be a list of tables ([[{key}]])")
        return []
    return value


def _entry(kind: str, i: int, item: dict[str, Any], config: AccessConfig, problems: list[str]) -> Entry | None:
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{kind} #{i + 1}: name must be 1-64 letters, digits or _ . @ -")
        return None
    where = f"{kind} {name!r}"
    before = len(problems)
    problems += [f"{where}: unknown key {k!r}" for k in item if k not in _SECTIONS[kind]]
    roles = item.get("roles", [item["role"]] if "role" in item else None)
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        problems.append(f"{where}: roles must be a non-empty list of role names")
        roles = []
    for role in roles:
        if role not in config.roles:
            problems.append(f"{where}: unknown role {role!r} (defined: {', '.join(sorted(config.roles))})")
    if kind == "token":
        secret = item.get("sha256")
        if not isinstance(secret, str) or not _SHA256.fullmatch(secret):
            problems.append(f"{where}: sha256 must be 64 lowercase hex digits (the SHA-256 of the token)")
    else:
        secret = item.get("secret")
        issue = _check_hash_format(secret) if isinstance(secret, str) else "secret (a password hash) is required"
        if issue:
            problems.append(f"{where}: {issue}")
    if len(problems) > before:
        return None
    return Entry(name, kind, tuple(roles), str(secret))


def load(path: str | os.PathLike[str]) -> AccessConfig:
    path = Path(path)
    return parse(_read(path), path)


def entry_toml(kind: str, name: str, roles: Iterable[str], secret: str) -> str:
    """One entry as TOML, ready to append to the access file."""
    key = "sha256" if kind == "token" else "secret"
    role_list = ", ".join(json.dumps(r) for r in roles)
    return f"[[{kind}]]\nname = {json.dumps(name)}\nroles = [{role_list}]\n{key} = {json.dumps(secret)}\n"


class AccessFile:
    """The access file of a running viewer, reloaded when it changes (checked at most every
    ``interval_s``), so a revoked token or user stops working without a restart. A change that does not
    validate locks the viewer (every request refused) until the file is fixed: fail closed."""

    def __init__(self, path: Path, config: AccessConfig, *, interval_s: float = 2.0) -> None:
        self.path, self.config, self.interval_s = path, config, interval_s
        self.error: str | None = None
        self._signature = self._stat()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> AccessConfig | None:
        """The config to apply now; None while the file is broken (``error`` says why)."""
        now = time.monotonic()
        if now - self._checked >= self.interval_s:
            with self._lock:
                if now - self._checked >= self.interval_s:
                    self._checked = now
                    signature = self._stat()
                    if signature != self._signature:
                        self._signature = signature
                        self._reload()
        return None if self.error else self.config

    def _reload(self) -> None:
        import logging

        log = logging.getLogger("pipetrace.ui")
        try:
            self.config = load(self.path)
        except AccessConfigError as exc:
            self.error = str(exc)
            log.error("pipetrace ui: the access file changed and does not validate; every request is refused "
                      "until it is fixed: %s", exc)
            return
        self.error = None
        log.warning("pipetrace ui: access file %s reloaded (%d principals)", self.path, len(self.config.entries))

