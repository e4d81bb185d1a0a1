"""Error recording for adapters: one ``error.type`` convention and one way to mark a span failed.

``error.type`` is the exception's fully qualified class name (``module.Qualname``; builtins stay bare,
``ValueError``), the same in every adapter, so a query on it finds a failure whichever system raised it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry.trace import Span, Status, StatusCode

from .. import attributes as A
from ..redaction.text import exception_description, status_description
from ..util.ratelimit import warn_once_per


def error_type(exc: BaseException | type[BaseException]) -> str:
    """``module.Qualname`` of an exception (or its class); builtins bare (``ValueError``)."""
    cls = exc if isinstance(exc, type) else type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def record_error(span: Span, exc: BaseException, *, result: str | None = None, result_key: str = A.TASK_RESULT,
                 status: bool = True, escaped: bool = False, expected: str | None = None) -> None:
    """The exception as an event, ``error.type``, status ERROR described ``"Type: message"`` (unless
    ``status`` is False: an expected outcome), and ``result`` under ``result_key`` when given.
    ``expected``: an attribute marking an exception the task declares as an outcome (Celery's
    ``Task.throws``): set on the event and the span, and no status."""
    if expected is not None:
        span.record_exception(exc, attributes={expected: True})
        span.set_attribute(expected, True)
        status = False
    elif escaped:
        span.record_exception(exc, escaped=True)
    else:
        span.record_exception(exc)
    span.set_attribute(A.ERROR_TYPE, error_type(exc))
    if result is not None:
        span.set_attribute(result_key, result)
    if status:
        span.set_status(Status(StatusCode.ERROR, exception_description(exc)))


def record_error_summary(span: Span, type_name: str, message: str, *, result: str | None = None,
                         stacktrace: str | None = None, status: bool = True) -> None:
    """A failure the orchestrator reports as text (no exception object in this process): the same event,
    ``error.type`` and status as :func:`record_error` (status left to the result when ``status`` is False)."""
    event = {"exception.type": type_name, "exception.message": message}
    if stacktrace is not None:
        event.update({"exception.stacktrace": stacktrace, "exception.escaped": True})  # type: ignore[dict-item]
    span.add_event("exception", event)
    span.set_attribute(A.ERROR_TYPE, type_name)
    if result is not None:
        span.set_attribute(A.TASK_RESULT, result)
    if status:
        span.set_status(Status(StatusCode.ERROR, status_description(f"{type_name}: {message}")))


def mark_outcome(span: Span, result: str, *, key: str = A.TASK_RESULT, message: str | None = None,
                 error_type: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
    """A result the orchestrator reports as a state (no exception object here) and the status it implies:
    a failed result is ERROR described by ``message`` (or the result), with ``error.type`` ``error_type``
    (or the result) unless an exception recorded one; success is OK; a retry after an exception is ERROR.
    ``attributes`` are set with the result (one call: each costs the span's lock and checks)."""
    raised = A.ERROR_TYPE in (getattr(span, "attributes", None) or {})
    attrs = {**attributes, key: result} if attributes else {key: result}
    if result in A.FAILED_RESULTS and not raised:
        attrs.setdefault(A.ERROR_TYPE, error_type or result)
    span.set_attributes(attrs)
    if result in A.FAILED_RESULTS:
        span.set_status(Status(StatusCode.ERROR, status_description(message or result)))
    elif result == A.RESULT_SUCCESS:
        span.set_status(Status(StatusCode.OK))
    elif result == A.RESULT_RETRY and raised:
        span.set_status(Status(StatusCode.ERROR, "attempt failed; retried"))


def end_with_error(span: Span, exc: BaseException) -> None:
    """Record an exception that escaped a publish or a consumer callback on its span (not ended here)."""
    record_error(span, exc)


F = TypeVar("F", bound=Callable[..., Any])


def guarded(log: logging.Logger, key: str | None = None, what: str | None = None, *,
            enabled: Callable[[], bool] | None = None) -> Callable[[F], F]:
    """Decorator for an orchestrator hook: tracing never breaks the traced. A pipetrace failure inside
    is logged (``pipetrace: <what>: <error>``, rate limited per ``key``) and the hook returns None;
    with ``enabled``, the hook does nothing while it returns False (the adapter is switched off)."""

    def decorate(fn: F) -> F:
        name = fn.__name__
        warn_key = key or f"{log.name.rsplit('.', 1)[-1]}-{name}"
        message = f"pipetrace: {what or f'{name} hook failed'}: %r"

        @functools.wraps(fn)
        def hook(*args: Any, **kwargs: Any) -> Any:
            if enabled is not None and not enabled():
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                warn_once_per(log, warn_key, message, exc)
                return None

        return hook  # type: ignore[return-value]

    return decorate
