"""`halguru dev` in a real terminal (tmux): type a message, read the screen; and the real bundled model."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest


def test_dev_in_a_real_terminal(calc_agent: Path, halguru_cmd: list[str], subprocess_env: dict[str, str]) -> None:
    assert shutil.which("tmux"), "tmux is required (apt-get install -y tmux; ./scripts/test does, as root)"
    session = f"halguru-dev-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in subprocess_env.items() if k not in ("NO_COLOR", "COLUMNS")}
    command = " ".join([*halguru_cmd, "dev", str(calc_agent), "--no-watch"])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    *[f"-e{k}={v}" for k, v in env.items() if k.startswith(("HALGURU", "PATH", "HOME"))],
                    command], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True).stdout

    def wait(text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{screen()}")

    try:
        wait("Message the agent")
        subprocess.run(["tmux", "send-keys", "-t", session, "-l", "hello tmux"], check=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        shown = wait("You said: hello tmux")
        assert "finished ok" in wait("finished ok")
        assert "model_call" in shown
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and subprocess.run(["tmux", "has-session", "-t", session],
                                                              capture_output=True).returncode == 0:
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_dev_missing_run_is_one_line(cli_error, calc_agent: Path) -> None:
    line = cli_error("dev", str(calc_agent), "--run", "run_missing")
    assert "no run 'run_missing'" in line


@pytest.mark.llama
async def test_real_model_answers_in_the_app(write_agent) -> None:
    from halguru.tui.app import DevApp
    from halguru.tui.widgets import MessageBox, TraceTree

    folder = write_agent("name: real\nmodel: smollm2\ninstructions: Answer briefly.\n"
                         "sampling: {temperature: 0, seed: 1}\nlimits: {max_tokens: 24}\n", name="real")
    app = DevApp(folder, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.query_one("#prompt", MessageBox)
        prompt.focus()
        prompt.value = "What is the capital of France?"
        await pilot.press("enter")
        for _ in range(600):
            if app.last_answer:
                break
            await pilot.pause(0.1)
        assert app.last_answer.strip()
        root = str(app.query_one(TraceTree).root.label)
        assert "finished ok" in root and "tok" in root
