"""A streamed answer in the debugger's chat: each finished Markdown block drawn once, the last one live.

Textual's Markdown widget made every block a widget (a list: one per item and paragraph), and the chat lays
out all of them again each time the answer grew: a 150 KB answer was some 1,500 widgets, and drawing it as it
streamed took minutes of CPU. Here the blocks that are finished (another began after them) are one widget per
flush, drawn once by rich's Markdown (as `halguru chat` draws them) and measured once; only the block being
written is drawn again as text arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, RenderResult
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from halguru.markdown_rows import markdown_rows, row_segments

FREEZE = 1000  # characters of the live part from which its finished blocks are drawn for good (rich draws the
# live part again at each flush)
PACE = 4  # the live part is drawn again no sooner than PACE times what its last drawing cost: one block that
# does not end (a 50 KB code block or table) took 1.7 s to draw, 15 times a second, and the app never caught up


class _Blocks:
    """Markdown blocks as rich draws them, without the blank lines around them; ``gap``: one blank line before
    (the one Markdown puts between two blocks)."""

    def __init__(self, text: str, gap: bool, spent: Callable[[float], None] | None = None) -> None:
        self.text, self.gap, self.spent = text, gap, spent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        started = time.perf_counter()
        rows = markdown_rows(console, self.text, options)
        if self.spent is not None:
            self.spent(time.perf_counter() - started)
        if rows:
            yield from row_segments([[]] * self.gap + rows)


def finished(text: str) -> int:
    """How many characters of ``text`` are finished blocks: all but its last top-level block."""
    tokens = MarkdownIt("commonmark").enable(["strikethrough", "table"]).parse(text)
    starts = [t.map[0] for t in tokens if t.level == 0 and t.map is not None and t.nesting >= 0]
    last = max(starts, default=0)
    return len("".join(text.splitlines(keepends=True)[:last])) if last else 0


class _Drawn(Widget):
    """An answer's finished blocks as lines drawn once at the pane's width (again only when the width changes):
    one widget, however long the answer, so laying out the chat does not grow with it."""

    DEFAULT_CSS = "_Drawn { height: auto; }"

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._lines: list[Strip] = []
        self._width = 0

    def add(self, text: str) -> None:
        self.texts.append(text)
        if self._width:
            self._lines += self._draw(text, len(self.texts) > 1, self._width)
        self.refresh(layout=True)

    def _draw(self, text: str, gap: bool, width: int) -> list[Strip]:
        console = self.app.console
        rows = list(console.render_lines(_Blocks(text, gap), console.options.update(width=width, height=None),
                                         pad=False))
        return [Strip(row) for row in rows]

    def _drawn(self, width: int) -> list[Strip]:
        if width != self._width:
            self._width = width
            self._lines = [line for i, text in enumerate(self.texts) for line in self._draw(text, i > 0, width)]
        return self._lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._drawn(width))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        lines = self._drawn(width)
        line = lines[y] if y < len(lines) else Strip.blank(width)
        return line.adjust_cell_length(width).apply_style(self.rich_style)


class AnswerView(Vertical):
    """One answer of the chat: ``append`` its text as it streams; ``text`` is what it was given."""

    DEFAULT_CSS = """
    AnswerView { height: auto; padding: 0 1; }
    AnswerView > Static { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self._done = 0  # characters of ``text`` drawn for good
        self._drawn = _Drawn()
        self._live = Static("")
        self._updated = 0.0  # when the live part was last given its text
        self._cost = 0.0  # seconds that update took, and drawing it since

    def _spent(self, seconds: float) -> None:
        self._cost += seconds

    def compose(self) -> ComposeResult:
        yield self._drawn
        yield self._live

    async def append(self, text: str) -> None:
        """Add streamed text; the live part is drawn at a pace its cost allows (``append("")`` draws it now)."""
        self.text += text
        if text and time.monotonic() - self._updated < PACE * self._cost:
            return
        started = time.perf_counter()
        tail = self.text[self._done:]
        cut = finished(tail) if len(tail) > FREEZE else 0
        if cut:
            self._drawn.add(tail[:cut])
            self._done += cut
        self._live.update(_Blocks(self.text[self._done:], gap=self._done > 0, spent=self._spent))
        self._updated, self._cost = time.monotonic(), time.perf_counter() - started
