"""The end of a Celery or kombu run, decided from the stored spans alone (no orchestrator run record).

A message-driven run is one trace. It has ended when every message published in it (every ``send``
PRODUCER span) has been handled — a CONSUMER span (a task attempt, a ``process`` span, or the record
of a revoked, rejected or lost attempt) is its child, or a batch's ``process`` span links to it — the
last attempt of every task is final (not
``retry``), and nothing more has happened for ``run_settle_s`` (a message published at the very end
reaches the store a moment after the attempt that published it). A run that never gets there (a lost
message) is closed ``run_timeout_s`` after its last activity, or after the latest ETA it still waits
for, with result ``timeout``.

Why from the store: the end of a workflow is seen by no single process (the chord body may run on
another host than the header's last task), so a closer that reads the shared store decides it, off any
task's path: a worker's background thread (:func:`start_background`), ``pipetrace runs`` and the
viewer (:func:`close_ended_runs`). Every closer emits the same span (its id derives from the run's
identity, see design.md), so a run closed twice is one run span in the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import attributes as A
from ..identity import derive_run_span_id, format_span_id
from ..store import SpanRecord, SpanStore
from ..store.queries import spans_of_traces, trace_activity, traces_of_systems_since, traces_with_run_span
from ..util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.runs")

SYSTEMS = ("celery", "kombu")
OTHER_RUNNERS = frozenset({"airflow", "dagster", "prefect"})
"""A trace with spans of these belongs to their run (they emit its run span): never closed here."""
REQUEUED = "pipetrace.celery.requeued"
ETA = "celery.eta"
TASKS, ATTEMPTS, FAILURES, CANCELLED, PENDING = (
    "pipetrace.run.tasks", "pipetrace.run.attempts", "pipetrace.run.failures", "pipetrace.run.cancelled",
    "pipetrace.run.pending")
SWEEP_MARGIN_NS = 15 * 10**9
"""How far before the previous sweep a span may start and still make its trace a candidate (spans are
stored when they end, a little after they start; a run is found by its first ``send``, a short span)."""
MAX_FRESH = 20_000
"""Most new traces one sweep takes up: a worker that starts more runs than this per sweep interval
leaves some to later sweeps of other processes (``pipetrace runs``, the viewer look back two timeouts)."""
MAX_OPEN = 20_000
MAX_CLOSED = 5_000
LOAD_CHUNK = 200
"""Traces whose spans one sweep holds in memory at once (a busy worker closes thousands per sweep)."""


@dataclass
class RunEnd:
    """An ended (or timed-out) message-driven run: what its run span says."""

    trace_id: str
    system: str
    pipeline: str
    run_id: str
    start_ns: int
    end_ns: int
    result: str
    tasks: int
    attempts: int
    failures: int
    cancelled: int
    pending: int = 0

    @property
    def span_id(self) -> str:
        return format_span_id(derive_run_span_id(self.system, self.pipeline, self.run_id))

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.SYSTEM: self.system, A.PIPELINE_NAME: self.pipeline,
                                 A.PIPELINE_RUN_ID: self.run_id, A.PIPELINE_RESULT: self.result,
                                 TASKS: self.tasks, ATTEMPTS: self.attempts, FAILURES: self.failures,
                                 CANCELLED: self.cancelled}
        if self.pending:
            attrs[PENDING] = self.pending
        return attrs

    def record(self) -> SpanRecord:
        """The run span as a store row (for processes that write the store directly)."""
        failed = self.result in A.FAILED_RESULTS
        return SpanRecord(self.trace_id, self.span_id, None, A.run_span_name(self.pipeline), "SERVER",
                          self.start_ns, self.end_ns, "ERROR" if failed else "UNSET",
                          f"run ended: {self.result}" if failed else None, self.attributes(),
                          scope="pipetrace.adapter.message_runs")


@dataclass
class Pending:
    """A run not ended yet: when to look again even if nothing new arrives."""

    recheck_ns: int


def _is_send(span: SpanRecord) -> bool:
    return span.kind == "PRODUCER" and span.system in SYSTEMS


def _is_consumer(span: SpanRecord) -> bool:
    return span.kind == "CONSUMER" and span.system in SYSTEMS


def _eta_ns(value: object) -> int:
    if not isinstance(value, str) or not value:
        return 0
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1e9)
    except ValueError:
        return 0


def _result(span: SpanRecord) -> str:
    value = span.attributes.get(A.TASK_RESULT)
    if value is not None:
        return str(value)
    return A.RESULT_FAILURE if span.status == "ERROR" else A.RESULT_SUCCESS


def _try(span: SpanRecord) -> int:
    try:
        return int(span.attributes.get(A.TRY_NUMBER) or 1)
    except (TypeError, ValueError):
        return 1


def _identity(spans: Sequence[SpanRecord], trace_id: str) -> tuple[str, str, str]:
    """(system, pipeline, run id): the earliest Celery span's, else a kombu run named by its first
    destination whose run id is the trace id."""
    celery = [s for s in spans if s.system == "celery" and s.run_id and s.pipeline]
    if celery:
        first = min(celery, key=lambda s: (s.start_ns, s.kind != "PRODUCER"))
        return "celery", str(first.pipeline), str(first.run_id)
    sends = sorted((s for s in spans if _is_send(s)), key=lambda s: s.start_ns)
    dest = sends[0].attributes.get(A.MESSAGING_DESTINATION) if sends else None
    return "kombu", str(dest or "kombu"), trace_id


def decide(spans: Sequence[SpanRecord], now_ns: int, *, settle_s: float, timeout_s: float) -> RunEnd | Pending | None:
    """The run end of one trace's spans, a :class:`Pending` (not ended: look again then), or None (not
    a message-driven run, or it already has its run span)."""
    if not spans or any(s.is_run for s in spans) or any(s.system in OTHER_RUNNERS for s in spans):
        return None
    sends = [s for s in spans if _is_send(s)]
    consumers = [s for s in spans if _is_consumer(s)]
    if not sends and not consumers:
        return None
    handled = {s.parent_span_id for s in consumers if not s.attributes.get(REQUEUED)}
    handled.update(str(lk.get("span_id")) for s in consumers for lk in s.links)  # consumed in a batch (a link)
    waiting = [s for s in sends if s.span_id not in handled]
    last: dict[str, SpanRecord] = {}  # message (task id, else the send it came from) → its latest attempt
    for s in consumers:
        if s.attributes.get(REQUEUED):
            continue
        key = str(s.attributes.get(A.TASK_RUN_ID) or s.parent_span_id or s.span_id)
        held = last.get(key)
        if held is None or (_try(s), s.end_ns) > (_try(held), held.end_ns):
            last[key] = s
    results = [_result(s) for s in last.values()]
    unfinished = sum(1 for r in results if r == A.RESULT_RETRY)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    system, pipeline, run_id = _identity(spans, spans[0].trace_id)
    failures = sum(1 for r in results if r in A.FAILED_RESULTS)
    cancelled = sum(1 for r in results if r == A.RESULT_CANCELLATION)
    counts = dict(tasks=len(last), attempts=len(consumers), failures=failures, cancelled=cancelled)
    if not waiting and not unfinished:
        settled = end + int(settle_s * 1e9)
        if now_ns < settled:
            return Pending(settled)
        result = A.RESULT_FAILURE if failures else A.RESULT_SUCCESS
        return RunEnd(spans[0].trace_id, system, pipeline, run_id, start, end, result, **counts)
    due = max([end] + [_eta_ns(s.attributes.get(ETA)) for s in waiting])
    deadline = due + int(timeout_s * 1e9)
    if now_ns < deadline:
        return Pending(deadline)
    return RunEnd(spans[0].trace_id, system, pipeline, run_id, start, end, A.RESULT_TIMEOUT,
                  pending=len(waiting) + unfinished, **counts)


class Sweeper:
    """Finds the message-driven runs of a store that have ended. Keeps, between sweeps, the runs still
    open and what they looked like, so a sweep reloads only traces with new spans or a deadline due;
    a new sweeper (a restarted worker, the CLI) starts by looking back two timeouts."""

    def __init__(self, store: SpanStore, *, settle_s: float = 2.0, timeout_s: float = 21_600.0) -> None:
        self.store = store
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.cursor_ns: int | None = None
        self.open: dict[str, tuple[tuple[int, int], int]] = {}  # trace → ((span count, last end), recheck at)
        self.closed: dict[str, None] = {}  # closed by this sweeper (its run span may not be stored yet)

    def sweep(self, now_ns: int | None = None) -> list[RunEnd]:
        now = time.time_ns() if now_ns is None else now_ns
        if self.cursor_ns is None:
            since = now - int(2 * (self.timeout_s + self.settle_s) * 1e9)
        else:
            since = self.cursor_ns - SWEEP_MARGIN_NS
        fresh = traces_of_systems_since(self.store, SYSTEMS, since, MAX_FRESH)
        candidates = [t for t in dict.fromkeys([*self.open, *fresh]) if t not in self.closed]
        closed = traces_with_run_span(self.store, candidates)
        activity = trace_activity(self.store, [t for t in candidates if t not in closed])
        due: list[str] = []
        for trace_id in candidates:
            seen = activity.get(trace_id)
            if trace_id in closed or seen is None:
                self.open.pop(trace_id, None)
                continue
            held = self.open.get(trace_id)
            if held is not None and held[0] == seen and now < held[1]:
                continue  # nothing new, no deadline due
            due.append(trace_id)
        ended: list[RunEnd] = []
        for i in range(0, len(due), LOAD_CHUNK):  # a chunk of traces in memory at a time
            for trace_id, spans in spans_of_traces(self.store, due[i:i + LOAD_CHUNK]).items():
                verdict = decide(spans, now, settle_s=self.settle_s, timeout_s=self.timeout_s)
                if isinstance(verdict, Pending):
                    self.open[trace_id] = (activity[trace_id], verdict.recheck_ns)
                else:
                    self.open.pop(trace_id, None)
                    if verdict is not None:
                        ended.append(verdict)
                        self.closed[trace_id] = None
        while len(self.open) > MAX_OPEN:
            self.open.pop(next(iter(self.open)))
        while len(self.closed) > MAX_CLOSED:
            self.closed.pop(next(iter(self.closed)))
        self.cursor_ns = now
        return ended


_sweepers: weakref.WeakKeyDictionary[SpanStore, Sweeper] = weakref.WeakKeyDictionary()
_sweepers_lock = threading.Lock()


def close_ended_runs(store: SpanStore, *, settle_s: float | None = None, timeout_s: float | None = None
                     ) -> list[RunEnd]:
    """One sweep that writes the run spans of ended runs straight into ``store`` (the CLI and the
    viewer: processes that read the store, without exporters of their own). Never raises."""
    try:
        settings = _settings()
        settle = settings.run_settle_s if settle_s is None else settle_s
        timeout = settings.run_timeout_s if timeout_s is None else timeout_s
        with _sweepers_lock:  # the viewer serves requests on several threads
            sweeper = _sweepers.get(store)  # a long-lived reader (the viewer) keeps its sweeper between calls
            if sweeper is None or (sweeper.settle_s, sweeper.timeout_s) != (settle, timeout):
                sweeper = _sweepers[store] = Sweeper(store, settle_s=settle, timeout_s=timeout)
            ended = sweeper.sweep()
        if ended:
            store.write([e.record() for e in ended])
        return ended
    except Exception as exc:
        warn_once_per(log, "close-runs", "pipetrace: could not close ended Celery/kombu runs: %r", exc)
        return []


def _settings() -> Any:
    from .. import config

    return config.load()


class Background:
    """A daemon thread that sweeps every ``interval_s`` and writes the run spans of what ended into the
    store (a worker's main process), then hands them to ``export`` (the other exporters, see
    :class:`RunExporters`). The store write runs under the lock a fork waits for: the process forks pool
    children, which must never inherit SQLite's locks from a thread mid-write. The export runs outside
    it (inside with tail sampling, which uses SQLite), on exporter objects no child ever uses, so a
    fork never waits for a collector."""

    def __init__(self, make_store: Callable[[], SpanStore], *, interval_s: float, settle_s: float,
                 timeout_s: float, export: Callable[[list[RunEnd]], None] | None = None) -> None:
        self.make_store = make_store
        self.export = export
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sweeper: Sweeper | None = None
        self.thread = threading.Thread(target=self._loop, name="pipetrace-runs", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def sweep_once(self) -> list[RunEnd]:
        with self.lock:
            try:
                if self.sweeper is None:
                    self.sweeper = Sweeper(self.make_store(), settle_s=self.settle_s, timeout_s=self.timeout_s)
                ended = self.sweeper.sweep()
                if ended:  # straight into the store, under this lock (see _before_fork)
                    self.sweeper.store.write([e.record() for e in ended])
            except Exception as exc:
                warn_once_per(log, "runs-sweep", "pipetrace: Celery/kombu run sweep failed: %r", exc)
                return []
            if getattr(self.export, "uses_sqlite", False):
                self._export(ended)  # tail sampling holds spans in SQLite: never fork mid-call either
        if not getattr(self.export, "uses_sqlite", False):
            self._export(ended)  # outside the fork lock: a slow collector must never hold up the pool's forks
        return ended

    def _export(self, ended: list[RunEnd]) -> None:
        if ended and self.export is not None:
            try:
                self.export(ended)
            except Exception as exc:
                warn_once_per(log, "runs-export", "pipetrace: Celery/kombu run spans not exported: %r", exc)

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self.sweep_once()

    def stop(self, final_sweep: bool = True) -> None:
        self.stopping.set()
        if final_sweep:
            self.sweep_once()


class RunExporters:
    """The run spans through this process's exporters other than the store (OTLP behind tail sampling
    when on, console), after the same transforms as every span (redaction). Its own exporter objects,
    built for the sweeper: the tracer's export queues and exporters are what every pool child inherits
    at fork, and an export running in the parent while it forks (a connection or a lock mid-use) would
    leave a child with a broken exporter; these are never used by a child (see _after_fork_in_child)."""

    def __init__(self, settings: Any) -> None:
        from dataclasses import replace

        from ..processing.export import build_queues

        others = tuple(e for e in settings.exporters if e != "store")
        self.exporters = [q.exporter for q in build_queues(replace(settings, exporters=others))] if others else []
        self.lock = threading.Lock()
        # tail sampling keeps and looks up spans in SQLite files: a pool child forked while a thread is
        # inside SQLite could inherit its locks, so then the export runs under the fork lock
        self.uses_sqlite = bool(settings.tail_sampling and "otlp" in others)

    def __call__(self, ended: list[RunEnd]) -> None:
        if not self.exporters:
            return
        spans = [s for s in (_transformed(_readable(end)) for end in ended) if s is not None]
        with self.lock:  # the final sweep at shutdown may meet the thread's
            for exporter in self.exporters:
                try:
                    exporter.export(spans)
                except Exception as exc:
                    warn_once_per(log, "runs-export", "pipetrace: Celery/kombu run spans not exported: %r", exc)

    def shutdown(self) -> None:
        with self.lock:
            for exporter in self.exporters:
                try:
                    exporter.shutdown()
                except Exception as exc:
                    log.debug("pipetrace: run span exporter shutdown failed: %r", exc)


def _readable(end: RunEnd) -> Any:
    """The run span as the SDK hands an ended span to exporters (this process's resource and scope)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    from ..processing import runtime

    resource = runtime.resource()
    status = (Status(StatusCode.ERROR, f"run ended: {end.result}") if end.result in A.FAILED_RESULTS
              else Status(StatusCode.UNSET))
    context = SpanContext(int(end.trace_id, 16), int(end.span_id, 16), is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name=A.run_span_name(end.pipeline), context=context, parent=None, resource=resource,
                        attributes=end.attributes(), kind=SpanKind.SERVER, status=status,
                        start_time=end.start_ns, end_time=end.end_ns,
                        instrumentation_scope=InstrumentationScope(runtime.TRACER_NAME))


def _transformed(span: Any) -> Any:
    from ..processing import runtime

    return runtime.transform(span)


_background: Background | None = None
_background_lock = threading.Lock()
_left_by_parent: list[Background] = []  # a child keeps the parent's sweeper unused: never closed or collected


def start_background() -> Background | None:
    """Start this process's sweeper thread once (settings ``run_sweep_s``/``run_settle_s``/
    ``run_timeout_s``); None when switched off (``run_sweep_s`` 0) or without a store exporter."""
    global _background
    with _background_lock:
        if _background is not None:
            return _background
        from ..processing.runtime import settings

        s = settings()
        if s.run_sweep_s <= 0 or "store" not in s.exporters:
            return None
        path = s.store_path
        _background = Background(lambda: SpanStore(path), interval_s=s.run_sweep_s, settle_s=s.run_settle_s,
                                 timeout_s=s.run_timeout_s, export=RunExporters(s))
        _background.start()
        return _background


def stop_background() -> None:
    """Final sweep (a worker shutting down closes what ended meanwhile) and stop the thread."""
    global _background
    with _background_lock:
        bg, _background = _background, None
    if bg is not None:
        bg.stop()
        if isinstance(bg.export, RunExporters):
            bg.export.shutdown()


_held_for_fork: threading.Lock | None = None


def _before_fork() -> None:
    """A prefork pool forks new children from the process whose thread sweeps: never fork in the middle
    of a sweep (a child would inherit SQLite's locks held by a thread it does not have)."""
    global _held_for_fork
    bg = _background
    if bg is not None:
        bg.lock.acquire()
        _held_for_fork = bg.lock


def _after_fork_in_parent() -> None:
    global _held_for_fork
    held, _held_for_fork = _held_for_fork, None
    if held is not None:
        held.release()


def _after_fork_in_child() -> None:
    """The child has no sweeper thread: forget the parent's (a child may start its own)."""
    global _background, _held_for_fork, _background_lock
    if _background is not None:
        _left_by_parent.append(_background)
    _background, _held_for_fork = None, None
    _background_lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


# ---- a message worker's main process: the signal handlers an adapter connects ---------------------------
def worker_ready(**_: Any) -> None:
    """The worker is ready: close the runs that end from now on, on a background thread."""
    try:
        start_background()
    except Exception as exc:
        warn_once_per(log, "runs-start", "pipetrace: run closer not started: %r", exc)


def flush(**_: Any) -> None:
    """A worker (or a pool child: warm shutdown, max tasks per child) exits: export what is queued."""
    try:
        from ..processing.runtime import force_flush, settings

        force_flush(settings().flush_timeout_s)
    except Exception as exc:
        warn_once_per(log, "runs-flush", "pipetrace: flush at worker shutdown failed: %r", exc)


def worker_shutdown(**_: Any) -> None:
    """Close what ended before the worker goes, then flush (the run spans too)."""
    try:
        stop_background()
    except Exception as exc:
        warn_once_per(log, "runs-stop", "pipetrace: run closer failed at shutdown: %r", exc)
    flush()
