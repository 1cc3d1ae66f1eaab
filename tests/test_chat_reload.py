"""`halguru chat` takes the project's edits at the next message, as `halguru dev` does on save: an edited
agent.yaml was ignored until the chat was restarted, without a word."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)


class Chat:
    """`halguru chat` with its input and output piped (a message a line), read as it answers."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.seen = ""

    def say(self, text: str, then: str) -> str:
        """Send ``text``, and return what the chat printed until ``then`` (included)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        start = len(self.seen)
        self.proc.stdin.write(f"{text}\n".encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + 30
        while then not in self.seen[start:]:
            assert time.monotonic() < deadline, f"no {then!r} in {self.seen[start:]!r}"
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                self.seen += os.read(self.proc.stdout.fileno(), 65536).decode(errors="replace")
        return self.seen[start:]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_an_edit_takes_effect_at_the_next_message_and_a_broken_one_is_said_once(
        write_agent, halguru_cmd, subprocess_env) -> None:
    folder: Path = write_agent("name: echo\nmodel: scripted\n")
    (folder / "script.yaml").write_text("- the edited agent answers\n- again edited\n- third\n")
    chat = Chat([*halguru_cmd, "chat", str(folder)], subprocess_env)
    try:
        assert "You said: one" in chat.say("one", "You said: one")
        (folder / "agent.yaml").write_text("name: echo\nmodel: scripted:script.yaml\n")
        out = chat.say("two", "the edited agent answers")
        assert "Reloaded echo (agent.yaml changed)." in out
        (folder / "agent.yaml").write_text("name: echo\nmodel: scripted:script.yaml\ntools: [nope]\n")
        out = chat.say("three", "again edited")  # the previous version answers
        assert "Changed (agent.yaml) but does not load" in out and "unknown tool 'nope'" in out
        out = chat.say("four", "third")
        assert "does not load" not in out and "Reloaded" not in out  # said once, not at every message
        (folder / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
        out = chat.say("five", "You said: five")
        assert "Reloaded echo" in out
        (folder / "agent.yaml").write_text("name: echo\nmodel: smolm2\n")  # a model typo: the model answers still
        out = chat.say("six", "You said: six")
        assert "does not load" in out and "unknown model 'smolm2'" in out
    finally:
        chat.close()


def test_a_renamed_agent_starts_a_new_conversation(write_agent, halguru_cmd, subprocess_env) -> None:
    from halguru.store import open_store

    folder: Path = write_agent("name: echo\nmodel: scripted\n")
    chat = Chat([*halguru_cmd, "chat", str(folder)], subprocess_env)
    try:
        chat.say("one", "You said: one")
        (folder / "agent.yaml").write_text("name: parrot\nmodel: scripted\n")
        out = chat.say("two", "You said: two")
        assert "Reloaded parrot" in out and "new conversation" in out
    finally:
        chat.close()
    conversations = {c["agent"]: c for c in open_store().list_conversations(limit=10)}
    assert conversations.keys() == {"echo", "parrot"}
