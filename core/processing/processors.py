"""The processing chain: span ends → transforms (redaction, …) → bounded background export queues.

Nothing here runs export work on the task's thread: ``on_end`` only appends to a bounded deque, and a
full queue drops the span and counts it instead of blocking.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context, detach
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import attributes as A
from ..machinery.sdk import suppress_instrumentation
from ..util import losses
from ..util.gil import YIELD_EVERY, hand_back
from ..util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.export")

_SAMPLED = 0x01  # the W3C sampled trace flag

SpanTransform = Callable[[ReadableSpan], "ReadableSpan | None"]



def _reinit_after_fork(owner: ExportQueue | TransformStage) -> None:
    """Call ``owner._init_state()`` in a forked child (fresh locks, nothing queued), while ``owner`` lives."""
    ref = weakref.ref(owner)

    def reinit_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive._init_state()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reinit_in_child)


class ExportQueue:
    """One exporter behind a bounded queue and a daemon thread.

    The thread starts with the first span (a process that never ends a span has none). After an export
    it waits one ``interval_s`` for the next spans without being woken for them, and only if none came
    sleeps without a timeout: an idle traced process is never woken by pipetrace, and a busy one is woken
    once a batch (when it fills), not also for each batch's first span. Every wake-up counts: in a busy
    process the woken thread must wait for the GIL, and while it waits, each moment the task's thread lets go
    of the GIL wakes it for nothing (``benchmarks/celery_inprocess.py`` prints the context switches). Spans
    wait at most ``interval_s`` after the first of a batch arrives, less when a batch fills or a flush asks.
    With ``transforms`` (the processor's single exporter) this thread also applies them, before the exporter
    sees a span; with a ``stage`` (several exporters) the stage transforms each span once, on whichever
    queue's thread takes it first. A batch kept for a retry is kept transformed, so a transform never runs
    twice on one span. After fork the child starts empty and starts its own thread on its first span.

    ``run_end_gap_s`` (the store's queue): a run span's end (see :meth:`run_ended`) makes the batch due
    at once, or that long after the last export if that was sooner: a finished run is written whole in
    one batch (one commit) without waiting out ``interval_s``, and many short runs still cost at most one
    export per ``run_end_gap_s``.
    """

    def __init__(self, exporter: SpanExporter, *, name: str, max_queue_size: int = 20_000,
                 max_batch_size: int = 512, interval_s: float = 0.5, retry_failures: bool = False,
                 max_backoff_s: float = 5.0, transforms: list[SpanTransform] | None = None,
                 run_end_gap_s: float | None = None) -> None:
        self.exporter = exporter
        self.run_end_gap_s = run_end_gap_s
        self.retry_failures = retry_failures
        self.max_backoff_s = max_backoff_s
        self._backoff_s = 0.0
        self.name = name
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.interval_s = interval_s
        self.transforms = transforms
        self.stage: TransformStage | None = None  # set by a processor with several exporters (pending items)
        self.dropped = 0
        self.failed = 0
        self.exported = 0
        self._shutdown = False
        self._init_state()
        _reinit_after_fork(self)

    def _init_state(self) -> None:
        self._queue: collections.deque[ReadableSpan] = collections.deque()  # as ended: not transformed yet
        self._ready: collections.deque[ReadableSpan] = collections.deque()  # transformed, kept for a retry
        self._mutex = threading.RLock()  # the condition's lock: ``with self._mutex`` is a C call, ``with
        self._cond = threading.Condition(self._mutex)  # self._cond`` two Python ones (offer: once a span)
        self._busy = False
        self._idle = False  # the thread sleeps untimed (nothing came for an interval): the next span wakes it
        self._flushes = 0
        self._due = 0.0
        self._thread: threading.Thread | None = None
        self._inflight = 0  # spans in the export running now (not in either deque)
        self._claimed = 0  # of those, counted lost by shutdown while the export was still running
        self._last_export = 0.0  # monotonic time the last export started (run_ended's gap)

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._ready)

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"pipetrace-export-{self.name}", daemon=True)
            self._thread.start()

    def offer(self, span: ReadableSpan) -> None:
        if self._shutdown:
            return
        with self._mutex:
            pending = len(self._queue) + len(self._ready)  # (self.queued, inline)
            if pending >= self.max_queue_size:
                self.dropped += 1
                losses.count("queue_full", exporter=self.name)
                warn_once_per(log, f"drop-{self.name}", "pipetrace: %s queue full (%d); dropping spans",
                              self.name, self.max_queue_size)
                return
            self._queue.append(span)
            if pending == 0:
                self._due = time.monotonic() + self.interval_s
                if self._thread is None:
                    self._start_locked()
                elif self._idle:
                    self._cond.notify()  # otherwise the thread is waiting out an interval: it takes this then
            elif pending + 1 == self.max_batch_size:
                self._cond.notify()

    def run_ended(self) -> None:
        """A run span just ended (and was offered): export what is queued now, or ``run_end_gap_s`` after
        the last export. Nothing for a queue without ``run_end_gap_s``."""
        gap = self.run_end_gap_s
        if gap is None:
            return
        with self._cond:
            if self._queue or self._ready:
                due = max(time.monotonic(), self._last_export + gap)
                if due < self._due:
                    self._due = due
                    self._cond.notify()

    def _wait_for_batch_locked(self) -> None:
        if not (self._shutdown or self._flushes or self._queue or self._ready):
            self._cond.wait(self.interval_s)  # the next spans, without a wake-up each (see the class)
        while not self._shutdown and not (self._queue or self._ready):
            self._idle = True
            try:
                self._cond.wait()
            finally:
                self._idle = False
        while not self._shutdown and not self._flushes and self.queued < self.max_batch_size:
            left = self._due - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take_locked(self) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
        ready: list[ReadableSpan] = []
        raw: list[ReadableSpan] = []
        while self._ready and len(ready) < self.max_batch_size:
            ready.append(self._ready.popleft())
        while self._queue and len(ready) + len(raw) < self.max_batch_size:
            raw.append(self._queue.popleft())
        if self._queue or self._ready:
            self._due = 0.0  # more than one batch was waiting: the next one is due now
        return ready, raw

    def _transform(self, spans: list[ReadableSpan]) -> list[ReadableSpan]:
        if self.stage is not None:
            return self.stage.resolve(spans)
        transforms = self.transforms
        if not transforms:
            return spans
        out = []
        since = time.perf_counter()
        for n, span in enumerate(spans, 1):
            if n % YIELD_EVERY == 0:
                since = hand_back(since)  # a task thread must not wait a whole switch interval for the GIL
            done = apply_transforms(transforms, span)
            if done is not None:
                out.append(done)
        return out

    def _export(self, batch: Sequence[ReadableSpan]) -> bool:
        # instrumentation off while exporting, as in the SDK's BatchSpanProcessor: an instrumented HTTP
        # or gRPC client under the OTLP exporter must not make spans of the export (exported again…)
        token = suppress_instrumentation()
        try:
            result = self.exporter.export(batch)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            warn_once_per(log, f"export-{self.name}", "pipetrace: %s exporter raised %r", self.name, exc)
        finally:
            detach(token)
        if result == SpanExportResult.SUCCESS:
            self.exported += len(batch)
            self._backoff_s = 0.0
            return True
        return False

    def _after_failure(self, batch: list[ReadableSpan]) -> None:
        """Keep a failed batch for a later attempt (store: a lock or a full disk passes) or count it lost."""
        if not self.retry_failures or self._shutdown:
            self.failed += len(batch)
            losses.count("exporter_error", len(batch), exporter=self.name)
            warn_once_per(log, f"failed-{self.name}", "pipetrace: %s export failed; %d spans dropped",
                          self.name, len(batch))
            return
        with self._cond:
            room = self.max_queue_size - self.queued
            keep = batch[:max(0, room)]
            lost = len(batch) - len(keep)
            self._ready.extendleft(reversed(keep))
            if lost:
                self.dropped += lost
                losses.count("queue_full", lost, exporter=self.name)
            self._backoff_s = min(self.max_backoff_s, max(0.1, self._backoff_s * 2))
            self._due = 0.0
            warn_once_per(log, f"failed-{self.name}", "pipetrace: %s export failed; keeping %d spans and "
                          "retrying in %.1fs (%d dropped: queue full)", self.name, len(keep), self._backoff_s, lost)
            self._cond.wait(self._backoff_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._wait_for_batch_locked()
                ready, raw = self._take_locked()
                self._busy = bool(ready or raw)
                self._last_export = time.monotonic()
                self._inflight = len(ready) + len(raw)
                stop = self._shutdown and not (self._queue or self._ready)
            if ready or raw:
                batch = ready + self._transform(raw)
                with self._cond:
                    if not self._claimed:
                        self._inflight = len(batch)  # a transform may drop spans (sampling): not lost
                ok = not batch or self._export(batch)
                with self._cond:
                    claimed, self._claimed, self._inflight = self._claimed, 0, 0
                if claimed and ok:  # written after shutdown counted it lost: it was not lost after all
                    with self._cond:
                        self.dropped -= claimed
                    losses.uncount("shutdown", claimed, exporter=self.name)
                elif not ok and not claimed:
                    self._after_failure(batch)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if stop:
                return

    def kick(self) -> None:
        """Export what is queued now, without waiting for the batch's interval (a flush starting every
        queue before it waits for any: their exports overlap)."""
        with self._cond:
            if self._queue or self._ready:
                self._due = 0.0
                self._start_locked()
                self._cond.notify()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is exported, at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if not (self._queue or self._ready or self._busy):
                return True
            self._start_locked()
            self._flushes += 1
            try:
                self._cond.notify_all()
                while self._queue or self._ready or self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._cond.notify_all()
                    self._cond.wait(min(left, 0.05))
            finally:
                self._flushes -= 1
        return True

    def shutdown(self, timeout_s: float) -> None:
        """Flush for at most ``timeout_s``, then stop, whatever the exporter is doing: an export still
        running (a store locked by another process, a hung collector) is not waited for. Every span not
        exported is counted and reported once: queued, kept for a retry and in the running export."""
        deadline = time.monotonic() + timeout_s
        self.flush(timeout_s)
        with self._cond:
            self._shutdown = True
            queued = self.queued
            self._queue.clear()
            self._ready.clear()
            running = self._inflight if self._busy else 0
            self._claimed = running
            self.dropped += queued + running
            losses.count("shutdown", queued + running, exporter=self.name)
            self._cond.notify_all()
        if queued + running:
            detail = f"; {running} of them in an export still running" if running else ""
            log.warning("pipetrace: %s exporter lost %d spans at shutdown (flush bound %.1fs%s)",
                        self.name, queued + running, timeout_s, detail)
        self._shutdown_exporter(max(0.0, deadline - time.monotonic()) if running else None)

    def _shutdown_exporter(self, bound_s: float | None) -> None:
        """``exporter.shutdown()``; with ``bound_s`` on a daemon thread waited for at most that long (the
        running export may hold what shutdown needs, e.g. the store's connection lock)."""
        def stop() -> None:
            try:
                self.exporter.shutdown()
            except Exception as exc:
                log.debug("pipetrace: %s exporter shutdown failed: %r", self.name, exc)

        if bound_s is None:
            stop()
            return
        thread = threading.Thread(target=stop, name=f"pipetrace-stop-{self.name}", daemon=True)
        thread.start()
        thread.join(bound_s)


class TransformStage:
    """The transforms of a chain with several exporters, applied once per span on the export threads
    that already exist: ``on_end`` hands each queue the same pending item, and whichever queue's thread
    exports it first transforms it (under the stage's lock) for all of them. No thread or queue of its
    own: a span costs no extra hop or wake-up, and a slow exporter holds only its own queue (the others
    transform what they need themselves)."""

    name = "transform"

    def __init__(self, transforms: list[SpanTransform]) -> None:
        self.transforms = transforms
        self.exported = 0  # spans transformed and handed on
        self.removed = 0  # spans a transform dropped (sampled out, or it raised: counted as lost there)
        self._init_state()
        _reinit_after_fork(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()

    def resolve(self, items: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        """The transformed spans of ``items`` (pending items, or spans queued before transforms were
        added), each transformed once whichever queue asks first; spans a transform dropped left out."""
        out: list[ReadableSpan] = []
        transforms = self.transforms
        with self._lock:
            since = time.perf_counter()
            for n, item in enumerate(items, 1):
                if type(item) is not list:  # a pending item is ``[span, done]`` (see on_end)
                    out.append(item)
                    continue
                if not item[1]:
                    if n % YIELD_EVERY == 0:
                        since = hand_back(since)
                    item[0] = apply_transforms(transforms, item[0]) if transforms else item[0]
                    item[1] = True
                    if item[0] is None:
                        self.removed += 1
                    else:
                        self.exported += 1
                if item[0] is not None:
                    out.append(item[0])
        return out

    def stats(self) -> dict[str, int]:
        """Spans transformed and handed on, and spans a transform removed. Nothing waits or is lost here:
        the spans wait in (and are counted lost by) the exporters' queues."""
        return {"exported": self.exported, "removed": self.removed}


def apply_transforms(transforms: Sequence[SpanTransform], span: ReadableSpan) -> ReadableSpan | None:
    current: ReadableSpan = span
    for transform in transforms:
        try:
            transformed = transform(current)
        except Exception as exc:  # a failing transform (redaction!) drops the span rather than leak it
            losses.count("transform_error")
            warn_once_per(log, "transform", "pipetrace: span transform %r failed, span dropped: %r",
                          transform, exc)
            return None
        if transformed is None:
            return None
        current = transformed
    return current


class PipelineProcessor(SpanProcessor):
    """Hands each ended span to the export queues; transforms (redaction, …) run off the task's thread
    and once per span: on the single exporter's own thread, or with several exporters on whichever export
    thread takes the span first (:class:`TransformStage`). ``on_end`` only appends to bounded deques:
    nothing heavy on the task's thread."""

    ignores_running_spans = True  # no on_start / _on_ending work: see pipetrace.machinery.handle

    def __init__(self, queues: Sequence[ExportQueue] = (), transforms: Sequence[SpanTransform] = ()) -> None:
        self.queues = list(queues)
        self._run_end_queues = [q for q in self.queues if q.run_end_gap_s is not None]  # told when a run ends
        self.transforms = list(transforms)  # shared with the queue or stage that applies them: add_transform appends
        self.stage: TransformStage | None = None
        if len(self.queues) == 1:
            self.queues[0].transforms = self.transforms
        elif self.queues:
            self.stage = TransformStage(self.transforms)
            for queue in self.queues:
                queue.stage = self.stage

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not self.queues:  # exporters=none: nothing to redact for
            return
        context = span.context
        if context is not None and not context.trace_flags & _SAMPLED:  # RECORD_ONLY: never exported
            return
        try:
            # with a stage, each queue holds the same pending item ``[span, done]``, transformed once by the
            # first thread that takes it (``[transformed or None, True]``); a plain list: the task's thread
            # pays ~0.1 µs for it
            item: Any = [span, False] if self.stage is not None and self.transforms else span
            for queue in self.queues:
                queue.offer(item)
            if self._run_end_queues and span.name.startswith(A.RUN_SPAN_PREFIX) and (  # (a call only for "run …")
                    A.is_run_span(span.name, span.kind, span.attributes or ())):
                for queue in self._run_end_queues:  # a run's spans ended before it: written in one batch now
                    queue.run_ended()
        except Exception as exc:  # never into the traced code
            warn_once_per(log, "pipeline", "pipetrace: span processing failed: %r", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._flush(self.queues, timeout_millis / 1000)

    def flush_only(self, names: Sequence[str], timeout_s: float) -> bool:
        return self._flush([q for q in self.queues if q.name in names], timeout_s)

    def _flush(self, queues: Sequence[ExportQueue], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for queue in queues:  # every queue starts on its batch at once; then each is waited for
            queue.kick()
        ok = True
        for queue in queues:
            ok = queue.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def shutdown(self) -> None:
        self.shutdown_within(5.0)

    def shutdown_within(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for queue in self.queues:
            queue.shutdown(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, dict[str, int]]:
        out = {q.name: {"exported": q.exported, "dropped": q.dropped, "failed": q.failed, "queued": q.queued}
               for q in self.queues}
        if self.stage is not None:
            return {self.stage.name: self.stage.stats(), **out}
        return out
