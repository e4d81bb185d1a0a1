"""Run identity → deterministic trace and span ids.

Any process that knows a run's system, pipeline and run id computes the same ids with no shared state:
the trace id of the run, the span id of its run span and of every task attempt and batch. An upstream
context found in the run's own metadata wins for the trace id (and becomes the run span's parent).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

PREFIX = "pipetrace/1"
_first_8 = struct.Struct(">Q").unpack_from

try:  # CPython's own SHA-256: the same digest as OpenSSL's, without its per-call provider machinery
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]  # Python 3.10, 3.11
    except ImportError:  # pragma: no cover - a build without the module
        _sha256 = hashlib.sha256  # type: ignore[assignment]


def _digest(*parts: object) -> bytes:
    key = "|".join([PREFIX, *("" if p is None else str(p) for p in parts)])
    return _sha256(key.encode("utf-8", "surrogatepass")).digest()


def _nonzero(value: int) -> int:
    # An all-zero id is invalid in W3C and OTel; the chance is 2**-64 but the rule is absolute.
    return value or 1


@functools.lru_cache(maxsize=4096)  # every task of a run asks for these again
def derive_trace_id(system: str, pipeline: str, run_id: str) -> int:
    """First 16 bytes of SHA-256 of ``pipetrace/1|{system}|{pipeline}|{run_id}``."""
    return _nonzero(int.from_bytes(_digest(system, pipeline, run_id)[:16], "big"))


@functools.lru_cache(maxsize=4096)  # every task of a run asks for these again
def derive_run_span_id(system: str, pipeline: str, run_id: str) -> int:
    return _nonzero(int.from_bytes(_digest(system, pipeline, run_id, "run")[:8], "big"))


def derive_task_span_id(
    system: str, pipeline: str, run_id: str, task: str, map_index: int | None = None, try_number: int = 1
) -> int:
    mi = -1 if map_index is None else map_index
    # the same key as _digest(system, pipeline, run_id, "task", task, mi, try_number), built directly:
    # this runs once per task attempt
    key = f"{PREFIX}|{system}|{pipeline}|{run_id}|task|{task}|{mi}|{try_number}"
    try:
        data = key.encode()  # (the default codec's call is cheaper: the same bytes unless a lone surrogate)
    except UnicodeEncodeError:
        data = key.encode("utf-8", "surrogatepass")
    return _first_8(_sha256(data).digest())[0] or 1  # the big-endian first 8 bytes; 0 made 1: _nonzero


@functools.lru_cache(maxsize=4096)  # every task of a run asks for these again
def derive_batch_span_id(system: str, pipeline: str, run_id: str, batch: str, index: int | None = None) -> int:
    idx = "" if index is None else index
    return _nonzero(int.from_bytes(_digest(system, pipeline, run_id, "batch", batch, idx)[:8], "big"))


def format_trace_id(value: int) -> str:
    return f"{value:032x}"


def format_span_id(value: int) -> str:
    return f"{value:016x}"


_contexts: dict[tuple[int, int, int, str], Context] = {}


def _parent_context(trace_id: int, span_id: int, flags: TraceFlags, state: TraceState) -> Context:
    """Contexts are immutable and every task of a run has the same parent (the run or its batch span):
    build each once (bounded cache)."""
    key = (trace_id, span_id, int(flags), state.to_header() if len(state) else "")
    ctx = _contexts.get(key)
    if ctx is None:
        if len(_contexts) >= 1024:
            _contexts.clear()
        sc = SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True, trace_flags=flags, trace_state=state)
        ctx = _contexts[key] = trace.set_span_in_context(NonRecordingSpan(sc), Context())
    return ctx


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is; every id of the run follows from it.

    ``upstream`` is the caller's span context found in the run metadata (a ``traceparent`` in Airflow
    conf, Dagster tags, Prefect labels…); when valid it supplies the trace id and the run span's parent.
    """

    system: str
    pipeline: str
    run_id: str
    upstream: SpanContext | None = field(default=None, compare=False)

    def __reduce__(self) -> tuple[type[RunIdentity], tuple[str, str, str, SpanContext | None]]:
        """Pickled and copied by its fields only: what it keeps (an OTel Context among them) is worked out
        again, and a Context cannot be unpickled."""
        return RunIdentity, (self.system, self.pipeline, self.run_id, self.upstream)

    @functools.cached_property  # frozen, so computed once: every span context of the run reads it
    def _trace(self) -> tuple[int, TraceFlags, TraceState]:
        """The trace id, flags and state every span of the run shares."""
        up = self.upstream
        if up is not None and up.is_valid:
            return up.trace_id, up.trace_flags, up.trace_state
        return derive_trace_id(self.system, self.pipeline, self.run_id), TraceFlags(TraceFlags.SAMPLED), TraceState()

    @property
    def trace_id(self) -> int:
        return self._trace[0]

    @property
    def run_span_id(self) -> int:
        return derive_run_span_id(self.system, self.pipeline, self.run_id)

    @property
    def trace_flags(self) -> TraceFlags:
        return self._trace[1]

    @property
    def trace_state(self) -> TraceState:
        return self._trace[2]

    def task_span_id(self, task: str, map_index: int | None = None, try_number: int = 1) -> int:
        return derive_task_span_id(self.system, self.pipeline, self.run_id, task, map_index, try_number)

    def batch_span_id(self, batch: str, index: int | None = None) -> int:
        return derive_batch_span_id(self.system, self.pipeline, self.run_id, batch, index)

    def span_context(self, span_id: int) -> SpanContext:
        """A remote span context in this run's trace, usable as a parent."""
        trace_id, flags, state = self._trace
        return SpanContext(trace_id, span_id, True, flags, state)

    def run_span_context(self) -> SpanContext:
        return self.span_context(self.run_span_id)

    def context_for(self, span_id: int) -> Context:
        """An OTel Context whose current span is ``span_id`` of this run (for parenting)."""
        trace_id, flags, state = self._trace
        return _parent_context(trace_id, span_id, flags, state)

    def run_context(self) -> Context:
        """The run span's context: the parent of most spans of the run, built once per identity."""
        return self._run_context

    @functools.cached_property
    def _run_context(self) -> Context:
        return self.context_for(self.run_span_id)

    def upstream_context(self) -> Context | None:
        if self.upstream is None or not self.upstream.is_valid:
            return None
        return trace.set_span_in_context(NonRecordingSpan(self.upstream), Context())
