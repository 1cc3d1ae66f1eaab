"""Durable runs: a team or workflow run killed with SIGKILL resumes from its last checkpoint, and no
finished tool call runs twice (the tools write their side effects to a file the test reads)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

TOOLS = '''
import os
import time
from pathlib import Path
from halguru import tool

LOG = Path(os.environ["SIDE_EFFECTS"])

def note(text: str) -> None:
    with LOG.open("a") as f:
        f.write(text + "\\n")

@tool
def charge(amount: int) -> str:
    "Charge the customer's card."
    note(f"charge {amount}")
    return f"charged {amount} EUR"

@tool
def ship(order: str) -> str:
    "Ship the order."
    note(f"ship {order} started")
    if os.environ.get("HANG"):
        time.sleep(120)
    return f"shipped {order}"
'''


def write(folder: Path, text: str, tools: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text, encoding="utf-8")
    if tools is not None:
        (folder / "tools.py").write_text(tools, encoding="utf-8")
    return folder


def kill_when(proc: subprocess.Popen, log: Path, marker: str) -> None:
    """SIGKILL the run once its side-effect log shows ``marker`` (the run is then inside that tool)."""
    deadline = time.monotonic() + 60
    while marker not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached " + marker
        time.sleep(0.05)
    time.sleep(0.3)  # let it sit inside the tool
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def halguru(halguru_cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=120,
                          start_new_session=True)


def interrupted_run(halguru_cmd: list[str], env: dict[str, str]) -> dict:
    """The killed run, once its lease has passed (a run is alive while its process renews the lease)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        listed = halguru(halguru_cmd, env, "runs", "list", "--status", "interrupted", "--json")
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)
        if runs or time.monotonic() > deadline:
            (run,) = runs
            return run
        time.sleep(0.5)


LEASE = 3  # seconds: runs started by these tests' processes read interrupted this soon after a SIGKILL
# How long a test waits for a lease to pass, seen through CLI processes: each took up to 18 s on a loaded 2-core CI
# machine (load ~15), so a few lease lengths were not enough; how long a lease lasts is read from the store.
PATIENCE = 120


@pytest.fixture
def env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**subprocess_env, "SIDE_EFFECTS": str(tmp_path / "side-effects.log"), "HALGURU_RUN_LEASE": str(LEASE)}


def test_workflow_killed_mid_step_resumes_without_repeating_finished_steps(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str], cli_error):
    flow = write(tmp_path / "order", """\
name: order
tools: [charge, ship]
workflow:
  steps:
    - {id: pay, tool: charge, args: {amount: 40}}
    - {id: send, tool: ship, args: {order: "{{ input }}"}}
    - {id: done, condition: "'paid and ' ~ steps.send.output"}
""", TOOLS)
    log = Path(env["SIDE_EFFECTS"])
    proc = subprocess.Popen([*halguru_cmd, "run", str(flow), "A-7"], env={**env, "HANG": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    kill_when(proc, log, "ship A-7 started")

    run = interrupted_run(halguru_cmd, env)
    assert run["agent"] == "order" and run["checkpoint"] == "step pay ok" and run["kind"] == "workflow"

    resumed = halguru(halguru_cmd, env, "runs", "resume", run["id"][:12])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "paid and shipped A-7"
    assert f"resumed {run['id']} at step pay ok" in resumed.stderr
    # The charge ran once; the shipping step never finished, so it ran again.
    assert log.read_text().splitlines() == ["charge 40", "ship A-7 started", "ship A-7 started"]

    listed = json.loads(halguru(halguru_cmd, env, "runs", "list", "--json").stdout)
    new, old = listed[0], listed[1]
    assert (new["status"], old["status"], old["resumed_by"]) == ("ok", "interrupted", new["id"])
    assert new["run_id"] == new["id"]  # the name `runs pending --json` and the API use too
    shown = halguru(halguru_cmd, env, "logs", "show", new["id"])
    assert f"resumed from {run['id']} at step pay ok · reused pay" in shown.stdout
    assert "step 2 · send · tool ship" in shown.stdout
    assert cli_error("runs", "resume", run["id"]) == f"Error: run {run['id']} was already resumed as run {new['id']}"
    assert cli_error("runs", "resume", new["id"]) == (
        f"Error: run {new['id']} finished (ok); only interrupted, failed, limited or cancelled runs resume")


def test_team_run_killed_in_a_tool_call_resumes_after_the_finished_calls(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str], cli_error):
    first = tmp_path / "first.yaml"
    first.write_text("- tool_calls: [{name: charge, arguments: {amount: 40}}]\n"
                     "- tool_calls: [{name: ship, arguments: {order: A-7}}]\n"
                     "- never reached\n")
    after = tmp_path / "after.yaml"
    after.write_text("- Charged 40 EUR and shipped A-7.\n")
    desk = write(tmp_path / "desk", """\
name: desk
model: scripted
tools: [charge, ship]
team:
  specialists: [../helper]
""", TOOLS)
    write(tmp_path / "helper", "name: helper\nmodel: scripted\n")
    log = Path(env["SIDE_EFFECTS"])
    proc = subprocess.Popen([*halguru_cmd, "run", str(desk), "Charge and ship A-7", "--model", f"scripted:{first}"],
                            env={**env, "HANG": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    kill_when(proc, log, "ship A-7 started")
    run = interrupted_run(halguru_cmd, env)
    assert run["kind"] == "team" and run["checkpoint"] == "step 2: ship requested"

    resumed = halguru(halguru_cmd, env, "runs", "resume", run["id"], "--model", f"scripted:{after}", "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert events[0]["metadata"] == {"resumes": run["id"]}
    assert events[1]["type"] == "resumed" and len(events[1]["reused"]) == 1  # the charge call's result
    assert [e["name"] for e in events if e["type"] == "tool_call"] == ["ship"]
    assert events[-1]["status"] == "ok" and events[-1]["output"] == "Charged 40 EUR and shipped A-7."
    assert log.read_text().splitlines() == ["charge 40", "ship A-7 started", "ship A-7 started"]

    from halguru.store import open_store

    messages = open_store().get_messages(events[0]["conversation_id"])
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert messages[2].content == "charged 40 EUR"


def test_a_resume_killed_before_its_continuation_started_leaves_the_run_resumable(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str], cli_error):
    """A resume SIGKILLed between its claim and its continuation's start (here: while it loads the agent's
    tools) once left the run refused for good ("already resumed as run …"); its claim is a lease now: the run
    reads as being resumed while it lasts, then resumes."""
    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{name: ship, arguments: {order: A-7}}]\n- Shipped A-7.\n")
    tools = TOOLS + 'if os.environ.get("HANG_LOAD"):\n    note("loading")\n    time.sleep(120)\n'
    desk = write(tmp_path / "desk", f"name: desk\nmodel: scripted:{script}\ntools: [ship]\n"
                 "team:\n  specialists: [../helper]\n", tools)
    write(tmp_path / "helper", "name: helper\nmodel: scripted\n")
    log = Path(env["SIDE_EFFECTS"])
    proc = subprocess.Popen([*halguru_cmd, "run", str(desk), "Ship A-7"], env={**env, "HANG": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    kill_when(proc, log, "ship A-7 started")
    run = interrupted_run(halguru_cmd, env)
    proc = subprocess.Popen([*halguru_cmd, "runs", "resume", run["id"]], env={**env, "HANG_LOAD": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    kill_when(proc, log, "loading")  # claimed, its continuation not started
    from halguru.store import open_store

    claim = open_store().get_checkpoint(run["id"])
    assert claim is not None and claim["claim_expires"] is not None
    assert claim["claim_expires"] <= time.time() + LEASE  # the killed claim blocks the run for a lease at most
    refusals = set()
    deadline = time.monotonic() + PATIENCE
    while (resumed := halguru(halguru_cmd, env, "runs", "resume", run["id"])).returncode != 0:
        refusals.add(resumed.stderr.strip())
        assert time.monotonic() < deadline, refusals
        time.sleep(0.3)
    assert refusals <= {f"Error: run {run['id']} is being resumed already"}, refusals
    assert resumed.stdout.strip() == "Shipped A-7."
    assert log.read_text().splitlines() == ["ship A-7 started", "loading", "ship A-7 started"]
    assert cli_error("runs", "resume", run["id"]).startswith(f"Error: run {run['id']} was already resumed as run ")


def test_resume_refuses_what_cannot_be_resumed(tmp_path: Path, halguru_cmd: list[str], env: dict[str, str],
                                                cli_error):
    plain = write(tmp_path / "plain", "name: plain\nmodel: scripted\n")
    done = halguru(halguru_cmd, env, "run", str(plain), "hi", "--json")
    run_id = json.loads(done.stdout.splitlines()[-1])["run_id"]
    from halguru.store import open_store

    assert cli_error("runs", "resume", "run_nope") == (
        f"Error: no run 'run_nope' in {open_store().location}; see `halguru logs` for run ids")
    assert cli_error("runs", "resume", run_id) == (
        f"Error: run {run_id} is not a team or workflow run; only those are checkpointed "
        "(ask again with `halguru run`)")
    flow = write(tmp_path / "slow", "name: slow\ntools: [ship]\nworkflow:\n  steps:\n"
                 "    - {id: send, tool: ship, args: {order: B}}\n", TOOLS)
    proc = subprocess.Popen([*halguru_cmd, "run", str(flow), "x"], env={**env, "HANG": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "ship B started" not in (Path(env["SIDE_EFFECTS"]).read_text()
                                       if Path(env["SIDE_EFFECTS"]).exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        listed = json.loads(halguru(halguru_cmd, env, "runs", "list", "--status", "running", "--json").stdout)
        assert [r["agent"] for r in listed] == ["slow"]
        assert re.fullmatch(rf"Error: run {listed[0]['id']} is still running \(its lease expires in \d+ s\); "
                            "stop it before resuming it", cli_error("runs", "resume", listed[0]["id"]))
    finally:
        proc.kill()
        proc.wait(10)
    assert cli_error("runs", "list", "--status", "bogus") == (
        "Error: unknown status 'bogus'; one of: running, interrupted, paused, failed, limited, cancelled, ok")
    killed = interrupted_run(halguru_cmd, env)  # a model that cannot load is refused before the run is claimed
    assert "unknown model 'nosuch'" in cli_error("runs", "resume", killed["id"], "--model", "nosuch")
    again = json.loads(halguru(halguru_cmd, env, "runs", "list", "--status", "interrupted", "--json").stdout)
    assert [r["id"] for r in again] == [killed["id"]] and "resumed" not in halguru(
        halguru_cmd, env, "runs", "list").stdout


def approve_then_kill_in_the_call(halguru_cmd: list[str], env: dict[str, str], desk: Path) -> dict:
    """Run ``desk`` until it pauses for ``ship``, approve it, and kill the continuation inside the approved call
    (once it has logged that it started); the interrupted continuation as `runs list --json` gives it."""
    paused = halguru(halguru_cmd, env, "run", str(desk), "Charge and ship A-7", "--json")
    assert paused.returncode == 3, paused.stderr
    first = json.loads(paused.stdout.splitlines()[-1])["run_id"]
    proc = subprocess.Popen([*halguru_cmd, "runs", "approve", first], env={**env, "HANG": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    kill_when(proc, Path(env["SIDE_EFFECTS"]), "ship A-7 started")
    return interrupted_run(halguru_cmd, env)


def resume_asks_again_then_approve(halguru_cmd: list[str], env: dict[str, str], run_id: str,
                                   script: Path) -> list[dict]:
    """Resume a continuation killed in the approved ``ship``: it asks for the approval again (whether the call
    ran is unknown), from the paused step, not the user's message; approved, it ends. The resume's events."""
    log = Path(env["SIDE_EFFECTS"])
    resumed = halguru(halguru_cmd, env, "runs", "resume", run_id, "--json")
    assert resumed.returncode == 3, resumed.stderr  # paused again: the approved call never finished
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert not [e for e in events if e["type"] == "model_call"]  # no new start from the user's message
    assert [(e["type"], e.get("name")) for e in events if e["type"].startswith("approval")] == [
        ("approval_requested", "ship")]
    assert log.read_text().splitlines() == ["charge 40", "ship A-7 started"]

    script.write_text("- Charged 40 EUR and shipped A-7.\n")
    done = halguru(halguru_cmd, env, "runs", "approve", events[-1]["run_id"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["output"] == "Charged 40 EUR and shipped A-7."
    assert log.read_text().splitlines() == ["charge 40", "ship A-7 started", "ship A-7 started"]
    return events


def test_team_run_killed_in_an_approved_call_resumes_at_the_pause(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str]):
    """A continuation after an approval that dies in the approved call resumes from the paused step (the call
    asks for its approval again), not from the user's message: the calls before the pause never run again."""
    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{name: charge, arguments: {amount: 40}}]\n"
                      "- tool_calls: [{name: ship, arguments: {order: A-7}}]\n"
                      "- never reached\n")
    desk = write(tmp_path / "desk", f"name: desk\nmodel: scripted:{script}\ntools: [charge, ship]\n"
                 "approvals: [ship]\nteam:\n  specialists: [../helper]\n", TOOLS)
    write(tmp_path / "helper", "name: helper\nmodel: scripted\n")
    run = approve_then_kill_in_the_call(halguru_cmd, env, desk)
    assert run["checkpoint"] == "step 2: ship requested"

    resume_asks_again_then_approve(halguru_cmd, env, run["id"], script)


def test_a_plain_agents_continuation_killed_in_the_approved_call_resumes_at_the_pause(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str]):
    """A plain agent's continuation killed inside the approved call lost the call and the turn: `runs resume`
    said it was "not a team or workflow run" and the conversation never got the user's message. It is
    checkpointed as a team's run is: the resume asks for the approval again (whether the call ran is unknown)
    and the turn reaches the conversation once decided."""
    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{name: charge, arguments: {amount: 40}}, {name: ship, arguments: {order: A-7}}]\n"
                      "- never reached\n")
    desk = write(tmp_path / "desk", f"name: desk\nmodel: scripted:{script}\ntools: [charge, ship]\n"
                 "approvals: [ship]\n", TOOLS)
    run = approve_then_kill_in_the_call(halguru_cmd, env, desk)
    assert (run["kind"], run["checkpoint"]) == ("agent", "ship requested")

    events = resume_asks_again_then_approve(halguru_cmd, env, run["id"], script)
    assert events[1]["type"] == "resumed" and events[1]["reused"] == [events[1]["reused"][0]]  # the charge
    from halguru.store import open_store

    messages = open_store().get_messages(events[0]["conversation_id"])
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[0].content == "Charge and ship A-7"


DIE_AFTER_DECIDING = """
import os, signal, sys
from halguru.store.sql_resume import ResumeMixin
ResumeMixin.get_checkpoint = lambda self, run_id: os.kill(os.getpid(), signal.SIGKILL)  # read after the decision
sys.argv = ["halguru", *sys.argv[1:]]
from halguru.cli.app import main
main()
"""


@pytest.mark.parametrize("how", ["resume", "approve"])
def test_an_approval_killed_before_its_continuation_started_is_continued_as_decided(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str], cli_error, how: str):
    """`runs approve` SIGKILLed after it recorded the decision, before its continuation started: approve and
    reject said "already approved", resume "waits for approval", and the approved call never ran. Once the
    dead process's claim expires, `runs resume` (or the same approval again) continues it, once."""
    import sys

    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{name: ship, arguments: {order: A-7}}]\n")
    desk = write(tmp_path / "desk", f"name: desk\nmodel: scripted:{script}\ntools: [ship]\napprovals: [ship]\n",
                 TOOLS)
    log = Path(env["SIDE_EFFECTS"])
    paused = halguru(halguru_cmd, env, "run", str(desk), "Ship A-7", "--json")
    assert paused.returncode == 3, paused.stderr
    first = json.loads(paused.stdout.splitlines()[-1])["run_id"]
    script.write_text("- Shipped A-7.\n")
    died = subprocess.run([sys.executable, "-c", DIE_AFTER_DECIDING, "runs", "approve", first, "--edit-args",
                           '{"order": "A-8"}'], capture_output=True, text=True, env=env, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert not log.exists()
    # The decision stands: refused as already approved, or (when this CLI call outlasts the dead claim's lease,
    # as on a loaded machine) as approved and never continued.
    refused = cli_error("runs", "reject", first, "--reason", "no")
    assert refused.startswith((f"Error: run {first} is not waiting for approval (already approved",
                               f"Error: run {first} was approved, but its continuation never started")), refused

    deadline = time.monotonic() + PATIENCE
    while "never continued" not in (listed := halguru(halguru_cmd, env, "runs", "list").stdout):
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    assert f"approved, never continued (`halguru runs resume {first}`)" in listed
    args = ["resume", first] if how == "resume" else ["approve", first, "--edit-args", '{"order": "A-8"}']
    refusals = set()
    deadline = time.monotonic() + PATIENCE
    while (done := halguru(halguru_cmd, env, "runs", *args, "--json")).returncode != 0:
        refusals.add(done.stderr.strip())
        assert time.monotonic() < deadline, refusals
        time.sleep(0.3)
    assert refusals <= {f"Error: run {first} is not waiting for approval (already approved; its continuation is "
                        "starting)"}, refusals
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["metadata"] == {"resumes": first}
    assert [(e["type"], e.get("arguments")) for e in events if e["type"] == "approval_approved"] == [
        ("approval_approved", {"order": "A-8"})]  # the recorded decision: the edited arguments
    assert events[-1]["status"] == "ok" and events[-1]["output"] == "Shipped A-7."
    assert log.read_text().splitlines() == ["ship A-8 started"]  # ran once
    line = f"Error: run {first} is not waiting for approval (already approved, continued as run {events[0]['run_id']})"
    assert cli_error("runs", "resume", first) == line
    assert cli_error("runs", "approve", first) == line
    assert log.read_text().splitlines() == ["ship A-8 started"]


def test_a_stalled_approval_asked_for_another_decision_says_how_to_continue_it(
        tmp_path: Path, halguru_cmd: list[str], env: dict[str, str], cli_error, other_store):
    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{name: ship, arguments: {order: A-7}}]\n")
    desk = write(tmp_path / "desk", f"name: desk\nmodel: scripted:{script}\ntools: [ship]\napprovals: [ship]\n",
                 TOOLS)
    first = json.loads(halguru(halguru_cmd, env, "run", str(desk), "Ship A-7", "--json").stdout.splitlines()[-1])
    store = other_store(lease=0.1)  # another process's view
    assert store.decide_approval(first["run_id"], "rejected", "not today")
    store.close()  # its process stops renewing the claim
    time.sleep(0.3)
    rid = first["run_id"]
    assert cli_error("runs", "approve", rid) == (
        f"Error: run {rid} was rejected, but its continuation never started (the process that decided it "
        f"stopped); `halguru runs resume {rid}` continues it as decided")
    script.write_text("- Not shipped, then.\n")
    done = halguru(halguru_cmd, env, "runs", "reject", rid, "--reason", "not today")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Not shipped, then." and not Path(env["SIDE_EFFECTS"]).exists()


def test_a_resume_makes_its_store_calls_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Serve mode resumes runs on its event loop: the claim, the audit entry, the agent's load and the
    bookkeeping of the continuation run on threads, as the runtime's own writes do."""
    import asyncio
    import threading

    from halguru import run_sync
    from halguru.orchestration.durable import resume_events
    from halguru.store import open_store
    from tests.orchestration.test_approvals import _ThreadWatch

    monkeypatch.setenv("SIDE_EFFECTS", str(tmp_path / "side-effects.log"))
    flaky = TOOLS.replace('    note(f"ship {order} started")\n',
                          '    note(f"ship {order} started")\n'
                          '    if (Path(__file__).parent / "fail").exists():\n'
                          '        raise RuntimeError("the carrier is down")\n')
    flow = write(tmp_path / "order", "name: order\ntools: [charge, ship]\nworkflow:\n  steps:\n"
                 "    - {id: pay, tool: charge, args: {amount: 40}}\n"
                 "    - {id: send, tool: ship, args: {order: '{{ input }}'}}\n", flaky)
    (flow / "fail").touch()
    failed = run_sync(flow, "A-7")
    assert failed.status == "failed"
    (flow / "fail").unlink()
    store = _ThreadWatch(open_store())

    async def resume() -> list[str]:
        return [e.type async for e in resume_events(failed.run_id, store=store)]

    types = asyncio.run(resume())
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert {"claim_checkpoint", "set_checkpoint_resumed_by"} <= {name for name, _ in store.calls}
    in_memory = {"watch_cancel"}  # reads nothing: hands the store's lease thread a callback
    on_loop = [name for name, thread in store.calls if thread == threading.get_ident() and name not in in_memory]
    assert on_loop == [], on_loop
    assert Path(tmp_path / "side-effects.log").read_text().splitlines() == [
        "charge 40", "ship A-7 started", "ship A-7 started"]  # the charge was not made again


def test_a_resumed_run_leaves_its_turn_once_in_the_conversation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A failed (or cancelled, or shut-down) run keeps its turn so far in the conversation; its resume, which goes
    on from the checkpoint holding that turn, stored it again: the question twice, and the next turn's model read
    it twice."""
    from halguru import run_sync
    from halguru.orchestration.durable import resume
    from halguru.store import open_store

    flow = write(tmp_path / "flow", """\
name: flow
tools: [flaky]
workflow:
  steps:
    - {id: a, condition: "'first'"}
    - {id: b, tool: flaky, args: {x: 1}}
""", "import os\nfrom halguru import tool\n\n@tool\ndef flaky(x: int) -> str:\n    \"Fails until fixed.\"\n"
         "    if not os.environ.get('FIXED'):\n        raise RuntimeError('broken')\n    return 'fixed'\n")
    failed = run_sync(flow, "hello")
    assert failed.status == "failed"
    monkeypatch.setenv("FIXED", "1")
    done = resume(failed.run_id)
    assert done.ok and done.output == "fixed", done.error
    messages = open_store().get_messages(done.conversation_id)
    assert [(m.role, m.content) for m in messages] == [("user", "hello"), ("assistant", "fixed")]


def test_a_resumed_run_counts_only_its_own_model_calls_and_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A resumed workflow reused its first step's model call, yet stored that call's tokens and step as its own
    (`halguru logs`: `91+15`, `2 model calls` beside a tree with one model call): the failed run and its
    resume both counted them, so what the runs cost added up to more than the model was asked."""
    from halguru import run_sync
    from halguru.orchestration.durable import resume
    from halguru.store import open_store

    write(tmp_path / "flow" / "agents" / "talker", "name: talker\nmodel: scripted\n")
    flow = write(tmp_path / "flow", """\
name: flow
tools: [flaky]
workflow:
  steps:
    - {id: a, agent: agents/talker}
    - {id: b, tool: flaky, args: {x: 1}}
    - {id: c, agent: agents/talker, input: "{{ steps.b.output }} and more"}
""", "import os\nfrom halguru import tool\n\n@tool\ndef flaky(x: int) -> str:\n    \"Fails until fixed.\"\n"
         "    if not os.environ.get('FIXED'):\n        raise RuntimeError('broken')\n    return 'fixed'\n")
    failed = run_sync(flow, "hello there")
    assert failed.status == "failed"
    monkeypatch.setenv("FIXED", "1")
    done = resume(failed.run_id)
    assert done.ok, done.error
    store = open_store()
    total = {"steps": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for run_id in (failed.run_id, done.run_id):
        run, events = store.get_run(run_id), store.get_events(run_id)
        results = [e for e in events if e["type"] == "model_result"]
        own = {"steps": len(results), "prompt_tokens": sum(e["prompt_tokens"] for e in results),
               "completion_tokens": sum(e["completion_tokens"] for e in results)}
        assert len(results) == 1 and own["prompt_tokens"] > 0
        assert {k: run[k] for k in own} == own  # the run's row: its own calls
        [finished] = [e for e in events if e["type"] == "run_finished"]
        assert {k: finished[k] for k in own} == own
        total = {k: total[k] + own[k] for k in total}
    assert sum(store.get_run(r)["steps"] for r in (failed.run_id, done.run_id)) == total["steps"] == 2


def test_a_team_run_limited_after_a_failed_call_does_not_list_it_as_done(tmp_path: Path, cli, write_agent):
    """`runs list` said `at step 2: save_note done` for a call that never ran (an unknown tool, a tool that
    raised): read as the note being saved. A call whose result is an error is listed as failed."""
    script = tmp_path / "s.yaml"
    script.write_text("- tool_calls: [{name: ship, arguments: {order: A-7}}]\n"
                      "- tool_calls: [{name: save_note, arguments: {text: hi}}]\n- never reached\n")
    desk = write_agent(f"name: desk\nmodel: scripted:{script}\ntools: [ship]\nlimits: {{max_steps: 2}}\n"
                       "team:\n  specialists: [../helper]\n", TOOLS.replace('os.environ["SIDE_EFFECTS"]',
                                                                        repr(str(tmp_path / "log"))), name="desk")
    write_agent("name: helper\nmodel: scripted\n", name="helper")
    cli("run", str(desk), "Ship A-7", code=1)
    [run] = json.loads(cli("runs", "list", "--json").stdout)
    assert (run["status"], run["checkpoint"]) == ("limited", "step 2: save_note failed")
    assert "at step 2: save_note failed" in cli("runs", "list").stdout
