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


def test_a_result_cut_for_the_model_says_so_in_the_tree(cli, write_agent) -> None:
    """A 20,000-character tool result showed in `logs show` (and the debugger's tree) as its first 100 characters
    and `…`, like any long result: nothing said that the model read only 8,000 of them (the cut line was past
    the 100 shown), so "what did the model see?" needed --json."""
    folder = write_agent("name: big\nmodel: scripted:s.yaml\n", name="big")
    (folder / "tools.py").write_text("from halguru import tool\n\n@tool\ndef huge(n: int) -> str:\n"
                                     "    \"\"\"Long text.\"\"\"\n    return 'é' * n\n")
    (folder / "agent.yaml").write_text("name: big\nmodel: scripted:s.yaml\ntools: [huge]\n")
    (folder / "s.yaml").write_text("- tool_calls: [{name: huge, arguments: {n: 20000}}]\n"
                                   "- tool_calls: [{name: huge, arguments: {n: 50}}]\n- done\n")
    cli("run", str(folder), "go")
    lines = [line for line in cli("logs", "show", "last").stdout.splitlines() if "tool_result" in line]
    assert len(lines) == 2
    assert "the model got 8000 of 20000 characters" in lines[0] and "é" * 20 in lines[0]
    assert "the model got" not in lines[1] and "é" * 50 in lines[1]
    from halguru.agents.events import ToolResult

    said = describe(ToolResult(call_id="c1", name="huge", content="x" * 8000 + "\n… (cut: 5 characters)")).text
    assert "the model got 8000 of 8005 characters" in said


def test_a_first_model_call_reads_one_message_not_one_messages() -> None:
    """An agent with no instructions sends one message first: the tree said `1 messages`."""
    from halguru.agents.events import ModelCall

    one = describe(ModelCall(model="m", messages=[{"role": "user", "content": "hi"}], tools=[])).text
    two = describe(ModelCall(model="m", messages=[{"role": "system", "content": "s"},
                                                  {"role": "user", "content": "hi"}], tools=[])).text
    assert "· 1 message ·" in one and "· 2 messages ·" in two
