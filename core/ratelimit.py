"""Rate-limited warnings: a flood of bad carriers must not become a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time

_lock = threading.Lock()
_last: dict[str, float] = {}
_MAX_SOURCES = 1024


def warn_once_per(logger: logging.Logger, source: str, message: str, *args: object, interval: float = 60.0) -> bool:
    """Log ``message`` at WARNING unless ``source`` warned within ``interval`` seconds. True if logged."""
    now = time.monotonic()
    with _lock:
        last = _last.get(source)
        if last is not None and now - last < interval:
            return False
        if len(_last) >= _MAX_SOURCES:  # bounded memory whatever the number of sources
            _last.clear()
        _last[source] = now
    logger.warning(message, *args)
    return True


def reset() -> None:
    with _lock:
        _last.clear()
