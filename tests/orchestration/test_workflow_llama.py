"""A workflow on the real bundled model: a typed agent step is decoded under its schema's grammar, so its
output always parses and validates, and the next step reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import run_sync


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.llama
@pytest.mark.parametrize("message", ["My invoice is wrong, I was charged twice!", "The app crashes when I log in."])
def test_typed_step_on_the_bundled_model_always_parses(tmp_path: Path, message: str):
    write(tmp_path / "classifier", "name: classifier\nmodel: smollm2\n"
          "instructions: Classify the customer's message as billing or tech.\nlimits: {max_tokens: 60}\n")
    flow = write(tmp_path / "flow", """\
name: flow
workflow:
  steps:
    - id: classify
      agent: ../classifier
      output:
        type: object
        properties:
          category: {enum: [billing, tech]}
          urgent: {type: boolean}
        required: [category, urgent]
    - id: route
      condition: "'to ' ~ steps.classify.output.category"
""")
    result = run_sync(flow, message)
    assert result.ok, result.error
    typed = next(e.output for e in result.events if e.type == "step_finished" and e.step_id == "classify")
    assert typed["category"] in ("billing", "tech") and isinstance(typed["urgent"], bool)
    assert result.output == f"to {typed['category']}"
    asked = next(e for e in result.events if e.type == "model_call")
    assert asked.model == "smollm2"
