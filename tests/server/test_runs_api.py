"""The runs API on a real uvicorn: list runs, approve or reject paused runs, resume failed workflow runs.

Tools write their side effects to files in their agent folder, which the tests read to see what ran (and
that nothing finished ran twice). The scripted model starts its script afresh on each run, so a test rewrites
the script before a continuation to say what the model answers next.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from halguru import run_sync
from halguru.models.scripted import ScriptedModel
from halguru.orchestration.approvals import reject
from tests.server.test_serve_api import new_conversation, sse_events

MAILER_TOOLS = '''\
from pathlib import Path
from halguru import tool


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    with open(Path(__file__).parent / "sent.log", "a") as f:
        f.write(f"{to}: {body}\\n")
    return f"sent to {to}"
'''

FLOW_TOOLS = '''\
from pathlib import Path
from halguru import tool

HERE = Path(__file__).parent


def note(text: str) -> None:
    with open(HERE / "side-effects.log", "a") as f:
        f.write(text + "\\n")


@tool
def charge(amount: int) -> str:
    """Charge the customer's card."""
    note(f"charge {amount}")
    return f"charged {amount} EUR"


@tool
def ship(order: str) -> str:
    """Ship the order (fails while the BROKEN flag file exists)."""
    if (HERE / "BROKEN").exists():
        note(f"ship {order} failed")
        raise RuntimeError("the courier is down")
    note(f"ship {order}")
    return f"shipped {order}"
'''

FLOW = {"name": "flow", "tools": ["charge", "ship"], "workflow": {"steps": [
    {"id": "pay", "tool": "charge", "args": {"amount": 40}},
    {"id": "send", "tool": "ship", "args": {"order": "{{ input }}"}},
    {"id": "done", "condition": "'paid and ' ~ steps.send.output"},
]}}


def send(to: str) -> dict:
    return {"tool_calls": [{"id": "c1", "name": "send_email", "arguments": {"to": to, "body": "hi"}}]}


def write_project(folder: Path, spec: dict, tools: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "tools.py").write_text(tools)
    return folder


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """`mailer` (send_email waits for approval, its script in mailer.yaml) and `flow` (a workflow)."""
    root = tmp_path / "agents"
    script = tmp_path / "mailer.yaml"
    write_project(root / "mailer", {"name": "mailer", "model": f"scripted:{script}", "tools": ["send_email"],
                                    "approvals": ["send_email"]}, MAILER_TOOLS)
    write_project(root / "flow", FLOW, FLOW_TOOLS)
    return root


def script(agents_dir: Path, *replies: str | dict) -> None:
    """What the mailer's model answers in its next run."""
    (agents_dir.parent / "mailer.yaml").write_text(yaml.safe_dump(list(replies)))


def pause(client: httpx.Client, agents_dir: Path, to: str = "ann@example.com") -> tuple[str, str]:
    """A mailer run paused on send_email: (conversation id, run id)."""
    script(agents_dir, send(to))
    conv = new_conversation(client, "mailer")
    paused = client.post(f"/v1/conversations/{conv}/messages", json={"content": f"mail {to}"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    return conv, paused.json()["run_id"]


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    return body["error"]["message"]


def test_paused_run_is_listed_then_approved_with_edited_args(client: httpx.Client, agents_dir: Path) -> None:
    conv, run_id = pause(client, agents_dir)
    busy = client.post(f"/v1/conversations/{conv}/messages", json={"content": "and?"})
    assert busy.json()["error"]["type"] == "conversation_paused" and run_id in error(busy, 409)
    assert "retry-after" not in busy.headers  # no retry helps before a human decides
    streamed = client.post(f"/v1/conversations/{conv}/messages", json={"content": "and?", "stream": True})
    assert streamed.json()["error"]["type"] == "conversation_paused" and run_id in error(streamed, 409)
    [pending] = client.get("/v1/runs/pending").json()["data"]
    assert pending == {**pending, "run_id": run_id, "conversation_id": conv, "agent": "mailer", "tool": "send_email",
                       "arguments": {"to": "ann@example.com", "body": "hi"}, "call_id": "c1",
                       "input": "mail ann@example.com"}
    assert [r["id"] for r in client.get("/v1/runs", params={"status": "paused"}).json()["data"]] == [run_id]

    script(agents_dir, "Sent to bob.")
    done = client.post(f"/v1/runs/{run_id}/approve", json={"edit_args": {"to": "bob@example.com", "body": "yo"}})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["output"], body["conversation_id"], body["agent"]) == (
        "ok", "Sent to bob.", conv, "mailer")
    assert body["tool_calls"] == [{"name": "send_email", "arguments": {"to": "bob@example.com", "body": "yo"},
                                   "id": "c1", "client": False}]
    assert (agents_dir / "mailer" / "sent.log").read_text() == "bob@example.com: yo\n"  # ran once, edited

    events = client.get(f"/v1/runs/{body['run_id']}").json()["events"]
    assert events[0]["metadata"]["resumes"] == run_id
    assert events[0]["metadata"]["request_id"] == done.headers["x-request-id"]  # the continuation's request
    approved = next(e for e in events if e["type"] == "approval_approved")
    assert approved["edited"] and approved["arguments"]["to"] == "bob@example.com"
    assert client.get("/v1/runs/pending").json()["data"] == []
    listed = client.get("/v1/runs").json()["data"]
    assert [(r["id"], r["status"]) for r in listed[:2]] == [(body["run_id"], "ok"), (run_id, "paused")]

    again = error(client.post(f"/v1/runs/{run_id}/approve", json={}), 409)
    assert again == f"run {run_id} is not waiting for approval (already approved, continued as run {body['run_id']})"
    assert "already approved" in error(client.post(f"/v1/runs/{run_id}/reject", json={"reason": "late"}), 409)
    assert (agents_dir / "mailer" / "sent.log").read_text() == "bob@example.com: yo\n"


def test_reject_streams_the_continuation_as_events(client: httpx.Client, agents_dir: Path) -> None:
    conv, run_id = pause(client, agents_dir, "eve@example.com")
    script(agents_dir, "OK, I did not send it.")
    with client.stream("POST", f"/v1/runs/{run_id}/reject",
                       json={"reason": "eve is not a customer", "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    kinds = [k for k, _ in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "approval_rejected" in kinds
    assert events[0][1]["metadata"]["resumes"] == run_id and events[0][1]["conversation_id"] == conv
    assert next(d for k, d in events if k == "approval_rejected")["reason"] == "eve is not a customer"
    assert events[-1][1]["status"] == "ok" and events[-1][1]["output"] == "OK, I did not send it."
    assert not (agents_dir / "mailer" / "sent.log").exists()
    tool = next(m for m in client.get(f"/v1/conversations/{conv}/messages").json()["data"] if m["role"] == "tool")
    assert tool["content"] == "error: a human refused this call: eve is not a customer"
    # The Accept header selects streaming too, and a decided run is refused before any event is sent.
    late = client.post(f"/v1/runs/{run_id}/approve", headers={"Accept": "text/event-stream"})
    assert "already rejected" in error(late, 409)


def test_unknown_foreign_and_undecidable_runs_are_refused(
        client: httpx.Client, agents_dir: Path, serve, api_key) -> None:
    _, run_id = pause(client, agents_dir)
    for bad in ("run_0123456789abcdef", "nonsense", "run_%25"):
        for action in ("approve", "reject", "resume"):
            assert "no run" in error(client.post(f"/v1/runs/{bad}/{action}", json={}), 404)
    assert "'interrupted'" in error(client.get("/v1/runs", params={"status": "bogus"}), 422)  # as /v1/jobs

    # an admin key limited to other agents: the run is visible to its scope, its agent is not; the same 404 as
    # for a run that does not exist (a 403 named the agent)
    scoped = httpx.Client(base_url=client.base_url, timeout=30, headers={
        "Authorization": f"Bearer {api_key('flow-only', agents=['flow'], scope='admin')}"})
    with scoped:
        for action in ("approve", "reject", "resume"):
            assert error(scoped.post(f"/v1/runs/{run_id}/{action}", json={}), 404) == (
                f"no run {run_id!r}; GET /v1/runs lists them")
        assert scoped.get("/v1/runs/pending").json()["data"] == []
        assert scoped.get("/v1/runs").json()["data"] == []
    assert [p["run_id"] for p in client.get("/v1/runs/pending").json()["data"]] == [run_id]  # still pending

    script(agents_dir, "Hello.")
    conv = new_conversation(client, "mailer")
    plain = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["run_id"]
    assert error(client.post(f"/v1/runs/{plain}/approve"), 409) == (
        f"run {plain} is not waiting for approval (it is ok)")
    assert "not a team or workflow run" in error(client.post(f"/v1/runs/{plain}/resume", json={}), 409)
    assert "waits for approval" in error(client.post(f"/v1/runs/{run_id}/resume", json={}), 409)
    assert "reason" in error(client.post(f"/v1/runs/{run_id}/reject", json={"reason": 3}), 422)
    assert "extra" in error(client.post(f"/v1/runs/{run_id}/approve", json={"edit": {}}), 422).lower()


def test_runs_of_agents_this_server_does_not_serve_are_not_found(
        client: httpx.Client, agents_dir: Path, tmp_path: Path) -> None:
    """Same store, same agent name, another folder (e.g. paused from the CLI elsewhere): not ours to run."""
    elsewhere = write_project(tmp_path / "elsewhere" / "mailer", {
        "name": "mailer", "model": "scripted", "tools": ["send_email"], "approvals": ["send_email"]}, MAILER_TOOLS)
    paused = run_sync(elsewhere, "mail ann", model=ScriptedModel([send("ann@example.com")]))
    assert paused.status == "paused"
    assert client.get("/v1/runs/pending").json()["data"] == []
    assert "no run" in error(client.post(f"/v1/runs/{paused.run_id}/approve", json={}), 404)
    assert not (elsewhere / "sent.log").exists()


def test_full_queue_answers_503_and_the_run_stays_pending(client: httpx.Client, agents_dir: Path) -> None:
    _, run_id = pause(client, agents_dir)
    gate = client.server.state.gate  # type: ignore[attr-defined]
    queue = next(q for model, q in gate.queues.items() if model.startswith("scripted:"))
    queue.concurrency, gate.queue_size = 0, 0
    try:
        full = client.post(f"/v1/runs/{run_id}/approve", json={})
        assert full.status_code == 503 and full.json()["error"]["type"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1
        assert client.get("/status").status_code == 200  # shedding load is not a fault of the server
    finally:
        queue.concurrency, gate.queue_size = 8, 16
    assert [p["run_id"] for p in client.get("/v1/runs/pending").json()["data"]] == [run_id]
    script(agents_dir, "Sent.")
    assert client.post(f"/v1/runs/{run_id}/approve").json()["output"] == "Sent."


def test_a_queued_decision_holds_the_run_and_loses_to_one_made_elsewhere(client: httpx.Client,
                                                                         agents_dir: Path) -> None:
    """While an approval waits in the model queue a second request is refused at once; if the run is decided
    elsewhere meanwhile (another worker, the CLI), the waiting stream ends with one conflict error event."""
    _, run_id = pause(client, agents_dir)
    gate = client.server.state.gate  # type: ignore[attr-defined]
    queue = next(q for model, q in gate.queues.items() if model.startswith("scripted:"))
    queue.concurrency = 0
    with client.stream("POST", f"/v1/runs/{run_id}/approve", json={"stream": True}) as first:
        assert first.status_code == 200
        deadline = time.monotonic() + 10
        while not queue.waiting:
            assert time.monotonic() < deadline, "the approval never queued"
            time.sleep(0.02)
        assert "being continued by another request" in error(client.post(f"/v1/runs/{run_id}/approve"), 409)
        script(agents_dir, "Not sent.")
        other = reject(run_id, "decided elsewhere")
        queue.concurrency = 8
        waiter = next(iter(queue.waiting.values()))[0]
        waiter.get_loop().call_soon_threadsafe(queue.wake)
        events = sse_events(first)
    message = f"run {run_id} is not waiting for approval (already rejected, continued as run {other.run_id})"
    assert events == [("error", {"type": "error", "kind": "conflict", "message": message, "fatal": True})]
    assert not (agents_dir / "mailer" / "sent.log").exists()


def test_failed_workflow_run_resumes_without_rerunning_finished_steps(client: httpx.Client,
                                                                      agents_dir: Path) -> None:
    flow = agents_dir / "flow"
    (flow / "BROKEN").touch()
    conv = new_conversation(client, "flow")
    failed = client.post(f"/v1/conversations/{conv}/messages", json={"content": "A-7"}).json()
    assert failed["status"] == "failed" and "the courier is down" in failed["error"]
    [listed] = client.get("/v1/runs", params={"status": "failed"}).json()["data"]
    assert (listed["id"], listed["kind"], listed["checkpoint"], listed["resumed_by"]) == (
        failed["run_id"], "workflow", "step pay ok", None)

    (flow / "BROKEN").unlink()
    resumed = client.post(f"/v1/runs/{failed['run_id']}/resume", json={})
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert (body["status"], body["output"], body["conversation_id"]) == ("ok", "paid and shipped A-7", conv)
    assert (flow / "side-effects.log").read_text().splitlines() == ["charge 40", "ship A-7 failed", "ship A-7"]
    events = client.get(f"/v1/runs/{body['run_id']}").json()["events"]
    marker = next(e for e in events if e["type"] == "resumed")
    assert marker["from_run_id"] == failed["run_id"] and marker["reused"] == ["pay"]

    old = next(r for r in client.get("/v1/runs").json()["data"] if r["id"] == failed["run_id"])
    assert old["resumed_by"] == body["run_id"]
    again = error(client.post(f"/v1/runs/{failed['run_id']}/resume", json={}), 409)
    assert again == f"run {failed['run_id']} was already resumed as run {body['run_id']}"
    assert "finished (ok)" in error(client.post(f"/v1/runs/{body['run_id']}/resume"), 409)


def test_twelve_concurrent_approvals_continue_the_run_once(client: httpx.Client, agents_dir: Path) -> None:
    """Many people (or retries) approving at once: one continuation runs the call, every other one is a 409."""
    _, run_id = pause(client, agents_dir)
    script(agents_dir, "Sent.")
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: client.post(f"/v1/runs/{run_id}/approve", json={}), range(12)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 11, [a.text for a in answers]
    assert next(a for a in answers if a.status_code == 200).json()["output"] == "Sent."
    for refused in (a for a in answers if a.status_code == 409):
        assert f"run {run_id}" in error(refused, 409)
    assert (agents_dir / "mailer" / "sent.log").read_text() == "ann@example.com: hi\n"  # the call ran once
    assert client.get("/v1/runs/pending").json()["data"] == []


def test_an_approval_whose_deciding_process_died_is_continued_once(client: httpx.Client, agents_dir: Path,
                                                                   other_store) -> None:
    """A process that recorded a decision and died before its continuation started once left the run "already
    approved" for good, its call never run; once its claim expires, resume (or the same approval) continues it,
    once, with the recorded decision."""
    _, run_id = pause(client, agents_dir)
    dead = other_store(lease=0.2)  # another process, deciding
    assert dead.decide_approval(run_id, "approved", None, "key:gone")
    refused = error(client.post(f"/v1/runs/{run_id}/resume", json={}), 409)
    assert refused == f"run {run_id} is not waiting for approval (already approved; its continuation is starting)"
    dead.close()  # it died: its claim is renewed no more
    time.sleep(0.5)
    assert "`halguru runs resume " in error(client.post(f"/v1/runs/{run_id}/reject", json={"reason": "x"}), 409)
    script(agents_dir, "Sent.")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: client.post(f"/v1/runs/{run_id}/{('resume', 'approve')[i % 2]}", json={}),
                                range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5, [a.text for a in answers]
    done = next(a for a in answers if a.status_code == 200).json()
    assert done["output"] == "Sent." and done["tool_calls"][0]["name"] == "send_email"
    assert (agents_dir / "mailer" / "sent.log").read_text() == "ann@example.com: hi\n"  # the call ran once
    assert error(client.post(f"/v1/runs/{run_id}/resume", json={}), 409) == (
        f"run {run_id} is not waiting for approval (already approved, continued as run {done['run_id']})")


def test_a_slow_store_read_of_a_decision_holds_up_only_that_request(client: httpx.Client, agents_dir: Path,
                                                                   monkeypatch) -> None:
    """Approve, reject and resume first read the run (on PostgreSQL, a round trip to the database server). Made
    slow here, that read waits on a thread: /healthz (every other request) still answers at once."""
    state = client.server.state  # type: ignore[attr-defined]
    _, approved = pause(client, agents_dir)
    _, rejected = pause(client, agents_dir, "bo@example.com")
    (agents_dir / "flow" / "BROKEN").touch()
    failed = client.post(f"/v1/conversations/{new_conversation(client, 'flow')}/messages",
                         json={"content": "A-7"}).json()
    assert failed["status"] == "failed"
    (agents_dir / "flow" / "BROKEN").unlink()
    slow_ids = {approved, rejected, failed["run_id"]}
    get_run = state.store.get_run

    def slow_get_run(run_id: str):
        if run_id in slow_ids:  # the request's first read of its run: slow, once
            slow_ids.discard(run_id)
            time.sleep(2.0)
        return get_run(run_id)

    monkeypatch.setattr(state.store, "get_run", slow_get_run)
    script(agents_dir, "Done.")
    for run_id, action in ((approved, "approve"), (rejected, "reject"), (failed["run_id"], "resume")):
        answers: list[httpx.Response] = []
        sender = threading.Thread(target=lambda url, out: out.append(client.post(url, json={})),
                                  args=(f"/v1/runs/{run_id}/{action}", answers))
        sender.start()
        time.sleep(0.3)  # the request is reading its run
        started = time.monotonic()
        assert httpx.get(f"{client.base_url}/healthz", timeout=30).status_code == 200
        waited = time.monotonic() - started
        sender.join(30)
        assert waited < 1.5, f"/healthz waited {waited:.1f} s for {action}'s store read"  # held up: 1.7 s
        assert answers and answers[0].status_code == 200, (action, answers[0].text if answers else None)
        assert answers[0].json()["status"] == "ok"
