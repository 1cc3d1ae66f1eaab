"""`halguru dev` and `halguru chat` end when their terminal goes away (a closed window, a killed tmux pane).

Started on a pseudo-terminal that is not their controlling terminal (as a test, a supervisor or `nohup` starts
them) no SIGHUP comes: `dev` spun on the dead input at most of a CPU for hours and ignored SIGTERM for its stop
grace; `chat` went on generating an answer nobody could read."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

from tests.terminal import PtyProcess, cpu_seconds, process_gone

pytestmark = pytest.mark.timeout(90)

LONG_ANSWER = "- {text: \"" + "word " * 200 + "\", token_delay: 0.2}\n"  # 40 s of streaming


@pytest.fixture
def slow_agent(write_agent) -> Path:
    folder: Path = write_agent("name: slow\nmodel: scripted:script.yaml\n", name="slow")
    (folder / "script.yaml").write_text(LONG_ANSWER, encoding="utf-8")
    return folder


def _ends_quietly(pid: int, close: Callable[[], None], gone: Callable[[], bool], deadline: float = 10.0) -> None:
    """Process ``pid`` is gone within ``deadline`` seconds of ``close()`` closing its terminal, using little CPU."""
    cpu_before = cpu = cpu_seconds(pid)
    close()
    started = time.monotonic()
    while not gone() and time.monotonic() - started < deadline:
        with suppress(OSError):  # it exited (and was reaped) just now
            cpu = cpu_seconds(pid)
        time.sleep(0.2)
    used = cpu - cpu_before
    assert gone(), f"alive {deadline} s after its terminal closed, {used:.1f} s of CPU"
    assert used < 2.0, f"{used:.1f} s of CPU in the {time.monotonic() - started:.1f} s it took to exit"


def _pty_ends_quietly(process: PtyProcess) -> None:
    _ends_quietly(process.proc.pid, process.close_terminal, lambda: process.proc.poll() is not None)


@pytest.mark.parametrize("streaming", [False, True], ids=["idle", "streaming"])
def test_dev_ends_when_its_terminal_closes(pty_process, halguru_cmd, subprocess_env, slow_agent, streaming):
    dev = pty_process([*halguru_cmd, "dev", str(slow_agent), "--no-watch"], {**subprocess_env, "TERM": "xterm"})
    dev.read_until("Message the agent")
    if streaming:
        dev.write(b"hello\r")
        dev.read_until("word word")
    _pty_ends_quietly(dev)


def test_chat_ends_when_its_terminal_closes_mid_answer(pty_process, halguru_cmd, subprocess_env, slow_agent,
                                                       cli):
    chat = pty_process([*halguru_cmd, "chat", str(slow_agent)], {**subprocess_env, "TERM": "xterm"})
    chat.read_until("you> ")
    chat.write(b"hello\n")
    chat.read_until("word")
    _pty_ends_quietly(chat)
    assert "cancelled" in cli("runs", "list").stdout  # the partial answer is stored, not left 'running'


def test_dev_ends_when_its_tmux_session_is_killed_with_sighup_ignored(tmux_session, halguru_cmd, subprocess_env,
                                                                    slow_agent):
    """The report: `dev` processes a test drove in tmux outlived their sessions, at ~27% of a CPU each."""
    env = {k: v for k, v in subprocess_env.items() if k.startswith(("HALGURU", "PATH", "HOME", "PYTHON"))}
    tmux = tmux_session(f"trap '' HUP; exec {' '.join(halguru_cmd)} dev {slow_agent} --no-watch", env)
    deadline = time.monotonic() + 30
    while "Message the agent" not in tmux.screen():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)
    _ends_quietly(tmux.pane_pid, tmux.close, lambda: process_gone(tmux.pane_pid))


@pytest.mark.parametrize("command", ["dev", "chat"])
def test_a_closed_terminal_window_stores_the_answer_cancelled(pty_process, halguru_cmd, subprocess_env,
                                                              slow_agent, cli, command):
    """On its controlling terminal (a terminal window's): closing it mid-answer sent SIGHUP, which ended the
    command at once; the run read 'running' until its lease passed. Now it is stored cancelled, as with Ctrl-C."""
    args = [*halguru_cmd, command, str(slow_agent), *(["--no-watch"] if command == "dev" else [])]
    process = pty_process(args, {**subprocess_env, "TERM": "xterm"}, controlling=True)
    process.read_until("Message the agent" if command == "dev" else "you> ")
    process.write(b"hello\r")
    process.read_until("word word")
    _pty_ends_quietly(process)
    listed = cli("runs", "list").stdout
    assert "cancelled" in listed and "running" not in listed, listed
