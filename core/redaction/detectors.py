"""What a secret looks like: sensitive key names and value patterns, each a named detector.

Value detectors are compiled into one alternation so an ordinary string costs one regex scan. Every
match names its detector (the group name) and the part of it to hide (``secret`` span of the match);
detectors with a checksum or a shape rule (card numbers, AWS secrets) validate the candidate first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Airflow's DEFAULT_SENSITIVE_FIELDS plus a few common spellings; matched as substrings of the lowered key.
SENSITIVE_KEY_WORDS: tuple[str, ...] = (
    "access_key", "access_token", "api_key", "api-key", "apikey", "auth_header", "authorization",
    "bearer", "connection_string", "credential", "dsn", "passphrase", "passwd", "password", "private_key",
    "proxy_password", "secret", "service_account", "service_key", "token", "keyfile_dict", "webhook_url",
    "cookie", "x-api-key", "pwd", "client_secret", "sas_key",
)

# Keys that contain a sensitive word but are our own vocabulary or hold ids/counts, never secrets.
SAFE_KEYS: frozenset[str] = frozenset({
    "pipetrace.redaction.detectors", "pipetrace.sampling.policy", "pipetrace.sampling.rate",
    "pipetrace.sampling.decision",
})

KEY_DETECTOR = "key"

# A key=value pair is secret when the key ENDS with one of these (``aws_secret_access_key``, ``db_password``).
_KV_WORDS = (r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|"
             r"private[_-]?key|session[_-]?key|signing[_-]?key|encryption[_-]?key|master[_-]?key|account[_-]?key|"
             r"accountkey|sharedaccesskey|sas[_-]?key|credentials?|auth")

# (name, pattern). A group named ``s_<name>`` marks the secret part; without it the whole match is secret.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("pem", r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?:.*?-----END[A-Z ]*PRIVATE KEY-----|.*)"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("uri_password", r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/?#@]*:(?P<s_uri_password>[^\s@/]+)@"),
    ("aws_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b"),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    ("slack", r"\bxox[abposre]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    ("google", r"\bAIza[0-9A-Za-z_-]{35}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[0-9A-Za-z_-]{20,}"),
    ("stripe", r"\b(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{16,}\b|\bwhsec_[0-9a-zA-Z]{24,}\b"),
    ("url_query", r"[?&](?:[A-Za-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|sig|signature|auth|credential)"
                  r"[A-Za-z0-9_.-]*|code)=(?P<s_url_query>[^&\s#\"']+)"),
    ("sql_password", r"(?i)\bidentified\s+by\s+(?P<s_sql_password>'[^']*'|\"[^\"]*\"|[^\s;,)]+)"),
    ("sql_password__2", r"(?i)\bpassword\s+(?P<s_sql_password__2>'[^']*'|\"[^\"]*\")"),
    ("kv_password", r"(?i)(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]{0,40}?(?:" + _KV_WORDS + r")[\"']?\s*[:=]\s*[\"']?"
                    r"(?P<s_kv_password>[^\s\"',;&}\]]+)"),
    ("bearer", r"(?i)\b(?:bearer|basic|token)\s+(?P<s_bearer>[A-Za-z0-9._~+/=-]{16,})"),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    ("card", r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w.-])"),  # not inside ids (UUIDs, hex, dotted)
    # may follow ``=`` (``aws_secret_access_key=…``); never followed by ``=`` (the middle of padded base64)
    ("aws_secret", r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
)

VALUE_DETECTORS: tuple[str, ...] = tuple(dict.fromkeys(name.split("__")[0] for name, _ in _PATTERNS))
KNOWN_DETECTOR = "known"  # values registered as secret (pipetrace.mask_secret, keys, context detectors…)
ALL_DETECTORS: tuple[str, ...] = (KEY_DETECTOR, *VALUE_DETECTORS, KNOWN_DETECTOR, "airflow")

# Detectors whose secret part is recognisable only by its context (``password=``, ``user:pw@``, ``Bearer``):
# what they find becomes a known secret, masked afterwards wherever it appears without that context.
CONTEXT_DETECTORS: frozenset[str] = frozenset({"kv_password", "uri_password", "sql_password", "bearer", "url_query"})

_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|6011|65|64[4-9]|35)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _aws_secret(text: str) -> bool:
    # Random base64: mixed case and digits. A git SHA (lower hex) or a path segment never passes.
    return (any(c.isupper() for c in text) and any(c.islower() for c in text)
            and any(c.isdigit() for c in text) and sum(c.isupper() for c in text) >= 4
            and text.count("/") <= 2)


VALIDATORS: dict[str, Callable[[str], bool]] = {"card": _card, "aws_secret": _aws_secret}



def _scoped(pattern: str) -> str:
    # A leading (?i) becomes a scoped (?i:...) so it applies to this detector only.
    return f"(?i:{pattern[4:]})" if pattern.startswith("(?i)") else pattern


def _any(*words: str) -> Callable[[str, str], bool]:
    return lambda text, lower: any(w in text for w in words)


def _any_lower(*words: str) -> Callable[[str, str], bool]:
    return lambda text, lower: any(w in lower for w in words)


_CARD_HINT = re.compile(r"\d{4}[ -]?\d{4}")

# Literal pre-checks (C-speed ``in`` tests) that every match of a detector must pass: an ordinary string
# runs a handful of them and no regex at all. Python's alternation would try all patterns at every
# position, which costs ~100 µs on a 70-character value; this costs about 2 µs.
PREFILTERS: dict[str, Callable[[str, str], bool]] = {
    "pem": _any("PRIVATE KEY"),
    "jwt": _any("eyJ"),
    "uri_password": lambda text, lower: "://" in text and "@" in text,
    "aws_key_id": _any("AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA"),
    "github": _any("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "slack": _any("xox", "hooks.slack.com"),
    "google": _any("AIza", "ya29.", "GOCSPX-"),
    "stripe": _any("_live_", "_test_", "whsec_"),
    "url_query": lambda text, lower: "=" in text and ("?" in text or "&" in text),
    "sql_password": _any_lower("identified"),
    "sql_password__2": _any_lower("password"),
    "kv_password": lambda text, lower: ("=" in text or ":" in text) and any(
        w in lower for w in ("pass", "pwd", "secret", "token", "key", "auth", "cred")),
    "bearer": _any_lower("bearer", "basic", "token"),
    "email": _any("@"),
    "card": lambda text, lower: _CARD_HINT.search(text) is not None,
    "aws_secret": lambda text, lower: len(text) >= 40,
}

COMPILED: tuple[tuple[int, str, str, re.Pattern[str], Callable[[str, str], bool]], ...] = tuple(
    (priority, name, name.split("__")[0], re.compile(_scoped(pattern), re.DOTALL), PREFILTERS[name])
    for priority, (name, pattern) in enumerate(_PATTERNS)
)
_LONG_ONLY = tuple(c for c in COMPILED if c[2] == "aws_secret")  # what a long string without a trigger can match
_CARD_ONLY = tuple(c for c in COMPILED if c[2] in ("card", "aws_secret"))  # … with only the card hint
_CARD_ALONE = tuple(c for c in COMPILED if c[2] == "card")  # … with the card hint and no 40-character run

# ``aws_secret`` matches a run of exactly 40 of [A-Za-z0-9/+] (ASCII: the class's ranges are literal), so a
# string without a run of 40 such characters cannot hold one: ids made of a UUID and a step name
# (``<uuid>/stage_01#1``: a dash every 4-12 characters) are rejected by two C calls (~0.3 µs) instead of
# the regex scan, a lower-casing and the inert check (~2 µs).
_AWS_RUN_SHAPE = bytes(97 if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "/+") else 32 for i in range(256))
_AWS_RUN = b"a" * 40


def _aws_run(text: str) -> bool:
    """True if ``text`` has 40 characters of ``aws_secret``'s class in a row (what any match needs)."""
    # non-ASCII characters (never in the class) become "?" (one byte each), which the table maps to a space
    return _AWS_RUN in text.encode("ascii", "replace").translate(_AWS_RUN_SHAPE)

# The shortest string any detector above can match; shorter ones skip the scan.
_MIN_LEN = 8

# A lower-case generated name: ``work-8b1`` (a Prefect task run's ``<task>-<3 hex>``), ``smart-lemur`` (a flow
# run's slug), ``extract_rows``: a letter, then ``[a-z0-9_]``, in segments joined by single dashes. Checked per
# detector: no whitespace, upper case or ``=:@./?&'"`` — so no detector but slack, github, stripe and the card can
# match at all — and the first three need their prefix where a word starts (``\b``: the string's start or after
# a dash here, as ``_`` is a word character), which the look-ahead refuses at every segment start; the card needs
# a digit where a number may start (the string's start: a letter here; after a dash or a word character its
# look-behind fails).
_WORD_START = r"(?!xox|gh[pousr]_|github_pat_|[rs]k_|whsec_)"  # not slack's, github's or stripe's prefix
_NAME = _WORD_START + r"[a-z][a-z0-9_]*(?:-" + _WORD_START + r"[a-z0-9_]+)*"

# Shapes no detector can match (checked per detector above): a UUID, lower-case hex with a letter (task ids,
# SHAs, span ids), a plain number, a generated name. Only known secrets are looked for in them
# (``Redactor.value``).
_INERT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    r"|(?=[0-9a-f]*[a-f])[0-9a-f]+|[+-]?\d{1,12}(?:\.\d+)?(?:[eE][+-]?\d+)?|" + _NAME)

# What every prefilter above needs but the AWS secret's (a superset of each), as C-speed literal tests: a
# string without any of them cannot match a detector, or, from 40 characters on, only ``aws_secret``. A
# regex alternation of the same literals costs ~8 µs on a 45-character id (it tries every branch at every
# position); these tests cost ~1.5 µs.
_TRIGGER_LITERALS = ("=", ":", "@", "PRIVATE KEY", "eyJ", "AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA", "AIza",
                     "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "hooks.slack", "ya29.",
                     "GOCSPX-", "_live_", "_test_", "whsec_")
_TRIGGER_WORDS = ("identified", "password", "bearer", "basic", "token")  # in any case
# The same literals grouped under a prefix they share (AWS key ids and ``AIza`` under "A", GitHub's under "gh"):
# a string without the prefix skips the group (14 tests instead of 25 for an id with neither).
_TRIGGER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (prefix, tuple(lit for lit in _TRIGGER_LITERALS if lit.startswith(prefix)))
    for prefix in ("A", "gh")
)
_TRIGGER_REST = tuple(lit for lit in _TRIGGER_LITERALS if not lit.startswith(("A", "gh")))
# ASCII digits -> "0", space and dash kept, every other byte -> "x": the card hint as substring tests
_DIGIT_SHAPE = bytes(48 if 48 <= i <= 57 else i if i in (32, 45) else 120 for i in range(256))


def _card_hint(text: str) -> bool:
    """``_CARD_HINT.search(text)`` (four digits, an optional space or dash, four digits), faster."""
    if not text.isascii():
        return _CARD_HINT.search(text) is not None  # \d matches non-ASCII digits too
    shape = text.encode().translate(_DIGIT_SHAPE)
    return b"0000" in shape and (b"00000000" in shape or b"0000 0000" in shape or b"0000-0000" in shape)


def trigger_level(text: str) -> int:
    """2: a trigger literal or word is in ``text`` (any detector's prefilter may pass); 1: only the card
    hint (only ``card``'s, and from 40 characters on ``aws_secret``'s, can pass); 0: none (only
    ``aws_secret``'s, from 40 characters on). A task-run id with a UUID in it (``<uuid>/step#1``) has the
    card hint one time in six: those ids run the two detectors that can match, not all twenty."""
    for literal in _TRIGGER_REST:
        if literal in text:
            return 2
    for prefix, literals in _TRIGGER_GROUPS:
        if prefix in text:
            for literal in literals:
                if literal in text:
                    return 2
    lower = text.lower()
    for word in _TRIGGER_WORDS:
        if word in lower:
            return 2
    return 1 if _card_hint(text) else 0


def triggered(text: str) -> bool:
    """False if no detector's prefilter but ``aws_secret``'s (40 characters or more) can pass on ``text``."""
    return trigger_level(text) > 0


def inert(text: str) -> bool:
    """True if ``text`` has a shape no detector can match (an id, a hex string, a number, a generated name)."""
    return _INERT.fullmatch(text) is not None


@dataclass(frozen=True)
class Finding:
    detector: str
    start: int
    end: int


def find(text: str) -> list[Finding]:
    """Secret spans in ``text`` (start/end of the part to hide), in order, non-overlapping."""
    if len(text) < _MIN_LEN:
        return []
    detectors = COMPILED
    level = trigger_level(text)
    if level == 1:
        detectors = _CARD_ONLY if len(text) >= 40 and _aws_run(text) else _CARD_ALONE
    elif level == 0:
        if len(text) < 40 or not _aws_run(text):
            return []
        detectors = _LONG_ONLY
    if inert(text):
        return []
    lower = text.lower()
    found: list[tuple[int, int, Finding]] = []
    for priority, name, detector, regex, hint in detectors:
        if not hint(text, lower):
            continue
        group = f"s_{name}"
        has_group = group in regex.groupindex
        validator = VALIDATORS.get(detector)
        for m in regex.finditer(text):
            start, end = m.span(group) if has_group and m.group(group) is not None else m.span()
            if validator is not None and not validator(text[start:end]):
                continue
            found.append((start, priority, Finding(detector, start, end)))
    if len(found) < 2:
        return [f for _, _, f in found]
    found.sort(key=lambda item: (item[0], item[1]))
    out: list[Finding] = []
    for _, _, f in found:  # overlaps (an e-mail-like "pw@host" in a URI): the earlier, then the more
        if out and f.start < out[-1].end:  # specific detector (listed first) wins
            continue
        out.append(f)
    return out


def sensitive_key(key: str, extra_words: tuple[str, ...] = ()) -> bool:
    """True if an attribute named ``key`` holds a secret whatever its value (Airflow's rule: substring)."""
    if key in SAFE_KEYS:
        return False
    low = key.lower()
    return any(w in low for w in SENSITIVE_KEY_WORDS) or any(w in low for w in extra_words)
