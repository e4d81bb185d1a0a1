"""Redaction: secrets never leave the process — masked, tokenised or dropped before store and exporters.

On by default (``PIPETRACE_REDACTION``). ``transform_for(settings)`` builds the chain's first transform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .detectors import ALL_DETECTORS, SENSITIVE_KEY_WORDS, find, luhn_ok, sensitive_key
from .redactor import DROP, MASK, MODES, Redactor
from .spans import RedactionTransform

if TYPE_CHECKING:
    from ..config import Settings


def redactor_for(settings: Settings) -> Redactor:
    """The redactor the settings describe; ``ValueError`` on an impossible combination."""
    key = settings.redaction_key
    return Redactor(modes=settings.redaction_modes, key=str(key) if key else None,
                    sensitive_keys=settings.redaction_sensitive_keys, allow_keys=settings.redaction_allow_keys)


def transform_for(settings: Settings) -> RedactionTransform | None:
    """The redaction transform for the chain, or None when redaction is off."""
    if not settings.redaction:
        return None
    return RedactionTransform(redactor_for(settings))


__all__ = [
    "ALL_DETECTORS", "DROP", "MASK", "MODES", "RedactionTransform", "Redactor", "SENSITIVE_KEY_WORDS",
    "find", "luhn_ok", "redactor_for", "sensitive_key", "transform_for",
]
