"""`halguru eval`: the same conversation tests against several models, side by side."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from halguru.testing.runner import SuiteResult, run_suite


@dataclass
class ModelScore:
    model: str
    tests: int
    passed: int
    pass_rate: float
    median_latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    tool_calls: int
    valid_tool_calls: int
    tool_call_validity: float | None
    cost_usd: float | None
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _is_invalid_call(content: str) -> bool:
    return content.startswith(("error: invalid arguments", "error: unknown tool"))


def score_suite(model: str, suite: SuiteResult) -> ModelScore:
    latencies, prompt, completion, calls, valid = [], 0, 0, 0, 0
    for test in suite.tests:
        for turn in test.turns:
            if turn.outcome is None:
                continue
            latencies.append(turn.outcome.latency_ms)
            for e in turn.outcome.events:
                if e.type == "model_result":
                    prompt += e.prompt_tokens
                    completion += e.completion_tokens
                    calls += e.format_errors
                elif e.type == "tool_result":
                    calls += 1
                    valid += not (e.is_error and _is_invalid_call(e.content))
    passed = sum(t.passed for t in suite.tests)
    return ModelScore(
        model=model, tests=len(suite.tests), passed=passed,
        pass_rate=passed / len(suite.tests) if suite.tests else 0.0,
        median_latency_ms=statistics.median(latencies) if latencies else None,
        prompt_tokens=prompt, completion_tokens=completion, tool_calls=calls, valid_tool_calls=valid,
        tool_call_validity=valid / calls if calls else None, cost_usd=_cost(model, prompt, completion))


def _cost(model: str, prompt: int, completion: int) -> float | None:
    """Known when the model's entry has prices (``price_input_per_mtok`` and ``price_output_per_mtok``, USD)."""
    from halguru.errors import HalguruError
    from halguru.models.registry import find_entry

    try:
        options = find_entry(model).options
    except HalguruError:
        return None
    if "price_input_per_mtok" not in options:
        return 0.0 if find_entry(model).provider in ("llama-cpp", "scripted") else None
    return (prompt * float(options["price_input_per_mtok"])
            + completion * float(options.get("price_output_per_mtok", 0))) / 1e6


async def evaluate(project: str | Path, models: list[str], *, pattern: str | None = None,
                   repeat: int = 1) -> list[ModelScore]:
    """Run the suite live once per model (recordings are not used: each model must answer)."""
    from halguru.errors import HalguruError

    scores = []
    for model in models:
        try:
            suite = await run_suite(project, mode="live", pattern=pattern, repeat=repeat, model=model)
        except HalguruError as exc:
            scores.append(ModelScore(model, 0, 0, 0.0, None, 0, 0, 0, 0, None, None, error=str(exc)))
            continue
        scores.append(score_suite(model, suite))
    return scores
