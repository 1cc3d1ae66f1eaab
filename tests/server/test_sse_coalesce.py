"""A stream's tokens are sent together when they come faster than ``sse_coalesce`` (fewer writes per token),
the first at once, nothing lost or reordered, other events never held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from halguru_server.lifecycle import Lifecycle, Pump

from halguru.agents.events import Event, RunFinished, Token, ToolCall


async def _events(script: list[tuple[float, Event]]) -> AsyncIterator[Event]:
    for delay, event in script:
        await asyncio.sleep(delay)
        yield event


def _given(script: list[tuple[float, Event]], coalesce: float, keepalive: float | None = None
           ) -> list[tuple[float, Any]]:
    """What the consumer gets, with when (seconds after the start)."""

    async def consume() -> list[tuple[float, Any]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        pump = Pump(Lifecycle(0, 1), _events(script))
        return [(loop.time() - start, e) async for e in pump.items(keepalive, coalesce)]

    return asyncio.run(consume())


def _token(seq: int, text: str, step: int = 1) -> Token:
    return Token(run_id="run_1", seq=seq, step=step, text=text)


def test_fast_tokens_go_out_together_the_first_at_once_and_none_is_lost() -> None:
    script: list[tuple[float, Event]] = [(0.0, _token(1, "He")), *[(0.01, _token(i, "l")) for i in range(2, 12)],
                                         (0.0, RunFinished(run_id="run_1", seq=12, status="ok", output="Hellllllll"))]
    got = _given(script, coalesce=0.05)
    tokens = [e for _, e in got if isinstance(e, Token)]
    assert got[0][1].text == "He" and got[0][0] < 0.03  # the first token is not held back
    assert "".join(t.text for t in tokens) == "He" + "l" * 10
    assert 2 <= len(tokens) <= 5  # eleven tokens over ~0.1 s, in windows of 0.05 s
    assert [t.seq for t in tokens] == sorted(t.seq for t in tokens) and tokens[-1].seq == 11
    assert isinstance(got[-1][1], RunFinished)
    assert [e for _, e in _given(script, coalesce=0)] == [e for _, e in script]  # 0: each token as it comes


def test_other_events_are_never_held_and_flush_the_held_tokens_first() -> None:
    call = ToolCall(run_id="run_1", seq=4, step=1, call_id="c1", name="lookup", arguments={})
    script: list[tuple[float, Event]] = [(0.0, _token(1, "a")), (0.005, _token(2, "b")), (0.005, _token(3, "c")),
                                         (0.0, call), (0.3, _token(5, "d", step=2)), (0.0, _token(6, "e", step=3))]
    got = [e for _, e in _given(script, coalesce=0.2)]
    assert [(type(e).__name__, getattr(e, "text", None)) for e in got] == [
        ("Token", "a"), ("Token", "bc"), ("ToolCall", None), ("Token", "d"), ("Token", "e")]


def test_a_held_token_goes_out_when_its_window_ends_even_if_nothing_follows() -> None:
    script: list[tuple[float, Event]] = [(0.0, _token(1, "a")), (0.01, _token(2, "b")),
                                         (0.5, RunFinished(run_id="run_1", seq=3, status="ok", output="ab"))]
    got = _given(script, coalesce=0.1, keepalive=10)
    when = {getattr(e, "text", "end"): t for t, e in got}
    assert list(when) == ["a", "b", "end"]
    assert 0.08 <= when["b"] < 0.3  # at the window's end, not when the run finished
