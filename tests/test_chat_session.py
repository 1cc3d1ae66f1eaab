"""A chat session: a turn cut by the caller is stored as cancelled at once, with what was streamed; a misspelt
slash command is said with the one meant."""

from __future__ import annotations

from halguru.agents.events import Token
from halguru.agents.session import ChatSession


async def test_a_turn_closed_midway_is_stored_cancelled_at_once(write_agent) -> None:
    session = ChatSession.open(write_agent("name: echo\nmodel: scripted\ninstructions: Echo.\n"))
    turn = session.send("one two three four five six")
    async for event in turn:
        if isinstance(event, Token):
            break
    await turn.aclose()  # no await on the loop after this: the run must already be stored
    run = session.store.list_runs()[0]
    assert run["status"] == "cancelled" and run["output"].startswith("You")


def test_a_misspelt_slash_command_names_the_one_meant(write_agent) -> None:
    """`/hlep` said only 'Unknown command /hlep. /help lists them.'"""
    from rich.console import Console

    from halguru.cli.chat_repl import ChatRepl

    repl = ChatRepl.open(write_agent("name: a1\nmodel: scripted\n"), conversation=None, model=None)
    repl.console = Console(record=True, width=200, force_terminal=False)
    for typo in ("/hlep", "/hisotry", "/exti", "/zzz"):
        assert repl.command(typo) is None
    lines = repl.console.export_text().splitlines()
    tail = " /help lists them; //... sends a message starting with /."
    assert lines == ["Unknown command /hlep (did you mean '/help'?)." + tail,
                     "Unknown command /hisotry (did you mean '/history'?)." + tail,
                     "Unknown command /exti (did you mean '/exit'?)." + tail,
                     "Unknown command /zzz." + tail]


def test_a_message_starting_with_a_slash_is_sent_with_two(halguru_cmd, subprocess_env, write_agent) -> None:
    """A message that starts with "/" (a path, a regex) could not be sent: every such line was a command. "//"
    sends it, less one "/"; "/etc/hosts" alone stays an unknown command that says so."""
    import subprocess

    from halguru.store import open_store

    folder = write_agent("name: a1\nmodel: scripted\n")
    chat = subprocess.run([*halguru_cmd, "chat", str(folder)], input="/etc/hosts\n//etc/hosts is missing\n/exit\n",
                          capture_output=True, text=True, env=subprocess_env, timeout=60, start_new_session=True)
    assert chat.returncode == 0, chat.stderr
    assert "Unknown command /etc/hosts. /help lists them; //... sends a message starting with /." in chat.stdout
    runs = open_store().list_runs(5)
    assert [r["input"] for r in runs] == ["/etc/hosts is missing"]
