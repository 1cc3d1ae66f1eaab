"""`halguru eval`: the same conversation tests against several models, side by side."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from halguru.models.registry import cost_usd
from halguru.testing.runner import Progress, SuiteResult, run_suite

# progress(event, value): ("model", model) as eval moves to the next model, ("loading", model) while a model
# loads, ("tests", n) once the tests are counted, ("plan", "n test(s): a live, b replayed") with it,
# ("test", "file::name") as each starts and ("done", "file::name passed|FAILED") as each ends.


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
    outcomes = [turn.outcome for test in suite.tests for turn in test.turns if turn.outcome is not None]
    # Every run failed (a server that cannot be reached, a model file that will not load): the model failed,
    # not the tests; say so (and exit 1) rather than score it 0%.
    error = None
    if outcomes and all(o.status == "failed" and o.error for o in outcomes):
        error = f"every run failed: {outcomes[0].error}"
    return ModelScore(
        model=model, tests=len(suite.tests), passed=passed,
        pass_rate=passed / len(suite.tests) if suite.tests else 0.0,
        median_latency_ms=statistics.median(latencies) if latencies else None,
        prompt_tokens=prompt, completion_tokens=completion, tool_calls=calls, valid_tool_calls=valid,
        tool_call_validity=valid / calls if calls else None, cost_usd=cost_usd(model, prompt, completion),
        error=error)


async def evaluate(project: str | Path, models: list[str], *, pattern: str | None = None,
                   repeat: int = 1, progress: Progress | None = None, concurrency: int = 1,
                   into: list[ModelScore] | None = None) -> list[ModelScore]:
    """Run the suite live once per model (recordings are not used: each model must answer).

    Every model reference is checked first: an unknown one is a ModelError before anything runs. A model
    that fails while its tests run (a file that will not load) gets a score with ``error`` set. ``into``: the
    list to fill as each model ends, so that a Ctrl-C still leaves the scores so far (the model it cut is
    scored on its tests that finished).
    """
    from halguru.errors import HalguruError
    from halguru.models.registry import find_entry

    if not models:
        raise HalguruError("--models: name at least one model (comma-separated)")
    for model in models:
        find_entry(model)  # an unknown model stops the eval here, in one line
    from halguru.agents.loader import load_agent

    load_agent(project)  # so does a project that does not load (not once per model, under a score table)
    scores = into if into is not None else []
    for model in models:
        if progress is not None:
            progress("model", model)
        suite = SuiteResult(tests=[], file_errors=[])
        try:
            await run_suite(project, mode="live", pattern=pattern, repeat=repeat, model=model,
                            progress=progress, concurrency=concurrency, into=suite)
        except HalguruError as exc:
            scores.append(ModelScore(model, 0, 0, 0.0, None, 0, 0, 0, 0, None, None, error=str(exc)))
            continue
        except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: what finished is scored
            if suite.tests:
                scores.append(score_suite(model, suite))
            raise
        scores.append(score_suite(model, suite))
    return scores


async def warm_up(reference: str, notify: Progress) -> None:
    """Load a local (llama.cpp) model before the first test, saying so: loading takes seconds and would
    otherwise look like a hang. A model that cannot load (a missing or broken GGUF) is one ModelError
    here rather than the same failure in every test. Other providers load nothing."""
    from halguru.models.base import Message, ModelRequest, SamplingSettings
    from halguru.models.registry import find_entry, get_model

    if find_entry(reference).provider != "llama-cpp":
        return
    notify("loading", reference)
    request = ModelRequest(messages=[Message(role="user", content="Hi")], settings=SamplingSettings(max_tokens=1))
    async for _ in get_model(reference).stream(request):
        pass
