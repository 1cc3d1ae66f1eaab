"""Workflows: declared agent, tool and condition steps; order, parallel branches, typed outputs, load errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from halguru import load_agent, run_sync
from halguru.errors import AgentSpecError
from halguru.store import open_store


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text, encoding="utf-8")
    return folder


TOOLS = '''
import time
from halguru import tool

@tool
def lookup(order_id: int) -> dict:
    "Look an order up."
    return {"order_id": order_id, "total": 40, "items": ["ticket", "ticket"]}

@tool
def fail(reason: str) -> str:
    "Always fails."
    raise RuntimeError(reason)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A classifier and two writers as sibling agents, each with its own scripted model."""
    (tmp_path / "classify.yaml").write_text('- \'Sure: {"category": "billing", "order_id": 7}\'\n')
    (tmp_path / "slow.yaml").write_text('- {text: "slow part done", token_delay: 0.1}\n')
    write(tmp_path / "agents/classifier", f"name: classifier\nmodel: scripted:{tmp_path / 'classify.yaml'}\n")
    write(tmp_path / "agents/echo", "name: echo\nmodel: scripted\n")
    write(tmp_path / "agents/slow", f"name: slow\nmodel: scripted:{tmp_path / 'slow.yaml'}\n")
    return tmp_path


def flow(project: Path, body: str, tools: str = TOOLS) -> Path:
    folder = write(project / "flow", "name: flow\ntools: [lookup, fail, calculator]\nworkflow:\n" + body)
    (folder / "tools.py").write_text(tools)
    return folder


ROUTER = """\
  steps:
    - id: classify
      agent: ../agents/classifier
      output:
        type: object
        properties:
          category: {enum: [billing, tech]}
          order_id: {type: integer}
        required: [category, order_id]
    - id: is_billing
      condition: steps.classify.output.category == 'billing'
    - id: order
      tool: lookup
      when: "{{ steps.is_billing.output }}"
      args: {order_id: "{{ steps.classify.output.order_id }}"}
    - id: tech
      agent: ../agents/echo
      needs: [is_billing]
      when: not steps.is_billing.output
    - id: reply
      agent: ../agents/echo
      needs: [order, tech]
      input: "Order {{ steps.order.output.order_id }} costs {{ steps.order.output.total }}"
"""


def test_steps_pass_typed_outputs_and_skip_the_other_branch(project: Path):
    result = run_sync(flow(project, ROUTER), "Refund order 7 please")
    assert result.ok, result.error
    assert result.output == "You said: Order 7 costs 40"
    finished = {e.step_id: e for e in result.events if e.type == "step_finished"}
    assert finished["classify"].output == {"category": "billing", "order_id": 7}
    assert finished["is_billing"].output is True
    assert finished["tech"].status == "skipped"
    assert finished["order"].output["items"] == ["ticket", "ticket"]
    # The tool got a real integer from the template, and the classifier was asked for JSON.
    call = next(e for e in result.events if e.type == "tool_call")
    assert call.arguments == {"order_id": 7}
    asked = next(e for e in result.events if e.type == "model_call")
    assert "JSON schema" in asked.messages[-1]["content"]
    # Each finished step is a checkpoint; the run and its answer are stored like any run.
    checkpoints = [e.label for e in result.events if e.type == "checkpoint"]
    assert checkpoints[:2] == ["step classify ok", "step is_billing ok"] and checkpoints[-1] == "step reply ok"
    assert sorted(checkpoints[2:4]) == ["step order ok", "step tech skipped"]  # parallel branches
    stored = open_store().get_messages(result.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"] and stored[1].content == result.output


def test_independent_steps_run_in_parallel(project: Path):
    body = """\
  steps:
    - {id: a, agent: ../agents/slow, needs: []}
    - {id: b, agent: ../agents/slow, needs: []}
    - {id: c, agent: ../agents/slow, needs: []}
  output: "{{ steps.a.output }} / {{ steps.b.output }} / {{ steps.c.output }}"
"""
    # 1.5 s steps: the bound below leaves a slow machine 1.5 s to load the workflow and its agents (0.3 s
    # steps left it 0.6 s)
    (project / "slow.yaml").write_text('- {text: "slow part done", token_delay: 0.5}\n')
    started = time.perf_counter()
    result = run_sync(flow(project, body), "go", record=False)
    elapsed = time.perf_counter() - started
    assert result.output == "slow part done / slow part done / slow part done"
    assert elapsed < 3.0, f"three 1.5 s steps took {elapsed:.2f}s: not parallel"  # sequential would be ≥4.5 s
    starts = [i for i, e in enumerate(result.events) if e.type == "step_started"]
    first_finish = next(i for i, e in enumerate(result.events) if e.type == "step_finished")
    assert len(starts) == 3 and max(starts) < first_finish


def typed_step(project: Path, agent: str):
    """A one-step workflow whose step (``agent``) must answer an object with a category; its run's result."""
    body = (f"  steps:\n    - id: classify\n      agent: ../agents/{agent}\n"
            "      output: {type: object, required: [category]}\n")
    result = run_sync(flow(project, body), "hello")
    assert result.status == "failed"
    return result


def test_output_that_breaks_its_schema_fails_the_step(project: Path):
    result = typed_step(project, "echo")
    assert result.error == ("step classify failed: output does not match its schema: output: "
                            "'category' is a required property")
    failed = next(e for e in result.events if e.type == "step_finished")
    assert failed.status == "failed"


def test_an_answer_that_is_not_json_fails_its_step_showing_the_answer(project: Path):
    """The step failed with `the answer is not JSON` alone: what the model answered was only in `logs show`."""
    prose = "Sure! It is about billing, " * 4
    (project / "prose.yaml").write_text(f"- {prose!r}\n")
    write(project / "agents/prose", f"name: prose\nmodel: scripted:{project / 'prose.yaml'}\n")
    result = typed_step(project, "prose")
    assert result.error == f"step classify failed: the answer is not JSON: {prose[:80]!r}…"


def test_failing_tool_step_fails_the_run_with_the_tool_error(project: Path):
    body = """\
  steps:
    - {id: first, condition: "1 + 1"}
    - {id: broken, tool: fail, args: {reason: "disk full"}}
    - {id: never, condition: "true"}
"""
    result = run_sync(flow(project, body), "x")
    assert result.status == "failed"
    assert result.error == "step broken failed: fail raised RuntimeError: disk full"
    assert "never" not in {e.step_id for e in result.events if e.type == "step_started"}
    assert open_store().get_run(result.run_id)["status"] == "failed"


def test_a_step_running_beside_a_failing_one_finishes_and_is_not_run_again_on_resume(project: Path):
    """A step that failed cut the steps running beside it: a sync tool's thread went on (a card charged, in a
    worker or serve process) with its result thrown away, and the resume (or the job's retry) charged again."""
    from halguru.orchestration.durable import resume

    charges = project / "charges.log"
    tools = TOOLS + f'''
from pathlib import Path

@tool
def charge(amount: int) -> str:
    "Charge a card."
    time.sleep(0.5)
    with Path({str(charges)!r}).open("a") as f:
        f.write(f"charged {{amount}}\\n")
    return "charged"

@tool
def flaky(x: int) -> str:
    "Fails until the service is back."
    if not Path({str(project / "up")!r}).exists():
        raise RuntimeError("service down")
    return "fine"
'''
    body = """\
  steps:
    - {id: charge, tool: charge, needs: [], args: {amount: 5}}
    - {id: check, tool: flaky, needs: [], args: {x: 1}}
    - {id: done, condition: "steps.charge.output ~ ' ' ~ steps.check.output", needs: [charge, check]}
"""
    folder = flow(project, body, tools)
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("calculator]",
                                                                                   "calculator, charge, flaky]"))
    failed = run_sync(folder, "go")
    assert failed.status == "failed" and failed.error == "step check failed: flaky raised RuntimeError: service down"
    finished = {e.step_id: e.status for e in failed.events if e.type == "step_finished"}
    assert finished == {"check": "failed", "charge": "ok"}  # the charge was waited for, not cut
    time.sleep(0.7)  # a cut thread would have charged by now
    assert charges.read_text() == "charged 5\n"
    (project / "up").touch()
    resumed = resume(failed.run_id)
    assert resumed.status == "ok" and resumed.output == "charged fine"
    assert charges.read_text() == "charged 5\n"  # reused from the checkpoint, not charged again


def test_a_step_with_retries_is_tried_again_after_a_failure(project: Path, cli_error) -> None:
    """A flaky tool failed the whole workflow at its first error (only a job's retry or `runs resume` tried it
    again). ``retries:`` tries the step again, ``retry_delay`` seconds later, doubling; each failure is told."""
    tries = project / "tries"
    tools = TOOLS + f'''
from pathlib import Path

@tool
def ship(order: str) -> str:
    "Ship it; the carrier fails twice."
    done = int(Path({str(tries)!r}).read_text()) if Path({str(tries)!r}).exists() else 0
    Path({str(tries)!r}).write_text(str(done + 1))
    if done < 2:
        raise ConnectionError("carrier down")
    return f"shipped {{order}}"
'''
    step = "  steps:\n    - {id: send, tool: ship, args: {order: A-7}, retries: RETRIES, retry_delay: 0.2}\n"
    folder = flow(project, step.replace("RETRIES", "2"), tools)
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("calculator]", "calculator, ship]"))
    started = time.perf_counter()
    result = run_sync(folder, "go")
    assert (result.status, result.output, tries.read_text()) == ("ok", "shipped A-7", "3")
    assert time.perf_counter() - started >= 0.6  # 0.2 s, then 0.4 s
    assert [e.message for e in result.events if e.type == "error"] == [
        f"step send failed (try {n} of 3): ship raised ConnectionError: carrier down; trying again in {d}s"
        for n, d in ((1, "0.2"), (2, "0.4"))]
    tries.unlink()
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("retries: 2", "retries: 1"))
    failed = run_sync(folder, "go")
    assert (failed.status, failed.error, tries.read_text()) == (
        "failed", "step send failed: ship raised ConnectionError: carrier down", "2")
    (folder / "agent.yaml").write_text("name: flow\nworkflow:\n  steps:\n    - {id: c, condition: '1', retries: 2}\n")
    assert cli_error("validate", str(folder)) == (
        f"Error: {folder / 'agent.yaml'}:4: workflow.steps.0.retries: a condition step is not retried (its "
        "expression gives the same value again); retries are for tool and agent steps")


def test_a_failed_or_limited_workflow_says_how_to_resume_it(project: Path, cli) -> None:
    """`halguru run` ended a failed workflow with `Error: ... (run ID)`: that `runs resume` goes on from its
    finished steps was only in the README. A plain agent's failure has no checkpoint, and says nothing more."""
    def last_line(folder: Path) -> tuple[str, str]:
        output = cli("run", str(folder), "go", code=1).output
        return output.strip().splitlines()[-1], open_store().list_runs(1)[0]["id"]

    steps = "  steps:\n    - {id: first, condition: '1'}\n    - {id: broken, tool: fail, args: {reason: x}}\n"
    line, run_id = last_line(flow(project, steps))
    assert line == (f"Error: step broken failed: fail raised RuntimeError: x (run {run_id}; `halguru runs resume "
                    f"{run_id}` goes on from its finished steps)")
    line, run_id = last_line(flow(project, "  timeout: 0.2\n  steps:\n    - {id: a, agent: ../agents/slow}\n"))
    assert line == (f"Error: workflow exceeded workflow.timeout (0.2s) (run {run_id}; raise the limit, then "
                    f"`halguru runs resume {run_id}` goes on from its finished steps)")
    (project / "down.yaml").write_text('- {error: "server down"}\n')
    line, run_id = last_line(write(project / "plain", f"name: plain\nmodel: scripted:{project / 'down.yaml'}\n"))
    assert line == f"Error: server down (run {run_id})"


def test_timeout_ends_the_workflow_as_limited(project: Path):
    body = """\
  timeout: 0.2
  steps:
    - {id: a, agent: ../agents/slow}
"""
    result = run_sync(flow(project, body), "x", record=False)
    assert result.status == "limited"
    assert "workflow.timeout (0.2s)" in result.error


@pytest.mark.parametrize(("body", "line", "message"), [
    ("  steps:\n    - {id: a, condition: 'true'}\n    - {id: b, condition: 'true', needs: [a, c]}\n"
     "    - {id: c, condition: 'true', needs: [b]}\n", 7, "needs.0: cycle b → c → b"),
    # c needs b only by coming after it: the error is at the needs: that was written (b's), not at c's line
    ("  steps:\n    - {id: a, condition: 'true'}\n    - {id: b, condition: 'true', needs: [c]}\n"
     "    - {id: c, condition: 'true'}\n", 6, "1.needs.0: cycle b → c → b"),
    ("  steps:\n    - {id: a, condition: 'true', needs: [zz]}\n", 5, "unknown step 'zz' (steps: a)"),
    ("  steps:\n    - {id: a, agent: ../agents/nobody}\n", 5, "unknown agent '../agents/nobody'"),
    ("  steps:\n    - {id: a, tool: http_get}\n", 5, "'http_get' is not one of this agent's tools"),
    ("  steps:\n    - {id: a, tool: lookup}\n", 5, "lookup needs 'order_id' (args: none)"),
    ("  steps:\n    - id: a\n      tool: lookup\n      args: {id: 7}\n", 7, "lookup needs 'order_id' (args: id)"),
    ("  steps:\n    - {id: a, condition: 'true', tool: lookup}\n", 5, "give exactly one of agent, tool or condition"),
    ("  steps:\n    - {id: a, condition: 'true', needs: []}\n    - {id: b, condition: 'steps.a.output', needs: []}\n",
     6, "refers to steps.a, which may not have finished yet"),
    ("  steps:\n    - {id: a, agent: ../agents/echo, input: '{{ oops'}\n", 5, "template error"),
])
def test_bad_workflows_are_rejected_at_load_with_file_and_line(project: Path, body: str, line: int, message: str):
    folder = flow(project, body)
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    text = str(exc.value)
    assert text.startswith(f"{folder / 'agent.yaml'}:{line}: workflow.steps."), text
    assert message in text


def test_workflow_needs_no_model_and_shows_in_the_schema(project: Path):
    from halguru.agents.spec import agent_json_schema

    agent = load_agent(flow(project, "  steps:\n    - {id: a, condition: '2 * 21'}\n"))
    assert agent.spec.model == "workflow"
    assert run_sync(agent, "x", record=False).output == "42"
    assert "workflow" in agent_json_schema()["properties"]


def charging(log: Path) -> str:
    """tools.py with a ``charge`` tool that writes each amount to ``log`` (a side effect the tests count)."""
    return TOOLS + f'''
@tool
def charge(amount: int) -> str:
    "Charge the card."
    with open({str(log)!r}, "a") as f:
        f.write(f"{{amount}}\\n")
    return f"charged {{amount}}"
'''


def test_tool_step_in_approvals_pauses_until_a_human_decides(project: Path, tmp_path: Path):
    from halguru.orchestration.approvals import approve, list_pending, reject

    log = tmp_path / "charges.log"
    tools = charging(log)
    body = """\
  steps:
    - {id: total, condition: "20 * 2"}
    - {id: pay, tool: charge, args: {amount: "{{ steps.total.output }}"}}
    - {id: note, agent: ../agents/echo, needs: [total]}
    - {id: done, condition: "steps.pay.output ~ ' / ' ~ steps.note.output", needs: [pay, note]}
"""
    folder = write(project / "flow", "name: flow\ntools: [charge]\napprovals: [charge]\nworkflow:\n" + body)
    (folder / "tools.py").write_text(tools)
    paused = run_sync(folder, "bill me")
    assert paused.status == "paused" and paused.error == "charge waits for approval"
    assert not log.exists()
    (pending,) = list_pending()
    assert (pending["tool"], pending["arguments"], pending["call_id"]) == ("charge", {"amount": 40}, "pay")
    # The parallel step finished before the pause; it is not run again after the approval.
    assert {e.step_id for e in paused.events if e.type == "step_finished"} == {"total", "note"}

    done = approve(paused.run_id, {"amount": 35})
    assert done.ok, done.error
    assert done.output == "charged 35 / You said: bill me"
    assert log.read_text() == "35\n"
    assert [e.step_id for e in done.events if e.type == "step_started"] == ["pay", "done"]
    approved = next(e for e in done.events if e.type == "approval_approved")
    assert approved.edited and approved.paused_run_id == paused.run_id
    stored = open_store().get_messages(done.conversation_id)
    assert [(m.role, m.content) for m in stored] == [("user", "bill me"), ("assistant", done.output)]

    again = run_sync(folder, "bill me again")
    refused = reject(again.run_id, "already paid")
    assert refused.status == "failed"
    assert refused.error == "step pay failed: a human refused charge: already paid"
    assert log.read_text() == "35\n"


def test_two_steps_needing_a_human_at_once_ask_one_after_the_other(project: Path, tmp_path: Path):
    """Both said they waited for approval, but only one call was pending (the other asked after it was decided)."""
    from halguru.orchestration.approvals import approve, list_pending

    log = tmp_path / "charges.log"
    (project / "flow").mkdir(parents=True, exist_ok=True)
    (project / "flow" / "tools.py").write_text(charging(log))
    body = """\
  steps:
    - {id: first, tool: charge, args: {amount: 1}}
    - {id: second, tool: charge, args: {amount: 2}}
    - {id: both, condition: "steps.first.output ~ ' + ' ~ steps.second.output", needs: [first, second]}
"""
    folder = write(project / "flow", "name: flow\ntools: [charge]\napprovals: [charge]\nworkflow:\n" + body)
    paused = run_sync(folder, "pay")
    asked = [e.call_id for e in paused.events if e.type == "approval_requested"]
    (pending,) = list_pending()
    assert paused.status == "paused" and asked == [pending["call_id"]]
    then = approve(paused.run_id)
    (other,) = [e.call_id for e in then.events if e.type == "approval_requested"]
    assert then.status == "paused" and {asked[0], other} == {"first", "second"}
    done = approve(then.run_id)
    assert done.ok and done.output == "charged 1 + charged 2", done.error
    assert sorted(log.read_text().split()) == ["1", "2"]


def test_validate_checks_each_step_agents_model(project: Path, cli, cli_error):
    folder = flow(project, ROUTER)
    out = cli("validate", str(folder)).stdout
    assert "OK: flow (workflow of " in out and "model workflow" not in out
    assert "Workflow: classify (agent ../agents/classifier), is_billing (condition), order (tool lookup)" in out
    (project / "agents/echo/agent.yaml").write_text("name: echo\nmodel: nope\n")
    assert cli_error("validate", str(folder)).startswith(
        f"Error: {project / 'agents/echo/agent.yaml'}:2: model: unknown model 'nope'")


def test_logs_show_counts_model_calls_not_the_workflow_steps_it_numbers(project: Path, cli):
    """The tree numbers the workflow's steps (1 to 5); its last line said "2 steps", which counted model calls."""
    result = run_sync(flow(project, ROUTER), "Refund order 7 please")
    lines = cli("logs", "show", result.run_id).stdout.splitlines()
    assert [line.split(" · ")[0][4:] for line in lines if line[4:].startswith("step ")][-1] == "step 5"
    assert lines[-1].startswith("└── run_finished ok") and lines[-1].endswith(" · 2 model calls · 39+11 tok")


@pytest.mark.parametrize(("body", "error"), [
    # A whole-expression argument, a condition (also inside a list) and the workflow's output that read an
    # attribute the step's output does not have: StrictUndefined came back as a value and crashed the run
    # with a serialization traceback, leaving it stored "running".
    ("    - {id: b, tool: calculator, args: {expression: '{{ steps.a.output.value }}'}}\n",
     "step b failed: template error: 'int object' has no attribute 'value'"),
    ("    - {id: b, condition: steps.a.output.value}\n",
     "step b failed: template error: 'int object' has no attribute 'value'"),
    ("    - {id: b, condition: '[1, steps.a.output.value]'}\n",
     "step b failed: template error: 'int object' has no attribute 'value'"),
    ("    - {id: b, condition: steps.a.output > 1}\n  output: '{{ steps.a.output.value }}'\n",
     "workflow output: template error: 'int object' has no attribute 'value'"),
])
def test_a_missing_attribute_at_run_time_fails_the_run_in_one_line(project: Path, body: str, error: str) -> None:
    folder = flow(project, "  steps:\n    - {id: a, tool: calculator, args: {expression: '2+2'}}\n" + body)
    result = run_sync(load_agent(folder), "go")
    assert result.status == "failed" and result.error == error
    stored = open_store().get_run(result.run_id)
    assert stored["status"] == "failed" and stored["error"] == error


def test_an_output_naming_an_unknown_step_is_rejected_at_load(project: Path):
    """It passed `validate`, then failed the run once every step had run."""
    body = "  steps:\n    - {id: result, condition: '2 * 21'}\n  output: 'Total: {{ steps.reslt.output }}'\n"
    folder = flow(project, body)
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    assert str(exc.value) == (f"{folder / 'agent.yaml'}:6: workflow.output: refers to unknown step 'reslt' "
                              "(did you mean 'result'?) (steps: result)")
    good = flow(project, body.replace("reslt", "result"))
    assert run_sync(good, "x", record=False).output == "Total: 42"


def test_a_long_chain_of_needs_written_last_first_loads_and_runs(project: Path):
    """~1,500 steps, each needing the next one down: validate and run ended in RecursionError (past ~1,000)."""
    n = 1200
    lines = [f"    - {{id: s{i}, condition: '{i}', needs: [s{i + 1}]}}" for i in range(n - 1)]
    body = "  output: '{{ steps.s0.output }}'\n  steps:\n" + "\n".join(
        [*lines, f"    - {{id: s{n - 1}, condition: '{n - 1}', needs: []}}"]) + "\n"
    result = run_sync(flow(project, body), "x", record=False)
    assert result.ok and result.output == "0", result.error
    closed = body.replace("needs: []}", "needs: [s0]}")  # the last step needs the first: a cycle through all
    with pytest.raises(AgentSpecError) as exc:
        load_agent(flow(project, closed))
    text = str(exc.value)  # at the needs: written last in the cycle, as for a short one
    where = f"{project / 'flow' / 'agent.yaml'}:{n + 5}: workflow.steps.{n - 1}.needs.0"
    assert text.startswith(f"{where}: cycle s0 → s1 → ")
    assert text.endswith(f" → s{n - 1} → s0; a workflow runs each step once")


@pytest.mark.parametrize(("body", "error"), [
    # An expression that raises something other than a Jinja error (arithmetic, types) left its step's task dead
    # without a word: the workflow waited for it until workflow.timeout and ended `limited`.
    ("    - {id: b, condition: 'steps.a.output / 0', needs: [a]}\n",
     "step b failed: template error: ZeroDivisionError: division by zero"),
    ("    - {id: b, condition: 'true', when: \"steps.a.output + 'x'\", needs: [a]}\n",
     "step b failed: template error: TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
    ("    - {id: b, tool: calculator, args: {expression: '{{ steps.a.output // 0 }}'}, needs: [a]}\n",
     "step b failed: template error: ZeroDivisionError: integer division or modulo by zero"),
    ("    - {id: b, condition: 'true', needs: [a]}\n  output: '{{ steps.a.output / 0 }}'\n",
     "workflow output: template error: ZeroDivisionError: division by zero"),
])
def test_an_expression_that_raises_fails_its_step_at_once(project: Path, body: str, error: str) -> None:
    folder = flow(project, "  timeout: 20\n  steps:\n    - {id: a, condition: '4'}\n" + body)
    started = time.monotonic()
    result = run_sync(load_agent(folder), "go")
    assert (result.status, result.error) == ("failed", error)
    assert time.monotonic() - started < 10
    assert open_store().get_run(result.run_id)["status"] == "failed"


def _condition(expression: str) -> str:
    return f'condition: "{expression}"'


def _template(template: str) -> str:
    return f'tool: calculator, args: {{expression: "{template}"}}'


@pytest.mark.parametrize(("step", "error"), [
    # Jinja's sandbox caps range() only: these allocated gigabytes (or computed for ever) before failing.
    (_condition("'x' * 10**10"), "'*' would make 10,000,000,000 items or characters"),
    (_condition("[1] * 10**9"), "'*' would make 1,000,000,000 items or characters"),
    (_condition("10**(10**10)"), "'**' would make an integer of about 33,219,280,949 bits"),
    (_condition("steps.a.output * ('ab' * 10**6) * 10**3"), "'*' would make 8,000,000,000 items or characters"),
    (_condition("'%0999999999d' % 1"), "the format '%0999999999d' may make a result too large"),
    (_template("{{ 'x' | center(10**9) }}"), "the argument 1,000,000,000 asks for too much"),
    (_template("{{ 'x'.ljust(10**9) }}"), "the argument 1,000,000,000 asks for too much"),
    (_template("{{ ('x' * 10**6) | replace('x', 'y' * 1000) }}"), "replace could make 1,001,001,000 characters"),
    (_template("{{ '{:>1000000000}'.format(1) }}"), "the format width 1,000,000,000 asks for too much"),
    (_template("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
     "'~' would make over 10,000,000 characters"),
    (_template("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"), "the output passes 10,000,000 characters"),
    # One big string held many times over is a small list, until it becomes text (each allocated gigabytes).
    (_template("{% set a = 'x' * 10**7 %}{{ a ~ a }}"), "'~' would make over 10,000,000 characters"),
    (_template("{% set a = 'x' * 10**7 %}{{ [a, a] ~ '' }}"), "'~' would make over 10,000,000 characters"),
    (_template("{{ (['x' * 10**7] * 10**6) | join }}"), "join would make over 10,000,000 characters"),
    (_template("{{ ['a', 'b'] | join('x' * 10**7) }}"), "join would make 20,000,000 characters of separators"),
    (_template("{{ ''.join(['x' * 10**7] * 10**6) }}"), "join would make over 10,000,000 characters"),
    (_template("{{ (['x' * 10**7] * 10**6) | tojson }}"), "the filter tojson would make over 10,000,000 characters"),
    (_template("{{ '%s' % (['x' * 10**7] * 10**6) }}"), "'%' would make over 10,000,000 characters"),
    (_template("{{ '{}'.format(['x' * 10**7] * 10**6) }}"), "format would make over 10,000,000 characters"),
    (_template("{{ ['x' * 10**7] * 10**6 }}"), "the value would make over 10,000,000 characters"),
    (_condition("['x' * 10**7] * 10**6"), "the value would make over 10,000,000 characters"),
    (_template("{{ lipsum(10**5) }}"), "lipsum could make 120,000,000 characters"),
    # new strings made one at a time (map), then kept together
    (_template("{{ (['x' * 10**7] * 10**6) | map('upper') | join }}"),
     "the filter join's items would make over 10,000,000 characters"),
    (_condition("(['x' * 10**7] * 10**6) | map('lower') | list"),
     "the filter list's items would make over 10,000,000 characters"),
    (_template("{{ ''.join((['x' * 10**7] * 10**6) | map('upper')) }}"),
     "the method join's items would make over 10,000,000 characters"),
    # comparing one long string held many times reads it each time, in one call (days of CPU)
    (_template("{% set a = 'x' * 10**7 %}{{ ([a] * 10**7) | sort | length }}"),
     "the filter sort would read over 10,000,000 characters"),
    (_template("{% set a = 'x' * 10**7 %}{% set b = a ~ '' %}{{ ([a] * 10**6) == ([b] * 10**6) }}"),
     "a comparison would read over 10,000,000 characters"),
    # a piece added to each line or word of a text
    (_template("{{ ('a\\n' * 1000) | indent(10**7) }}"), "indent could make 10,010,002,000 characters"),
    (_template("{{ ('a ' * 10**5) | wordwrap(1, wrapstring='x' * 1000) }}"),
     "wordwrap could make 400,202,000 characters"),
    (_template("{{ ('www.a.com ' * 10**5) | urlize(target='x' * 1000) }}"),
     "urlize could make 105,901,049 characters"),
])
def test_a_template_that_would_build_something_huge_fails_its_step_at_once(project: Path, step: str,
                                                                           error: str) -> None:
    import resource

    folder = flow(project, "  timeout: 20\n  steps:\n    - {id: a, condition: '4'}\n"
                  f"    - {{id: b, {step}, needs: [a]}}\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = run_sync(load_agent(folder), "go")
    assert time.monotonic() - started < 10
    assert result.error == (f"step b failed: template error: {error}; a template may build at most 10,000,000 "
                            "items or characters and integers of 100,000 bits")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no allocation happened


def test_a_long_text_given_to_a_template_can_still_be_cut_and_read() -> None:
    """The bounds are on what a template builds: a tool's output of 20M characters can still be truncated,
    searched and measured (each was refused as too large to build)."""
    from halguru.templating import BoundedSandbox, render

    source = ("{{ big | truncate(9) }} {{ big.startswith('x') }} {{ big | length }} {{ big.count('y') }} "
              "{{ big[:3] | upper }} {{ 'ab' in big }}")
    rendered = render(BoundedSandbox().from_string(source), {"big": "x" * 20_000_000})
    assert rendered == "xxxxxx... True 20000000 0 XXX False"


def test_a_models_chat_template_has_the_same_bounds() -> None:
    from jinja2.exceptions import SecurityError

    from halguru.templating import BoundedSandbox

    started = time.monotonic()
    with pytest.raises(SecurityError, match="would make 10,000,000,000 items"):
        BoundedSandbox().from_string("{{ messages[0] * 10**10 }}").render(messages=["x"])
    assert BoundedSandbox().from_string("{{ 'ab' * 3 }} {{ 2**10 }} {{ [1] + [2] }} {{ '%05d' % 7 }}").render() == \
        "ababab 1024 [1, 2] 00007"
    assert time.monotonic() - started < 5


LIMITS = "a template may take at most 1,000,000 steps (a loop iteration is one, a call 10) and run for 2 s"
UNTIMED = 60.0  # MAX_SECONDS while a test checks the step budget: a step not counted still fails in a minute


def steps_only(monkeypatch: pytest.MonkeyPatch) -> str:
    """The render's time limit out of the way, so that the step budget is what stops a template: on a loaded
    machine (CI) 10^6 steps take more than the 2 s, and the time limit came first ("ran too long"). What the
    step budget bounds is the work done, so a test measures it in CPU seconds (``time.process_time``). Returns
    the limits as the error states them."""
    from halguru import templating

    monkeypatch.setattr(templating, "MAX_SECONDS", UNTIMED)
    return LIMITS.replace("run for 2 s", f"run for {UNTIMED:g} s")


def test_a_template_that_loops_without_end_fails_its_step_at_once(project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """10^10 empty iterations held the event loop (all of `halguru serve`) for minutes, past the workflow's timeout."""
    limits = steps_only(monkeypatch)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    folder = flow(project, f"  timeout: 60\n  steps:\n    - {{id: a, {_template(loops)}}}\n")
    agent = load_agent(folder)
    started = time.process_time()
    result = run_sync(agent, "go")
    assert time.process_time() - started < 2
    assert result.error == f"step a failed: template error: the template took too many steps; {limits}"


def test_a_template_that_works_for_days_between_steps_fails_its_step_in_time(project: Path) -> None:
    """map applies a filter to each item with no loop iteration or call (no step) between: lowering a long step
    output 10^6 times ran for an hour on the event loop that renders steps, so the run's timeout never fired and
    the server stood still; the render's MAX_SECONDS is checked at each filter and operator too."""
    import threading

    many = "{% set text = 'x' * 9000000 %}{{ ([text] * 10**6) | map('lower') | map('length') | sum }}"
    folder = flow(project, "  timeout: 20\n  steps:\n    - {id: a, condition: '4'}\n"
                  f"    - {{id: b, {_template(many)}, needs: [a]}}\n")
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(run_sync(load_agent(folder), "go")), daemon=True)
    worker.start()
    worker.join(15)
    assert results, "the run did not end"
    assert results[0].error == f"step b failed: template error: the template ran too long; {LIMITS}"


MANY = "took too many steps"


@pytest.mark.parametrize(("template", "error"), [
    # each way to repeat work: loops over any iterable, macros calling themselves, recursive loops, caller()
    ("{% for i in range(10**5) %}{% for c in 'x' * 1000 %}{% endfor %}{% endfor %}", MANY),
    ("{% for i in range(10**5) %}{% for k, v in {'a': 1}.items() %}{% endfor %}{% endfor %}", MANY),
    ("{% for i in range(10**5) %}{% for b in range(10**5) | batch(2) %}{% endfor %}{% endfor %}", MANY),
    ("{% for i in range(10**5) %}{% block b scoped %}{% for j in range(10**5) %}{% endfor %}{% endblock %}"
     "{% endfor %}", MANY),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", MANY),
    ("{% for x in [1, 2] recursive %}{% if loop.depth < 40 %}{{ loop([1, 2]) }}{% endif %}{% endfor %}", MANY),
    ("{% macro m() %}{% for i in range(10**5) %}{{ caller() }}{% endfor %}{% endmacro %}"
     "{% call m() %}{% call m() %}{% endcall %}{% endcall %}", MANY),
    # few steps, each over 10 million characters: 10^5 of them took a minute
    ("{% set text = 'x' * 10**7 %}{% for i in range(10**5) %}{% if 'y' in text %}{% endif %}{% endfor %}",
     "ran too long"),
    # a Jinja test called per item, no step between: each `in` reads the whole list (39 s before)
    ("{% set big = range(10**5) | list %}{{ big | select('in', big) | list | length }}", "ran too long"),
    ("{% set big = range(10**5) | list %}{{ big | reject('in', big) | first }}", "ran too long"),
])
def test_every_way_to_repeat_work_in_a_template_is_bounded(template: str, error: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from jinja2.exceptions import SecurityError

    from halguru.templating import BoundedSandbox, render

    limits = steps_only(monkeypatch) if error == MANY else LIMITS
    clock = time.process_time if error == MANY else time.monotonic  # work done; or the time limit, kept
    started = clock()
    with pytest.raises(SecurityError) as raised:
        render(BoundedSandbox().from_string(template), {})
    assert clock() - started < 4
    assert str(raised.value) == f"the template {error}; {limits}"


def test_loops_render_as_before_under_the_step_budget() -> None:
    from halguru.templating import BoundedSandbox, render

    template = ("{% for m in items %}{{ m }}{% if loop.last %}/{{ loop.length }}{% endif %}{% else %}none{% endfor %}"
                " {% for k in {'a': 1} %}{{ k }}{% endfor %}{% for c in 'bc' %}{{ c }}{% endfor %} "
                "{% for x in [[1, [2]]] recursive %}[{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}]"
                "{% endfor %} {% for i in range(10) if i is odd %}{{ i }}{% endfor %}")
    assert render(BoundedSandbox().from_string(template), {"items": [1, 2, 3]}) == "123/3 abc [[1][[2]]] 13579"
    assert render(BoundedSandbox().from_string(template), {"items": []}).startswith("none ")
    # 900,900 iterations and 901 calls are within the budget, each render counts its own
    within = BoundedSandbox().from_string("{% for i in range(900) %}{% for j in range(1000) %}{% endfor %}"
                                          "{% endfor %}done")
    assert [render(within, {}), render(within, {})] == ["done", "done"]


def test_an_output_schema_that_is_not_a_json_schema_is_rejected_at_load(project: Path) -> None:
    """`type: objekt` loaded, then the step's check raised outside the step and the run waited for its timeout."""
    folder = flow(project, "  steps:\n    - id: a\n      condition: '4'\n      output: {type: objekt}\n")
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    assert str(exc.value).startswith(f"{folder / 'agent.yaml'}:7: workflow.steps.0.output: not a JSON schema: ")
    assert "objekt" in str(exc.value)


def test_a_bug_in_a_step_fails_the_run_at_once(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that raised something unexpected left the workflow waiting for it until workflow.timeout."""
    from halguru.orchestration import workflow_driver

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(workflow_driver, "_call_tool", broken)
    folder = flow(project, "  timeout: 20\n  steps:\n    - {id: a, tool: calculator, args: {expression: '1'}}\n")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="a bug"):
        run_sync(load_agent(folder), "go")
    assert time.monotonic() - started < 10
    (stored,) = open_store().list_runs(1)
    assert stored["status"] == "failed" and stored["error"] == "internal error: RuntimeError: a bug"


@pytest.mark.parametrize(("body", "line", "message"), [
    ("  steps:\n    - {id: a, condition: \"inptu == 'x'\"}\n", 5,
     "workflow.steps.0.condition: unknown name 'inptu' (did you mean 'input'?)"),
    ("  steps:\n    - {id: a, condition: '1'}\n"
     "    - {id: b, agent: ../agents/echo, input: 'Say {{ step.a.output }}'}\n", 6,
     "workflow.steps.1.input: unknown name 'step' (did you mean 'steps'?)"),
    ("  steps:\n    - {id: a, condition: '1', when: '{{ imput }}'}\n", 5,
     "workflow.steps.0.when: unknown name 'imput' (did you mean 'input'?)"),
])
def test_a_template_reading_an_unknown_name_is_rejected_at_load(project: Path, body: str, line: int,
                                                                message: str) -> None:
    """A typo of input or steps passed validate; the run failed at that step, after the steps before it ran."""
    folder = flow(project, body)
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    expected = f"{folder / 'agent.yaml'}:{line}: {message} (a template reads input and steps.<id>.output)"
    assert str(exc.value) == expected


def test_templates_may_use_loops_sets_and_jinja_globals(project: Path) -> None:
    body = ("  steps:\n    - {id: a, condition: 'range(3) | list | length'}\n"
            "    - {id: b, agent: ../agents/echo, input: '{% for i in range(2) %}{{ loop.index }}{% endfor %}"
            "{% set n = steps.a.output %}{{ n }} {{ input }}'}\n")
    assert run_sync(flow(project, body), "x", record=False).output == "You said: 123 x"


def test_a_power_is_refused_by_the_bits_it_would_have() -> None:
    """'**' counted its base's bits times the exponent: 2**60000 (60,001 bits) and 10**30000 (99,658) were
    refused as 'about 120,000 bits', though a template may build an integer of 100,000 bits."""
    from jinja2.exceptions import SecurityError

    from halguru.templating import BoundedSandbox, render

    bits = BoundedSandbox().from_string("{{ (n ** e).bit_length() }}")
    assert [render(bits, {"n": n, "e": e}) for n, e in [(2, 60000), (10, 30000), (-3, 63000), (2, 99999)]] == \
        ["60001", "99658", "99853", "100000"]
    for n, e, about in [(2, 100000, 100001), (10, 30103, 100001), (2, 2**1100, 2**1101)]:
        with pytest.raises(SecurityError, match=f"'\\*\\*' would make an integer of about {about:,} bits"):
            render(bits, {"n": n, "e": e})


def test_a_tool_steps_large_result_reaches_the_next_step_whole(project: Path) -> None:
    """A tool step's output is data for the steps after it, not a model's reading: cut at a model's 8,000
    characters, a list of 500 orders became a cut string, and the next step's template failed on it (or a
    schema said it was "not of type 'object'")."""
    tools = TOOLS + '''
@tool
def orders(n: int) -> dict:
    "All the orders."
    return {"orders": [{"id": i, "note": "x" * 40} for i in range(n)]}
'''
    body = """\
  steps:
    - id: all
      tool: orders
      args: {n: 500}
      output: {type: object, required: [orders]}
    - {id: count, condition: "steps.all.output.orders | length"}
"""
    folder = flow(project, body, tools)
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("calculator]",
                                                                                   "calculator, orders]"))
    result = run_sync(folder, "go")
    assert result.status == "ok", result.error
    assert result.output == "500"
    finished = {e.step_id: e for e in result.events if e.type == "step_finished"}
    assert len(finished["all"].output["orders"]) == 500
    # Past what a template may read, the step fails in one line rather than going on with a cut text.
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("n: 500", "n: 250000"))
    too_big = run_sync(folder, "go")
    assert (too_big.status, too_big.error) == ("failed", "step all failed: orders returned 16,888,902 characters; a "
                                               "workflow step's output holds at most 10,000,000")


@pytest.mark.parametrize(("body", "line", "message"), [
    ("  steps:\n    - id: a\n      agent: ../agents/echo\n      args: {text: '{{ input }}'}\n", 7,
     "workflow.steps.0.args: an agent step's message is its input:, not args: (args: are a tool step's "
     "arguments)"),
    ("  steps:\n    - id: a\n      tool: calculator\n      args: {expression: '1+1'}\n      input: '2+2'\n", 8,
     "workflow.steps.0.input: a tool step takes args:, not input: (input: is an agent step's message)"),
    ("  steps:\n    - id: a\n      condition: 'true'\n      args: {x: 1}\n", 7,
     "workflow.steps.0.args: a condition step reads no args: (args: are a tool step's arguments)"),
])
def test_a_field_its_step_kind_would_ignore_is_rejected_at_load(project: Path, body: str, line: int,
                                                                message: str) -> None:
    """An agent step given args: (as LangGraph passes state) ran on {{ input }}, the args silently dropped; a
    tool step's input: likewise: validate passed and the run did something else than written."""
    folder = flow(project, body)
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    assert str(exc.value) == f"{folder / 'agent.yaml'}:{line}: {message}"


def test_templates_inside_nested_args_are_rendered_and_checked(project: Path) -> None:
    """Only a top-level argument string was a template: one inside a dict or a list reached the tool as the
    literal text '{{ steps.a.output }}', and a typo there passed validate."""
    tools = TOOLS + '''
@tool
def search(query: dict, tags: list[str]) -> dict:
    "Search."
    return {"query": query, "tags": tags}
'''
    body = """\
  steps:
    - {id: a, condition: "7"}
    - id: b
      tool: search
      args:
        query: {order_id: "{{ steps.a.output }}", text: "order {{ steps.a.output }} of {{ input }}"}
        tags: ["{{ input }}", fixed]
"""
    folder = flow(project, body, tools)
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("calculator]",
                                                                                   "calculator, search]"))
    result = run_sync(folder, "go")
    assert result.status == "ok", result.error
    finished = {e.step_id: e for e in result.events if e.type == "step_finished"}
    assert finished["b"].output == {"query": {"order_id": 7, "text": "order 7 of go"}, "tags": ["go", "fixed"]}
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("tags: [\"{{ input }}\"",
                                                                                   "tags: [\"{{ steps.z.output }}\""))
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    assert str(exc.value).startswith(f"{folder / 'agent.yaml'}:10: workflow.steps.1.args.tags.0: refers to unknown "
                                     "step 'z'")


def test_a_tool_declared_to_return_text_gives_its_step_that_text(project: Path) -> None:
    """Every tool result was decoded as JSON: a tool declared ``-> str`` returning a zip code "07030" kept it,
    but "10001" became the integer 10001, "true" a bool and "null" None (read as a skipped step's output), so
    an ``output: {type: string}`` failed and a string filter broke on some inputs only."""
    tools = TOOLS + '''
@tool
def zip_code(city: str) -> str:
    "A city's zip code."
    return {"NYC": "10001", "Hoboken": "07030", "none": "null"}[city]

@tool
def as_json(n: int) -> str:
    "An object as JSON text, as many tools written for a model return it."
    import json
    return json.dumps({"total": n})
'''
    body = """\
  steps:
    - {id: nyc, tool: zip_code, args: {city: NYC}, output: {type: string}, needs: []}
    - {id: hob, tool: zip_code, args: {city: Hoboken}, needs: []}
    - {id: nil, tool: zip_code, args: {city: none}, needs: []}
    - {id: order, tool: as_json, args: {n: 40}, needs: []}
    - {id: sum, tool: calculator, args: {expression: "1+1"}, needs: []}
  output: "{{ steps.nyc.output | length }} {{ steps.hob.output }} {{ steps.nil.output is string }} \\
    {{ steps.order.output.total }} {{ steps.sum.output + 1 }}"
"""
    folder = flow(project, body, tools)
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("calculator]",
                                                                                   "calculator, zip_code, as_json]"))
    result = run_sync(folder, "go")
    assert result.status == "ok", result.error
    assert result.output == "5 07030 True 40 3"  # JSON objects (from a dict, or as text) are still decoded
    finished = {e.step_id: e.output for e in result.events if e.type == "step_finished"}
    assert finished["nyc"] == "10001" and finished["nil"] == "null"


def test_a_step_or_key_named_like_a_dict_method_is_read_as_written(project: Path) -> None:
    """Jinja looks ``a.b`` up as an attribute first: a step named ``items``, ``update`` or ``get`` read as
    the dict's method ('builtin_function_or_method object' has no attribute 'output'), and so did an API's
    ``{"items": [...]}`` (``steps.a.output.items | length`` failed). A dict's key wins; its methods stay for
    the keys it does not have."""
    body = """\
  steps:
    - {id: items, condition: "{'items': [1, 2, 3], 'n': 1}"}
    - {id: update, condition: "steps.items.output.items | length"}
    - {id: get, condition: "steps.items.output.get('n') + steps.update.output"}
  output: "{{ steps.get.output }} {{ steps.items.output.keys() | list }}"
"""
    result = run_sync(flow(project, body), "go")
    assert (result.status, result.error, result.output) == ("ok", None, '4 ["items", "n"]')


def test_an_approval_edited_to_no_arguments_runs_the_call_with_none(project: Path, tmp_path: Path) -> None:
    """An edit to {} (every argument left to its default) was falsy: the step ran with the arguments the human
    had replaced, while the trace said edited."""
    from halguru.orchestration.approvals import approve

    log = tmp_path / "charges.log"
    (project / "flow").mkdir(parents=True, exist_ok=True)
    (project / "flow" / "tools.py").write_text(TOOLS + f'''
@tool
def charge(amount: int = 1) -> str:
    "Charge the card (1 by default)."
    with open({str(log)!r}, "a") as f:
        f.write(f"{{amount}}\\n")
    return f"charged {{amount}}"
''')
    body = "  steps:\n    - {id: pay, tool: charge, args: {amount: 40}}\n"
    folder = write(project / "flow", "name: flow\ntools: [charge]\napprovals: [charge]\nworkflow:\n" + body)
    paused = run_sync(folder, "pay")
    done = approve(paused.run_id, {})
    assert (done.status, done.output, log.read_text()) == ("ok", "charged 1", "1\n")
    assert next(e for e in done.events if e.type == "tool_call").arguments == {}


@pytest.mark.parametrize(("template", "read", "hint"), [
    ("steps.a.ouput", "a.ouput", " (did you mean 'output'?)"), ("\"steps['a'].outputs\"", "a.outputs",
                                                                " (did you mean 'output'?)"),
    ("\"steps.a['value'] + 1\"", "a.value", ""), ("steps.a.result", "a.result", ""),
])
def test_a_typo_after_a_step_reference_is_rejected_at_load(project: Path, template: str, read: str,
                                                           hint: str) -> None:
    """steps.a.ouput passed validate (the step is known) and failed the run at that step, after the steps
    before it had run: a step has output and status, nothing else."""
    folder = flow(project, f"  steps:\n    - {{id: a, condition: '1'}}\n    - {{id: b, condition: {template}}}\n")
    with pytest.raises(AgentSpecError) as exc:
        load_agent(folder)
    assert str(exc.value) == (f"{folder / 'agent.yaml'}:6: workflow.steps.1.condition: steps.{read}: a step has "
                              f"output and status{hint}")
    good = flow(project, "  steps:\n    - {id: a, condition: '1'}\n"
                         "    - {id: b, condition: \"steps.a.status ~ steps['a']['output'] ~ (steps.a is defined)\"}\n")
    assert run_sync(good, "x", record=False).output == "ok1True"


def test_approving_again_after_the_continuation_failed_says_how_to_go_on(project: Path, tmp_path: Path) -> None:
    """The second approve said only 'already approved, continued as run X': that X failed (or was cancelled) and
    that `runs resume X` goes on from it was left to find out."""
    from halguru.errors import HalguruError
    from halguru.orchestration.approvals import approve
    from halguru.orchestration.durable import resume

    (project / "flow").mkdir(parents=True, exist_ok=True)
    (project / "flow" / "tools.py").write_text(TOOLS)
    body = "  steps:\n    - {id: a, condition: '1'}\n    - {id: boom, tool: fail, args: {reason: down}}\n"
    folder = write(project / "flow", "name: flow\ntools: [fail]\napprovals: [fail]\nworkflow:\n" + body)
    paused = run_sync(folder, "go")
    failed = approve(paused.run_id)
    assert failed.status == "failed"
    with pytest.raises(HalguruError) as exc:
        approve(paused.run_id)
    assert str(exc.value) == (f"run {paused.run_id} is not waiting for approval (already approved, continued as run "
                              f"{failed.run_id}, which ended failed: `halguru runs resume {failed.run_id}` goes on "
                              "from its last checkpoint)")
    with pytest.raises(HalguruError) as again:  # `runs resume` of the paused run says the same
        resume(paused.run_id)
    assert str(again.value) == str(exc.value)


def test_a_failed_workflow_does_not_say_a_step_waits_for_approval(project: Path, tmp_path: Path) -> None:
    """A step asking for approval beside one that failed: the run ended failed with nothing pending, but its
    trace (and `halguru run`) said the call waited for approval. The request is made when the run pauses."""
    from halguru.orchestration.approvals import list_pending

    (project / "flow").mkdir(parents=True, exist_ok=True)
    (project / "flow" / "tools.py").write_text(charging(tmp_path / "charges.log"))
    body = ("  steps:\n    - {id: pay, tool: charge, args: {amount: 1}, needs: []}\n"
            "    - {id: boom, tool: fail, args: {reason: down}, needs: []}\n")
    folder = write(project / "flow", "name: flow\ntools: [charge, fail]\napprovals: [charge]\nworkflow:\n" + body)
    failed = run_sync(folder, "go")
    assert failed.status == "failed" and list_pending() == []
    assert [e.type for e in failed.events if e.type.startswith("approval")] == []
    body = body.replace("tool: fail, args: {reason: down}", "condition: '1'")
    paused = run_sync(write(project / "flow", "name: flow\ntools: [charge]\napprovals: [charge]\nworkflow:\n" + body),
                      "go")
    asked = [e for e in paused.events if e.type == "approval_requested"]
    assert paused.status == "paused" and [(e.call_id, e.arguments) for e in asked] == [("pay", {"amount": 1})]
    assert paused.events[-2] is asked[0]  # the last word before the run ends paused
