"""Workflow checkpoint writes: a 5 MB step output followed by 30 condition steps, run recorded (checkpointed
after each step), with each finished step stored once (now) against the old way, measured in the same run: every
checkpoint rewrote the outputs of all the steps so far in its state. Figure: seconds spent in checkpoint writes,
new ÷ old; goal ≤ 0.1.
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


def timed_run(folder: Path, old: bool) -> float:
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
    result = run_sync(folder, "go", store=store)
    assert result.status == "ok", result.error
    return spent[0]


def measure(quick: bool) -> list[Result]:
    root = Path(tempfile.mkdtemp(dir=_common.HOME))
    folder = workflow(root, SIZE, STEPS)
    old, new = [], []
    for _ in range(1 if quick else 3):
        old.append(timed_run(folder, old=True))
        new.append(timed_run(folder, old=False))
    ratio = median(new) / median(old)
    return [Result(bench="checkpoints", metric=f"checkpoint writes, 5 MB step output then {STEPS} steps",
                   value=ratio, unit="x", goal=0.1, higher_is_better=False, ratio=ratio,
                   baseline="of rewriting every output at each checkpoint",
                   detail=f"new {spread([t * 1e3 for t in new], ' ms', 0)}, "
                          f"old {spread([t * 1e3 for t in old], ' ms', 0)}",
                   runs=len(new))]


if __name__ == "__main__":
    _common.main("Workflow checkpoints (no model)", measure, __doc__ or "")
