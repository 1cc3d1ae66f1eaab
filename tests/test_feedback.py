"""Tell the user what happened: cut answers, paused runs, missing paths, unknown models, stuck tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.feedback_plugins import install_cut

CUT = "The answer was cut at max_tokens"


@pytest.fixture
def cut_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ``cut`` model provider installed, in this process and for subprocesses (PYTHONPATH)."""
    from halguru.plugins.manager import reset_plugin_manager

    site = install_cut(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    reset_plugin_manager()
    return site


# --- an answer cut at max_tokens -------------------------------------------------------------------


def test_run_says_when_the_answer_was_cut(cli, cut_site, write_agent):
    folder = write_agent("name: cutter\nmodel: cut\n")
    result = cli("run", str(folder), "Tell me everything")
    assert "The answer is long and" in result.output
    assert f"{CUT} 512 (limits.max_tokens in {folder}'s agent.yaml); raise it" in result.output
    # the limit the flag set is the one named (it said "raise max_tokens in agent.yaml")
    flagged = cli("run", str(folder), "Tell me everything", "--max-tokens", "64").output
    assert f"{CUT} 64 (set for this run: --max-tokens" in flagged and "agent.yaml" not in flagged


def test_run_says_nothing_when_the_answer_was_whole(cli, write_agent):
    folder = write_agent("name: whole\nmodel: scripted\n")
    assert CUT not in cli("run", str(folder), "Hi").output


def test_run_notice_in_a_real_process_goes_to_stderr(halguru_cmd, subprocess_env, cut_site, write_agent):
    folder = write_agent("name: cutter\nmodel: cut\n")
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "Hi"], capture_output=True, text=True,
                          env={**subprocess_env, "PYTHONPATH": str(cut_site)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "The answer is long and\n"
    [notice] = [line for line in proc.stderr.splitlines() if CUT in line]
    assert notice.startswith("! ")


def test_an_empty_answer_is_said_on_stderr_not_left_blank(halguru_cmd, subprocess_env, write_agent, tmp_path):
    """A tiny model may stop at once on a long prompt: the run was `ok`, printed nothing and exited 0."""
    script = tmp_path / "empty.yaml"
    script.write_text('- ""\n')
    folder = write_agent(f"name: mute\nmodel: scripted:{script}\n")
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "Hi"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == ""
    assert "! The model answered nothing" in proc.stderr, proc.stderr


def test_chat_says_when_the_answer_was_cut(cut_site, write_agent):
    from rich.console import Console

    from halguru.cli.chat_repl import ChatRepl

    folder = write_agent("name: cutter\nmodel: cut\n")
    console = Console(record=True, width=200, force_terminal=False)
    repl = ChatRepl.open(folder, conversation=None, model=None)
    repl.console = console
    import asyncio

    async def turn() -> None:
        try:
            await repl.answer("Tell me everything")
        finally:
            await repl.session.close()

    asyncio.run(turn())
    text = console.export_text()
    assert CUT in text


# --- a run paused for approval has its own exit code ----------------------------------------------

MAILER_TOOLS = '''\
from halguru import tool


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"sent to {to}"
'''


def test_a_paused_run_exits_3(cli, write_agent, tmp_path, halguru_cmd, subprocess_env):
    import yaml

    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": "send_email",
                                                       "arguments": {"to": "ann@x.org", "body": "hi"}}]}]))
    folder = write_agent(f"name: mailer\nmodel: scripted:{script}\ntools: [send_email]\napprovals: [send_email]\n",
                         MAILER_TOOLS)
    result = cli("run", str(folder), "mail ann", code=3)
    assert "Paused:" in result.output and "halguru runs approve" in result.output
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "mail ann"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_help_documents_the_exit_codes(cli):
    out = " ".join(cli("run", "--help").output.split())
    assert "3 paused for an approval" in out and "0 done" in out and "130" in out


async def test_the_debugger_chat_says_when_the_answer_was_cut(cut_site, write_agent, tmp_path):
    from halguru.tui.app import DevApp
    from halguru.tui.widgets import ChatPane, MessageBox

    folder = write_agent("name: cutter\nmodel: cut\n")
    app = DevApp(folder, watch=False, export_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", MessageBox)
        prompt.focus()
        prompt.value = "Tell me everything"
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.02)
            notes = [str(w.render()) for w in app.query_one(ChatPane).query(".note")]
            if any(CUT[2:] in n for n in notes):
                break
        assert any("cut at max_tokens" in n for n in notes), notes
