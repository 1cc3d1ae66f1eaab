"""Checkpoint writes, each thing stored once (now) against the old way, measured in the same run: every checkpoint
rewrote all the steps' outputs (a workflow) or all the messages (a team or durable agent) so far in its state.
- workflow: a 5 MB step output followed by 30 condition steps, checkpointed after each step;
- team: 90 tool calls (a turn's most is 100), each result 8,000 characters (one result's cap), checkpointed after
  each call.
Figure: seconds spent in checkpoint writes, new ÷ old; goal ≤ 0.1 (workflow) and ≤ 0.5 (team: each checkpoint
also writes the trace events since the last, each tool result among them, the same either way).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _common
from _common import Result, median, spread

from halguru import run_sync
from halguru.store import open_store

STEPS = 30
SIZE = 5_000_000
TEAM_CALLS = 90
TOOLS = '''
from halguru import tool

@tool
def big(n: int) -> str:
    "A long report."
    return "x" * n
'''


def workflow(root: Path, size: int, steps: int) -> Path:
    folder = root / "flow"
    folder.mkdir(exist_ok=True)
    conditions = "".join(f"    - {{id: c{i}, condition: '{i}'}}\n" for i in range(steps))
    (folder / "agent.yaml").write_text("name: flow\ntools: [big]\nworkflow:\n  steps:\n"
                                       f"    - {{id: report, tool: big, args: {{n: {size}}}}}\n" + conditions)
    (folder / "tools.py").write_text(TOOLS)
    return folder


def team(root: Path) -> Path:
    for name, text in (("desk", "name: desk\nmodel: scripted\ntools: [big]\nlimits:\n  max_steps: 100\n"
                                "team:\n  specialists: [../helper]\n  max_steps: 100\n  max_tokens: 100000000\n"),
                       ("helper", "name: helper\nmodel: scripted\n")):
        (root / name).mkdir(exist_ok=True)
        (root / name / "agent.yaml").write_text(text)
    (root / "desk" / "tools.py").write_text(TOOLS)
    return root / "desk"


def team_model() -> Any:
    from halguru.models.scripted import ScriptedModel

    return ScriptedModel([*({"tool_calls": [{"name": "big", "arguments": {"n": 8000 + i}}]} for i in
                            range(TEAM_CALLS)), "done"])


def timed_run(folder: Path, old: bool, model: Any = None) -> float:
    """Seconds the run's checkpoint writes took (the store's save_checkpoint, timed), the old way or the new."""
    store = open_store()
    cls = type(store)
    spent = [0.0]

    def old_save(run_id: str, label: str, state: Mapping[str, Any], events: Sequence[Any]) -> None:
        with store._tx() as conn:  # what save_checkpoint did: the whole state, every output, at each step
            store._insert_events(conn, run_id, events)
            conn.execute("UPDATE checkpoints SET label = ?, state = ?, updated = ? WHERE run_id = ?",
                         (label, json.dumps(state, ensure_ascii=False), time.time(), run_id))

    def timed(run_id: str, label: str, state: Mapping[str, Any], events: Sequence[Any]) -> None:
        started = time.perf_counter()
        (old_save if old else lambda *a: cls.save_checkpoint(store, *a))(run_id, label, state, events)
        spent[0] += time.perf_counter() - started

    store.save_checkpoint = timed  # type: ignore[method-assign]
    result = run_sync(folder, "go", store=store, model=model)
    assert result.status == "ok", result.error
    return spent[0]


def measure(quick: bool) -> list[Result]:
    root = Path(tempfile.mkdtemp(dir=_common.HOME))
    folder = workflow(root, SIZE, STEPS)
    old, new = [], []
    for _ in range(1 if quick else 3):
        old.append(timed_run(folder, old=True))
        new.append(timed_run(folder, old=False))
    desk, team_old, team_new = team(root), [], []
    for _ in range(1 if quick else 3):
        team_old.append(timed_run(desk, old=True, model=team_model()))
        team_new.append(timed_run(desk, old=False, model=team_model()))
    return [_result(f"checkpoint writes, 5 MB step output then {STEPS} steps", new, old, 0.1,
                    "of rewriting every output at each checkpoint"),
            _result(f"checkpoint writes, team of {TEAM_CALLS} tool results of 8,000 characters", team_new,
                    team_old, 0.5, "of rewriting every message at each checkpoint")]


def _result(metric: str, new: list[float], old: list[float], goal: float, baseline: str) -> Result:
    ratio = median(new) / median(old)
    return Result(bench="checkpoints", metric=metric, value=ratio, unit="x", goal=goal, higher_is_better=False,
                  ratio=ratio, baseline=baseline, detail=f"new {spread([t * 1e3 for t in new], ' ms', 0)}, "
                                                       f"old {spread([t * 1e3 for t in old], ' ms', 0)}",
                  runs=len(new))


if __name__ == "__main__":
    _common.main("Checkpoints of workflows and teams (no model)", measure, __doc__ or "")
