"""Conversation management over HTTP: operators search everyone's conversations (text, agent, date, owner,
status), read one, export it (JSON and the test-case YAML), delete it, and take one over: the user's message
is stored but no run starts, the operator's answer reaches the user, and handed back the agent answers again.
Each privileged action is in the audit log; roles without the permissions get 403."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from halguru_server import ServerSettings, create_app
from halguru_server.identity import accounts
from halguru_server.keys import create_key


@pytest.fixture
def app(agents_dir: Path):
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app):
        yield app


def _headers(store, email: str, role: str) -> dict[str, str]:
    user = accounts.create_user(store, email, role=role)
    return {"Authorization": f"Bearer {create_key(store, email, scope='admin', user_id=user['id'])[1]}",
            "X-Owner": f"user:{user['id']}"}


def _chat(client: TestClient, headers: dict[str, str], agent: str, *texts: str) -> str:
    conversation = client.post("/v1/conversations", headers=headers, json={"agent": agent}).json()["id"]
    for text in texts:
        assert client.post(f"/v1/conversations/{conversation}/messages", headers=headers,
                           json={"content": text}).json()["status"] == "ok"
    return conversation


def test_operators_search_read_export_and_delete_conversations(app) -> None:
    store = app.state.halguru.store
    client = TestClient(app)
    operator = _headers(store, "op@example.com", "operator")
    ann, bob = _headers(store, "ann@example.com", "user"), _headers(store, "bob@example.com", "user")
    parcel = _chat(client, ann, "echo", "Where is my parcel?", "It is late")
    other = _chat(client, bob, "private", "A parcel for the sales team")
    quiet = _chat(client, bob, "echo", "Hello")

    def ids(**query: str) -> set[str]:
        response = client.get("/v1/admin/conversations", headers=operator, params=query)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["data"]}

    assert ids(q="PARCEL") == {parcel, other}
    assert ids(q="parcel", agent="echo") == {parcel}
    assert ids(owner=ann["X-Owner"]) == {parcel} == ids(owner="Ann@Example.com")
    assert ids(owner="nobody@example.com") == set()
    assert ids(status="ok") == {parcel, other, quiet}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert ids(since=today, until=today) == {parcel, other, quiet}
    assert ids(until=str(time.time() - 86400)) == set()
    found = client.get("/v1/admin/conversations", headers=operator, params={"q": "late"}).json()["data"]
    assert [(r["match"], r["messages"], r["last_status"], r["channel"]) for r in found] == \
        [("It is late", 4, "ok", None)]
    page = client.get("/v1/admin/conversations", headers=operator, params={"limit": 2}).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    assert client.get("/v1/admin/conversations", headers=operator, params={"since": "yesterday"}).status_code == 422

    read = client.get(f"/v1/admin/conversations/{parcel}", headers=operator).json()
    assert [m["content"] for m in read["messages"] if m["role"] == "user"] == ["Where is my parcel?", "It is late"]
    assert len(read["runs"]) == 2 and read["conversation"]["owner"] == ann["X-Owner"]
    exported = client.get(f"/v1/admin/conversations/{parcel}/export", headers=operator)
    assert exported.headers["content-type"].startswith("application/json")
    body = exported.json()
    assert len(body["runs"]) == 2 and body["runs"][0]["events"][0]["type"] == "run_started"
    as_yaml = client.get(f"/v1/admin/conversations/{parcel}/export", headers=operator, params={"format": "yaml"})
    case = yaml.safe_load(as_yaml.text)["tests"][0]
    assert [t["user"] for t in case["turns"]] == ["Where is my parcel?", "It is late"]

    assert client.delete(f"/v1/conversations/{quiet}", headers=operator).status_code == 204
    assert client.get(f"/v1/admin/conversations/{quiet}", headers=operator).status_code == 404
    actions = [(e["action"], e["target"]) for e in store.list_audit(10)]
    assert ("conversation.delete", quiet) in actions and ("conversation.export", parcel) in actions


def test_take_over_holds_the_users_messages_until_handed_back(app) -> None:
    store = app.state.halguru.store
    client = TestClient(app)
    operator = _headers(store, "op@example.com", "operator")
    ann = _headers(store, "ann@example.com", "user")
    conversation = _chat(client, ann, "echo", "Hi")
    url = f"/v1/conversations/{conversation}"
    assert client.post(f"{url}/reply", headers=operator, json={"text": "early"}).status_code == 409
    taken = client.post(f"{url}/takeover", headers=operator).json()
    assert taken["taken_over_by"] == operator["X-Owner"] and taken["taken_over_since"] > 0
    blank = client.post(f"{url}/reply", headers=operator, json={"text": "  \n"})
    assert blank.status_code == 422 and "only whitespace" in blank.json()["error"]["message"]

    held = client.post(f"{url}/messages", headers=ann, json={"content": "I need a person"})
    assert held.status_code == 202 and held.json()["status"] == "taken_over"
    streamed = client.post(f"{url}/messages", headers=ann, json={"content": "still there?", "stream": True})
    assert streamed.status_code == 202
    assert len(store.list_runs(10, conversation_id=conversation)) == 1  # no run for either
    assert client.post(f"{url}/reply", headers=operator, json={"text": "Yes, Carol here."}).json()["seq"] == 4
    seen = client.get(f"{url}/messages", headers=ann).json()["data"]
    assert [(m["role"], m["content"]) for m in seen[2:]] == [
        ("user", "I need a person"), ("user", "still there?"), ("assistant", "Yes, Carol here.")]
    assert [m["human"] for m in seen] == [False, False, False, False, True]  # the user sees a person answered
    assert "author" not in seen[-1]  # but not which operator
    authors = [m["author"] for m in client.get(f"/v1/admin/conversations/{conversation}",
                                               headers=operator).json()["messages"]]
    assert authors == [None, None, None, None, operator["X-Owner"]]

    assert client.post(f"{url}/handback", headers=operator).json()["taken_over_by"] is None
    assert client.post(f"{url}/handback", headers=operator).status_code == 409
    again = client.post(f"{url}/messages", headers=ann, json={"content": "bye"})
    assert again.status_code == 200 and again.json()["status"] == "ok"
    assert len(store.list_runs(10, conversation_id=conversation)) == 2
    actions = [e["action"] for e in reversed(store.list_audit(10, action="conversation."))]
    assert actions == ["conversation.takeover", "conversation.reply", "conversation.handback"]


def test_the_operators_search_pages_past_a_conversation_bumped_meanwhile(app) -> None:
    client = TestClient(app)
    operator = _headers(app.state.halguru.store, "op@example.com", "operator")
    created = [_chat(client, operator, "echo") for _ in range(4)][::-1]  # newest first, as listed
    first = client.get("/v1/admin/conversations", headers=operator, params={"limit": 2}).json()
    assert [r["id"] for r in first["data"]] == created[:2]
    _chat(client, operator, "echo", "a message into the oldest, which moves to the top")
    client.post(f"/v1/conversations/{created[3]}/messages", headers=operator, json={"content": "bump"})
    second = client.get("/v1/admin/conversations", headers=operator,
                        params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in second["data"]] == created[2:3] and second["next_cursor"] is None
    page = client.get("/admin/conversations", headers=operator, params={"cursor": first["next_cursor"]})
    assert page.status_code == 200 and created[2] in page.text and created[1] not in page.text


def test_roles_without_the_permissions_are_refused(app) -> None:
    store = app.state.halguru.store
    client = TestClient(app)
    ann = _headers(store, "ann@example.com", "user")
    dev = _headers(store, "dev@example.com", "developer")
    mine = _chat(client, ann, "echo", "Hi")
    for headers in (ann, dev):
        assert client.get("/v1/admin/conversations", headers=headers).status_code == 403
        assert client.get(f"/v1/admin/conversations/{mine}/export", headers=headers).status_code == 403
        for action in ("takeover", "handback"):
            assert client.post(f"/v1/conversations/{mine}/{action}", headers=headers).status_code == 403
        assert client.post(f"/v1/conversations/{mine}/reply", headers=headers, json={"text": "x"}).status_code == 403
    assert client.get("/v1/admin/conversations").status_code == 401
    admin = _headers(store, "root@example.com", "admin")
    assert client.post("/v1/conversations/conv_nosuch/takeover", headers=admin).status_code == 404
    client.post(f"/v1/conversations/{mine}/takeover", headers=admin)
    operator = _headers(store, "op@example.com", "operator")
    assert client.post(f"/v1/conversations/{mine}/takeover", headers=operator).status_code == 409  # admin's


def test_console_pages_for_an_operator_and_a_failed_workflow_resumed_from_the_approvals_page(tmp_path: Path) -> None:
    from halguru_server.identity import websessions

    from tests.server.test_runs_api import FLOW, FLOW_TOOLS, write_project

    flow = write_project(tmp_path / "agents" / "flow", FLOW, FLOW_TOOLS)
    app = create_app(ServerSettings(agents=[flow.parent], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url="http://testserver") as client:
        state = app.state.halguru
        operator = accounts.create_user(state.store, "op@example.com", role="operator")
        secret, session = websessions.issue(state.store, operator["id"], state.settings.auth)
        client.cookies.set(websessions.COOKIE, secret)
        post = {"Origin": "http://testserver"}
        (flow / "BROKEN").touch()
        conv = client.post("/v1/conversations", headers={**post, "X-CSRF-Token": session["csrf"]},
                           json={"agent": "flow", "title": "order A-7"}).json()["id"]
        failed = client.post(f"/v1/conversations/{conv}/messages", headers={**post, "X-CSRF-Token": session["csrf"]},
                             json={"content": "A-7"}).json()
        assert failed["status"] == "failed"
        listing = client.get("/admin/conversations", params={"q": "a-7", "status": "failed"})
        assert listing.status_code == 200 and f'href="/admin/conversations/{conv}"' in listing.text
        page = client.get(f"/admin/conversations/{conv}")
        assert page.status_code == 200 and "step pay ok" in page.text  # the trace tree shows the checkpoint
        assert "Content-Security-Policy" in page.headers
        approvals = client.get("/admin/approvals")
        assert f'data-run="{failed["run_id"]}"' in approvals.text
        (flow / "BROKEN").unlink()
        done = client.post(f"/admin/approvals/{failed['run_id']}/resume", headers=post,
                           data={"csrf_token": session["csrf"]}, follow_redirects=True)
        assert "resumed: continued as run_" in done.text and "which ended ok" in done.text
        assert [e["action"] for e in state.store.list_audit(5, action="run.")] == ["run.resume"]
        gone = client.post(f"/admin/conversations/{conv}/delete", headers=post, data={"csrf_token": session["csrf"]},
                           follow_redirects=True)
        assert f"Deleted conversation {conv}." in gone.text and state.store.get_conversation(conv) is None
        no_token = client.post(f"/admin/conversations/{conv}/takeover", headers=post, data={})
        assert no_token.status_code == 403  # CSRF
        developer = accounts.create_user(state.store, "dev@example.com", role="developer")
        client.cookies.set(websessions.COOKIE, websessions.issue(state.store, developer["id"], state.settings.auth)[0])
        refused = client.get("/admin/conversations", headers={"Accept": "text/html"})
        assert refused.status_code == 403 and "<html" in refused.text.lower()


def test_the_console_names_the_job_that_started_a_run(app) -> None:
    """A job's runs showed as any other in a conversation and among the runs to resume: an operator could not tell
    a worker's run (which the job's retry continues) from a user's."""
    from halguru_server.identity import websessions

    store = app.state.halguru.store
    job, _ = store.enqueue_job("run", "echo", {"input": "bill me"})
    for run_id, job_id, status in (("run_job01", job["id"], "failed"), ("run_user1", None, "ok")):
        store.start_run(run_id, "conv_jobs", "echo", "scripted", "bill me", existing=run_id != "run_job01",
                        job_id=job_id)
        store.start_checkpoint(run_id, "workflow", "conv_jobs", None, "scripted", "bill me")
        store.finish_run(run_id, "conv_jobs", {"status": status, "output": "", "duration_ms": 0, "steps": 0,
                                               "prompt_tokens": 0, "completion_tokens": 0}, [], [])
    operator = accounts.create_user(store, "op@example.com", role="operator")
    with TestClient(app, base_url="http://testserver") as client:
        secret, _ = websessions.issue(store, operator["id"], app.state.halguru.settings.auth)
        client.cookies.set(websessions.COOKIE, secret)
        page = client.get("/admin/conversations/conv_jobs").text
        assert f'<p class="muted" data-job="{job["id"]}">Started by job <code>{job["id"]}</code></p>' in page
        assert page.count("data-job=") == 1  # the user's run names none
        approvals = client.get("/admin/approvals").text
        assert 'data-run="run_job01"' in approvals and f'data-job="{job["id"]}"' in approvals


def test_the_console_shows_what_the_channel_reported_of_each_message(app) -> None:
    """Twilio's delivery reports were stored and shown nowhere: a reply the carrier refused ('undelivered') read in
    the console as answered. The page lists the conversation's channel messages with their status."""
    from halguru_server.identity import websessions

    from halguru.store.records import ChannelMessageRecord

    store = app.state.halguru.store
    store.create_conversation("conv_sms", "echo", "SMS from +15557654321")
    store.create_conversation("conv_api", "echo", "web chat")
    now = time.time()
    for sid, direction, status in (("echo:SMin", "in", "received"), ("SMok", "out", "delivered"),
                                   ("SMbad", "out", "undelivered")):
        store.record_channel_message(ChannelMessageRecord(
            id=sid, channel="twilio", agent="echo", conversation_id="conv_sms", direction=direction,
            address="+15557654321", body="hi", status=status, job_id=None, created=now, updated=now,
            error="error 30003: unreachable handset" if status == "undelivered" else None))
    operator = accounts.create_user(store, "op@example.com", role="operator")
    with TestClient(app, base_url="http://testserver") as client:
        client.cookies.set(websessions.COOKIE, websessions.issue(store, operator["id"],
                                                                 app.state.halguru.settings.auth)[0])
        page = client.get("/admin/conversations/conv_sms").text
        assert "On the channel" in page and "(twilio)" in page
        rows = page.split('<table id="deliveries">')[1].split("</table>")[0].split('<tr data-status="')[1:]
        assert [r.split('"')[0] for r in rows] == ["received", "delivered", "undelivered"]
        # which way each went, apart from its status: an answer not sent read "sent | answer not sent yet"
        assert [r.split("<td>")[1].split("</td>")[0] for r in rows] == ["incoming", "outgoing", "outgoing"]
        assert '<span class="badge warn">undelivered</span>' in rows[2] and "SMbad" in rows[2]
        assert "<td>error 30003: unreachable handset</td>" in rows[2]  # why: Twilio's ErrorCode, it was only logged
        assert "On the channel" not in client.get("/admin/conversations/conv_api").text
        twin = client.get("/v1/admin/conversations/conv_sms", headers={"Accept": "application/json"}).json()
        assert [(d["id"], d["direction"], d["status"], d["error"]) for d in twin["deliveries"]] == [
            ("echo:SMin", "in", "received", None), ("SMok", "out", "delivered", None),
            ("SMbad", "out", "undelivered", "error 30003: unreachable handset")]
        assert client.get("/v1/admin/conversations/conv_api").json()["deliveries"] == []


def test_an_operator_cancels_a_running_run_from_its_conversation_page(app) -> None:
    """A running run shows a Cancel button; pressed, the run's process is asked through the store (here a watcher
    standing for the runtime ends it as cancelled), the page says so, the audit log has it, and the button goes."""
    from halguru_server.identity import websessions

    store = app.state.halguru.store
    store.start_run("run_0b5e01", "conv_busy", "echo", "scripted", "a long one", owner="user:someone")
    store.watch_cancel("run_0b5e01", lambda: store.finish_run(
        "run_0b5e01", "conv_busy", {"status": "cancelled", "output": "so far", "duration_ms": 0, "steps": 0,
                                    "prompt_tokens": 0, "completion_tokens": 0}, [], []))
    operator = accounts.create_user(store, "op@example.com", role="operator")
    with TestClient(app, base_url="http://testserver") as client:
        secret, session = websessions.issue(store, operator["id"], app.state.halguru.settings.auth)
        client.cookies.set(websessions.COOKIE, secret)
        page = client.get("/admin/conversations/conv_busy").text
        assert 'action="/admin/conversations/conv_busy/runs/run_0b5e01/cancel"' in page
        done = client.post("/admin/conversations/conv_busy/runs/run_0b5e01/cancel",
                           headers={"Origin": "http://testserver"}, data={"csrf_token": session["csrf"]},
                           follow_redirects=True)
        assert "Cancelled." in done.text, done.text[done.text.find("notice"):][:300]
        assert "/runs/run_0b5e01/cancel" not in done.text
        assert store.get_run("run_0b5e01")["status"] == "cancelled"
        entry = store.list_audit(5, action="run.")[0]
        assert (entry["action"], entry["target"], entry["actor"]) == ("run.cancel", "run_0b5e01",
                                                                      f"user:{operator['id']}")
        again = client.post("/admin/conversations/conv_busy/runs/run_0b5e01/cancel",
                            headers={"Origin": "http://testserver"}, data={"csrf_token": session["csrf"]},
                            follow_redirects=True)
        assert "has already ended (cancelled): there is nothing to cancel" in again.text

    # a worker's run is stopped by cancelling its job: cancelled alone, its worker would let the job run again
    job, _ = store.enqueue_job("run", "echo", {"input": "bill me"})
    store.start_run("run_0b5e02", "conv_busy", "echo", "scripted", "bill me", existing=True, job_id=job["id"])
    refused = TestClient(app).post("/v1/runs/run_0b5e02/cancel", headers=_headers(store, "op2@example.com",
                                                                                   "operator"))
    assert refused.status_code == 409 and refused.json()["error"] == {
        "type": "job_run", "message": f"run run_0b5e02 is job {job['id']}'s: cancel the job instead (`halguru jobs "
                                      f"cancel {job['id']}`, POST /v1/jobs/{job['id']}/cancel)"}
    assert store.get_run("run_0b5e02")["status"] == "running"


def test_the_console_pages_a_long_conversation_from_its_newest_messages_and_runs(app) -> None:
    """The page read and drew a conversation's whole history and every run's trace with its model calls' history
    expanded: a 30 MB conversation of 300 runs took 10 to 23 s and drew 30 MB of HTML (0.2 s now). It shows the
    newest 100 messages and 20 runs, with links back to earlier ones, and a trace counts a model call's history
    without reading it."""
    from halguru_server.identity import websessions

    from halguru.agents.events import ModelCall, RunFinished, RunStarted
    from halguru.models.base import Message

    store = app.state.halguru.store
    for i in range(130):
        rid = f"run_long{i:04d}"
        store.start_run(rid, "conv_long", "echo", "scripted", f"question {i}", existing=i > 0)
        events = [RunStarted(run_id=rid, agent="echo", model="scripted", input=f"question {i}",
                             conversation_id="conv_long"),
                  ModelCall(run_id=rid, seq=1, model="scripted",
                            messages=[{"history": 2 * i}, {"role": "user", "content": f"question {i}"}]),
                  RunFinished(run_id=rid, seq=2, status="ok", output=f"answer {i}")]
        store.finish_run(rid, "conv_long", {"status": "ok", "output": f"answer {i}", "duration_ms": 1, "steps": 1,
                                            "prompt_tokens": 0, "completion_tokens": 0}, events,
                         [Message(role="user", content=f"question {i}."), Message(role="assistant",
                                                                                  content=f"answer {i}.")])
    operator = accounts.create_user(store, "op@example.com", role="operator")

    def shown(html: str) -> tuple[list[str], list[str]]:
        table = html.split('<table id="messages">')[1].split("</table>")[0]
        said = [cell.split("</td>")[0] for cell in table.split('<td class="message">')[1:]]
        return said, [part.split('"')[0] for part in html.split('<section aria-label="Run ')[1:]]

    with TestClient(app, base_url="http://testserver") as client:
        client.cookies.set(websessions.COOKIE, websessions.issue(store, operator["id"],
                                                                 app.state.halguru.settings.auth)[0])
        page = client.get("/admin/conversations/conv_long").text
        said, runs = shown(page)
        assert said[0] == "question 80." and said[-1] == "answer 129." and len(said) == 100
        assert runs == [f"run_long{i:04d}" for i in range(110, 130)]
        assert "259 messages" in page.split('aria-label="Run run_long0129"')[1]  # 258 before it and its question
        assert "Newest messages" not in page and "Newest runs" not in page
        earlier = page.split('<a href="')[1:]
        back = next(a.split('"')[0] for a in earlier if "Earlier messages" in a.split("</a>")[0])
        said, _ = shown(client.get(back.replace("&amp;", "&")).text)
        assert said[0] == "question 30." and said[-1] == "answer 79."
        first = client.get("/admin/conversations/conv_long", params={"before": 60}).text
        said, _ = shown(first)
        assert said[0] == "question 0." and said[-1] == "answer 29." and "Earlier messages" not in first
        assert 'href="/admin/conversations/conv_long">Newest messages</a>' in first
        older = client.get("/admin/conversations/conv_long", params={"runs": 20}).text
        assert shown(older)[1] == [f"run_long{i:04d}" for i in range(90, 110)] and "Newest runs" in older
        assert client.get("/admin/conversations/conv_long/messages").text.count('<td class="message">') == 100
        assert client.get("/admin/conversations/conv_long", params={"before": -1}).status_code == 422


def test_the_admin_api_reads_a_long_conversation_a_page_at_a_time_from_its_newest(app) -> None:
    """GET /v1/admin/conversations/ID read and sent the whole history (a 30 MB conversation whole, each time); it
    sends the newest 100 messages (or `limit`), and `earlier_cursor` reads back from there to the first."""
    from halguru.models.base import Message

    store = app.state.halguru.store
    store.create_conversation("conv_paged", "echo")
    store.start_run("run_paged", "conv_paged", "echo", "scripted", "q")
    store.finish_run("run_paged", "conv_paged", {"status": "ok", "output": "", "duration_ms": 1, "steps": 1,
                                                 "prompt_tokens": 0, "completion_tokens": 0}, [],
                     [Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(250)])
    with TestClient(app, base_url="http://testserver",
                    headers=_headers(store, "op@example.com", "operator")) as client:
        first = client.get("/v1/admin/conversations/conv_paged").json()
        assert [m["content"] for m in first["messages"]] == [f"m{i}" for i in range(150, 250)]
        assert len(first["runs"]) == 1 and first["conversation"]["id"] == "conv_paged"
        said, cursor = [], first["earlier_cursor"]
        while cursor is not None:
            page = client.get("/v1/admin/conversations/conv_paged", params={"before": cursor, "limit": 70}).json()
            said[:0] = [m["content"] for m in page["messages"]]
            cursor = page["earlier_cursor"]
        assert said + [m["content"] for m in first["messages"]] == [f"m{i}" for i in range(250)]
        whole = client.get("/v1/admin/conversations/conv_paged", params={"limit": 1000}).json()
        assert len(whole["messages"]) == 250 and whole["earlier_cursor"] is None
        for bad in ({"limit": 0}, {"limit": 1001}, {"before": -1}):
            assert client.get("/v1/admin/conversations/conv_paged", params=bad).status_code == 422


def test_an_id_pasted_into_the_search_opens_its_conversation(app) -> None:
    """An operator pastes the conversation or run id from a user's report or a log line: the search looked for
    it in titles and messages and said "No conversation matches"."""
    store = app.state.halguru.store
    client = TestClient(app)
    operator = _headers(store, "op@example.com", "operator")
    ann = _headers(store, "ann@example.com", "user")
    parcel = _chat(client, ann, "echo", "Where is my parcel?")
    hidden = _chat(client, ann, "private", "Secret")
    run_id = store.list_runs(limit=1, conversation_id=parcel)[0]["id"]
    page = {**operator, "Accept": "text/html"}
    for typed in (parcel, f"  {parcel} ", run_id):
        got = client.get("/admin/conversations", headers=page, params={"q": typed}, follow_redirects=False)
        assert (got.status_code, got.headers.get("location")) == (303, f"/admin/conversations/{parcel}"), typed
    opened = client.get("/admin/conversations", headers=page, params={"q": run_id})
    assert opened.status_code == 200 and "Where is my parcel?" in opened.text
    # a run id's prefix, or an id of a conversation the caller may not read, is text like any other
    got = client.get("/admin/conversations", headers=page, params={"q": run_id[:-2]}, follow_redirects=False)
    assert got.status_code == 200 and "No conversation matches" in got.text
    limited = {"Authorization": f"Bearer {create_key(store, 'echo-only', ['echo'], scope='operator')[1]}",
               "Accept": "text/html"}
    got = client.get("/admin/conversations", headers=limited, params={"q": hidden}, follow_redirects=False)
    assert got.status_code == 200 and "No conversation matches" in got.text


def test_a_search_with_dates_that_cannot_match_says_why_instead_of_finding_nothing(app) -> None:
    """``nan``, ``inf`` (which ``float`` takes) and an "until" before "since" answered an empty page, as if no
    conversation was active then: the operator widened other filters looking for what the dates hid."""
    store = app.state.halguru.store
    client = TestClient(app)
    operator = _headers(store, "op@example.com", "operator")
    _chat(client, _headers(store, "ann@example.com", "user"), "echo", "Hello")
    for query, said in (({"since": "nan"}, "since: 'nan' is neither"), ({"until": "inf"}, "until: 'inf' is neither"),
                        ({"since": "-inf"}, "since: '-inf' is neither"),
                        ({"since": "2026-03-02", "until": "2026-03-01"}, "until 2026-03-01 is not after since")):
        got = client.get("/v1/admin/conversations", headers=operator, params=query)
        assert got.status_code == 422 and said in got.json()["error"]["message"], (query, got.text)
        page = client.get("/admin/conversations", headers={**operator, "Accept": "text/html"}, params=query)
        assert page.status_code == 422 and said.replace("'", "&#39;") in page.text, query
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(client.get("/v1/admin/conversations", headers=operator,
                          params={"since": today, "until": today}).json()["data"]) == 1  # one day: both ends


def test_the_console_names_people_without_reading_every_account(app, monkeypatch) -> None:
    """The search page, a conversation's page and its messages (refreshed every 3 s while taken over) named each
    owner and author from a read of every account: 0.5 s a time with 20,000. They read only the page's own."""
    store = app.state.halguru.store
    client = TestClient(app)
    operator = _headers(store, "op@example.com", "operator")
    conversation = _chat(client, _headers(store, "ann@example.com", "user"), "echo", "Hi")
    assert client.post(f"/v1/conversations/{conversation}/takeover", headers=operator).status_code == 200
    reply = client.post(f"/v1/conversations/{conversation}/reply", headers=operator, json={"text": "Carol"})
    assert reply.status_code == 201

    def every_account(*args, **kwargs):
        raise AssertionError("read every account to name a page's few")

    monkeypatch.setattr(store, "list_users", every_account)
    page = {**operator, "Accept": "text/html"}
    found = client.get("/admin/conversations", headers=page)
    assert found.status_code == 200 and "<code>ann@example.com</code>" in found.text
    read = client.get(f"/admin/conversations/{conversation}", headers=page)
    assert read.status_code == 200 and "user <span class=\"mono\">ann@example.com</span>" in read.text
    live = client.get(f"/admin/conversations/{conversation}/messages", headers=page)
    assert live.status_code == 200 and "op@example.com" in live.text
