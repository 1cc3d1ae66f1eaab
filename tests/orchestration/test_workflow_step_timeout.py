"""A step's own ``timeout:``: a tool or agent step that hangs fails in time, naming the step, and resumes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from halguru import load_agent, run_sync
from halguru.errors import AgentSpecError
from halguru.orchestration.durable import resume

TOOLS = '''
import asyncio
from pathlib import Path
from halguru import tool

@tool
def report() -> str:
    "A report."
    return "report"

@tool
async def fetch(url: str) -> str:
    "Fetch a page; hangs while the site is down."
    tries = Path(__file__).with_name("tries")
    tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
    if not Path(__file__).with_name("up").exists():
        await asyncio.sleep(30)
    return "page"
'''


def workflow(tmp_path: Path, fetch: str) -> Path:
    folder = tmp_path / "flow"
    folder.mkdir(exist_ok=True)
    (folder / "agent.yaml").write_text(
        "name: flow\ntools: [report, fetch]\nworkflow:\n  steps:\n    - {id: first, tool: report}\n"
        f"    - {{id: fetch, tool: fetch, args: {{url: x}}, {fetch}}}\n"
        "  output: \"{{ steps.first.output }} {{ steps.fetch.output }}\"\n")
    (folder / "tools.py").write_text(TOOLS)
    return folder


def test_a_step_past_its_timeout_fails_naming_the_step_and_resumes_after_a_fix(tmp_path: Path) -> None:
    """A hung step held the whole workflow until its timeout (600 s by default), saying nothing of which."""
    folder = workflow(tmp_path, "timeout: 0.3")
    started = time.perf_counter()
    failed = run_sync(folder, "go")
    assert time.perf_counter() - started < 5
    assert failed.status == "failed"
    assert failed.error == "step fetch failed: timed out after 0.3s (the step's timeout:)"
    cut = [e for e in failed.events if e.type == "tool_result"][-1]
    assert cut.is_error and cut.content == "error: timed out after 0.3s (the step's timeout:)"
    (folder / "up").touch()  # the site is back: the resume runs the step that timed out, not the ones done
    resumed = resume(failed.run_id)
    assert resumed.status == "ok" and resumed.output == "report page"
    assert [e.step_id for e in resumed.events if e.type == "step_started"] == ["fetch"]


def test_a_step_that_times_out_is_tried_again_when_it_has_retries(tmp_path: Path) -> None:
    folder = workflow(tmp_path, "timeout: 0.2, retries: 1, retry_delay: 0")
    result = run_sync(folder, "go", record=False)
    assert result.status == "failed" and (folder / "tries").read_text() == "xx"
    told = [e.message for e in result.events if e.type == "error" and not e.fatal]
    assert told == ["step fetch failed (try 1 of 2): timed out after 0.2s (the step's timeout:); trying again in 0s"]


def test_an_agent_step_past_its_timeout_fails(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text('- {text: "slow part done", token_delay: 0.5}\n')
    agent = tmp_path / "slow"
    agent.mkdir()
    (agent / "agent.yaml").write_text(f"name: slow\nmodel: scripted:{tmp_path / 'slow.yaml'}\n")
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: flow\nworkflow:\n  steps:\n    - {id: think, agent: ../slow, "
                                       "timeout: 0.2}\n")
    result = run_sync(folder, "go", record=False)
    assert result.status == "failed"
    assert result.error == "step think failed: timed out after 0.2s (the step's timeout:)"


@pytest.mark.parametrize(("step", "error"), [
    ("{id: c, condition: '1', timeout: 5}", "workflow.steps.0.timeout: a condition step takes no timeout"),
    ("{id: c, tool: report, timeout: 0}", "workflow.steps.0.timeout: Input should be greater than 0"),
])
def test_a_timeout_that_cannot_apply_is_rejected_at_load(tmp_path: Path, step: str, error: str) -> None:
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "agent.yaml").write_text(f"name: flow\ntools: [report]\nworkflow:\n  steps:\n    - {step}\n")
    (folder / "tools.py").write_text(TOOLS)
    with pytest.raises(AgentSpecError, match=error):
        load_agent(folder)


def test_a_tool_call_the_workflows_timeout_cuts_gets_a_result(tmp_path: Path) -> None:
    """The cut call was left without a result in the trace, as if it were still running."""
    folder = workflow(tmp_path, "retries: 0")
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("  steps:", "  timeout: 0.5\n"
                                                                                   "  steps:"))
    result = run_sync(folder, "go")
    assert result.status == "limited"
    cut = [e for e in result.events if e.type == "tool_result"][-1]
    assert (cut.name, cut.content) == ("fetch", "error: workflow exceeded workflow.timeout (0.5s) before this call "
                                                "finished")
