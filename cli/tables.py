"""Tables that stay readable in a narrow terminal: a column spec list, laid out to the console's width.

Each :class:`Column` says what kind of text it holds. URLs are shortened in the middle
(``https://exam…/img/photo.jpg``), free text at the end; codes, labels and numbers are never cut or
split. When even that does not fit, the columns with the highest ``drop`` rank are left out and a footer
names them. ``wide=True`` shows every column untruncated, whatever the width.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.cells import cell_len, get_character_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"
GAP = 2  # cells between two columns (padding 1 on each side, no vertical rules)


class Kind(enum.Enum):
    URL = "url"  # shortened in the middle: scheme, host start ... path end
    TEXT = "text"  # shortened at the end
    CODE = "code"  # an error code, label, name or date: never cut
    NUMBER = "number"  # right-aligned, never cut


# Columns that are not text to cut, by the names used across the CLI (others are codes).
FLEXIBLE_NAMES = {"url": Kind.URL, "source": Kind.URL, "error_detail": Kind.TEXT, "detail": Kind.TEXT,
                  "note": Kind.TEXT, "queues": Kind.TEXT}
MIN_WIDTH = {Kind.URL: 20, Kind.TEXT: 10}


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its heading (may hold ``\\n``), its kind and drop rank.

    ``drop``: 0 is always shown; when the table is too wide, the highest ranks are left out first.
    ``value`` computes the cell from the whole row (for a column that combines several keys).
    """

    key: str
    header: str | None = None
    kind: Kind = Kind.CODE
    drop: int = 0
    value: Callable[[Mapping[str, Any]], Any] | None = None

    @property
    def heading(self) -> str:
        return self.key if self.header is None else self.header


def as_column(spec: str | Column) -> Column:
    """A column name becomes a Column whose kind follows from the name (``url`` is a URL, ...)."""
    if isinstance(spec, Column):
        return spec
    return Column(spec, kind=FLEXIBLE_NAMES.get(spec, Kind.CODE))


def format_cell(value: Any) -> str:
    """One line: None as empty, floats to 3 decimals, datetimes to the second without the time zone."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells: its start and its end, joined by an ellipsis."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head = _take(text, max(room * 2 // 5, min(room // 2, 12)))  # at least the scheme and a bit of host
    tail = _take(text[::-1], room - cell_len(head))[::-1]
    return head + ELLIPSIS + tail


def shorten_end(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut at the end with an ellipsis."""
    if cell_len(text) <= width:
        return text
    return _take(text, max(0, width - 1)) + ELLIPSIS


def _take(text: str, cells: int) -> str:
    """The longest prefix of ``text`` that fits in ``cells``."""
    used = 0
    for index, char in enumerate(text):
        used += get_character_cell_size(char)
        if used > cells:
            return text[:index]
    return text


def _natural(heading: str, cells: Sequence[str]) -> int:
    return max([cell_len(line) for line in heading.split("\n")] + [cell_len(c) for c in cells])


@dataclass(frozen=True)
class Layout:
    """The columns shown, their widths, and those left out for lack of room."""

    columns: list[Column]
    widths: list[int]
    dropped: list[Column]


def plan(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int | None) -> Layout:
    """Widths for ``columns`` holding ``cells`` (one list per column) in ``width`` cells (None: no limit)."""
    shown = list(range(len(columns)))
    natural = [_natural(col.heading, column_cells) for col, column_cells in zip(columns, cells, strict=True)]
    if width is None:
        return Layout(list(columns), natural, [])

    def least(i: int) -> int:
        kind = columns[i].kind
        return min(natural[i], MIN_WIDTH[kind]) if kind in MIN_WIDTH else natural[i]

    def total(minimal: bool) -> int:
        return sum(least(i) if minimal else natural[i] for i in shown) + GAP * (len(shown) - 1)

    # columns with no text at all go first (nothing is lost), then the highest drop ranks
    empty = [bool(column_cells) and not any(column_cells) for column_cells in cells]
    droppable = sorted((i for i, c in enumerate(columns) if c.drop > 0 or empty[i]),
                       key=lambda i: (empty[i], columns[i].drop, i))
    while droppable and empty[droppable[-1]] and total(minimal=False) > width:  # before any text is cut
        shown.remove(droppable.pop())
    while total(minimal=True) > width and droppable:
        shown.remove(droppable.pop())
    widths = {i: least(i) for i in shown}
    spare = width - total(minimal=True)
    for i in shown:  # flexible columns grow back towards their natural width, left to right
        grow = min(max(spare, 0), natural[i] - widths[i])
        widths[i] += grow
        spare -= grow
    return Layout([columns[i] for i in shown], [widths[i] for i in shown],
                  [c for i, c in enumerate(columns) if i not in shown and not empty[i]])


def _fit(text: str, kind: Kind, width: int) -> str:
    if kind is Kind.URL:
        return shorten_middle(text, width)
    if kind is Kind.TEXT:
        return shorten_end(text, width)
    return text


def render(console: Console, rows: Sequence[Mapping[str, Any]], specs: Sequence[str | Column], *,
           title: str | None = None, wide: bool = False) -> None:
    """Print ``rows`` as a table that fits ``console.width`` (``wide``: every column in full)."""
    columns = [as_column(spec) for spec in specs]
    cells = [[format_cell(col.value(row) if col.value else row.get(col.key)) for row in rows] for col in columns]
    layout = plan(columns, cells, None if wide else console.width)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                  collapse_padding=True)
    for col, col_width in zip(layout.columns, layout.widths, strict=True):
        table.add_column(col.heading, width=col_width, no_wrap=True, overflow="ellipsis",
                         justify="right" if col.kind is Kind.NUMBER else "left")
    index = {col.key: i for i, col in enumerate(columns)}
    for r in range(len(rows)):
        table.add_row(*(Text(_fit(cells[index[col.key]][r], col.kind, w))  # Text: no markup in URLs
                        for col, w in zip(layout.columns, layout.widths, strict=True)))
    if wide:  # a console as wide as the table: rich never prints wider than its console
        needed = sum(layout.widths) + GAP * max(0, len(layout.widths) - 1)
        Console(file=console.file, width=max(needed, console.width), color_system=console.color_system,
                force_terminal=console.is_terminal).print(table)
    else:
        console.print(table)
    if layout.dropped:
        names = ", ".join(col.key for col in layout.dropped)
        console.print(f"not shown at {console.width} columns: {names} (--wide shows every column)",
                      style="dim", highlight=False)
