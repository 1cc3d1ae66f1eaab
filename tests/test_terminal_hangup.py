"""`halguru dev` and `halguru chat` end when their terminal goes away (a closed window, a killed tmux pane).

Started on a pseudo-terminal that is not their controlling terminal (as a test, a supervisor or `nohup` starts
them) no SIGHUP comes: `dev` spun on the dead input at most of a CPU for hours and ignored SIGTERM for its stop
grace; `chat` went on generating an answer nobody could read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

LONG_ANSWER = "- {text: \"" + "word " * 200 + "\", token_delay: 0.2}\n"  # 40 s of streaming


@pytest.fixture
def slow_agent(write_agent) -> Path:
    folder: Path = write_agent("name: slow\nmodel: scripted:script.yaml\n", name="slow")
    (folder / "script.yaml").write_text(LONG_ANSWER, encoding="utf-8")
    return folder


def _ends_quietly(process, deadline: float = 10.0) -> None:
    """The process is gone within ``deadline`` seconds of its terminal closing, having used little CPU."""
    cpu_before = process.cpu_seconds()
    process.close_terminal()
    started = time.monotonic()
    while process.proc.poll() is None and time.monotonic() - started < deadline:
        cpu = process.cpu_seconds()
        time.sleep(0.2)
    used = cpu - cpu_before
    assert process.proc.poll() is not None, f"alive {deadline} s after its terminal closed, {used:.1f} s of CPU"
    assert used < 2.0, f"{used:.1f} s of CPU in the {time.monotonic() - started:.1f} s it took to exit"


@pytest.mark.parametrize("streaming", [False, True], ids=["idle", "streaming"])
def test_dev_ends_when_its_terminal_closes(pty_process, halguru_cmd, subprocess_env, slow_agent, streaming):
    dev = pty_process([*halguru_cmd, "dev", str(slow_agent), "--no-watch"], {**subprocess_env, "TERM": "xterm"})
    dev.read_until("Message the agent")
    if streaming:
        dev.write(b"hello\r")
        dev.read_until("word word")
    _ends_quietly(dev)


def test_chat_ends_when_its_terminal_closes_mid_answer(pty_process, halguru_cmd, subprocess_env, slow_agent,
                                                       cli):
    chat = pty_process([*halguru_cmd, "chat", str(slow_agent)], {**subprocess_env, "TERM": "xterm"})
    chat.read_until("you> ")
    chat.write(b"hello\n")
    chat.read_until("word")
    _ends_quietly(chat)
    assert "cancelled" in cli("runs", "list").stdout  # the partial answer is stored, not left 'running'
