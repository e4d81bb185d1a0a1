"""The viewer's access log: one line per request — UTC time, principal, client, method, path, status.

The query string is never written (it can carry ``?token=``); the path is percent-encoded so a request
cannot forge a line. Writes are appended under a lock; a failing log (disk full) is reported once and
never fails a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

from ..util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.ui")
_SAFE = "/:@!$&'()*+,;=-._~%"


def format_line(principal: str, client: str, method: str, path: str, status: int, now: float | None = None) -> str:
    t = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
    return (f"{stamp} {quote(principal, safe=_SAFE)} {quote(client, safe=_SAFE)} {quote(method, safe='')} "
            f"{quote(path.split('?', 1)[0], safe=_SAFE)} {status}\n")


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # who read what: for its owner only
        self._fh = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, principal: str, client: str, method: str, path: str, status: int) -> None:
        line = format_line(principal, client, method, path, status)
        try:
            with self._lock:
                self._fh.write(line)
        except (OSError, ValueError) as exc:
            warn_once_per(log, "access-log", "pipetrace ui: cannot write the access log %s: %r", self.path, exc)

    def close(self) -> None:
        with self._lock:
            self._fh.close()
