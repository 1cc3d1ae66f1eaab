"""A durable team's checkpoints: each message is stored once, not rewritten at every later tool call, and a
resume still gets every one of them."""

from __future__ import annotations

from pathlib import Path

from halguru import run_sync
from halguru.models.scripted import ScriptedModel
from halguru.orchestration.durable import resume
from halguru.store import open_store
from halguru.tools.registry import MAX_RESULT_CHARS
from tests.orchestration.test_workflow_checkpoints import TOOLS as BIG_TOOL  # big(n), gate(x)

TOOLS = BIG_TOOL + '''
@tool
def small(i: int) -> str:
    "A short lookup."
    return f"item {i}"
'''
CALLS = 20


def team(tmp_path: Path) -> Path:
    for name, text in (("desk", "name: desk\nmodel: scripted\ntools: [big, small]\nlimits:\n  max_steps: 100\n"
                                "team:\n  specialists: [../helper]\n  max_steps: 100\n"),
                       ("helper", "name: helper\nmodel: scripted\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "agent.yaml").write_text(text)
    (tmp_path / "desk" / "tools.py").write_text(TOOLS)
    return tmp_path / "desk"


def written(run_id: str) -> tuple[int, int, int]:
    """The length of the run's checkpoint state, and how many message rows it has holding how many characters."""
    rows = open_store()._rows  # either backend
    state = rows("SELECT length(state) AS n FROM checkpoints WHERE run_id = ?", [run_id])[0]["n"]
    messages = rows("SELECT count(*) AS n, coalesce(sum(length(message)), 0) AS chars FROM checkpoint_messages "
                    "WHERE run_id = ?", [run_id])[0]
    return int(state), int(messages["n"]), int(messages["chars"])


def test_a_big_tool_result_is_stored_once_not_at_every_later_checkpoint(tmp_path: Path) -> None:
    """Each checkpoint of a team run rewrote all its messages so far: 21 tool results of 8,000 characters (the
    cap of one) wrote 1.8 MB, and 200 of them 160 MB. Each message is now a row of its own, written when new."""
    desk = team(tmp_path)
    script = [*({"tool_calls": [{"name": "big", "arguments": {"n": 100_000 + i}}]} for i in range(CALLS)),
              {"tool_calls": [{"name": "small", "arguments": {"i": 7}}]}, {"error": "the model went away"}]
    failed = run_sync(desk, "gather everything", model=ScriptedModel(script))
    assert failed.status == "failed" and "went away" in (failed.error or "")
    state, rows, chars = written(failed.run_id)
    assert state < 1000 and rows == 1 + 2 * (CALLS + 1)
    assert CALLS * MAX_RESULT_CHARS < chars < CALLS * MAX_RESULT_CHARS * 1.1  # each message once
    checkpoint = open_store().get_checkpoint(failed.run_id)
    assert checkpoint is not None
    messages = checkpoint["state"]["messages"]
    assert [m["role"] for m in messages] == ["user", *(["assistant", "tool"] * (CALLS + 1))]
    assert messages[2]["content"].startswith("x" * 7000) and messages[-1]["content"] == "item 7"

    resumed = resume(failed.run_id, model=ScriptedModel(["All gathered."]))  # every message from its row
    assert resumed.status == "ok" and resumed.output == "All gathered."
    stored = open_store().get_messages(resumed.conversation_id)
    assert [m.role for m in stored] == ["user", *(["assistant", "tool"] * (CALLS + 1)), "assistant"]
    assert stored[2].content == messages[2]["content"]
