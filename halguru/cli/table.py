"""Tables for listings (`logs`, `tools`): every column stays; long cells are cut with an ellipsis.

Rich's tables drop or squash whole columns when a terminal is narrow, and wrap every line at 80 columns
when output is piped. Here the fixed columns (ids, times, figures) keep their full text, the flexible ones
give way, cut with "…", and nothing is wrapped: in a terminal the table fits its width; piped, it fits
``COLUMNS`` when that is set, else each flexible cell is cut at ``cap`` characters, and the text is plain.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence

ELLIPSIS = "…"
GAP = "  "


def clip_cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def fit_widths(headers: Sequence[str], rows: Sequence[Sequence[str]], flexible: Sequence[str],
               width: int | None, cap: int = 60) -> list[int]:
    """Column widths: natural ones, then the widest flexible column narrowed first until the line fits
    ``width`` (never below its header, or 5); ``width`` None: flexible columns are capped at ``cap``."""
    natural = [max([len(h), *(len(" ".join(r[i].split())) for r in rows)]) for i, h in enumerate(headers)]
    flex = [i for i, h in enumerate(headers) if h in flexible]
    if width is None:
        return [min(w, max(cap, len(headers[i]))) if i in flex else w for i, w in enumerate(natural)]
    widths = list(natural)
    floor = {i: min(natural[i], max(len(headers[i]), 5)) for i in flex}
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i in flex if widths[i] > floor[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        others = [widths[i] for i in shrinkable if i != widest]
        step = min(excess, widths[widest] - max([floor[widest], *others]) or 1)
        widths[widest] -= step
        excess -= step
    return widths


def target_width() -> int | None:
    """The terminal's width; piped: ``COLUMNS`` if set, else None (no limit, cells capped)."""
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

    def line(cells: Sequence[str]) -> list[str]:
        return [clip_cell(c, w).ljust(w if i < last else 0)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))]

    if not sys.stdout.isatty():
        for cells in [headers, *rows] if header else rows:
            sys.stdout.write(GAP.join(line(cells)).rstrip() + "\n")
        sys.stdout.flush()
        return widths
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    if header:
        console.print("[bold]" + escape(GAP.join(line(headers)).rstrip()) + "[/]", soft_wrap=True)
    for cells in rows:
        parts = []
        for name, raw, text in zip(headers, cells, line(cells), strict=True):
            style = (styles or {}).get(name)
            parts.append(f"[{style(raw)}]{escape(text)}[/]" if style else escape(text))
        console.print(GAP.join(parts).rstrip(), soft_wrap=True)
    return widths
