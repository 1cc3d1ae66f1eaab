"""`halguru dev` in a real terminal (tmux): type a message, read the screen; and the real bundled model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def test_dev_in_a_real_terminal(calc_agent: Path, halguru_cmd: list[str], subprocess_env: dict[str, str],
                                tmux_session) -> None:
    env = {k: v for k, v in subprocess_env.items() if k.startswith(("HALGURU", "PATH", "HOME"))}
    tmux = tmux_session(" ".join([*halguru_cmd, "dev", str(calc_agent), "--no-watch"]), env)

    def wait(text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = tmux.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{tmux.screen()}")

    wait("Message the agent")
    tmux.send("hello tmux", literal=True)
    tmux.send("Enter")
    shown = wait("You said: hello tmux")
    assert "finished ok" in wait("finished ok")
    assert "model_call" in shown
    tmux.send("C-q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tmux.alive():
        time.sleep(0.2)


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
