"""Work a traced thread hands off, done a little later on one background thread, in batches.

Why: on a per-message path (a Celery task in a prefork child) building a span record is mostly cold
work — the code and objects it touches were evicted by everything the process did since the last
message — so it costs several times more per span than the same work done for a batch of spans in a
row. Measured in a real prefork worker on Redis (``benchmarks/celery_overhead.py --hooks``): the task
span's work took ~55 µs on the task's thread; done here it takes ~21–24 µs per span, and the task's
thread keeps ~12 µs (capturing the request, making the span current, queueing it).

Only what nobody waits for goes here: a span that has ended and whose record only pipetrace's own
processor will see (:func:`accepts`). The thread starts with the first item and sleeps untimed while
the queue is empty (an idle traced process is never woken by it); the first item of a batch waits at
most :data:`INTERVAL_S`, less when :data:`WAKE_AT` items wait. :func:`drain` runs everything queued in
the caller's thread and waits for a batch in progress; the processor calls it before each flush and at
shutdown, so a flush, a worker child's exit or ``pipetrace.force_flush()`` never loses a queued span.
After fork the child starts with an empty queue and starts its own thread on its first item.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..util import losses
from ..util.ratelimit import warn_once_per
from .sdk import processors_of

log = logging.getLogger("pipetrace.spans")

INTERVAL_S = 1.0
"""Longest the first item of a batch waits for the background thread: about a second of a busy
worker's spans makes one warm batch; spans reach the exporters' queues at most this much later."""
WAKE_AT = 512
"""Queue length at which the thread is woken before its interval is up."""
YIELD_EVERY = 32
"""Items done between releases of the GIL, so the task's thread never waits for a whole batch."""
MAX_QUEUED = 20_000
"""Items beyond this many waiting are done at once in the submitting thread: memory stays bounded if the
thread falls behind, and nothing is dropped."""


def _failed(exc: Exception) -> None:
    """One item's work raised: its span is lost (counted) and the queue goes on."""
    losses.count("later_work")
    warn_once_per(log, "later", "pipetrace: deferred span work failed: %r", exc)


class _Later:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.items: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self.running = threading.Lock()  # held while items are being done (by the thread or a drain)
        self.starting = threading.Lock()
        self.arrived = threading.Event()  # set by the first item after the queue was empty
        self.full = threading.Event()  # set when WAKE_AT items wait
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        with self.starting:
            if self.thread is None:
                thread = threading.Thread(target=self._loop, name="pipetrace-later", daemon=True)
                thread.start()
                self.thread = thread

    def _loop(self) -> None:
        while True:
            self.arrived.wait()  # untimed while nothing is queued: an idle process is never woken
            self.arrived.clear()
            self.full.wait(INTERVAL_S)  # the batch's first item waits at most this long
            self.full.clear()
            self.run_queued(yield_gil=True)

    def run_queued(self, yield_gil: bool = False) -> int:
        count = 0
        items = self.items
        with self.running:
            while items:
                try:
                    work, args = items.popleft()
                except IndexError:
                    break
                try:
                    work(*args)
                except Exception as exc:
                    _failed(exc)
                count += 1
                if yield_gil and count % YIELD_EVERY == 0:
                    self.running.release()
                    try:
                        time.sleep(0)
                    finally:
                        self.running.acquire()
        return count


_later = _Later()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_later._reset)


def submit(work: Callable[..., Any], *args: Any) -> None:
    """Do ``work(*args)`` on the background thread, within :data:`INTERVAL_S` (or at the next drain)."""
    later = _later
    items = later.items
    queued = len(items) + 1
    if queued > MAX_QUEUED:
        try:
            work(*args)
        except Exception as exc:
            _failed(exc)
        return
    items.append((work, args))
    if queued == 1:  # the first of a batch (one wake-up per batch, not per item)
        if later.thread is None:
            later.start()
        later.arrived.set()
    elif queued == WAKE_AT:
        later.full.set()


def drain() -> int:
    """Do everything queued now, in this thread, after any batch in progress; how many items."""
    try:
        return _later.run_queued()
    except Exception as exc:  # pragma: no cover - never into a flush
        warn_once_per(log, "later-drain", "pipetrace: deferred span work failed: %r", exc)
        return 0


def pending() -> int:
    return len(_later.items)


# (the processors tuple last checked, whether all of them drain this queue when they flush)
_checked: list[Any] = [None, False]


def accepts(tracer: Any) -> bool:
    """Whether spans of ``tracer`` may be finished here: every processor is one that drains this
    queue before it flushes (pipetrace's pipeline; an SDK processor's flush would not wait for it)."""
    processors = processors_of(tracer)
    if processors is None:
        return False
    if processors is not _checked[0]:
        _checked[1] = bool(processors) and all(getattr(type(p), "drains_later", False) for p in processors)
        _checked[0] = processors
    return _checked[1] is True
