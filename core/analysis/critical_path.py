"""Critical path of one trace: the chain of work and waits that decided when the run ended.

Walk backwards from the root's end. Inside a span, the child that finished last (before the cursor) is
critical; time not covered by such a child is the span's own ("self") time. When the walk reaches the
start of a critical span it asks what that span waited for: its queue wait (``pipetrace.task.queued_ms``),
then the producer it is linked to (a data hand-off in the same trace) or, failing a link, the sibling that
finished last before it started (the implicit DAG edge: fan-in picks the slowest branch). The gap between
that predecessor's end and the start is a "wait" step (scheduling delay, a slow hand-off). A chain that
reaches a producer in another subtree resumes there and climbs back, so the path follows the data.
The steps partition the root's time span, so their shares add up to 100 %.

Messaging (Celery, kombu): a consumer span (a task attempt, a ``process`` span) is a child of the
``send`` span that published its message, but it starts after that span ended. It is a hand-off, not
work inside the send: the walk treats it as a step of the run (a child of the root) whose predecessor
is the send — publish → queue wait → task → the next publish, through chains, group members (the one
that finished last) and chord bodies (linked to every header task; the header task that published the
body, the last to finish, is its predecessor). Other top-level spans of the trace (a producer's send
or block span beside a Celery run span) are children of the root too. Any other child that outlives
its parent counts as ending with it. This is the one implementation: the CLI and the viewer use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import attributes as A
from ..store.records import SpanRecord

SELF, QUEUE, WAIT = "self", "queue", "wait"


@dataclass
class Step:
    """One stretch of the critical path: ``kind`` self (span working), queue (waiting for a worker) or
    wait (waiting for its predecessor ``after``)."""

    span: SpanRecord
    kind: str
    start_ns: int
    end_ns: int
    after: SpanRecord | None = None

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    def label(self) -> str:
        if self.kind == QUEUE:
            return f"queue wait before {self.span.name}"
        if self.kind == WAIT:
            via = "link" if self.after is not None and _linked(self.span, self.after) else "dependency"
            before = self.after.name if self.after is not None else "?"
            return f"wait for {before} → {self.span.name} ({via})"
        return self.span.name


@dataclass
class CriticalPath:
    root: SpanRecord | None
    steps: list[Step] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict, repr=False)
    """Each span's parent as the walk saw it (a consumed message's task hangs under the root)."""

    @property
    def total_ns(self) -> int:
        return max(0, self.root.end_ns - self.root.start_ns) if self.root else 0

    @property
    def span_ids(self) -> list[str]:
        """Spans on the path, root first, then in time order, each after the spans that enclose it (a
        group's batch span around the member that decided): what a viewer highlights."""
        out: list[str] = []
        if self.root is not None:
            out.append(self.root.span_id)
        for step in self.steps:
            chain = [step.span.span_id]
            while chain[-1] in self.parents and len(chain) < 10_000:
                chain.append(self.parents[chain[-1]])
            out.extend(sid for sid in reversed(chain) if sid not in out)
        return out

    def share(self, step: Step) -> float:
        return (step.end_ns - step.start_ns) / self.total_ns if self.total_ns else 0.0

    def by_span(self) -> dict[str, int]:
        """Critical nanoseconds per span id (self + queue time; waits are charged to the waiter)."""
        out: dict[str, int] = {}
        for step in self.steps:
            out[step.span.span_id] = out.get(step.span.span_id, 0) + (step.end_ns - step.start_ns)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.root.trace_id if self.root else None,
            "total_ms": self.total_ns / 1e6,
            "span_ids": self.span_ids,
            "steps": [{"span_id": s.span.span_id, "name": s.span.name, "task": s.span.task, "kind": s.kind,
                       "label": s.label(), "after": s.after.span_id if s.after else None,
                       "start_ns": s.start_ns, "end_ns": s.end_ns, "duration_ms": s.duration_ms,
                       "share": round(self.share(s), 6)} for s in self.steps],
        }


def _linked(span: SpanRecord, other: SpanRecord) -> bool:
    return any(lk.get("span_id") == other.span_id and lk.get("trace_id") == other.trace_id for lk in span.links)


def _queued_ns(span: SpanRecord) -> int:
    try:
        return max(0, int(float(span.attributes.get(A.QUEUED_MS) or 0) * 1e6))
    except (TypeError, ValueError):
        return 0


def _is_handoff(span: SpanRecord, parent: SpanRecord) -> bool:
    """A message consumed after its publish span ended (a consumer outliving its producer)."""
    return span.kind == "CONSUMER" and (parent.kind == "PRODUCER" or span.start_ns >= parent.end_ns)


class _Walker:
    def __init__(self, spans: Sequence[SpanRecord], root: SpanRecord, tolerance_ns: int) -> None:
        self.by_id = {s.span_id: s for s in spans}
        self.parents: dict[str, str] = {}
        self.handoff: dict[str, SpanRecord] = {}  # consumer span id → the send it consumed
        for s in spans:
            if s.span_id == root.span_id:
                continue
            parent = self.by_id.get(s.parent_span_id or "") if s.parent_span_id != s.span_id else None
            if parent is not None and _is_handoff(s, parent):
                self.handoff[s.span_id] = parent
                parent = None
            self.parents[s.span_id] = parent.span_id if parent is not None else root.span_id
        self.children: dict[str, list[SpanRecord]] = {}
        for sid, pid in self.parents.items():
            self.children.setdefault(pid, []).append(self.by_id[sid])
        for kids in self.children.values():
            kids.sort(key=lambda c: (c.end_ns, c.start_ns), reverse=True)
        self.tol = tolerance_ns
        self.seen: set[str] = set()
        self.steps: list[Step] = []  # newest first while walking

    def parent(self, span: SpanRecord) -> SpanRecord | None:
        return self.by_id.get(self.parents.get(span.span_id, ""))

    def is_ancestor(self, maybe: SpanRecord, span: SpanRecord) -> bool:
        cur = self.parent(span)
        hops = 0
        while cur is not None and hops < 10_000:
            if cur.span_id == maybe.span_id:
                return True
            cur, hops = self.parent(cur), hops + 1
        return False

    def emit(self, span: SpanRecord, kind: str, start: int, end: int, after: SpanRecord | None = None) -> None:
        if end > start:
            self.steps.append(Step(span, kind, start, end, after))

    def last_child(self, span: SpanRecord, cursor: int) -> SpanRecord | None:
        for c in self.children.get(span.span_id, ()):
            end = min(c.end_ns, span.end_ns)  # a child outliving its parent ends with it
            if c.span_id in self.seen or end > cursor + self.tol:
                continue
            if end <= span.start_ns:
                return None  # sorted by end: the rest ended before the span began
            return c
        return None

    def inside(self, span: SpanRecord, t: int) -> tuple[SpanRecord | None, int] | None:
        """Explain ``span`` from ``t`` back to its start; returns an escape ``(ancestor, time)`` when a
        link led the path out of this span's subtree, else None."""
        cursor = t
        while cursor > span.start_ns:
            child = self.last_child(span, cursor)
            if child is None:
                break
            end = min(child.end_ns, cursor, span.end_ns)
            self.emit(span, SELF, max(end, span.start_ns), cursor)
            owner, cursor = self.chain(child, end)
            while owner is not None and owner.span_id != span.span_id and not self.is_ancestor(owner, span):
                if owner.span_id in self.seen:  # already explained elsewhere: stop climbing
                    owner = self.parent(owner)
                    continue
                owner, cursor = self.chain(owner, cursor)
            if owner is None or owner.span_id != span.span_id:
                return owner, cursor
        self.emit(span, SELF, span.start_ns, max(cursor, span.start_ns))
        return None

    def predecessor(self, span: SpanRecord, ready: int) -> SpanRecord | None:
        sent = self.handoff.get(span.span_id)
        if sent is not None and sent.span_id not in self.seen:
            return sent  # the publish of this message (a chord body's: by the header task that finished last)
        linked = [self.by_id[lk["span_id"]] for lk in span.links
                  if lk.get("trace_id") == span.trace_id and lk.get("span_id") in self.by_id]
        linked = [p for p in linked if p.span_id not in self.seen and p.end_ns <= ready + self.tol
                  and not self.is_ancestor(p, span)]
        if linked:
            return max(linked, key=lambda p: p.end_ns)
        parent = self.parent(span)
        if parent is None:
            return None
        for sib in self.children.get(parent.span_id, ()):
            if sib.span_id in self.seen or sib.span_id == span.span_id:
                continue
            if sib.end_ns <= ready + self.tol and sib.start_ns < ready and sib.end_ns > parent.start_ns:
                return sib
        return None

    def chain(self, span: SpanRecord, t: int) -> tuple[SpanRecord | None, int]:
        """Explain ``span`` up to ``t`` and the chain of predecessors that made it start; returns the span
        that started the chain's first member (normally the common parent) and that moment."""
        while True:
            self.seen.add(span.span_id)
            escape = self.inside(span, t)
            if escape is not None:
                return escape
            queued = _queued_ns(span)
            ready = span.start_ns - queued
            pred = self.predecessor(span, ready)
            if pred is not None and self.handoff.get(span.span_id) is pred:
                ready = max(ready, min(pred.end_ns, span.start_ns))  # the publish itself is the send's time
            self.emit(span, QUEUE, ready, span.start_ns)
            if pred is None:
                return self.parent(span), ready
            pred_end = min(pred.end_ns, ready)
            self.emit(span, WAIT, pred_end, ready, after=pred)
            span, t = pred, pred_end


VIRTUAL_ROOT_ID = "0" * 16


def pick_root(spans: Sequence[SpanRecord]) -> SpanRecord | None:
    """The run span, else the longest top-level span — or, when work outlives it (a message-driven
    run not closed yet: its first send is its top-level span), a virtual root over the whole trace."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id not in ids or s.parent_span_id == s.span_id]
    if not roots:
        return None
    root = max(roots, key=lambda s: (s.is_run, s.end_ns - s.start_ns, s.end_ns))
    if root.is_run or not any(s.kind == "CONSUMER" and s.end_ns > root.end_ns for s in spans):
        return root
    last = max(s.end_ns for s in spans)
    first = min(s.start_ns for s in spans)
    pipeline = next((s.pipeline for s in sorted(spans, key=lambda s: s.start_ns) if s.pipeline), None)
    return SpanRecord(root.trace_id, VIRTUAL_ROOT_ID, None, f"run {pipeline}" if pipeline else "trace", "INTERNAL",
                      first, last)


def critical_path(spans: Sequence[SpanRecord], *, tolerance_ms: float = 1.0) -> CriticalPath:
    """The critical path of one trace's spans (see the module docstring for the rules)."""
    root = pick_root(spans)
    if root is None:
        return CriticalPath(None)
    walker = _Walker([*spans, root] if root.span_id == VIRTUAL_ROOT_ID else spans, root, int(tolerance_ms * 1e6))
    walker.seen.add(root.span_id)
    escape = walker.inside(root, root.end_ns)
    if escape is not None:  # a link reached outside the root: charge the remainder to the root itself
        walker.emit(root, SELF, root.start_ns, max(root.start_ns, min(escape[1], root.end_ns)))
    steps = sorted(walker.steps, key=lambda s: (s.start_ns, s.end_ns))
    return CriticalPath(root, _merge(steps), walker.parents)


def _merge(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        if step.end_ns - step.start_ns < 1000:  # sub-µs slivers from rounding: noise, not a step
            continue
        prev = out[-1] if out else None
        if (prev is not None and prev.kind == step.kind == SELF and prev.span.span_id == step.span.span_id
                and prev.end_ns == step.start_ns):
            prev.end_ns = step.end_ns
        else:
            out.append(step)
    return out


def critical_span_ids(spans: Sequence[SpanRecord]) -> list[str]:
    """Span ids on the critical path, root first (the viewer's highlight)."""
    return critical_path(spans).span_ids
