"""Tables on stdout: listings (`logs`, `tools`) keep every column, long cells cut with an ellipsis; piped
output is never wrapped or cut.

Rich's tables drop or squash whole columns when a terminal is narrow, and wrap every line at 80 columns
when output is piped. Here the fixed columns (ids, times, figures) keep their full text, the flexible ones
give way, cut with "…", and nothing is wrapped: in a terminal the table fits its width; piped, it fits
``COLUMNS`` when that is set, else every cell is whole (one line per row), and the text is plain.
Everything else printed through Rich on stdout (tables of reports, event trees) uses ``stdout_console``,
which piped likewise wraps nothing unless ``COLUMNS`` is set; Rich tables go through ``print_rich_table``,
which piped writes each row as `print_table` does: no leading space, no trailing padding.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from halguru.printable import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

ELLIPSIS = "…"
GAP = "  "
UNWRAPPED = 1 << 16  # a piped console's width when COLUMNS is not set: wide enough that no row wraps


def clip_cell(text: str, width: int) -> str:
    text = one_line(text)
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def one_line(text: str) -> str:
    """A cell's text on one line, its control characters shown (a stored message may hold escapes)."""
    return " ".join(printable(text).split())


def fit_widths(headers: Sequence[str], rows: Sequence[Sequence[str]], flexible: Sequence[str],
               width: int | None) -> list[int]:
    """Column widths: natural ones, then the widest flexible column narrowed first until the line fits
    ``width`` (not below its header, or 5; where the fixed columns leave too little, with one space between
    columns and down to 3); ``width`` None: the natural widths, nothing is cut."""
    natural = [max([len(h), *(len(one_line(r[i])) for r in rows)]) for i, h in enumerate(headers)]
    widths = list(natural)
    if width is None:
        return widths
    flex = [i for i, h in enumerate(headers) if h in flexible]
    for floor_of, between in ((lambda i: max(len(headers[i]), 5), GAP), (lambda i: 3, " ")):
        floor = {i: min(natural[i], floor_of(i)) for i in flex}
        excess = sum(widths) + len(between) * (len(widths) - 1) - width
        while excess > 0:
            shrinkable = [i for i in flex if widths[i] > floor[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            others = [widths[i] for i in shrinkable if i != widest]
            step = min(excess, widths[widest] - max([floor[widest], *others]) or 1)
            widths[widest] -= step
            excess -= step
        if excess <= 0:
            break
    return widths


def gap(widths: Sequence[int], width: int | None) -> str:
    """Between columns: two spaces, or one where two would not let the columns fit ``width``."""
    wide = sum(widths) + len(GAP) * (len(widths) - 1)
    return GAP if width is None or wide <= width else " "


def target_width() -> int | None:
    """The terminal's width; piped: ``COLUMNS`` if set, else None (no limit: cells are whole)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], flexible: Sequence[str] = (),
                styles: Mapping[str, Callable[[str], str]] | None = None, *, widths: list[int] | None = None,
                header: bool = True) -> list[int]:
    """Print the table; ``styles`` maps a header to a function giving a Rich style for a cell's text
    (used in a terminal only: piped output is plain). ``widths`` (from an earlier call) keeps later rows
    aligned with rows printed before (`logs --follow`); returns the widths used."""
    if widths is None:
        widths = fit_widths(headers, rows, flexible, target_width())
    last = len(headers) - 1
    whole = target_width() is None  # piped, no COLUMNS: no cell is cut, not even a later one wider than ``widths``
    between = gap(widths, target_width())

    def line(cells: Sequence[str]) -> list[str]:
        return [(one_line(c) if whole else clip_cell(c, w)).ljust(w if i < last else 0)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))]

    if not sys.stdout.isatty():
        for cells in [headers, *rows] if header else rows:
            sys.stdout.write(between.join(line(cells)).rstrip() + "\n")
        sys.stdout.flush()
        return widths
    from rich.markup import escape

    console = stdout_console(highlight=False)
    if header:
        console.print("[bold]" + escape(between.join(line(headers)).rstrip()) + "[/]", soft_wrap=True)
    for cells in rows:
        parts = []
        for name, raw, text in zip(headers, cells, line(cells), strict=True):
            style = (styles or {}).get(name)
            parts.append(f"[{style(raw)}]{escape(text)}[/]" if style else escape(text))
        console.print(between.join(parts).rstrip(), soft_wrap=True)
    return widths


def stdout_console(**kwargs: Any) -> Console:
    """A Rich console on stdout for tables and trees: in a terminal, Rich's own (fits its width); piped, as
    wide as ``COLUMNS`` when set, else wide enough that nothing wraps or is squashed: one line per row."""
    from rich.console import Console

    if not sys.stdout.isatty():
        kwargs.setdefault("width", target_width() or UNWRAPPED)
    return Console(**kwargs)


def print_rich_table(table: Table, console: Console | None = None) -> None:
    """Print a Rich table without a space before each row; piped, also without the spaces Rich pads every
    row with up to the widest one (a long "why" cell made every line of a report hundreds of columns wide)."""
    table.pad_edge = False
    console = console or stdout_console()
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    console.file.flush()
