"""Validation of the viewer API's query parameters and path ids: a bad value is a 400 with one plain line.

Every route declares the parameters it takes; anything else (an unknown name, a repeated name, a value
that is not finite, out of range, too long or holds control characters) raises :class:`ParamError`,
whose message is safe to send back as is (it quotes nothing but the parameter's name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .. import attributes as A

STATUSES = frozenset({A.RESULT_SUCCESS, A.RESULT_FAILURE, A.RESULT_ERROR, A.RESULT_TIMEOUT,
                      A.RESULT_CANCELLATION, A.RESULT_SKIP, A.RESULT_RETRY, "running"})
EXPORT_FORMATS = ("otlp-json", "jaeger-json")
MAX_TEXT = 256
MAX_LIMIT = 2000
MAX_EPOCH_S = 32503680000.0    # year 3000
MAX_DURATION_MS = 10 * 365 * 86400 * 1000.0
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ZERO_TRACE = "0" * 32
_HEX = re.compile(r"[0-9a-fA-F]{32}")


class ParamError(ValueError):
    """A request parameter the viewer refuses (answered with HTTP 400 and this message)."""


@dataclass(frozen=True)
class Spec:
    """How one parameter is read: ``kind`` is text, name, number, count or one of ``choices``."""

    kind: str
    low: float = 0.0
    high: float = math.inf
    choices: tuple[str, ...] = ()
    required: bool = False


RUNS = {
    "system": Spec("name"), "pipeline": Spec("text"), "status": Spec("choice", choices=tuple(sorted(STATUSES))),
    "since": Spec("number", 0, MAX_EPOCH_S), "until": Spec("number", 0, MAX_EPOCH_S),
    "min_ms": Spec("number", 0, MAX_DURATION_MS), "max_ms": Spec("number", 0, MAX_DURATION_MS),
    "limit": Spec("count", 1, MAX_LIMIT),
}
HISTORY = {"pipeline": Spec("text", required=True), "task": Spec("text", required=True)}
EXPORT = {"format": Spec("choice", choices=EXPORT_FORMATS)}
NONE: dict[str, Spec] = {}


def _text(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise ParamError(f"{name}: at most {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise ParamError(f"{name}: control characters are not allowed")
    return value


def _number(name: str, value: str, spec: Spec) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ParamError(f"{name}: not a number") from None
    if not math.isfinite(number):
        raise ParamError(f"{name}: must be a finite number")
    if not spec.low <= number <= spec.high:
        raise ParamError(f"{name}: must be between {spec.low:g} and {spec.high:g}")
    return number


def _one(name: str, value: str, spec: Spec) -> Any:
    if spec.kind == "text":
        return _text(name, value) or None
    value = value.strip()
    if value == "":
        return None
    if spec.kind == "name":
        if not _NAME.fullmatch(value):
            raise ParamError(f"{name}: letters, digits and _ . : - only (at most 64)")
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ParamError(f"{name}: must be one of {', '.join(spec.choices)}")
        return value
    if spec.kind == "count":
        if not value.isdigit() or len(value) > 9:
            raise ParamError(f"{name}: must be a whole number between {spec.low:g} and {spec.high:g}")
        count = int(value)
        if not spec.low <= count <= spec.high:
            raise ParamError(f"{name}: must be a whole number between {spec.low:g} and {spec.high:g}")
        return count
    return _number(name, value, spec)


def parse(query: Mapping[str, list[str]], specs: Mapping[str, Spec]) -> dict[str, Any]:
    """The validated parameters (missing optional ones are None)."""
    out: dict[str, Any] = {}
    for name, values in query.items():
        if name not in specs:
            shown = name if _NAME.fullmatch(name) else "(unprintable)"
            raise ParamError(f"unknown parameter {shown}; this route takes: {', '.join(specs) or 'none'}")
        if len(values) > 1:
            raise ParamError(f"{name}: given more than once")
        out[name] = _one(name, values[0], specs[name])
    for name, spec in specs.items():
        out.setdefault(name, None)
        if spec.required and out[name] is None:
            raise ParamError(f"{name} is required")
    return out


def ident(raw: str) -> str:
    """A trace id (32 hex digits) or a run id from a URL path segment (percent-decoded)."""
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise ParamError("id: not valid UTF-8") from None
    value = value.strip()
    if not value:
        raise ParamError("id: a trace id or run id is required")
    if len(value) > MAX_TEXT:
        raise ParamError(f"id: at most {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise ParamError("id: control characters are not allowed")
    if len(value) == 32 and value.isalnum() and not _HEX.fullmatch(value):
        raise ParamError("id: a 32-character trace id must be hexadecimal")
    if value.lower() == _ZERO_TRACE:
        raise ParamError("id: the all-zero trace id is invalid")
    return value
