"""`halguru chat` in a real terminal (a pseudo-terminal): lines pasted at once are one message."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def _read_until(fd: int, needle: str, seen: list[str], times: int = 1, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while "".join(seen).count(needle) < times:
        assert time.monotonic() < deadline, f"no {needle!r} in {''.join(seen)!r}"
        if select.select([fd], [], [], 0.1)[0]:
            seen.append(os.read(fd, 65536).decode(errors="replace"))


def test_pasted_lines_are_one_message_and_typed_ones_each_their_own(write_agent, halguru_cmd, subprocess_env,
                                                                    pty_process):
    """A pasted paragraph was three messages, each answered on its own."""
    folder: Path = write_agent("name: echo\nmodel: scripted\n")
    chat = pty_process([*halguru_cmd, "chat", str(folder)], {**subprocess_env, "TERM": "dumb"})
    seen: list[str] = []
    _read_until(chat.master, "you> ", seen)
    chat.write(b"Please summarise this:\nline two of my document\nline three\n")  # as a paste arrives
    _read_until(chat.master, "you> ", seen, times=2)  # answered, and asking again
    time.sleep(0.5)
    chat.write(b"typed\n")
    _read_until(chat.master, "You said: typed", seen)
    out = "".join(seen)
    assert out.count("You said:") == 2, out
    assert "You said: Please summarise this: line two of my document line three" in " ".join(out.split())
