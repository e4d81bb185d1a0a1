"""Terminal waterfall of one trace: span tree, bars to scale, durations, status colours (Rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from .. import attributes as A
from ..store.records import SpanRecord

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


def label(span: SpanRecord) -> str:
    """Span name plus what tells attempts apart: map index, try number, number of incoming links."""
    text = span.name
    index = span.attributes.get(A.MAP_INDEX, span.attributes.get(A.MAP_KEY))
    if index is not None:
        text += f" [{index}]"
    tries = span.attributes.get(A.TRY_NUMBER)
    if isinstance(tries, int) and tries > 1:
        text += f" #{tries}"
    if span.links:
        text += f" ⇠{len(span.links)}"
    return text


def _status_style(span: SpanRecord) -> str:
    result = span.result
    if span.status == "ERROR" or result in A.FAILED_RESULTS:
        return "red"
    if result in (A.RESULT_SKIP, "skipped", "upstream_failed", "removed"):
        return "grey50"
    if result == A.RESULT_RETRY:
        return "yellow"
    return "green"


def render(spans: Sequence[SpanRecord], width: int | None = None, console_width: int = 120) -> Table:
    """The waterfall as a Rich table; the timeline takes what the other columns leave of the console."""
    tree = ordered_tree(spans)
    name_width = min(48, max([len("  " * d + label(s)) for d, s in tree] + [4]))
    if width is None:
        width = max(16, console_width - name_width - 8 - 12 - 9 - 8)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("span", no_wrap=True, overflow="ellipsis", max_width=name_width,
                     min_width=min(name_width, 24))
    table.add_column("system", no_wrap=True)
    table.add_column("result", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("timeline", no_wrap=True)
    if not spans:
        return table
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)
    total = max(1, t1 - t0)
    for depth, span in tree:
        left = int((span.start_ns - t0) / total * width)
        length = max(1, int(round((span.end_ns - span.start_ns) / total * width)))
        left = min(left, width - 1)
        length = min(length, width - left)
        style = _status_style(span)
        bar = Text(" " * left)
        bar.append("█" * length, style=style)
        bar.append(" " * (width - left - length))
        name = Text("  " * depth + label(span))
        system = span.system or ""
        result = span.result or ("error" if span.status == "ERROR" else "")
        table.add_row(name, Text(system, style=SYSTEM_COLOURS.get(system, "")), Text(result, style=style),
                      human_ms(span.duration_ms), bar)
    return table


def legend(spans: Sequence[SpanRecord]) -> list[str]:
    """Lines (each under 80 columns) explaining the marks this waterfall uses, printed under it."""
    marks = []
    if any(s.attributes.get(A.MAP_INDEX) is not None or s.attributes.get(A.MAP_KEY) is not None for s in spans):
        marks.append("[k] map index or mapping key")
    if any(isinstance(s.attributes.get(A.TRY_NUMBER), int) and s.attributes[A.TRY_NUMBER] > 1 for s in spans):
        marks.append("#n try number")
    if any(s.links for s in spans):
        marks.append("⇠n n incoming links (data handed over: XCom, asset, result, message)")
    lines = [f"legend: {m}" for m in marks]
    lines.append("bars: green success · red failed · yellow retried · grey skipped")
    return lines
