"""Rate-limited warnings: a flood of bad carriers must not become a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time

_lock = threading.Lock()
_last: dict[str, float] = {}
_MAX_SOURCES = 1024


def allow(source: str, interval: float = 60.0) -> bool:
    """True (and remembered) unless ``source`` was allowed within ``interval`` seconds."""
    now = time.monotonic()
    with _lock:
        last = _last.get(source)
        if last is not None and now - last < interval:
            return False
        if len(_last) >= _MAX_SOURCES:  # bounded memory whatever the number of sources
            _last.clear()
        _last[source] = now
    return True


def warn_once_per(logger: logging.Logger, source: str, message: str, *args: object, interval: float = 60.0) -> bool:
    """Log ``message`` at WARNING unless ``source`` warned within ``interval`` seconds. True if logged."""
    if not allow(source, interval):
        return False
    logger.warning(message, *args)
    return True


class RateLimitFilter(logging.Filter):
    """A logging filter for a third-party logger that warns once per message (OpenTelemetry's baggage
    propagator logs one line per oversized header, i.e. per message consumed): each distinct message
    template passes at most once per ``interval`` seconds, through the same limiter as pipetrace's own."""

    def __init__(self, name: str, interval: float = 60.0) -> None:
        super().__init__()
        self.source, self.interval = name, interval

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if not allow(f"{self.source}:{record.msg}", self.interval):
            return False
        record.msg = f"{record.msg} (pipetrace: at most one such warning per {self.interval:.0f} s)"
        return True


RATE_LIMITED_LOGGERS = ("opentelemetry.baggage.propagation",)


def limit_third_party_warnings() -> None:
    """Install :class:`RateLimitFilter` on the third-party loggers that warn per message (idempotent)."""
    for name in RATE_LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter(name))


def reset() -> None:
    with _lock:
        _last.clear()
