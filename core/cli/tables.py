"""Tables for the terminal and for pipes, where an id is never cut.

A user copies a run id or trace id out of a table into the next command, so id columns are never
truncated, wrapped or dropped. On a terminal too narrow for every column, the least important columns are
dropped first; when even the ids do not fit on one line, each row becomes a small block with one id per
line. ``wide`` prints every column whatever the terminal's width (the terminal wraps the lines). When
stdout is not a terminal (a pipe, a file), rows are tab-separated with a header line: ``cut``, ``awk``
and ``sort`` work, and nothing depends on a width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 2  # columns between two table columns (padding 1 on each side, no border)


@dataclass(frozen=True)
class Column:
    header: str
    is_id: bool = False  # copied into the next command: never truncated, wrapped or dropped
    keep: int = 0  # among the other columns, a higher value is dropped later on a narrow terminal
    wraps: bool = False  # free text (a label) that may wrap onto more lines instead of being dropped
    justify: str = "left"


Cell = str | Text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(cell).plain


def _width(column: Column, rows: Sequence[Sequence[Cell]], index: int) -> int:
    """What the column needs: the longest cell (ids, short values) or its longest word (wrapping text)."""
    cells = [_plain(r[index]) for r in rows]
    if column.wraps:
        words = [w for c in cells for w in c.split()] or [""]
        return max(cell_len(column.header), min(24, max(cell_len(w) for w in words)))
    return max([cell_len(column.header)] + [cell_len(c) for c in cells])


def fitting_columns(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> list[int] | None:
    """Indexes of the columns shown in ``width`` cells (ids always, others by ``keep``), or None when the
    ids and the most important other column (a run's status) do not fit on one line."""
    widths = [_width(c, rows, i) for i, c in enumerate(columns)]

    def total(kept: list[int]) -> int:
        return sum(widths[i] for i in kept) + GAP * (len(kept) - 1)

    kept = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if not c.is_id), key=lambda i: (columns[i].keep, -i))
    while total(kept) > width and len(droppable) > 1:  # the last one (highest ``keep``) stays with the ids
        kept.remove(droppable.pop(0))
    return kept if total(kept) <= width else None


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], kept: Sequence[int], title: str | None) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False, padding=(0, 1),
                  header_style="bold")
    for i in kept:
        c = columns[i]
        if c.is_id:
            table.add_column(c.header, no_wrap=True, min_width=_width(c, rows, i), justify=c.justify)  # type: ignore[arg-type]
        else:
            table.add_column(c.header, no_wrap=not c.wraps, overflow="fold" if c.wraps else "ellipsis",
                             justify=c.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def _blocks(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], title: str | None) -> None:
    """One block per row: the other fields on one line (wrapped by the terminal), then one id per line."""
    if title:
        console.print(Text(title, style="italic"))
    label = max(cell_len(c.header) for c in columns if c.is_id)
    def field(column: Column, cell: Cell) -> Text:
        text = Text.from_markup(cell) if isinstance(cell, str) else cell.copy()
        if text.plain.isdigit():  # a bare count needs its name: "3 spans"
            text.append(f" {column.header}")
        return text

    for row in rows:
        head = Text("  ").join(field(c, r) for c, r in zip(columns, row, strict=True) if not c.is_id and _plain(r))
        console.print(head, overflow="fold")
        for c, r in zip(columns, row, strict=True):
            if c.is_id and _plain(r):
                console.print(f"  {c.header.ljust(label)}  {_plain(r)}", no_wrap=True, crop=False,
                              markup=False, highlight=False)


def tsv(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> str:
    """Tab-separated rows with a header line; tabs and newlines inside a cell become spaces."""
    def clean(value: str) -> str:
        return value.replace("\t", " ").replace("\n", " ")

    lines = ["\t".join(clean(c.header) for c in columns)]
    lines.extend("\t".join(clean(_plain(cell)) for cell in row) for row in rows)
    return "\n".join(lines) + "\n"


def print_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                title: str | None = None, wide: bool = False) -> None:
    """The rows on ``console``: a table that fits the terminal, every column with ``wide``, tab-separated
    when the console is not a terminal."""
    if not console.is_terminal:
        console.file.write(tsv(columns, rows))
        return
    if wide:
        every = list(range(len(columns)))
        needed = sum(_width(c, rows, i) for i, c in enumerate(columns)) + GAP * len(columns)
        # a console of its own, as wide as the table: Rich never draws wider than its console
        roomy = Console(file=console.file, width=max(needed, console.width), force_terminal=True,
                        no_color=console.no_color, highlight=False)
        roomy.print(_table(columns, rows, every, title), crop=False)
        return
    kept = fitting_columns(columns, rows, console.width)
    if kept is None:
        _blocks(console, columns, rows, title)
    else:
        console.print(_table(columns, rows, kept, title))
