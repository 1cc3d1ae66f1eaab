"""Workflow checkpoints: each step's output is stored once, and a resume still gets every one of them."""

from __future__ import annotations

from pathlib import Path

from halguru import run_sync
from halguru.orchestration.durable import resume
from halguru.store import open_store

TOOLS = '''
from pathlib import Path
from halguru import tool

@tool
def big(n: int) -> str:
    "A long report."
    return "x" * n

@tool
def gate(x: int) -> str:
    "Fails until the service is back."
    if not Path(__file__).with_name("up").exists():
        raise RuntimeError("service down")
    return "open"
'''


def workflow(tmp_path: Path, steps: int) -> Path:
    folder = tmp_path / "flow"
    folder.mkdir()
    conditions = "".join(f"    - {{id: c{i}, condition: '{i}'}}\n" for i in range(steps))
    (folder / "agent.yaml").write_text(
        "name: flow\ntools: [big, gate]\nworkflow:\n  steps:\n    - {id: report, tool: big, args: {n: 1000000}}\n"
        + conditions + "    - {id: last, tool: gate, args: {x: 1}}\n"
        "  output: \"{{ steps.report.output | length }} {{ steps.c0.output }} {{ steps.last.output }}\"\n")
    (folder / "tools.py").write_text(TOOLS)
    return folder


def written(run_id: str) -> tuple[int, int, int]:
    """The length of the run's checkpoint state, and how many step rows it has holding how many characters."""
    rows = open_store()._rows  # either backend
    state = rows("SELECT length(state) AS n FROM checkpoints WHERE run_id = ?", [run_id])[0]["n"]
    steps = rows("SELECT count(*) AS n, coalesce(sum(length(result)), 0) AS chars FROM checkpoint_steps "
                 "WHERE run_id = ?", [run_id])[0]
    return int(state), int(steps["n"]), int(steps["chars"])


def test_a_big_step_output_is_stored_once_not_at_every_later_checkpoint(tmp_path: Path) -> None:
    """Each checkpoint rewrote every output so far: a 1 MB output followed by 20 steps wrote 21 MB, in seconds
    the trace did not show. Each step's output is now a row of its own, written once."""
    folder = workflow(tmp_path, 20)
    failed = run_sync(folder, "go")
    assert failed.status == "failed" and "service down" in (failed.error or "")
    state, rows, chars = written(failed.run_id)
    assert state < 1000 and rows == 21 and 1_000_000 < chars < 1_001_000
    checkpoint = open_store().get_checkpoint(failed.run_id)
    assert checkpoint is not None and len(checkpoint["state"]["steps_done"]) == 21
    assert checkpoint["state"]["steps_done"]["report"]["output"] == "x" * 1_000_000
    (folder / "up").touch()
    resumed = resume(failed.run_id)  # every output comes back from its row
    assert resumed.status == "ok" and resumed.output == "1000000 0 open"
    assert [e.reused for e in resumed.events if e.type == "resumed"] == [sorted(["report", *(f"c{i}" for i in
                                                                                           range(20))])]
    assert written(resumed.run_id)[1] == 22  # the continuation's checkpoint holds the reused steps and its own
