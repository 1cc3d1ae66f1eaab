"""A run stopped before its model reported usage shows no made-up token count."""

from __future__ import annotations

from halguru.agents.describe import describe
from halguru.agents.events import RunFinished
from halguru.cli.render import trace_tree


def test_cancelled_turn_shows_no_zero_token_count() -> None:
    cancelled = RunFinished(status="cancelled", output="Partial ans", duration_ms=12.0, steps=1)
    assert "0+0" not in describe(cancelled).text and "Partial ans" in describe(cancelled).text
    done = RunFinished(status="ok", output="Done", duration_ms=12.0, steps=1, prompt_tokens=5, completion_tokens=2)
    assert "5+2 tok" in describe(done).text
    run = {"id": "run_x", "agent": "a", "model": "m", "status": "cancelled", "duration_ms": 12.0,
           "prompt_tokens": 0, "completion_tokens": 0, "input": "hi"}
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(trace_tree(run, []))
    assert "0+0 tokens" not in console.export_text()
