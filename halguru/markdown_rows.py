"""Markdown drawn by rich as rows of segments, trimmed to its blocks: how `halguru chat` (``cli.markdown_stream``)
and the debugger's chat (``tui.answer``) draw an answer one finished block at a time."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions
from rich.markdown import Markdown
from rich.segment import Segment


def markdown_rows(console: Console, text: str, options: ConsoleOptions) -> list[list[Segment]]:
    """``text`` rendered as Markdown, without the empty lines rich puts before some blocks (a list) and not
    others (a paragraph): the caller puts one between blocks itself, as a whole answer rendered has."""
    rows = console.render_lines(Markdown(text), options.update(height=None), pad=False)
    while rows and not rows[0]:
        rows.pop(0)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def row_segments(rows: list[list[Segment]]) -> list[Segment]:
    """``rows`` as one run of segments, each row ended by a line break."""
    return [segment for row in rows for segment in (*row, Segment.line())]
