"""What one caller of the viewer may see: a trace belongs to its run's (system, pipeline).

The owner of a trace is the pipeline and system of its run span, or — for a run still in progress — of its
first span that names a pipeline (the same rule the runs list and the run page use). A trace the caller
may not see is answered exactly like one that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..store import SpanRecord, SpanStore
from ..store.queries import run_span_of
from .access import Principal

_GLOB_CHARS = re.compile(r"([*?\[])")
_HEX_ID = re.compile(r"[0-9a-fA-F]{32}")


def owner(spans: Sequence[SpanRecord]) -> tuple[str | None, str | None]:
    """(system, pipeline) a trace belongs to."""
    source = next((s for s in spans if s.is_run), None) or next((s for s in spans if s.pipeline), None)
    return (source.system, source.pipeline) if source else (None, None)


def may_see_trace(principal: Principal, spans: Sequence[SpanRecord]) -> bool:
    return principal.admin or principal.may_see(*owner(spans))


def visible_trace(principal: Principal, store: SpanStore, ident: str) -> list[SpanRecord]:
    """The spans of trace or run ``ident`` if the caller may see it, else []. A run id that several
    pipelines share (``scheduled__2026-11-17T00:00:00``) opens the newest run the caller may see."""
    spans = store.trace(ident)
    if spans and may_see_trace(principal, spans):
        return spans
    if principal.admin or _HEX_ID.fullmatch(ident.strip()):
        return []
    for glob, system in principal.query_scopes() or []:
        for r in store.runs(pipeline=glob, system=system, limit=2000):
            if r.run_id == ident.strip() and principal.may_see(r.system, r.pipeline):
                spans = store.trace(r.trace_id)
                return spans if spans and may_see_trace(principal, spans) else []
    return []


def hide_linked(principal: Principal, store: SpanStore, linked: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Link targets in traces the caller may not see keep only the ids the visible span already holds."""
    if principal.admin:
        return linked
    verdict: dict[str, bool] = {}
    out: dict[str, dict[str, Any]] = {}
    for key, target in linked.items():
        tid = target["trace"]
        if tid not in verdict:
            run = run_span_of(store, tid)
            system, pipeline = (run.system, run.pipeline) if run else (target.get("system"), target.get("pipeline"))
            verdict[tid] = principal.may_see(system, pipeline)
        out[key] = target if verdict[tid] else {"trace": tid, "span": target["span"], "stored": False, "name": None,
                                                 "pipeline": None, "run_id": None, "system": None}
    return out


def escape_glob(text: str) -> str:
    """A literal name as a glob that matches only itself."""
    return _GLOB_CHARS.sub(r"[\1]", text)


def may_see_pipeline(principal: Principal, store: SpanStore, pipeline: str) -> bool:
    """Task history mixes every system that has runs of ``pipeline``: all of them must be visible."""
    if principal.admin:
        return True
    systems = {r.system for r in store.runs(pipeline=escape_glob(pipeline), limit=1000)}
    return bool(systems) and all(principal.may_see(s, pipeline) for s in systems)
