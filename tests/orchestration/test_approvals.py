"""Approvals (human in the loop): a listed tool pauses the run; approve or reject continues it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from halguru import audit, load_agent, run_sync
from halguru.agents.events import parse_event
from halguru.errors import AgentSpecError, HalguruError
from halguru.models.scripted import ScriptedModel
from halguru.orchestration.approvals import approve, list_pending, reject
from halguru.store import open_store

TOOLS = '''\
from pathlib import Path
from halguru import tool


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    with open(Path(__file__).parent / "sent.log", "a") as f:
        f.write(f"{to}: {body}\\n")
    return f"sent to {to}"


@tool
def lookup(name: str) -> str:
    """Find an address."""
    with open(Path(__file__).parent / "lookups.log", "a") as f:
        f.write(name + "\\n")
    return f"{name}@example.com"
'''


def send(to: str, call_id: str = "c1") -> dict:
    return {"id": call_id, "name": "send_email", "arguments": {"to": to, "body": "hi"}}


@pytest.fixture
def mailer(write_agent) -> Path:
    return write_agent("name: mailer\nmodel: scripted\ntools: [lookup, send_email]\napprovals: [send_email]\n",
                       TOOLS, name="mailer")


def test_approval_must_name_an_agent_tool(write_agent):
    folder = write_agent("name: x\nmodel: scripted\ntools: [calculator]\napprovals: [rm_rf]\n")
    with pytest.raises(AgentSpecError, match=r"agent.yaml:4: approvals.0: 'rm_rf' is not one of"):
        load_agent(folder)


def test_pause_then_approve_with_edited_args(mailer: Path):
    model = ScriptedModel([
        {"tool_calls": [{"id": "l1", "name": "lookup", "arguments": {"name": "ann"}}, send("ann@example.com")]},
        "Sent.",
    ])
    paused = run_sync(mailer, "mail ann", model=model)
    assert paused.status == "paused" and not (mailer / "sent.log").exists()
    assert [e.type for e in paused.events][-2:] == ["approval_requested", "run_finished"]
    store = open_store()
    assert store.get_run(paused.run_id)["status"] == "paused"
    assert store.get_messages(paused.conversation_id) == []  # kept with the pending call until decided
    [pending] = list_pending()
    assert (pending["run_id"], pending["tool"], pending["arguments"]["to"]) == (
        paused.run_id, "send_email", "ann@example.com")

    done = approve(paused.run_id, {"to": "bob@example.com", "body": "hi"}, model=model)
    assert done.ok and done.output == "Sent."
    assert (mailer / "sent.log").read_text() == "bob@example.com: hi\n"
    assert (mailer / "lookups.log").read_text() == "ann\n"  # the completed call was not run again
    approved = next(e for e in done.events if e.type == "approval_approved")
    assert approved.edited and approved.arguments["to"] == "bob@example.com"
    assert done.events[0].metadata == {"resumes": paused.run_id}
    for stored in store.get_events(done.run_id) + store.get_events(paused.run_id):
        parse_event(stored)
    roles = [(m.role, m.tool_call_id) for m in store.get_messages(paused.conversation_id)]
    assert roles == [("user", None), ("assistant", None), ("tool", "l1"), ("tool", "c1"), ("assistant", None)]
    assert list_pending() == []
    with pytest.raises(HalguruError, match=r"is not waiting for approval \(already approved, continued as run"):
        approve(paused.run_id, model=model)


def test_reject_tells_the_model(mailer: Path):
    model = ScriptedModel([{"tool_calls": [send("eve@example.com")]}, "OK, I did not send it."])
    paused = run_sync(mailer, "mail eve", model=model)
    done = reject(paused.run_id, "eve is not a customer", model=model)
    assert done.output == "OK, I did not send it." and not (mailer / "sent.log").exists()
    told = model.requests[-1].messages[-1]
    assert told.role == "tool" and "refused" in told.content and "eve is not a customer" in told.content
    assert [e.type for e in done.events][:2] == ["run_started", "approval_rejected"]


def test_a_conversation_waits_for_its_pending_approval(mailer: Path, cli_error):
    """A message sent while a turn waits for approval came before that turn's end, which its continuation then
    added after it (the model saw "second message", its answer, then "mail eve" and the send). It is refused
    until the approval is decided; then the conversation goes on in order."""
    from halguru.errors import ConversationPaused

    model = ScriptedModel([{"tool_calls": [send("eve@example.com")]}, "Sent.", "Anything else?"])
    paused = run_sync(mailer, "mail eve", model=model)
    with pytest.raises(ConversationPaused, match=f"waits for a human to approve or reject a tool call of run "
                                                 f"{paused.run_id}"):
        run_sync(mailer, "second message", paused.conversation_id, model=model)
    line = cli_error("run", str(mailer), "second message", "-c", paused.conversation_id, "--model", "scripted")
    assert f"run {paused.run_id}" in line and "once it is decided" in line
    assert approve(paused.run_id, model=model).output == "Sent."
    after = run_sync(mailer, "second message", paused.conversation_id, model=model)
    assert after.ok
    contents = [m.content for m in open_store().get_messages(paused.conversation_id) if m.role in ("user",)]
    assert contents == ["mail eve", "second message"]


def test_a_reject_frees_the_conversation_even_when_the_agent_no_longer_loads(mailer: Path):
    """A paused turn holds its conversation; with its folder moved, `runs reject` loaded the agent first and
    failed, so nothing could ever free it."""
    model = ScriptedModel([{"tool_calls": [send("eve@example.com")]}, "Hello again."])
    paused = run_sync(mailer, "mail eve", model=model)
    moved = mailer.with_name("mailer-moved")
    mailer.rename(moved)
    with pytest.raises(HalguruError, match=r"still waiting for approval \(rejecting it frees its conversation\)"):
        approve(paused.run_id, model=model)
    with pytest.raises(HalguruError, match=f"run {paused.run_id} is rejected, but no continuation ran .*no such "
                                           "agent project.*its conversation can go on"):
        reject(paused.run_id, "too late", model=model)
    assert list_pending() == []
    assert run_sync(moved, "hi", paused.conversation_id, model=model).ok


def test_no_message_slips_in_while_a_pausing_run_records_its_call(mailer: Path):
    """The run was stored finished (no longer holding the conversation) before its pending call was saved (the
    approval then held it): a message sent between the two got in ahead of the paused turn."""
    import threading

    from halguru.errors import ConversationBusy

    store = open_store()
    entered, release = threading.Event(), threading.Event()
    save_pending = store.save_pending

    def slow_save_pending(*args, **kwargs):
        entered.set()
        release.wait(10)
        return save_pending(*args, **kwargs)

    store.save_pending = slow_save_pending  # type: ignore[method-assign]
    model = ScriptedModel([{"tool_calls": [send("eve@example.com")]}])
    pausing = threading.Thread(target=run_sync, args=(mailer, "mail eve"), kwargs={"model": model, "store": store})
    pausing.start()
    try:
        assert entered.wait(10)
        [run] = open_store().list_runs(1)
        with pytest.raises(ConversationBusy):
            run_sync(mailer, "quick, another", run["conversation_id"], model=ScriptedModel(["No."]))
    finally:
        release.set()
        pausing.join(10)
    assert [p["run_id"] for p in list_pending()] == [run["id"]]


def test_a_decided_approval_continues_beside_another_still_pending_in_its_conversation(mailer: Path):
    """Two approvals pending in one conversation (made before a conversation waited for its approval): approving
    one used it up, then its continuation was refused for the other, and the call never ran."""
    model = ScriptedModel([{"tool_calls": [send("ann@example.com")]}, {"tool_calls": [send("bob@example.com")]},
                           "Sent to ann."])
    first = run_sync(mailer, "mail ann", model=model)
    second = run_sync(mailer, "mail bob", model=model)
    store = open_store()
    with store._tx() as conn:  # as an older halguru left it
        for table, column in (("runs", "id"), ("approvals", "run_id")):
            conn.execute(f"UPDATE {table} SET conversation_id = ? WHERE {column} = ?",
                         (first.conversation_id, second.run_id))
    done = approve(first.run_id, model=model)
    assert done.ok and done.output == "Sent to ann."
    assert (mailer / "sent.log").read_text() == "ann@example.com: hi\n"
    assert [p["run_id"] for p in list_pending()] == [second.run_id]


def test_a_call_that_could_not_run_goes_back_to_the_model_not_to_a_human(mailer: Path):
    """Arguments the tool's schema refuses were put to a human, and failed once approved; the model gets the
    error at once (and can call again), and only a call that could run waits for approval."""
    model = ScriptedModel([{"tool_calls": [{"id": "c0", "name": "send_email", "arguments": {"to": "ann"}}]},
                           {"tool_calls": [send("ann@example.com")]}])
    paused = run_sync(mailer, "mail ann", model=model)
    assert paused.status == "paused"
    [requested] = [e for e in paused.events if e.type == "approval_requested"]
    assert requested.call_id == "c1"
    [refused] = [e for e in paused.events if e.type == "tool_result"]
    assert refused.is_error and "invalid arguments for send_email: body: Field required" in refused.content


def test_plain_runs_are_unchanged(write_agent):
    result = run_sync(write_agent("name: solo\nmodel: scripted\n"), "hi", record=False)
    assert result.ok and not [e for e in result.events if e.type.startswith("approval")]


def test_cli_pending_approve_reject(mailer: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    script = tmp_path / "script.yaml"
    (mailer / "agent.yaml").write_text(f"name: mailer\nmodel: 'scripted:{script}'\ntools: [lookup, send_email]\n"
                                       "approvals: [send_email]\n")

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=subprocess_env,
                              timeout=60, start_new_session=True)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    script.write_text(json.dumps([{"tool_calls": [send("ann@example.com")]}]))
    first = cli("run", str(mailer), "mail ann", "--json", code=3)  # 3: paused for an approval
    run_id = json.loads(first.stdout.splitlines()[-1])["run_id"]
    assert json.loads(first.stdout.splitlines()[-1])["status"] == "paused"
    assert "Paused: send_email waits for approval: `halguru runs approve run_" in cli(
        "run", str(mailer), "mail ann", code=3).stderr  # a second paused run
    listed = cli("runs", "pending").stdout
    assert run_id in listed and "send_email" in listed
    second = json.loads(cli("runs", "pending", "--json").stdout)[1]["run_id"]

    script.write_text(json.dumps(["Mail sent."]))  # each process starts the script at its top
    out = cli("runs", "approve", run_id, "--edit-args", '{"to": "bob@example.com", "body": "hi"}')
    assert out.stdout.strip() == "Mail sent."
    assert (mailer / "sent.log").read_text() == "bob@example.com: hi\n"
    assert "already approved" in cli("runs", "approve", run_id, code=1).stderr

    script.write_text(json.dumps(["Not sent, then."]))
    out = cli("runs", "reject", second, "--reason", "not today")
    assert out.stdout.strip() == "Not sent, then." and "rejected: send_email" in out.stderr
    assert cli("runs", "pending").stdout.strip() == "No runs are waiting for approval."
    assert (mailer / "sent.log").read_text().count("\n") == 1
    shown = cli("logs", "show", run_id).stdout
    assert "approval requested" in shown


def test_a_relative_model_path_is_found_from_another_folder_and_a_model_that_cannot_load_keeps_it_pending(
        mailer: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    """`--model scripted:script.yaml` typed in one folder, `runs approve` from another: the run stored the path
    as typed, so the approval was used up on a model that could not be found."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()

    def cli(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=subprocess_env, cwd=cwd,
                              timeout=60, start_new_session=True)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    (here / "script.yaml").write_text(json.dumps([{"tool_calls": [send("ann@example.com")]}]))
    first = cli("run", str(mailer), "mail ann", "--json", "--model", "scripted:script.yaml", cwd=here, code=3)
    run_id = json.loads(first.stdout.splitlines()[-1])["run_id"]
    second = json.loads(cli("run", str(mailer), "mail bob", "--json", "--model", "scripted:script.yaml", cwd=here,
                            code=3).stdout.splitlines()[-1])["run_id"]
    (here / "script.yaml").write_text(json.dumps(["Mail sent."]))
    assert cli("runs", "approve", run_id, cwd=elsewhere).stdout.strip() == "Mail sent."
    (here / "script.yaml").unlink()  # the model of the second run cannot load now
    refused = cli("runs", "approve", second, cwd=elsewhere, code=1).stderr
    assert "cannot read script" in refused and f"run {second} is still waiting for approval" in refused
    assert second in cli("runs", "pending", cwd=elsewhere).stdout  # nothing used up
    assert (mailer / "sent.log").read_text() == "ann@example.com: hi\n"


def test_cli_unknown_run_is_one_line(cli_error):
    assert cli_error("runs", "approve", "run_nope") == "Error: no paused run 'run_nope'; see `halguru runs pending`"
    assert "not valid JSON" in cli_error("runs", "approve", "run_nope", "--edit-args", "{bad")


def test_decisions_and_the_approved_call_are_audited(mailer: Path):
    model = ScriptedModel([{"tool_calls": [send("ann@example.com")]}, "Sent.",
                           {"tool_calls": [send("eve@example.com", "c2")]}, "Not sent."])
    first = run_sync(mailer, "mail ann", model=model)
    approve(first.run_id, model=model)
    second = run_sync(mailer, "mail eve", model=model)
    reject(second.run_id, "not her", model=model)
    store = open_store()
    entries = [(e["action"], e["target"], e["details"]) for e in reversed(store.list_audit())]
    assert entries == [
        ("run.approve", first.run_id, {"tool": "send_email", "edited": False, "reason": None}),
        ("tool.call", "send_email", {"run_id": first.run_id, "error": False}),
        ("run.reject", second.run_id, {"tool": "send_email", "edited": False, "reason": "not her"})]
    assert {e["actor"] for e in store.list_audit()} == {audit.cli_actor()} and store.verify_audit()["ok"]


class _ThreadWatch:
    """A store whose every call records the thread it ran on."""

    def __init__(self, store):
        self.store, self.calls = store, []

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            import threading

            self.calls.append((name, threading.get_ident()))
            return attr(*args, **kwargs)
        return call


def test_a_continuation_makes_its_store_calls_off_the_event_loop(mailer: Path):
    """Serve mode decides approvals on its event loop: the decision's store calls, the agent's load and the
    audit entries run on threads, as the runtime's own writes do, so a slow database holds up no other request."""
    import asyncio
    import threading

    from halguru.orchestration.approvals import resume_events

    model = ScriptedModel([{"tool_calls": [send("ann@example.com")]}, "Sent."])
    paused = run_sync(mailer, "mail ann", model=model)
    store = _ThreadWatch(open_store())

    async def decide() -> list[str]:
        return [e.type async for e in resume_events(paused.run_id, model=model, store=store)]

    types = asyncio.run(decide())
    assert types[0] == "run_started" and types[-1] == "run_finished"
    names = {name for name, _ in store.calls}
    assert {"find_approval", "decide_approval", "set_approval_continued_by"} <= names
    # watch_cancel reads nothing: it hands the store's lease thread a callback (the run's task, this loop's)
    in_memory = {"watch_cancel"}
    on_loop = [name for name, thread in store.calls if thread == threading.get_ident() and name not in in_memory]
    assert on_loop == [], on_loop
    assert [e["action"] for e in open_store().list_audit()] == ["tool.call", "run.approve"]
