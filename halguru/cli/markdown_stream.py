"""An answer streamed to a terminal as Markdown: each finished block printed once, the block being written live.

rich's ``Live`` cannot redraw above the top of the screen, so a live area taller than the terminal left a copy
of its top in the scrollback at every refresh; and rendering the whole answer again on every token made a long
answer quadratic (and held up the run, which waits for its reader). Here the finished blocks (a paragraph, a
list, a fenced code block, ...) go to the scrollback once, as each ends; the live area holds only the block
being written, cut to the last screenful; and a token only appends: the live area is rendered at the refresh
rate, from that block alone.

Everything is drawn by the thread that writes, never by Live's refresh thread: rich renders the live area
outside its lock when a block is printed, so a refresh between the two moved the cursor by a stale height and
left part of the live area in the scrollback (seen on a loaded machine).
"""

from __future__ import annotations

import re
import time

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segments

from halguru.markdown_rows import markdown_rows, row_segments

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class MarkdownStream:
    """Feed it an answer's text as it comes; ``close()`` prints what is left and ends the live area."""

    def __init__(self, console: Console, refresh_per_second: float = 12) -> None:
        self.console = console
        self.block: list[str] = []  # the complete lines of the block being written
        self.partial = ""  # the line being written
        self.fence: str | None = None  # the opening ``` or ~~~ while inside fenced code
        self.blank_seen = False  # the block ended with a blank line: the next unindented line starts another
        self.printed = False
        self.interval = 1 / refresh_per_second
        self.next_draw = 0.0  # time.monotonic() from which the live area is drawn again
        self.live = Live(self, console=console, auto_refresh=False, transient=True,
                         vertical_overflow="crop")  # crop: never taller than the screen (it is cut to fit anyway)
        self.live.start()

    def write(self, text: str) -> None:
        if "\n" not in text:
            self.partial += text
        else:
            *lines, self.partial = (self.partial + text).split("\n")
            for line in lines:
                self._line(line)
        if (started := time.monotonic()) >= self.next_draw:
            self.live.refresh()
            done = time.monotonic()  # at most refresh_per_second times a second, and half the time when drawing is slow
            self.next_draw = done + max(self.interval, done - started)

    def close(self) -> None:
        """Print the rest (an answer cut midway too) and remove the live area."""
        self.live.stop()
        if self.partial:
            self.block.append(self.partial)
            self.partial = ""
        self._print_block()

    def _line(self, line: str) -> None:
        if self.fence is not None:  # fenced code ends only at its closing fence, blank lines or not
            self.block.append(line)
            if re.fullmatch(rf" {{0,3}}{re.escape(self.fence[0])}{{{len(self.fence)},}}\s*", line):
                self.fence = None
                self._print_block()
            return
        if not line.strip():
            if self.block:
                self.block.append(line)
                self.blank_seen = True
            return
        opening = _FENCE.match(line)
        # After a blank line an indented line may continue a list item; anything else starts a new block, and so
        # does a fence, which may interrupt a paragraph.
        if (self.blank_seen and line[0] not in " \t") or opening:
            self._print_block()
        if opening:
            self.fence = opening.group(1)
        self.block.append(line)
        self.blank_seen = False

    def _print_block(self) -> None:
        text = "\n".join(self.block).strip("\n")
        self.block, self.blank_seen = [], False
        if not text.strip():
            return
        rows = markdown_rows(self.console, text, self.console.options)
        if self.printed:
            rows.insert(0, [])  # the blank line Markdown puts between blocks
        self.console.print(Segments(row_segments(rows)), end="")  # above the live area, into the scrollback, once
        self.printed = True

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The block being written, its last screenful only (rendered by the live area's refresh)."""
        height = max(console.size.height - 1, 1)
        lines = [*self.block, self.partial]  # a copy: the answer keeps coming meanwhile
        if len(lines) > height:  # no need to render what would be cut; fenced code keeps its opening line
            lines = ([lines[0]] if self.fence is not None else []) + lines[-height:]
        if not "".join(lines).strip():
            return
        yield from row_segments(markdown_rows(console, "\n".join(lines), options)[-height:])

