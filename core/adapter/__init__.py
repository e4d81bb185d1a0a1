"""The adapter API: what integrations call besides the public API (``pipetrace``, ``spans``, ``carriers``,
``identity``, ``attributes``).

* the task-attempt lifecycle and its one bounded registry (:mod:`.attempts`);
* the one attempt-attribute builder (:mod:`.attributes`) and error recorder (:mod:`.errors`);
* every way an adapter makes a span (:mod:`.spans`);
* ``instrument()``/``uninstrument()`` (:mod:`.instrumentor`) and patching where an orchestrator has no
  hook (:mod:`.patching`, ``wrapt``; :class:`~.patching.Patches` undoes an adapter's patches together);
* one body for an orchestrator's sync and async twin methods (:mod:`.steps`);
* the caller's context read from a run's metadata (:mod:`.upstream`);
* the messaging helpers of kombu and Celery (:mod:`.messaging`), the workflows of a task queue
  (:mod:`.workflows`) and the run closer of message systems (:mod:`.message_runs`) — each imported on its
  own (an orchestrator adapter never loads them; the run closer reads the store);
* process set-up an adapter needs (:mod:`.runtime`), rate-limited warnings, redaction of descriptions and
  of secrets an orchestrator hands out.
"""

from __future__ import annotations

from ..redaction.known import register_results, unregister_results
from ..redaction.text import exception_description, status_description
from ..util.ratelimit import warn_once_per
from .attempts import MAX_OPEN, Attempt, Attempts, OpenAttempts, activate, close_stale, deactivate
from .attributes import attempt_attributes, clean, run_attributes
from .errors import end_with_error, error_type, guarded, record_error, record_error_summary
from .instrumentor import Instrumentor, Signals, Switch
from .patching import Patches, is_wrapped, unwrap, wrap
from .runtime import (
    add_transform_once,
    cached_get_tracer,
    drop_scopes,
    force_flush,
    get_tracer,
    stored_span_ids,
    use_provider,
)
from .spans import (
    DeferredSpan,
    add_link,
    deferred_span,
    end_task_span,
    ending,
    guarded_span,
    link,
    mark_result,
    record_span,
    run_span,
    span_with_ids,
    start_span,
    start_task_span,
)
from .upstream import upstream_carrier, upstream_from

__all__ = [
    "Attempt", "Attempts", "DeferredSpan", "Instrumentor", "MAX_OPEN", "OpenAttempts", "Patches", "Signals",
    "Switch", "activate", "add_link", "cached_get_tracer",
    "add_transform_once", "attempt_attributes", "clean", "close_stale", "deactivate", "deferred_span", "drop_scopes",
    "end_task_span", "end_with_error", "ending", "error_type", "exception_description", "force_flush", "get_tracer",
    "guarded", "guarded_span", "is_wrapped", "link", "mark_result", "record_error", "record_error_summary",
    "record_span", "register_results", "run_attributes", "run_span", "span_with_ids", "start_span",
    "start_task_span", "status_description", "stored_span_ids", "unregister_results", "unwrap", "upstream_carrier",
    "upstream_from", "use_provider", "warn_once_per", "wrap",
]
