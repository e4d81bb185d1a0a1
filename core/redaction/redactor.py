"""Apply the detectors to values: mask (``***``), HMAC-SHA256 token, or drop — per detector.

A token is ``tok_`` + 20 hex digits of HMAC-SHA256(key, value): the same secret gives the same token in
every process that has the same key, so spans still group and join on it without revealing it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from itertools import filterfalse
from typing import Any

from . import detectors as D
from .known import KNOWN, sync_airflow

MODES = ("mask", "token", "drop", "off")
IDS_CACHE_SIZE = 1024
"""Inert values (ids, numbers, generated names) whose result is kept: enough for the runs in flight (a 50-task
Prefect flow makes ~200: a run id and name per task run, a state id per event; its fan-in's links name its
inputs' run ids again), small enough that clearing it when full costs little."""
CLEAN_SIZE = 4096
"""Values known to come out unchanged (:attr:`Redactor._clean`); the set is emptied when it outgrows this."""
CLEAN_LONGEST = 256
"""The longest string put in the clean set: a mapping is decided by it only under a length limit at least this
long (the default is 8 KiB), so a clean value is never one the limit would cut."""
_CLEAN_SEED = frozenset((*range(1024), (), ""))
"""Clean from the start: small ints (counts, indexes, ``True``/``False``, which equal 1 and 0), the empty tuple
(Prefect's tags), the empty string: a mapping's fast path then leaves only its unique values to the loop."""
_FAST_TYPES = frozenset((str, int, float, bool, tuple))
"""Value types the fast path reads by set membership: hashed and compared by the builtins' own methods (a
subclass's ``__hash__``/``__eq__`` must never decide that a value is clean), and never redacted but a str."""
MASK = "***"


class _Drop:
    """Sentinel: the attribute carrying this value is removed."""


DROP = _Drop()


def same_text(new: str, old: str) -> bool:
    """``new`` (a redaction result: a plain str) has ``old``'s characters. A str subclass is compared as the plain
    str of its characters: its own ``__eq__`` (which could say "equal" to anything) never decides that a value
    came out unchanged and may be passed on as it is."""
    return new == old if type(old) is str else str.__eq__(new, str.__str__(old))


# Our own vocabulary always passes the allow-list: without it the store and viewer cannot work.
BUILTIN_ALLOWED = ("cicd.*", "pipetrace.*", "messaging.*", "error.type", "exception.type", "service.*",
                   "host.name", "process.pid", "telemetry.*", "otel.*", "code.*")

class Redactor:
    """Redacts strings and attribute mappings; results for repeated strings are cached (bounded)."""

    def __init__(self, *, modes: Mapping[str, str] | None = None, key: str | bytes | None = None,
                 sensitive_keys: Sequence[str] = (), allow_keys: Sequence[str] = (),
                 cache_size: int = 8192) -> None:
        modes = dict(modes or {})
        default = modes.pop("default", "mask")
        self.modes = {d: modes.get(d, default) for d in D.ALL_DETECTORS}
        unknown = sorted(set(modes) - set(D.ALL_DETECTORS))
        if unknown:
            raise ValueError(f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(D.ALL_DETECTORS)}")
        bad = sorted({m for m in self.modes.values() if m not in MODES} | ({default} - set(MODES)))
        if bad:
            raise ValueError(f"unknown mode(s) {', '.join(bad)}; use one of {', '.join(MODES)}")
        if "token" in self.modes.values() and not key:
            raise ValueError("token mode needs a key (PIPETRACE_REDACTION_KEY)")
        self._key = key.encode() if isinstance(key, str) else key
        self.sensitive_words = tuple(w.strip().lower() for w in sensitive_keys if w.strip())
        self.allow = tuple(allow_keys)
        self._allow_all = BUILTIN_ALLOWED + self.allow
        self._cache: dict[str, str | _Drop] = {}
        self._ids: dict[str, str | _Drop] = {}  # recent inert values (a run id on each of its spans), kept apart
        self._key_cache: dict[str, int] = {}  # 0 ordinary, 1 sensitive, 2 not allowed
        self._plain_keys: set[str] = set()  # the keys of class 0
        # values ``value`` returns unchanged (plain strs of at most CLEAN_LONGEST characters, seen twice if inert):
        # a mapping of only these, small ints and floats is decided by three C-level passes (``_unchanged``)
        self._clean: set[Any] = set(_CLEAN_SEED)
        self._is_clean = self._clean.__contains__  # (bound once: not a new method object per mapping)
        self._cache_size = cache_size
        self._known_version = KNOWN.version
        self._known_mode = self.modes[D.KNOWN_DETECTOR]
        self._airflow_mode = self.modes["airflow"]

    def refresh(self) -> None:
        """Pick up secrets learnt since the last call (Airflow's masker included): cached results that
        predate a new known secret are forgotten. Called once per span; cheap when nothing changed."""
        sync_airflow()
        if KNOWN.version != self._known_version:
            self._known_version = KNOWN.version
            self._cache.clear()
            self._ids.clear()
            self._reset_clean()

    def stale(self) -> bool:
        """True if a secret became known since the last ``refresh`` (cached results may be out of date)."""
        return KNOWN.version != self._known_version

    # ---- primitives --------------------------------------------------------------------------------
    def token(self, value: str) -> str:
        assert self._key is not None
        return "tok_" + hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:20]

    def _replace(self, mode: str, secret: str) -> str | _Drop:
        if mode == "token":
            return self.token(secret)
        if mode == "drop":
            return DROP
        return MASK

    def _scan(self, text: str) -> str | _Drop:
        findings = D.find(text)
        out: list[str] = []
        pos = 0
        for f in findings:
            mode = self.modes[f.detector]
            if mode == "off":
                continue
            secret = text[f.start:f.end]
            if f.detector in D.CONTEXT_DETECTORS:
                KNOWN.add(secret.strip("'\""), "detector")
            repl = self._replace(mode, secret)
            if isinstance(repl, _Drop):
                return DROP
            out.append(text[pos:f.start])
            out.append(repl)
            pos = f.end
        return self._known("".join(out) + text[pos:] if out else text)

    def _known(self, result: str) -> str | _Drop:
        """``result`` with the known secrets replaced per their mode."""
        for pattern in KNOWN.patterns():
            dropped = False

            def known(m: re.Match[str]) -> str:
                nonlocal dropped
                mode = self._airflow_mode if KNOWN.source(m.group()) == "airflow" else self._known_mode
                if mode == "off":
                    return m.group()
                repl = self._replace(mode, m.group())
                if isinstance(repl, _Drop):
                    dropped = True
                    return MASK
                return repl

            result = pattern.sub(known, result)
            if dropped:
                return DROP
        return result

    def value(self, text: str) -> str | _Drop:
        """``text`` with every secret replaced per its detector's mode, or DROP."""
        if type(text) is not str:  # a str subclass's own __eq__/__hash__ must not pick a cached result
            text = str.__str__(text)  # its characters as a plain str
        cached = self._cache.get(text)
        if cached is None:
            cached = self._ids.get(text)  # an inert value seen before (a run id on its run's next span)
        if cached is not None:
            if cached == text and len(text) <= CLEAN_LONGEST:  # (plain strs: ``value`` made ``text`` one)
                self._add_clean(text)
            return cached
        if D.inert(text):  # an id, a number, a generated name: no detector can match; not in the value cache
            result = self._known(text) if KNOWN.any else text  # (unique ids would evict the values that repeat),
            if len(self._ids) >= IDS_CACHE_SIZE:  # in a small one of its own: a run id repeats on every span of
                self._ids.clear()  # its run, a task id on its span; clean only when seen again (most are seen once)
            self._ids[text] = result
            return result
        result = self._scan(text)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[text] = result
        if result == text and len(text) <= CLEAN_LONGEST:
            self._add_clean(text)
        return result

    def _add_clean(self, text: str) -> None:
        if len(self._clean) >= CLEAN_SIZE:
            self._reset_clean()
        self._clean.add(text)

    def _reset_clean(self) -> None:
        self._clean = set(_CLEAN_SEED)
        self._is_clean = self._clean.__contains__

    def text(self, text: str) -> str:
        """For span names and status messages, which cannot be dropped: a drop becomes a mask."""
        result = self.value(text)
        return MASK if isinstance(result, _Drop) else result

    def _key_class(self, key: str) -> int:
        cls = self._key_cache.get(key)
        if cls is None:
            if self.allow and not any(fnmatch.fnmatchcase(key, p) for p in self._allow_all):
                cls = 2
            elif D.sensitive_key(key, self.sensitive_words):
                cls = 1
            else:
                cls = 0
            if len(self._key_cache) >= self._cache_size:
                self._key_cache.clear()
                self._plain_keys.clear()
            self._key_cache[key] = cls
            if cls == 0:
                self._plain_keys.add(key)
        return cls

    def _whole(self, value: Any) -> Any:
        """A value under a sensitive key: all of it is the secret."""
        mode = self.modes[D.KEY_DETECTOR]
        if mode == "off":
            return value
        if isinstance(value, (bool, int, float)):
            return value  # counts and flags under a key like ``max_tokens`` are not secrets
        if isinstance(value, (list, tuple)):
            if all(isinstance(v, (bool, int, float)) for v in value):
                return value
            for v in value:
                if isinstance(v, str):
                    KNOWN.add(v, "key")
            if mode == "drop":
                return DROP
            return [self._replace(mode, str(v)) if isinstance(v, (str, bytes)) else v for v in value]
        text = (bytes.decode(value, "utf-8", "replace") if isinstance(value, bytes)
                else str.__str__(value) if isinstance(value, str) else str(value))  # a subclass's own characters
        KNOWN.add(text, "key")  # known from now on: masked wherever else it appears
        return self._replace(mode, text)

    def _one(self, value: Any) -> Any:
        if isinstance(value, str):
            if type(value) is str:
                return self.value(value)
            out = self.value(value)  # (``value`` reads a subclass as the plain str of its characters)
            return value if type(out) is str and same_text(out, value) else out  # unchanged: stays itself
        if isinstance(value, bytes):
            text = bytes.decode(value, "utf-8", "replace")  # a bytes subclass's own decode is not trusted
            out = self.value(text)
            return value if type(out) is str and str.__eq__(out, text) else out
        if isinstance(value, (list, tuple)):
            changed = False
            items = []
            for v in value:
                r = self._one(v)
                if isinstance(r, _Drop):
                    return DROP
                if r is not v and not (type(r) is str and isinstance(v, str) and same_text(r, v)):
                    changed = True  # (an equal str from the cache is no change: the sequence stays as it is)
                items.append(r)
            return items if changed else value
        return value

    def attributes(self, attrs: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Redacted copy of ``attrs``, or None when nothing needed to change (the common case)."""
        return self.attributes_within(attrs, None)[0]

    def _unchanged(self, attrs: Mapping[str, Any]) -> bool:
        """True if redaction leaves ``attrs`` as it is and no value is long, decided without the per-key loop:
        every key ordinary, every value of a plain type, and the values not already known clean (a span's
        unique ids, names and floats) few, each put through ``value``. False means nothing: the loop decides."""
        values = attrs.values()  # (each pass in C, with no view or list made that it does not need)
        if not (self._plain_keys.issuperset(attrs) and _FAST_TYPES.issuperset(map(type, values))):
            return False
        try:
            for value in filterfalse(self._is_clean, values):  # the few not known clean
                kind = type(value)
                if kind is str:
                    if len(value) > CLEAN_LONGEST:  # long values: the loop (and the length limit) decide
                        return False
                    new = self.value(value)  # unchanged: ``same_text`` for a plain str, spelt out (a call per value)
                    if new is not value and not (type(new) is str and new == value):
                        return False
                elif kind is tuple:  # (tags): each item judged; the tuple is never put in the clean set, where
                    for item in value:  # an item's own ``__hash__``/``__eq__`` would decide its membership
                        if type(item) is str:  # unchanged as ``_one`` judges it: the same characters
                            if len(item) > CLEAN_LONGEST:
                                return False
                            new = self.value(item)
                            if new is not item and not (type(new) is str and new == item):
                                return False
                        elif type(item) not in _FAST_TYPES or type(item) is tuple:
                            return False
        except TypeError:  # an unhashable value inside a tuple (raised by the set lookup; ``value`` does not)
            return False
        return True

    def attributes_within(self, attrs: Mapping[str, Any] | None, limit: int | None
                          ) -> tuple[dict[str, Any] | None, bool]:
        """(:meth:`attributes`, whether a value may be longer than ``limit``: a str over it, a list or tuple
        holding one, another sequence, a value under a sensitive key) — in the same pass, so a span whose
        values are all short is not walked a second time for the length limit.

        The loop is the hot path of every span: cached key classes and cached string results, and no
        copy unless something changed."""
        if not attrs or ((limit is None or limit >= CLEAN_LONGEST) and self._unchanged(attrs)):
            return None, False
        return self._walk(attrs, limit)

    def _walk(self, attrs: Mapping[str, Any], limit: int | None) -> tuple[dict[str, Any] | None, bool]:
        """:meth:`attributes_within` key by key, for a mapping the clean set did not decide."""
        cache = self._cache
        key_cache = self._key_cache
        changes: list[tuple[str, Any]] | None = None
        long = False
        for key, value in attrs.items():
            cls = key_cache.get(key)
            if cls is None:
                cls = self._key_class(key)
            if cls == 0:
                kind = type(value)
                if kind is str:
                    if limit is not None and len(value) > limit:
                        long = True
                    new: Any = cache.get(value)
                    if new is None:
                        new = self.value(value)
                    if new is value or new == value:
                        continue
                elif kind is int or kind is float or kind is bool:
                    continue
                elif isinstance(value, str):  # a str enum (Prefect's state types): a str, kept as it is
                    if limit is not None and len(value) > limit:
                        long = True
                    new = self._one(value)
                    if new is value:
                        continue
                else:
                    if (kind is tuple or kind is list) and limit is not None:  # long only with a str over the
                        # limit in it, as ``_limited`` cuts: an empty tuple (Prefect's tags) is not
                        long = long or any(isinstance(v, str) and len(v) > limit for v in value)
                    else:
                        long = True
                    new = self._one(value)
                    if new is value:
                        continue
            elif cls == 2:
                new = DROP
            else:
                long = True
                new = self._whole(value)
                if new is value:
                    continue
            if changes is None:
                changes = []
            changes.append((key, new))
        if changes is None:
            return None, long
        out = dict(attrs)
        for key, new in changes:
            if isinstance(new, _Drop):
                out.pop(key, None)
            else:
                out[key] = new
        return out, True
