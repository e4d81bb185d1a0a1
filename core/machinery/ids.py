"""An OTel id generator that can be told the next ids: how derived span ids reach real SDK spans."""

from __future__ import annotations

import contextvars

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

_forced: contextvars.ContextVar[tuple[int | None, int | None] | None] = contextvars.ContextVar(
    "pipetrace_forced_ids", default=None
)


class DerivedIdGenerator(IdGenerator):
    """Random ids, except after :func:`force_next` (until :func:`release`), where the given ones are used once each."""

    def __init__(self, fallback: IdGenerator | None = None) -> None:
        self.fallback = fallback or RandomIdGenerator()

    def generate_span_id(self) -> int:
        forced = _forced.get()
        if forced is not None and forced[1] is not None:
            _forced.set((forced[0], None))
            return forced[1]
        return self.fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        if forced is not None and forced[0] is not None:
            _forced.set((None, forced[1]))
            return forced[0]
        return self.fallback.generate_trace_id()


def plain_generator(generator: IdGenerator) -> IdGenerator:
    """The generator that makes the next random ids: a :class:`DerivedIdGenerator`'s fallback while no
    ids are forced (one context-variable read for both ids of a root span, instead of one per id)."""
    if type(generator) is DerivedIdGenerator and _forced.get() is None:
        return generator.fallback
    return generator


def force_next(trace_id: int | None = None, span_id: int | None = None) -> contextvars.Token:  # type: ignore[type-arg]
    """The next root span gets ``trace_id`` and the next span ``span_id``: pair with :func:`release`."""
    return _forced.set((trace_id, span_id))


def release(token: contextvars.Token) -> None:  # type: ignore[type-arg]
    _forced.reset(token)

