"""What a generation asks of the batching engine (``llama_batch``): a job, and its program's needs.

A generation is a *program*: a generator that yields what its sequence must hold next (``Eval``: exactly
these tokens; ``Feed``: these tokens appended) and is resumed with the batch index of the last token's
logits, from which it samples with its own sampler chain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field


@dataclass
class Eval:
    """The sequence must hold exactly ``tokens``; resumed with the batch index of the last one's logits."""

    tokens: list[int]


@dataclass
class Feed:
    """Append ``tokens`` (the one just sampled) to the sequence; resumed like ``Eval``."""

    tokens: list[int]


Program = Generator[Eval | Feed, int, None]


@dataclass
class Job:
    """One generation: ``start`` builds its program once a slot is free (on the worker thread); its first
    need (the prompt) decides which slot it gets."""

    key: str | None  # the conversation: its KV prefix is kept for its next turn
    start: Callable[[], Program]
    fail: Callable[[BaseException], None]
    done: Callable[[], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    reused: int | None = None  # prompt tokens its first Eval found in the KV cache
