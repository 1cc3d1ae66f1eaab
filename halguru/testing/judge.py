"""Scoring an answer against a rubric with a model the user names."""

from __future__ import annotations

import re

from halguru.agents.loader import Agent
from halguru.agents.spec import AgentSpec, Limits, Sampling
from halguru.errors import HalguruError

JUDGE_INSTRUCTIONS = (
    "You grade answers. Read the rubric, the question and the answer, then reply with only a number "
    "from 0 to 10: 10 when the answer fully meets the rubric, 0 when it does not at all."
)


async def judge_answer(model: str, rubric: str, question: str, answer: str) -> float:
    """A score in 0..1; raises HalguruError with the reason when the judge cannot score."""
    from halguru.agents.runtime import run_to_result

    agent = Agent.from_spec(AgentSpec(name="judge", model=model, instructions=JUDGE_INSTRUCTIONS,
                                      sampling=Sampling(temperature=0, seed=0), limits=Limits(max_tokens=8)))
    prompt = f"Rubric: {rubric}\n\nQuestion: {question}\n\nAnswer: {answer}\n\nScore (0-10):"
    result = await run_to_result(agent, prompt, record=False)
    if not result.ok:
        raise HalguruError(f"judge model {model} failed: {result.error}")
    match = re.search(r"\d+(?:\.\d+)?", result.output)
    if match is None:
        raise HalguruError(f"judge model {model} gave no score: {result.output.strip()[:60]!r}")
    return min(float(match.group()), 10.0) / 10.0
