"""`halguru chat` on a terminal: a long streamed answer lands in the scrollback once, and drawing it stays fast.

The chat's console writes to a small terminal emulator that keeps a scrollback as a terminal does: the cursor
cannot go above the top of the screen, so whatever a live area drew above it stays in the scrollback.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.markdown import Markdown

from halguru.agents.session import ChatSession
from halguru.cli.chat_repl import ChatRepl
from halguru.store import open_store

_CONTROL = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\r|\n|[^\x1b\r\n]+")


class Terminal:
    """Enough of a terminal for rich's Live: text, CR, LF, cursor up (held at the screen's top), erase line."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.lines: list[str] = [""]  # the scrollback, then the screen (its last ``height`` lines)
        self.row = self.col = 0

    def feed(self, data: str) -> None:
        for match in _CONTROL.finditer(data):
            token = match.group()
            if token == "\n":
                self.row += 1
                self.col = 0  # rich's console runs with onlcr, as a terminal's tty does
                if self.row == len(self.lines):
                    self.lines.append("")
            elif token == "\r":
                self.col = 0
            elif match.group(3) == "A" and not match.group(1):
                top = max(0, len(self.lines) - self.height)
                self.row = max(top, self.row - int(match.group(2) or 1))
            elif match.group(3) == "K" and not match.group(1):
                self.lines[self.row] = ""
            elif token.startswith("\x1b"):
                continue  # colours, cursor shown or hidden, hyperlinks
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[:self.col] + token + line[self.col + len(token):]
                self.col += len(token)

    def text(self) -> str:
        return "\n".join(self.lines)


class TerminalFile(io.StringIO):
    def __init__(self, terminal: Terminal) -> None:
        super().__init__()
        self.terminal = terminal
        self.writers: set[int] = set()  # the threads that drew

    def write(self, text: str) -> int:
        self.writers.add(threading.get_ident())
        self.terminal.feed(text)
        return len(text)


def _chat(folder: Path, terminal: Terminal) -> ChatRepl:
    console = Console(file=TerminalFile(terminal), width=terminal.width, height=terminal.height,
                      force_terminal=True, color_system="standard", highlight=False)
    return ChatRepl(ChatSession.open(folder), console)


def _agent_answering(write_agent, tmp_path: Path, answer: str, token_delay: float = 0.0) -> Path:
    (tmp_path / "answer.yaml").write_text(yaml.safe_dump([{"text": answer, "token_delay": token_delay}]))
    return write_agent(f"name: longa\nmodel: scripted:{tmp_path / 'answer.yaml'}\ninstructions: x\n")


CODE = ("Here is the code:\n\n```python\n" + "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(40))
        + "\n```\n\nDone.\n\n1. one\n2. two\n\n- a\n\n  more of a\n- b\n\n## The end\n\nThat is **all**.")


def _plain(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _rendered_whole(markdown: str, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(Markdown(markdown))
    return _plain(console.file.getvalue())


def _ask(repl: ChatRepl) -> None:
    """Send "hi" and wait for the whole answer to be drawn, then close the chat's session."""

    async def main() -> None:
        try:
            await repl.answer("hi")
        finally:
            await repl.session.close()

    asyncio.run(main())


def test_an_answer_taller_than_the_terminal_is_in_the_scrollback_once(write_agent, tmp_path: Path) -> None:
    """Drawn by the chat's own thread only: rich's refresh thread redrew the live area while a finished block was
    being printed above it, and on a loaded machine (CI) part of the live area was left in the scrollback."""
    terminal = Terminal(100, 30)
    repl = _chat(_agent_answering(write_agent, tmp_path, CODE, token_delay=0.002), terminal)

    _ask(repl)
    shown = _plain(terminal.text())
    assert shown.count("Here is the code") == 1 and shown.count("def f0(x)") == 1, shown
    assert shown == _rendered_whole(CODE, 100)  # once, as the whole answer rendered as Markdown reads
    assert repl.console.file.writers == {threading.get_ident()}  # nothing drawn by another thread, at any time


def test_the_live_area_follows_the_answer_as_it_streams(write_agent, tmp_path: Path) -> None:
    """Drawn as tokens come (at most 12 times a second), not only as each block ends."""
    terminal = Terminal(100, 30)
    answer = " ".join(f"w{i}" for i in range(200))  # one paragraph: no block ends before the answer does
    repl = _chat(_agent_answering(write_agent, tmp_path, answer, token_delay=0.005), terminal)
    drawn: list[str] = []
    feed = terminal.feed
    terminal.feed = lambda data: (feed(data), drawn.append(_plain(terminal.text())))  # type: ignore[method-assign]

    _ask(repl)
    partial = [text for text in drawn if "w0" in text and "w199" not in text]
    assert len({text for text in partial}) >= 3, drawn[-3:]  # the paragraph grew on screen before it ended
    assert _plain(terminal.text()) == _rendered_whole(answer, 100)


def test_a_long_answer_is_not_slowed_down_by_drawing_it(write_agent, tmp_path: Path) -> None:
    """A 40 KB answer took 50 s in the chat against 0.1 s piped: the run waits while its reader draws it."""
    answer = "\n\n".join(f"Paragraph {i}: " + " ".join(["word"] * 60) for i in range(120))
    answer += "\n\n```python\n" + "\n".join(f"x{i} = {i}" for i in range(400)) + "\n```\n"
    assert len(answer) > 40_000
    terminal = Terminal(120, 40)
    repl = _chat(_agent_answering(write_agent, tmp_path, answer), terminal)

    started = time.process_time()  # the work drawing takes: the run's wall time at CI's load ~15 was 13 s anyway
    _ask(repl)
    assert time.process_time() - started < 5
    run = open_store().list_runs()[0]
    assert run["status"] == "ok" and run["output"] == answer
    shown = terminal.text()
    assert shown.count("Paragraph 0:") == 1 and shown.count("Paragraph 119:") == 1 and shown.count("x399 = 399") == 1
