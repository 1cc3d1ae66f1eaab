"""Stop strings: streamed text cut before the first one, even when it arrives split across chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from halguru.models.base import Chunk, TextChunk, UsageChunk


class StopCut:
    """Text added piece by piece, let through up to the first stop string (which is never let through). The end
    of the text that may still become a stop string is held back until the next piece (or ``flush``) says."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self._firsts = frozenset(s[0] for s in self.stops)  # where a held-back end may start
        self._longest = max(map(len, self.stops), default=0)

    def add(self, piece: str) -> tuple[str, bool]:
        """(text to show now, whether a stop string ended the text: nothing more is to be shown then)."""
        self.held += piece
        at = min((i for i in (self.held.find(s) for s in self.stops) if i >= 0), default=-1)
        if at >= 0:
            text, self.held = self.held[:at], ""
            return text, True
        cut = len(self.held)  # held back from the first place whose end could still become a stop string
        for at in range(max(0, cut - self._longest + 1), cut):
            if self.held[at] in self._firsts and any(s.startswith(self.held[at:]) for s in self.stops):
                cut = at
                break
        text, self.held = self.held[:cut], self.held[cut:]
        return text, False

    def flush(self) -> str:
        """What was held back, once the text has ended without a stop string."""
        text, self.held = self.held, ""
        return text


async def cut_at_stops(stream: AsyncIterator[Chunk], stops: Sequence[str]) -> AsyncIterator[Chunk]:
    """A model's chunks with the text cut before the first of ``stops``; the model's stream is closed there (a
    provider that does not stop by itself generates no further) and the call ends with finish_reason "stop",
    its completion counted as one token per text chunk streamed (what it generated is not reported past the
    cut). Any model honours ``stop`` this way; providers that can also stop natively (llama.cpp,
    OpenAI-compatible endpoints) then report exact counts."""
    cut, usage, pieces = StopCut(stops), UsageChunk(), 0
    try:
        async for chunk in stream:
            if isinstance(chunk, TextChunk):
                pieces += 1
                text, stopped = cut.add(chunk.text)
                if text:
                    yield TextChunk(text)
                if stopped:
                    yield UsageChunk(prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens,
                                     completion_tokens=max(usage.completion_tokens, pieces), finish_reason="stop")
                    return
                continue
            if isinstance(chunk, UsageChunk):
                usage = chunk
            yield chunk
        rest = cut.flush()
        if rest:
            yield TextChunk(rest)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
