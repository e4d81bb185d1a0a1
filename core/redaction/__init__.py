"""Redaction: secrets never leave the process — masked, tokenised or dropped before store and exporters.

On by default (``PIPETRACE_REDACTION``). ``transform_for(settings)`` builds the chain's first transform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .detectors import ALL_DETECTORS, SENSITIVE_KEY_WORDS, find, luhn_ok, sensitive_key
from .known import KNOWN, SecretsLogFilter, install_log_filter, mask_secret
from .redactor import DROP, MASK, MODES, Redactor
from .spans import RedactionTransform
from .text import STATUS_LIMIT, active_redactor, cut, exception_description, redacted, status_description

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from ..config import Settings


def redactor_for(settings: Settings) -> Redactor:
    """The redactor the settings describe; ``ValueError`` on an impossible combination."""
    key = settings.redaction_key
    return Redactor(modes=settings.redaction_modes, key=str(key) if key else None,
                    sensitive_keys=settings.redaction_sensitive_keys, allow_keys=settings.redaction_allow_keys)


_transform: list[RedactionTransform] = []


def transform_for(settings: Settings, *,
                  span_attributes: Callable[[ReadableSpan], Mapping[str, Any] | None] | None = None,
                  attributes: Callable[[Any], Mapping[str, Any] | None] | None = None) -> RedactionTransform | None:
    """The redaction + length-limit transform for the chain (None when both are off); ``span_attributes``
    and ``attributes``: how it reads attribute mappings (see :class:`RedactionTransform`).

    Also makes its redactor the active one, used by ``status_description`` on the task's thread."""
    from .text import set_active_redactor

    redactor = redactor_for(settings) if settings.redaction else None
    set_active_redactor(redactor)
    if redactor is not None and settings.redaction_logs:
        install_log_filter()
    limit = settings.attribute_value_length_limit
    _transform.clear()
    if redactor is None and not limit:
        return None
    transform = RedactionTransform(redactor, limit or None, span_attributes=span_attributes, attributes=attributes)
    _transform.append(transform)
    return transform


def stats() -> dict[str, int]:
    """Counters of the current transform: strings cut to the length limit, spans dropped on failure."""
    return _transform[0].stats() if _transform else {}


__all__ = [
    "ALL_DETECTORS", "DROP", "KNOWN", "MASK", "MODES", "STATUS_LIMIT", "RedactionTransform", "Redactor",
    "SENSITIVE_KEY_WORDS", "SecretsLogFilter", "active_redactor", "cut", "exception_description", "find",
    "install_log_filter", "luhn_ok", "mask_secret", "redacted", "redactor_for", "sensitive_key", "stats",
    "status_description", "transform_for",
]
