"""Known secrets: a value identified as secret once is masked wherever it appears afterwards.

A value becomes known when it sits under a sensitive key, when a context detector (``password=…``, a
URI password, ``Bearer …``) finds it, when user code calls ``pipetrace.mask_secret(value)``, or when an
orchestrator's own masker learns it (Airflow's secrets masker, Prefect ``Secret`` blocks, Dagster
``EnvVar``). The redaction pass then masks the literal value in every field of every later span.

One process-wide registry: bounded (oldest forgotten first), thread-safe, values shorter than
``MIN_LENGTH`` or trivial words refused (masking ``"1"`` or ``"true"`` everywhere would destroy the
trace). The values are compiled into one trie-shaped regex (one pass over a string, whatever the number
of secrets); values added since the last full compile sit in a small second regex so a burst of new
secrets does not recompile the big one for each.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

log = logging.getLogger("pipetrace.redaction")

MIN_LENGTH = 6
MAX_SECRETS = 4096
MAX_SECRET_LENGTH = 8192
_PENDING_LIMIT = 64  # new values held in the small regex before the full one is recompiled
TRIVIAL = frozenset({"true", "false", "none", "null", "airflow", "prefect", "dagster", "celery", "default",
                     "localhost", "postgres", "admin", "password", "secret", "changeme", "example"})

SOURCES = ("api", "key", "detector", "airflow", "prefect", "dagster")
# Values inferred from context (under a sensitive key, after ``password=``) rather than declared must
# look like a credential to be propagated: a plain word such as ``access`` under ``token_type`` would
# otherwise be masked in every later span.
INFERRED_SOURCES = frozenset({"key", "detector"})
INFERRED_MIN_LENGTH = 8


def _credential_like(value: str) -> bool:
    classes = (any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
               + any(not c.isalnum() for c in value))
    return len(value) >= INFERRED_MIN_LENGTH and classes >= 2


def _variants(value: str) -> Iterable[str]:
    """The value and the forms it takes when embedded: JSON string, URL-encoded."""
    yield value
    yield json.dumps(value)[1:-1]
    yield quote(value, safe="")
    yield quote_plus(value, safe="")


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, shaped as a trie (shared prefixes once), longest first."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        out: list[str] = []
        while True:  # a chain of single children is a plain literal: no recursion, no group
            keys = [k for k in node if k]
            if len(keys) != 1 or "" in node:
                break
            out.append(re.escape(keys[0]))
            node = node[keys[0]]
        if not keys:
            return "".join(out)
        group = "(?:" + "|".join(re.escape(k) + build(node[k]) for k in sorted(keys)) + ")"
        return "".join(out) + group + ("?" if "" in node else "")

    return build(root)


class KnownSecrets:
    """The registry: ``add`` values, ``sub`` them out of text. ``version`` changes on every addition."""

    def __init__(self, max_secrets: int = MAX_SECRETS, min_length: int = MIN_LENGTH) -> None:
        self.max_secrets = max_secrets
        self.min_length = min_length
        self._sources: dict[str, str] = {}  # every variant → where it came from (insertion-ordered)
        self._lock = threading.Lock()
        self._full: re.Pattern[str] | None = None
        self._full_words: set[str] = set()
        self._pending: re.Pattern[str] | None = None
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._dirty = False
        self.version = 0
        self.any = False  # a value was registered (until ``clear``): without one there is nothing to look for
        self.refused = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._sources)

    def add(self, value: object, source: str = "api") -> bool:
        """Register ``value`` (a string; other types are ignored). False if refused (short/trivial)."""
        if not isinstance(value, str):
            return False
        value = value.strip()
        if (len(value) < self.min_length or len(value) > MAX_SECRET_LENGTH or value.lower() in TRIVIAL
                or (source in INFERRED_SOURCES and not _credential_like(value))):
            self.refused += 1
            return False
        if value in self._sources:
            return True
        with self._lock:
            for variant in _variants(value):
                if len(variant) >= self.min_length and variant not in self._sources:
                    self._sources[variant] = source
            while len(self._sources) > self.max_secrets:
                oldest = next(iter(self._sources))
                del self._sources[oldest]
                self.forgotten += 1
            self._dirty = True
            self.any = True
            self.version += 1
        return True

    def source(self, value: str) -> str:
        return self._sources.get(value, "api")

    def clear(self) -> None:
        with self._lock:
            self._sources.clear()
            self._full = self._pending = None
            self._patterns = ()
            self._full_words = set()
            self._dirty = False
            self.any = False
            self.version += 1

    def _compile(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            words = set(self._sources)
            new = words - self._full_words
            if len(new) > _PENDING_LIMIT or not self._full_words or self._full_words - words:
                self._full = re.compile(_trie_pattern(words)) if words else None
                self._full_words = words
                self._pending = None
            else:
                self._pending = re.compile(_trie_pattern(new)) if new else None
            self._patterns = tuple(p for p in (self._full, self._pending) if p is not None)
            self._dirty = False

    def patterns(self) -> tuple[re.Pattern[str], ...]:
        """The compiled matchers (zero, one or two); cheap when nothing changed."""
        if self._dirty:
            self._compile()
        return self._patterns

    def mask(self, text: str, replacement: str = "***") -> str:
        """``text`` with every known secret replaced by ``replacement``."""
        for pattern in self.patterns():
            text = pattern.sub(replacement, text)
        return text


KNOWN = KnownSecrets()


def mask_secret(value: object, source: str = "api") -> bool:
    """Treat ``value`` as a secret from now on: masked in every field of every span of this process.

    Strings of fewer than ``MIN_LENGTH`` (6) characters and trivial words are refused (returns False);
    lists, tuples and dict values are registered item by item. Never raises.
    """
    try:
        if isinstance(value, dict):
            return any([mask_secret(v, source) for v in value.values()])
        if isinstance(value, (list, tuple, set, frozenset)):
            return any([mask_secret(v, source) for v in value])
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return KNOWN.add(value, source)
    except Exception as exc:  # pragma: no cover - defensive: never raise into user code
        log.warning("pipetrace: mask_secret failed: %r", exc)
        return False


# ---- Airflow's secrets masker ------------------------------------------------------------------------
# Airflow keeps its own registry (one SecretsMasker per import path: airflow._shared and
# airflow.sdk._shared). We never import Airflow: only a process that already loaded it has secrets in it.
AIRFLOW_MASKER_MODULES = ("airflow.sdk._shared.secrets_masker.secrets_masker",
                          "airflow._shared.secrets_masker.secrets_masker")
_AIRFLOW_SDK_MASKER, _AIRFLOW_MASKER = AIRFLOW_MASKER_MODULES
_airflow_seen: dict[int, int] = {}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _unescape(pattern: str) -> str:
    return _ESCAPE.sub(r"\1", pattern)  # Airflow stores re.escape(secret)


def sync_airflow() -> None:
    """Register what Airflow's loaded maskers hold that we have not seen yet (cheap when unchanged)."""
    modules = sys.modules
    if _AIRFLOW_SDK_MASKER not in modules and _AIRFLOW_MASKER not in modules:  # (once per span: no loop)
        return
    for name in AIRFLOW_MASKER_MODULES:
        module = sys.modules.get(name)
        getter = getattr(module, "_secrets_masker", None) if module is not None else None
        if getter is None:
            continue
        try:
            masker = getter()
            patterns = getattr(masker, "patterns", None)
            if not patterns or _airflow_seen.get(id(masker)) == len(patterns):
                continue
            _airflow_seen[id(masker)] = len(patterns)
            for pattern in list(patterns):
                KNOWN.add(_unescape(pattern), "airflow")
        except Exception:  # pragma: no cover - defensive
            continue


class SecretsLogFilter(logging.Filter):
    """A logging filter that masks known secrets (and detector findings) in a record's message.

    Add it to the handlers whose output leaves the process (``install_log_filter()`` does the root
    logger's). The record's message is formatted once and the arguments dropped, as Airflow's does.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            from . import active_redactor

            message = record.getMessage()
            redactor = active_redactor()
            masked = redactor.text(message) if redactor is not None else KNOWN.mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        except Exception:  # pragma: no cover - a filter must never break logging
            pass
        return True


_log_filter = SecretsLogFilter()


def install_log_filter(handlers: Iterable[logging.Handler] | None = None) -> int:
    """Add the filter to ``handlers`` (default: the root logger's); idempotent. Returns how many."""
    targets = list(handlers) if handlers is not None else list(logging.getLogger().handlers)
    for handler in targets:
        if _log_filter not in handler.filters:
            handler.addFilter(_log_filter)
    return len(targets)


# ---- orchestrators' secret accessors -------------------------------------------------------------------
_WRAPPED = "_pipetrace_registers_secret"


def register_results(owner: object, name: str, source: str) -> bool:
    """Wrap ``owner.name`` (a function or method) so every value it returns becomes a known secret.

    For accessors whose result is secret by definition (Prefect ``Secret.get``, Dagster's ``EnvVar``
    resolution). Idempotent; False if there is no such attribute. The wrapper never raises more than
    the original did."""
    original = getattr(owner, name, None)
    if original is None or not callable(original):
        return False
    if getattr(original, _WRAPPED, False):
        return True

    def wrapper(*args: object, **kwargs: object) -> object:
        value = original(*args, **kwargs)
        mask_secret(value, source)
        return value

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(original, "__name__", name)
    wrapper.__doc__ = getattr(original, "__doc__", None)
    setattr(wrapper, _WRAPPED, True)
    setattr(owner, name, wrapper)
    return True


def unregister_results(owner: object, name: str) -> None:
    """Undo ``register_results`` (the values already known stay known)."""
    current = getattr(owner, name, None)
    if current is not None and getattr(current, _WRAPPED, False):
        setattr(owner, name, current.__wrapped__)
