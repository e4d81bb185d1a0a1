"""Span trees as indented text, so an adapter test can compare a whole trace at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipetrace.store import SpanRecord


def span_tree(spans: Sequence[SpanRecord], show: Sequence[str] = (), short: Mapping[str, str] | None = None) -> str:
    """One line per span, ``name k=v ...`` for the ``show`` attributes (renamed by ``short``), children
    indented under their parent, siblings sorted; spans whose parent is absent are roots."""
    short = short or {}
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else None
        children.setdefault(parent, []).append(s)

    def label(s: SpanRecord) -> str:
        extra = [f"{short.get(k, k)}={s.attributes[k]}" for k in show if k in s.attributes]
        return " ".join([s.name, *extra])

    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=label):
            lines.append("  " * depth + label(s))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
