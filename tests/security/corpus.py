"""Planted secrets: random, unique per test run, of many kinds, each with the text to search for.

``needle`` is the secret part only (the password inside a URI, the key in a query string): finding it
anywhere in the store file, an OTLP payload or an export means it leaked.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

_rng = random.SystemRandom()


def _pick(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _alnum(n: int) -> str:
    # always mixed: upper, lower and digits, so no needle is an ordinary-looking word
    mixed = _pick(string.ascii_uppercase, 2) + _pick(string.digits, 2)
    return mixed + _pick(string.ascii_letters + string.digits, n - 4)


def _luhn_complete(prefix: str, length: int) -> str:
    body = prefix + _pick(string.digits, length - len(prefix) - 1)
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _b64url(n: int) -> str:
    return base64.urlsafe_b64encode(_rng.randbytes(n)).decode().rstrip("=")


@dataclass(frozen=True)
class Secret:
    kind: str
    needle: str  # must never leave the process
    text: str  # how it appears in the planted value

    @property
    def probe(self) -> str:
        """A random part of the needle's start: found if a cut kept the beginning of the secret."""
        if self.kind == "jwt":
            return self.needle.split(".")[1][-12:]  # the header is the same in every JWT
        return self.needle[:12]


def make(kind: str) -> Secret:
    pw = _alnum(14)
    if kind == "aws_key_id":
        s = "AKIA" + _pick(string.ascii_uppercase + string.digits, 16)
        return Secret(kind, s, f"aws key {s} in use")
    if kind == "aws_secret":
        while True:
            s = _alnum(34) + _pick(string.ascii_uppercase, 4) + _pick("/+", 1) + _pick(string.digits, 1)
            s = "".join(_rng.sample(s, len(s)))
            if s.count("/") <= 2:
                return Secret(kind, s, f"aws_secret_access_key {s}")
    if kind == "github":
        s = "ghp_" + _alnum(36)
        return Secret(kind, s, f"git clone with {s}")
    if kind == "slack":
        s = f"xoxb-{_pick(string.digits, 12)}-{_alnum(24)}"
        return Secret(kind, s, f"notify via {s}")
    if kind == "google":
        s = "AIza" + _alnum(35)
        return Secret(kind, s, f"maps {s}")
    if kind == "stripe":
        s = "sk_live_" + _alnum(24)
        return Secret(kind, s, f"charging with {s}")
    if kind == "jwt":
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        claims = base64.urlsafe_b64encode(json.dumps({"sub": _alnum(10)}).encode()).decode().rstrip("=")
        s = f"{header}.{claims}.{_b64url(32)}"
        return Secret(kind, s, f"session {s}")
    if kind == "pem":
        body = base64.b64encode(_rng.randbytes(48)).decode()
        return Secret(kind, body, f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    if kind == "uri_password":
        return Secret(kind, pw, f"postgresql://etl_user:{pw}@db.internal:5432/warehouse")
    if kind == "conn_string":
        return Secret(kind, pw, f"Server=sql1;Database=sales;User Id=loader;Password={pw};")
    if kind == "sql_password":
        return Secret(kind, pw, f"CREATE USER loader WITH PASSWORD '{pw}'")
    if kind == "url_query":
        return Secret(kind, pw, f"https://api.example.com/v2/export?api_key={pw}&page=2")
    if kind == "email":
        s = f"{_pick(string.ascii_lowercase, 8)}.{_pick(string.ascii_lowercase, 6)}@example.org"
        return Secret(kind, s, f"notify {s} when done")
    if kind == "card":
        s = _luhn_complete("4", 16)
        return Secret(kind, s, f"charged card {s}")
    if kind == "bearer":
        s = _alnum(32)
        return Secret(kind, s, f"Authorization: Bearer {s}")
    if kind == "aws_secret_kv":
        s = make("aws_secret").needle
        return Secret(kind, s, f"aws_secret_access_key={s}")
    if kind == "sensitive_key":
        return Secret(kind, pw, pw)  # value under a key such as ``warehouse_password``
    raise KeyError(kind)


KINDS = ("aws_key_id", "aws_secret", "github", "slack", "google", "stripe", "jwt", "pem", "uri_password",
         "conn_string", "sql_password", "url_query", "email", "card", "bearer", "sensitive_key", "aws_secret_kv")

# Ordinary values that must come out exactly as they went in.
ORDINARY: dict[str, object] = {
    "rows": 1000,
    "bytes.written": 5_242_880,
    "ratio": 0.25,
    "file.name": "orders_2024-06-01.csv",
    "s3.path": "s3://warehouse-raw/orders/dt=2024-06-01/part-00000.parquet",
    "git.sha": "d41d8cd98f00b204e9800998ecf8427e4a1b2c3d",
    "run.uuid": "3f2a6c1e-9b7d-4e2f-8a61-0c5d9e7f1b24",
    "started.epoch_ms": "1718000000000",
    "query.text": "SELECT id, amount FROM orders WHERE created_at > '2024-06-01' LIMIT 100",
    "endpoint": "https://api.example.com/v2/export?page=2&sort=asc",
    "dag.run_id": "scheduled__2024-06-01T00:00:00+00:00",
    "hostname": "worker-7.etl.internal",
    "max_tokens": 512,
    "phone.digits": "1234567890123",
}
