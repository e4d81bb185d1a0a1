"""The critical path of one trace: the chain of spans that decided when the run finished.

Kept to one function so ``pipetrace.analysis.critical_path`` can replace it when that lands.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..store.records import SpanRecord


def critical_path(spans: Sequence[SpanRecord]) -> list[str]:
    """Span ids on the critical path, root first.

    Walk back from the root's end: the child that finished last is critical; then the child that
    finished last before that one started, and so on; then the same inside each pick (the rule Jaeger
    uses). Children that outlive their parent count as ending with it.
    """
    if not spans:
        return []
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for s in spans:
        if s.parent_span_id in by_id and s.parent_span_id != s.span_id:
            children.setdefault(s.parent_span_id, []).append(s)  # type: ignore[arg-type]
        else:
            roots.append(s)
    root = max(roots, key=lambda s: (s.is_run, s.end_ns, -s.start_ns))
    out: list[str] = []
    seen: set[str] = set()
    stack: list[tuple[SpanRecord, int]] = [(root, root.end_ns)]
    while stack:
        span, limit = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        out.append(span.span_id)
        cursor = min(span.end_ns, limit)
        picks: list[tuple[SpanRecord, int]] = []
        kids = sorted(children.get(span.span_id, ()), key=lambda c: (min(c.end_ns, cursor), c.start_ns), reverse=True)
        for child in kids:
            if min(child.end_ns, span.end_ns) <= cursor and child.start_ns <= cursor:
                picks.append((child, cursor))
                cursor = child.start_ns
        stack.extend(reversed(picks))
    return out
