"""Stop strings (OpenAI's ``stop``): the answer ends before the first one, which is never shown, even when it
arrives split across the model's chunks; a model that does not stop by itself is stopped there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from halguru.models.base import Chunk, TextChunk, UsageChunk
from halguru.models.stops import StopCut, cut_at_stops


def _feed(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    cut, shown = StopCut(stops), []
    for piece in pieces:
        text, stopped = cut.add(piece)
        shown.append(text)
        if stopped:
            return "".join(shown), True
    return "".join(shown) + cut.flush(), False


def test_the_text_ends_before_a_stop_string_split_across_pieces() -> None:
    assert _feed(["STOP"], ["alpha be", "ta ST", "O", "P gamma"]) == ("alpha beta ", True)
    assert _feed(["\nObservation:"], ["Action: x\nObs", "ervation: 42"]) == ("Action: x", True)


def test_the_earliest_stop_string_wins_and_a_near_miss_is_released() -> None:
    assert _feed(["c", "ab"], ["xab", "c"]) == ("x", True)
    assert _feed(["STOP"], ["a ST", "OR", "E"]) == ("a STORE", False)  # held back while it could still match
    assert _feed(["STOP"], ["ends with ST"]) == ("ends with ST", False)  # the end: what was held comes out


def test_held_back_text_is_only_what_could_begin_a_stop_string() -> None:
    cut = StopCut(["END"])
    assert cut.add("hello E") == ("hello ", False)
    assert cut.add("x") == ("Ex", False)


class _Model:
    """A stream that would go on for ever past the stop string; records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False
        self.sent = 0

    async def stream(self) -> AsyncIterator[Chunk]:
        try:
            yield UsageChunk(prompt_tokens=7, finish_reason="cancelled")
            for piece in ["1, 2, ", "3, 4", ", 5", ", 6"] + ["x"] * 1000:
                self.sent += 1
                yield TextChunk(piece)
        finally:
            self.closed = True


def test_a_model_that_does_not_stop_is_cut_and_closed_with_finish_reason_stop() -> None:
    model = _Model()

    async def read() -> list[Chunk]:
        return [c async for c in cut_at_stops(model.stream(), [", 5"])]

    chunks = asyncio.run(read())
    assert "".join(c.text for c in chunks if isinstance(c, TextChunk)) == "1, 2, 3, 4"
    usage = [c for c in chunks if isinstance(c, UsageChunk)][-1]
    assert (usage.prompt_tokens, usage.finish_reason) == (7, "stop") and usage.completion_tokens == 3
    assert model.closed and model.sent == 3  # generation went no further than the stop
