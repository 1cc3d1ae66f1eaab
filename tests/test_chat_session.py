"""A chat session's turn, cut by the caller: the run is stored as cancelled at once, with what was streamed."""

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
