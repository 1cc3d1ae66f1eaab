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
    assert lines == ["Unknown command /hlep (did you mean '/help'?). /help lists them.",
                     "Unknown command /hisotry (did you mean '/history'?). /help lists them.",
                     "Unknown command /exti (did you mean '/exit'?). /help lists them.",
                     "Unknown command /zzz. /help lists them."]
