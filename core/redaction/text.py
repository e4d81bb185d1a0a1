"""Redact, then cut: the one helper for every bounded text pipetrace writes (status messages,
exception messages put in attributes by adapters).

Cutting first would split a secret from the context its detector needs (``postgresql://u:pw@`` cut
after ``pw``) and keep most of it; redacting the whole text first cannot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .redactor import Redactor

STATUS_LIMIT = 1024  # characters of a span's status description
ELLIPSIS = "…"


class _Active:
    redactor: Redactor | None = None


_active = _Active()


def set_active_redactor(redactor: Redactor | None) -> None:
    """The redactor of the configured chain (None when redaction is off); set by ``transform_for``."""
    _active.redactor = redactor


def active_redactor() -> Redactor | None:
    return _active.redactor


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long, an ellipsis marking a cut."""
    if len(text) <= limit:
        return text
    return text[:max(limit - 1, 0)] + ELLIPSIS


def redacted(text: str, limit: int = STATUS_LIMIT) -> str:
    """``text`` redacted by the active redactor, then cut to ``limit``. Never raises."""
    try:
        redactor = _active.redactor
        if redactor is not None:
            redactor.refresh()
            text = redactor.text(text)
    except Exception:  # pragma: no cover - defensive: the chain redacts again, and drops on failure
        pass
    return cut(text, limit)


def status_description(text: object, limit: int = STATUS_LIMIT) -> str:
    """A span status description from any message: redacted first, then cut to 1,024 characters."""
    try:
        message = text if isinstance(text, str) else str(text)
    except Exception:
        message = f"<unprintable {type(text).__name__}>"
    return redacted(message, limit)


def exception_description(exc: BaseException, limit: int = STATUS_LIMIT, *, prefix: str | None = None) -> str:
    """``"Type: message"`` of an exception (``prefix`` replaces the type name), redacted then cut."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    head = type(exc).__name__ if prefix is None else prefix
    return redacted(f"{head}: {message}", limit)
