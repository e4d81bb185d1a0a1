"""A span made current in one step where the OpenTelemetry runtime context allows it.

``context.attach(trace.set_span_in_context(span))`` is six Python calls (``set_span_in_context``,
``set_value``, ``get_current`` and ``attach``, the last two through the runtime context), and every task
attempt makes its span current once, on the path its body waits for. Where the runtime context is the API's
default, a ``ContextVarsRuntimeContext`` (checked once, at import, and that both ways give the same context),
:func:`attach_span` sets its context variable itself: the same new ``Context`` (a copy of the current one with
the span in it), set the same way, and the token is the variable's, what ``attach`` returns and ``detach``
takes. Anywhere else it is the API's two calls."""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Span, SpanContext
from opentelemetry.trace.propagation import _SPAN_KEY


def _runtime_variable() -> contextvars.ContextVar[Context] | None:
    """The default runtime context's variable, if it is one and setting it is what ``attach`` does."""
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime: Any = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        variable = getattr(runtime, "_current_context", None)
        if type(runtime) is not ContextVarsRuntimeContext or type(variable) is not contextvars.ContextVar:
            return None

        def same_both_ways() -> bool:
            before = otel_context.get_current()  # (what is current where this is imported, if anything)
            span = NonRecordingSpan(INVALID_SPAN_CONTEXT)
            api = otel_context.attach(trace.set_span_in_context(span))
            by_api = otel_context.get_current()
            otel_context.detach(api)
            values = variable.get().copy()
            values[_SPAN_KEY] = span
            token = variable.set(Context(values))
            ours = otel_context.get_current()
            found = trace.get_current_span() is span
            otel_context.detach(token)  # the variable's token is what detach takes
            return found and type(ours) is type(by_api) and ours == by_api and otel_context.get_current() is before

        return variable if contextvars.copy_context().run(same_both_ways) else None
    except Exception:  # pragma: no cover - another API
        return None


_VARIABLE = _runtime_variable()


def attach_span(span: Span) -> object:
    """``context.attach(trace.set_span_in_context(span))``: ``span`` current from now on; returns the token
    ``context.detach`` takes."""
    variable = _VARIABLE
    if variable is None:
        return otel_context.attach(trace.set_span_in_context(span))
    values = variable.get().copy()
    values[_SPAN_KEY] = span
    return variable.set(Context(values))


def span_context_in(context: Context | None) -> SpanContext:
    """``trace.get_current_span(context).get_span_context()``: for a ``Context`` with no span in it (a
    message published outside any span, the common case) the API's invalid span context without its three
    calls."""
    if type(context) is Context and context.get(_SPAN_KEY) is None:
        return INVALID_SPAN_CONTEXT
    return trace.get_current_span(context).get_span_context()
