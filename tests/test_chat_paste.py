"""`halguru chat` in a real terminal (a pseudo-terminal): lines pasted at once are one message."""

from __future__ import annotations

import os
import pty
import select
import subprocess
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


def test_pasted_lines_are_one_message_and_typed_ones_each_their_own(write_agent, halguru_cmd, subprocess_env):
    """A pasted paragraph was three messages, each answered on its own."""
    folder: Path = write_agent("name: echo\nmodel: scripted\n")
    parent, child = pty.openpty()
    proc = subprocess.Popen([*halguru_cmd, "chat", str(folder)], stdin=child, stdout=child, stderr=child,
                            env={**subprocess_env, "TERM": "dumb"}, close_fds=True)
    os.close(child)
    seen: list[str] = []
    try:
        _read_until(parent, "you> ", seen)
        os.write(parent, b"Please summarise this:\nline two of my document\nline three\n")  # as a paste arrives
        _read_until(parent, "you> ", seen, times=2)  # answered, and asking again
        time.sleep(0.5)
        os.write(parent, b"typed\n")
        _read_until(parent, "You said: typed", seen)
        out = "".join(seen)
        assert out.count("You said:") == 2, out
        assert "You said: Please summarise this: line two of my document line three" in " ".join(out.split())
    finally:
        proc.kill()
        proc.wait(10)
        os.close(parent)
