"""`halguru chat` in a real pseudo-terminal, driven like a user would with pexpect."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pexpect

from halguru.store import open_store

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>]")
PROMPT = "you> "
WORDS = " ".join(f"word{i}" for i in range(200))  # 200 pieces at 0.05s: ten seconds of streaming


def default_sigint() -> None:
    """A test runner started in the background may ignore SIGINT; the chat under test must not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A chat in a pty; ``expect`` matches text with the terminal escape codes removed."""

    def __init__(self, cmd: list[str], args: list[str], env: dict[str, str]):
        self.child = pexpect.spawn(cmd[0], [*cmd[1:], *args], env={**env, "TERM": "xterm-256color"},
                                   encoding="utf-8", codec_errors="replace", dimensions=(50, 160),
                                   preexec_fn=default_sigint)
        self.raw = ""
        self.pos = 0

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw).replace("\r", "")

    def expect(self, pattern: str, timeout: float = 60, regex: bool = False) -> str:
        """Wait for ``pattern`` after the previous match; return the text between them."""
        compiled = re.compile(pattern if regex else re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            text = self.text
            match = compiled.search(text, self.pos)
            if match:
                before = text[self.pos:match.start()]
                self.pos = match.end()
                return before
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; screen since last match:\n"
                                     f"{text[self.pos:][-3000:]}")
            try:
                self.raw += self.child.read_nonblocking(4096, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF as exc:
                raise AssertionError(f"chat exited while waiting for {pattern!r}:\n{text[-3000:]}") from exc

    def command(self, line: str) -> str:
        """Send a line, return everything printed before the next prompt."""
        self.child.sendline(line)
        return self.expect(PROMPT)

    def wait_exit(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.raw += self.child.read_nonblocking(4096, timeout=0.2)
            except pexpect.TIMEOUT:
                if time.monotonic() > deadline:
                    raise AssertionError(f"chat did not exit:\n{self.text[-3000:]}") from None
            except pexpect.EOF:
                break
        self.child.close()
        assert self.child.signalstatus is None, f"chat died from signal {self.child.signalstatus}"
        return self.child.exitstatus


def test_chat_session_with_slash_commands(write_agent, halguru_cmd, subprocess_env, tmp_path: Path):
    other = tmp_path / "other-model.yaml"
    other.write_text('- "An answer from the other model."\n', encoding="utf-8")
    agent = write_agent("name: echo\nmodel: scripted\ntools: [calculator]\n")
    term = Terminal(halguru_cmd, ["chat", str(agent)], subprocess_env)
    try:
        banner = term.expect(PROMPT)
        assert "echo" in banner and "scripted" in banner

        assert "You said: hello there" in term.command("hello there")

        tools = term.command("/tools")
        assert "calculator" in tools and "expression" in tools

        history = term.command("/history")
        assert "user hello there" in history
        assert "assistant You said: hello there" in history
        conversation = re.search(r"conversation (conv_\w+)", history)
        assert conversation, history

        trace = term.command("/trace")
        assert "model_call scripted" in trace
        assert "model_result" in trace
        assert "run_finished ok · You said: hello there" in trace

        assert "model: scripted" in term.command("/model")
        assert "unknown model 'no-such-model'" in term.command("/model no-such-model")
        assert "model: scripted" in term.command("/model"), "a bad name must not switch the model"
        assert "Model is now" in term.command(f"/model scripted:{other}")
        assert "An answer from the other model." in term.command("who are you?")
        assert "Model is now scripted" in term.command("/model scripted")
        assert "You said: back again" in term.command("back again")

        assert "New conversation" in term.command("/reset")
        assert "No messages yet" in term.command("/history")
        assert "You said: fresh start" in term.command("fresh start")
        history = term.command("/history")
        assert "user fresh start" in history and "hello there" not in history

        unknown = term.command("/frobnicate")
        assert "Unknown command /frobnicate" in unknown and "/help" in unknown

        term.child.sendline("/exit")
        assert term.wait_exit() == 0
    finally:
        term.child.close(force=True)
    assert "Traceback" not in term.text

    # what the chat showed is what the store holds
    store = open_store()
    first = store.get_messages(conversation.group(1))
    assert [(m.role, m.content) for m in first] == [
        ("user", "hello there"), ("assistant", "You said: hello there"),
        ("user", "who are you?"), ("assistant", "An answer from the other model."),
        ("user", "back again"), ("assistant", "You said: back again"),
    ]
    assert len(store.list_conversations()) == 2
    assert {r["status"] for r in store.list_runs()} == {"ok"}


def test_ctrl_c_stops_the_answer_then_quits_at_the_prompt(write_agent, halguru_cmd, subprocess_env, tmp_path):
    script = tmp_path / "slow.yaml"
    script.write_text(f'- {{text: "{WORDS}", token_delay: 0.05}}\n', encoding="utf-8")
    agent = write_agent(f"name: slowpoke\nmodel: scripted:{script}\n")
    term = Terminal(halguru_cmd, ["chat", str(agent)], subprocess_env)
    try:
        term.expect(PROMPT)
        term.child.sendline("tell me a long story")
        term.expect("word5")
        term.child.sendintr()
        term.expect("Stopped.")
        term.expect(PROMPT, timeout=30)

        store = open_store()
        (run,) = store.list_runs()
        assert run["status"] == "cancelled"
        partial = run["output"].strip()
        assert partial.startswith("word0 word1 word2 word3 word4 word5")
        assert partial != WORDS, "the answer ran to the end: Ctrl-C did not stop it"
        messages = store.get_messages(run["conversation_id"])
        assert [m.role for m in messages] == ["user", "assistant"]
        assert messages[1].content.strip() == partial

        # the chat goes on: the partial answer is part of the history
        history = term.command("/history")
        assert "assistant word0 word1" in history

        # Ctrl-C at the prompt leaves. Pause like a person would: a SIGINT that lands in the instant
        # between readline drawing the prompt and waiting for a key is only seen at the next key
        # (CPython's readline loop), which a loaded test machine can hit.
        time.sleep(0.5)
        term.child.sendintr()
        assert term.wait_exit() == 0
    finally:
        term.child.close(force=True)
    assert "Traceback" not in term.text
    assert "KeyboardInterrupt" not in term.text


def test_chat_resumes_a_stored_conversation(write_agent, halguru_cmd, subprocess_env):
    agent = write_agent("name: echo\nmodel: scripted\n")
    first = subprocess.run([*halguru_cmd, "run", "--json", str(agent), "my name is Ada"], env=subprocess_env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    conversation = json.loads(first.stdout.splitlines()[0])["conversation_id"]

    term = Terminal(halguru_cmd, ["chat", str(agent), "--conversation", conversation], subprocess_env)
    try:
        banner = term.expect(PROMPT)
        assert conversation in banner
        history = term.command("/history")
        assert "user my name is Ada" in history
        assert "assistant You said: my name is Ada" in history
        assert "You said: what is my name?" in term.command("what is my name?")
        term.child.sendeof()  # Ctrl-D leaves too
        assert term.wait_exit() == 0
    finally:
        term.child.close(force=True)
    assert "Traceback" not in term.text

    messages = open_store().get_messages(conversation)
    assert [m.content for m in messages] == [
        "my name is Ada", "You said: my name is Ada", "what is my name?", "You said: what is my name?"]
    assert len(open_store().list_conversations()) == 1


def test_chat_with_unknown_conversation_is_one_line_error(write_agent, halguru_cmd, subprocess_env):
    agent = write_agent("name: echo\nmodel: scripted\n")
    result = subprocess.run([*halguru_cmd, "chat", str(agent), "--conversation", "conv_nope"],
                            env=subprocess_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "conv_nope" in lines[0]
    assert "Traceback" not in result.stderr
