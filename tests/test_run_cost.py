"""`halguru logs show` says what a run cost, as `halguru eval` prices a model's tests: a developer asking "what did
this run cost?" got token counts only, and had to find the model's prices and multiply by hand (for a team, per
member's model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halguru.agents.runtime import run_to_result
from halguru.models.scripted import ScriptedModel

PRICED = """models:
  priced:
    provider: openai
    options: {base_url: "http://127.0.0.1:9/v1", model_id: x, price_input_per_mtok: 2.5, price_output_per_mtok: 10}
  unpriced:
    provider: openai
    options: {base_url: "http://127.0.0.1:9/v1", model_id: y}
"""


async def test_logs_show_says_what_a_run_cost_on_a_priced_model(cli, write_agent, halguru_home: Path) -> None:
    halguru_home.mkdir(parents=True, exist_ok=True)
    (halguru_home / "models.yaml").write_text(PRICED, encoding="utf-8")
    agent = write_agent("name: payer\nmodel: scripted\ntools: [calculator]\n")
    calls = [{"tool_calls": [{"name": "calculator", "arguments": {"expression": "2*21"}}]}, "It is 42."]
    result = await run_to_result(agent, "what is 2*21?", model=ScriptedModel(calls, name="priced"))
    shown = json.loads(cli("logs", "show", result.run_id, "--json").stdout)
    results = [e for e in shown["events"] if e["type"] == "model_result"]
    expected = sum(e["prompt_tokens"] * 2.5 + e["completion_tokens"] * 10 for e in results) / 1e6
    assert len(results) == 2 and expected > 0 and shown["cost_usd"] == pytest.approx(expected)
    header = cli("logs", "show", result.run_id).stdout.splitlines()[0]
    assert header.endswith(f"tokens · ${expected:.6f}")


async def test_a_run_on_a_model_without_prices_has_no_made_up_cost(cli, write_agent, halguru_home: Path) -> None:
    halguru_home.mkdir(parents=True, exist_ok=True)
    (halguru_home / "models.yaml").write_text(PRICED, encoding="utf-8")
    agent = write_agent("name: payer\nmodel: scripted\n")
    unknown = await run_to_result(agent, "hi", model=ScriptedModel(["hello"], name="unpriced"))
    local = await run_to_result(agent, "hi", model=ScriptedModel(["hello"]))
    assert json.loads(cli("logs", "show", unknown.run_id, "--json").stdout)["cost_usd"] is None
    assert json.loads(cli("logs", "show", local.run_id, "--json").stdout)["cost_usd"] == 0
    assert "$" not in cli("logs", "show", unknown.run_id).stdout.splitlines()[0]
    assert "$" not in cli("logs", "show", local.run_id).stdout.splitlines()[0]
