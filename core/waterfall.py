"""Terminal waterfall of one trace: span tree, bars to scale, durations, status colours (Rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from . import attributes as A
from .store.records import SpanRecord

SYSTEM_COLOURS = {"airflow": "cyan", "dagster": "magenta", "prefect": "blue", "celery": "green",
                  "kombu": "yellow", "python": "white"}


def human_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms * 1000:.0f}µs"
    if ms < 1000:
        return f"{ms:.1f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 60_000:.1f}min"


def ordered_tree(spans: Sequence[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    """Depth-first order with depth; spans whose parent is absent are roots (sorted by start)."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else None
        children.setdefault(parent, []).append(s)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.name))
    out: list[tuple[int, SpanRecord]] = []
    stack = [(0, s) for s in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        depth, span = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        out.append((depth, span))
        stack.extend((depth + 1, c) for c in reversed(children.get(span.span_id, [])))
    return out


def _status_style(span: SpanRecord) -> str:
    result = span.result
    if span.status == "ERROR" or result in A.FAILED_RESULTS:
        return "red"
    if result in (A.RESULT_SKIP, "skipped", "upstream_failed", "removed"):
        return "grey50"
    if result == A.RESULT_RETRY:
        return "yellow"
    return "green"


def render(spans: Sequence[SpanRecord], width: int = 48) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("span", overflow="fold")
    table.add_column("system")
    table.add_column("result")
    table.add_column("duration", justify="right")
    table.add_column("timeline", no_wrap=True)
    if not spans:
        return table
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)
    total = max(1, t1 - t0)
    for depth, span in ordered_tree(spans):
        left = int((span.start_ns - t0) / total * width)
        length = max(1, int(round((span.end_ns - span.start_ns) / total * width)))
        left = min(left, width - 1)
        length = min(length, width - left)
        style = _status_style(span)
        bar = Text(" " * left)
        bar.append("█" * length, style=style)
        bar.append(" " * (width - left - length))
        extra = ""
        if span.links:
            extra = f" ⇠{len(span.links)}"
        name = Text("  " * depth + span.name + extra)
        system = span.system or ""
        table.add_row(name, Text(system, style=SYSTEM_COLOURS.get(system, "")),
                      Text(span.result or span.status.lower(), style=style), human_ms(span.duration_ms), bar)
    return table
