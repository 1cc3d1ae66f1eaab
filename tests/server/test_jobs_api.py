"""/v1/jobs on a real `halguru serve` app with its in-process worker, `--no-worker`, job metrics, and the
`halguru jobs` CLI over the same store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest


def wait_done(client: httpx.Client, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "dead"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_a_queued_job_runs_in_the_serve_process(client: httpx.Client) -> None:
    queued = client.post("/v1/jobs", json={"agent": "echo", "input": "hello jobs"})
    assert queued.status_code == 202 and queued.json()["status"] in ("queued", "running")
    job = wait_done(client, queued.json()["id"])
    assert job["status"] == "done" and job["attempts"] == 1 and "hello jobs" in job["result"]["output"]
    conversation = job["result"]["conversation_id"]
    messages = client.get(f"/v1/conversations/{conversation}/messages").json()["data"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert client.get(f"/v1/runs/{job['result']['run_id']}").json()["status"] == "ok"
    listed = client.get("/v1/jobs", params={"status": "done"}).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]
    metrics = client.get("/metrics").text
    assert 'halguru_jobs_by_status{status="done"} 1.0' in metrics
    assert 'halguru_jobs_total{kind="run",outcome="done"} 1.0' in metrics
    assert "halguru_job_wait_seconds_count" in metrics


def test_a_jobs_runs_show_their_job_and_a_client_cannot_claim_one(client: httpx.Client) -> None:
    """A run shows the job that started it, the job its runs; a client's run with the same text in the job's
    conversation is no job's, whatever it sends: the worker finds a job's runs by that id."""
    job = wait_done(client, client.post("/v1/jobs", json={"agent": "echo", "input": "same"}).json()["id"])
    run_id, conversation = job["result"]["run_id"], job["result"]["conversation_id"]
    assert [(r["id"], r["status"]) for r in job["runs"]] == [(run_id, "ok")]
    assert client.get(f"/v1/runs/{run_id}").json()["job_id"] == job["id"]
    forged = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "same", "job_id": job["id"]})
    assert forged.status_code == 422
    assert client.post(f"/v1/conversations/{conversation}/messages", json={"content": "same"}).status_code == 200
    completion = client.post("/v1/chat/completions", json={"model": "echo", "metadata": {"job_id": job["id"]},
                                                           "messages": [{"role": "user", "content": "same"}]})
    assert completion.status_code == 200
    assert [r["job_id"] for r in client.get("/v1/runs").json()["data"]] == [None, None, job["id"]]
    assert [r["id"] for r in client.get(f"/v1/jobs/{job['id']}").json()["runs"]] == [run_id]


def test_a_job_continues_a_conversation(client: httpx.Client) -> None:
    conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    client.post(f"/v1/conversations/{conversation}/messages", json={"content": "first"})
    job_id = client.post("/v1/jobs", json={"agent": "echo", "input": "second",
                                           "conversation_id": conversation}).json()["id"]
    assert wait_done(client, job_id)["result"]["conversation_id"] == conversation
    users = [m["content"] for m in client.get(f"/v1/conversations/{conversation}/messages").json()["data"]
             if m["role"] == "user"]
    assert users == ["first", "second"]
    other = client.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    wrong = client.post("/v1/jobs", json={"agent": "echo", "input": "x", "conversation_id": other})
    assert wrong.status_code == 400 and "belongs to agent 'slow'" in wrong.json()["error"]["message"]


def test_a_job_into_a_full_conversation_is_refused_as_a_message_would_be(
        serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """POST /v1/jobs queued turns into a conversation past ``max_conversation_chars`` that POST .../messages refuses
    (409 conversation_full); a job queued with no conversation still starts a new one."""
    server = serve(max_conversation_chars=60)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}) as client:
        conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        assert client.post(f"/v1/conversations/{conversation}/messages",
                           json={"content": "a question of some length"}).status_code == 200
        full = client.post("/v1/jobs", json={"agent": "echo", "input": "more", "conversation_id": conversation})
        assert full.status_code == 409 and full.json()["error"]["type"] == "conversation_full", full.text
        assert "start a new conversation" in full.json()["error"]["message"]
        assert client.get("/v1/jobs").json()["data"] == []  # nothing queued
        fresh = wait_done(client, client.post("/v1/jobs", json={"agent": "echo", "input": "more"}).json()["id"])
        assert fresh["status"] == "done" and fresh["result"]["conversation_id"] != conversation


def test_jobs_in_one_conversation_run_one_at_a_time_in_order(client: httpx.Client) -> None:
    """Two jobs queued at once for one conversation (the worker runs two jobs at a time): the second waits for
    the first's answer instead of running beside it."""
    conversation = client.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    ids = [client.post("/v1/jobs", json={"agent": "slow", "input": text, "conversation_id": conversation}).json()["id"]
           for text in ("first", "second")]
    jobs = [wait_done(client, job_id) for job_id in ids]
    assert [(j["status"], j["attempts"]) for j in jobs] == [("done", 1), ("done", 1)]
    assert jobs[1]["started"] >= jobs[0]["finished"]
    messages = client.get(f"/v1/conversations/{conversation}/messages").json()["data"]
    assert [(m["role"], m["content"] if m["role"] == "user" else "") for m in messages] == [
        ("user", "first"), ("assistant", ""), ("user", "second"), ("assistant", "")]


def test_idempotency_key_returns_the_first_job_and_refuses_another_job_under_it(client: httpx.Client) -> None:
    first = client.post("/v1/jobs", json={"agent": "echo", "input": "once", "idempotency_key": "k1"}).json()
    again = client.post("/v1/jobs", json={"agent": "echo", "input": "once", "idempotency_key": "k1"}).json()
    assert again["id"] == first["id"] and again["payload"]["input"] == "once"
    other = client.post("/v1/jobs", json={"agent": "echo", "input": "twice", "idempotency_key": "k1"})
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_key_reused"  # was the first
    assert len(client.get("/v1/jobs").json()["data"]) == 1


@pytest.mark.parametrize(("body", "code"), [
    ({"agent": "nobody", "input": "x"}, 404),
    ({"agent": "echo", "input": ""}, 422),
    ({"agent": "echo", "input": " \n\t"}, 422),  # only whitespace: nothing to answer
    ({"agent": "echo", "input": "x", "delay": -1}, 422),
    ({"agent": "echo", "input": "x", "extra": 1}, 422),
    ({"agent": "echo", "input": "x" * 20_000}, 413),
    ({"agent": "echo", "input": "x", "conversation_id": "conv_nope"}, 404),
])
def test_bad_job_requests_are_4xx(client: httpx.Client, body: dict[str, Any], code: int) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == code, response.text
    assert client.get("/v1/jobs").json()["data"] == []


def test_retry_and_cancel_say_why_not(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json={"agent": "echo", "input": "later", "delay": 3600}).json()["id"]
    refused = client.post(f"/v1/jobs/{job_id}/retry")
    assert refused.status_code == 409 and "only dead or cancelled" in refused.json()["error"]["message"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert client.post(f"/v1/jobs/{job_id}/retry").json()["status"] == "queued"
    bogus = client.get("/v1/jobs", params={"status": "bogus"})
    assert bogus.status_code == 422 and "'dead'" in bogus.json()["error"]["message"]
    assert client.get("/v1/jobs/job_0123456789abcdef").status_code == 404


def test_a_job_queued_between_pages_does_not_repeat_the_next_page(client: httpx.Client) -> None:
    """Jobs page by keyset (the last job's place in the queue): an offset repeated the item a new job pushed
    down."""
    queued = [client.post("/v1/jobs", json={"agent": "echo", "input": f"job {i}", "delay": 3600}).json()["id"]
              for i in range(4)][::-1]  # newest first, as listed
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == queued[:2]
    client.post("/v1/jobs", json={"agent": "echo", "input": "late", "delay": 3600})
    second = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in second["data"]] == queued[2:] and second["next_cursor"] is None


def test_no_worker_leaves_jobs_queued(serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    server = serve(worker=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}) as client:
        job_id = client.post("/v1/jobs", json={"agent": "echo", "input": "anyone?"}).json()["id"]
        time.sleep(1.0)
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_an_owner_with_max_waiting_jobs_queued_gets_429_and_others_are_not_held(
        serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """A key could queue jobs without end (each one slows every claim a little, everyone's included): past
    ``max_waiting_jobs`` queued, 429 ``too_many_jobs``; a repeat of a used idempotency key is still its job, and
    another owner still queues."""
    server = serve(worker=False, max_waiting_jobs=3)
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('a')}"})
    theirs = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('b')}"})
    queued = [mine.post("/v1/jobs", json={"agent": "echo", "input": f"{i}", "idempotency_key": f"k{i}"})
              for i in range(3)]
    assert [r.status_code for r in queued] == [202] * 3
    refused = mine.post("/v1/jobs", json={"agent": "echo", "input": "one more"})
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_jobs", refused.text
    assert "3 of your jobs are already waiting" in refused.json()["error"]["message"]
    assert refused.headers["Retry-After"] == "30"  # as every 429: the clients wait that long, not a blind second
    again = mine.post("/v1/jobs", json={"agent": "echo", "input": "0", "idempotency_key": "k0"})
    assert again.status_code == 202 and again.json()["id"] == queued[0].json()["id"]
    assert theirs.post("/v1/jobs", json={"agent": "echo", "input": "b"}).status_code == 202
    assert mine.post(f"/v1/jobs/{queued[0].json()['id']}/cancel").status_code == 200  # one fewer waiting
    assert mine.post("/v1/jobs", json={"agent": "echo", "input": "now"}).status_code == 202
    assert len(mine.get("/v1/jobs").json()["data"]) == 4  # 3 queued + the cancelled one: nothing half-stored


def test_retrying_jobs_counts_against_max_waiting_jobs(serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """Queue to the cap, cancel, queue again, retry the cancelled ones: retry skipped the cap, so one key held
    50 jobs queued with ``max_waiting_jobs: 5``. A retry past the cap is 429 and leaves the job cancelled."""
    server = serve(worker=False, max_waiting_jobs=2)
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('a')}"})
    first = [mine.post("/v1/jobs", json={"agent": "echo", "input": f"{i}"}).json()["id"] for i in range(2)]
    for job_id in first:
        assert mine.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert [mine.post("/v1/jobs", json={"agent": "echo", "input": f"again {i}"}).status_code
            for i in range(2)] == [202, 202]
    refused = mine.post(f"/v1/jobs/{first[0]}/retry")
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_jobs", refused.text
    assert refused.headers["Retry-After"] == "30"
    assert mine.get(f"/v1/jobs/{first[0]}").json()["status"] == "cancelled"
    assert len(mine.get("/v1/jobs", params={"status": "queued"}).json()["data"]) == 2


def test_jobs_cli(cli: Callable[..., Any], cli_error: Callable[..., str]) -> None:
    from halguru.store import open_store

    store = open_store()
    job, _ = store.enqueue_job("run", "echo", {"input": "summarise the day"})
    listed = cli("jobs", "list").output
    assert job["id"] in listed and "summarise the day" in listed and "queued" in listed
    shown = cli("jobs", "show", job["id"][:12]).output
    assert "status          queued" in shown and '"input": "summarise the day"' in shown
    assert shown.splitlines()[-1] == "runs            -"  # none yet
    assert "cancelled" in cli("jobs", "cancel", job["id"]).output
    assert "queued" in cli("jobs", "retry", job["id"]).output
    assert cli("jobs", "list", "--status", "dead").output.strip() == "No dead jobs."
    assert "only dead or cancelled" in cli_error("jobs", "retry", job["id"])
    assert "no job 'job_nope'" in cli_error("jobs", "show", "job_nope")
    assert "--status must be one of" in cli_error("jobs", "list", "--status", "weird")


def test_jobs_cancel_agent_clears_an_agents_flood_in_one_command(cli: Callable[..., Any],
                                                                  cli_error: Callable[..., str]) -> None:
    """An inbox flooded with 3,000 spam replies to clear: `jobs cancel` took one job id, one call (about 1 s) each,
    hours at 10,000. `jobs cancel --agent inbox` cancels every queued job of the agent at once (1.1 s for 10,800
    of 100,000 jobs); its running job and the other agents' jobs go on. Audited as one entry."""
    from halguru.store import open_store

    store = open_store()
    for i in range(3000):
        store.enqueue_job("reply", "inbox", {"text": f"spam {i}"})
    other, _ = store.enqueue_job("run", "reports", {"input": "weekly"})
    running = store.claim_job("w", lease=30, agents=["inbox"])
    assert running is not None
    assert cli("jobs", "cancel", "--agent", "inbox").output.strip() == "cancelled 2999 queued jobs of inbox"
    assert store.job_stats()["queued"] == 1 and store.get_job(other["id"])["status"] == "queued"
    assert store.get_job(running["id"])["status"] == "running"
    assert cli("jobs", "cancel", "--agent", "inbox").output.strip() == "cancelled 0 queued jobs of inbox"
    [entry] = [e for e in store.list_audit(action="job.cancel") if e["details"].get("queued_jobs")]
    assert (entry["target"], entry["details"]["queued_jobs"]) == ("inbox", 2999)
    both = cli_error("jobs", "cancel", other["id"], "--agent", "inbox")
    assert both == "Error: give a job id or --agent NAME, not both"
    assert cli_error("jobs", "cancel").startswith("Error: give a job id (`halguru jobs list`), or --agent NAME")


def test_jobs_list_says_why_a_job_waits_or_that_nobody_runs_it(cli: Callable[..., Any]) -> None:
    """A reply whose mail server was down was listed 'queued 1/8' with its input only, as if nothing were wrong."""
    from halguru.store import open_store

    store = open_store()
    job, _ = store.enqueue_job("reply", "echo", {"channel": "email", "text": "When are you open?"}, max_attempts=8)
    assert store.claim_job("w1", 30.0)["id"] == job["id"]
    assert store.fail_job(job["id"], "w1", "email channel of echo: SMTP 127.0.0.1:25: ConnectionRefusedError", 60) \
        == "queued"
    row = next(line for line in cli("jobs", "list").output.splitlines() if job["id"] in line)
    assert "queued" in row and "1/8" in row and "ConnectionRefusedError" in row and "next try" in row, row
    fresh, _ = store.enqueue_job("run", "echo", {"input": "summarise the day"})
    row = next(line for line in cli("jobs", "list").output.splitlines() if fresh["id"] in line)
    assert "summarise the day" in row and "next try" not in row
    # a worker killed mid-job: 'running' it stays until another worker claims it; the list says nobody runs it
    assert store.claim_job("w2", 0.01)["id"] == fresh["id"]
    time.sleep(0.05)
    row = next(line for line in cli("jobs", "list").output.splitlines() if fresh["id"] in line)
    assert "running" in row and "stopped renewing its lease" in row, row


def test_jobs_show_and_logs_job_list_the_runs_a_job_started(cli: Callable[..., Any],
                                                             cli_error: Callable[..., str]) -> None:
    from halguru.store import open_store

    store = open_store()
    job, _ = store.enqueue_job("run", "echo", {"input": "bill me"})
    for run_id, status, job_id, resumes in (("run_cut01", "interrupted", job["id"], None),
                                            ("run_user1", "ok", None, None),  # the user's same message
                                            ("run_next1", "ok", None, "run_cut01")):  # the job's run resumed
        store.start_run(run_id, "conv_j", "echo", "scripted", "bill me", existing=run_id != "run_cut01",
                        job_id=job_id, resumes=resumes)
        store.finish_run(run_id, "conv_j", {"status": status, "output": "", "duration_ms": 0, "steps": 0,
                                            "prompt_tokens": 0, "completion_tokens": 0}, [], [])
    lines = cli("jobs", "show", job["id"]).output.splitlines()
    runs = lines[next(i for i, line in enumerate(lines) if line.startswith("runs")):]
    assert [line.split()[-4:-2] for line in runs] == [["run_next1", "ok"], ["run_cut01", "interrupted"]]
    listed = cli("logs", "--job", job["id"]).output
    assert "run_next1" in listed and "run_cut01" in listed and "run_user1" not in listed
    assert cli("logs", "--job", job["id"][:12]).output == listed  # a unique prefix, as `jobs show` takes
    # a misspelt job is named, as a misspelt --agent is (it read as a job that started nothing)
    assert cli("logs", "--job", "job_nope").output.strip() == ("No runs match: no job 'job_nope' "
                                                               "(`halguru jobs list` shows them).")
    assert "--job: filter runs" in cli_error("logs", "--conversations", "--job", job["id"])


@pytest.mark.parametrize("dev", [True, False])
def test_jobs_show_names_the_idempotency_key_as_sent(serve: Callable[..., Any], api_key: Callable[..., str],
                                                     cli: Callable[..., Any], dev: bool) -> None:
    """An API job's key is stored scoped by its owner; --dev has none, and `jobs show` printed api:None:order-42."""
    server = serve(worker=False, dev=dev)
    headers = {} if dev else {"Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        job = client.post("/v1/jobs", json={"agent": "echo", "input": "x", "idempotency_key": "order-42"}).json()
    [line] = [line for line in cli("jobs", "show", job["id"]).output.splitlines() if line.startswith("idempotency")]
    assert line == "idempotency_key order-42 (POST /v1/jobs)"


def _dead(store: Any, agent: str, text: str, owner: str | None = None) -> str:
    """A job of ``agent`` whose attempts are used up (a mail server that was down, say)."""
    job, _ = store.enqueue_job("run", agent, {"input": text}, owner=owner)
    claimed = store.claim_job("w", lease=30, agents=[agent])
    assert claimed is not None and claimed["id"] == job["id"]
    assert store.fail_job(job["id"], "w", "connection refused", None) == "dead"
    return str(job["id"])


def test_jobs_retry_dead_requeues_every_dead_job_in_one_command(cli: Callable[..., Any],
                                                                cli_error: Callable[..., str]) -> None:
    """After an outage every job that died waiting for it had to be retried by id, one command each."""
    from halguru.store import open_store

    store = open_store()
    inbox = [_dead(store, "inbox", f"reply {i}") for i in range(3)]
    reports = _dead(store, "reports", "weekly")
    assert cli("jobs", "retry", "--dead", "--agent", "inbox").output.strip() == "queued 3 dead jobs again of inbox"
    assert [store.get_job(j)["status"] for j in inbox] == ["queued"] * 3
    assert store.get_job(inbox[0])["attempts"] == 0 and store.get_job(reports)["status"] == "dead"
    assert cli("jobs", "retry", "--dead").output.strip() == "queued 1 dead job again"
    assert store.get_job(reports)["status"] == "queued"
    assert cli("jobs", "retry", "--dead").output.strip() == "queued 0 dead jobs again"
    assert cli_error("jobs", "retry").startswith("Error: give a job id")
    assert cli_error("jobs", "retry", inbox[0], "--dead").startswith("Error: give a job id")
    assert cli_error("jobs", "retry", inbox[0], "--agent", "inbox").startswith("Error: give a job id")


def test_dead_jobs_are_retried_and_queued_ones_cancelled_in_bulk_over_the_api(
        serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """POST /v1/jobs/retry and /v1/jobs/cancel: a key reaches its own jobs only and stays under
    ``max_waiting_jobs``; an admin key reaches everyone's."""
    server = serve(worker=False, max_waiting_jobs=2)
    store = server.state.store
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('a')}"})
    owner = mine.post("/v1/jobs", json={"agent": "echo", "input": "probe"}).json()
    assert mine.post(f"/v1/jobs/{owner['id']}/cancel").status_code == 200
    me = store.get_job(owner["id"])["owner"]
    dead = [_dead(store, "echo", f"mine {i}", owner=me) for i in range(3)]
    theirs = _dead(store, "echo", "theirs", owner="key:someone")
    retried = mine.post("/v1/jobs/retry", json={"agent": "echo"})
    assert retried.status_code == 200 and retried.json() == {"count": 2, "left": 1}, retried.text  # the cap: 2 queued
    assert [store.get_job(j)["status"] for j in dead] == ["queued", "queued", "dead"]  # oldest first
    assert store.get_job(theirs)["status"] == "dead"
    cancelled = mine.post("/v1/jobs/cancel", json={"agent": "echo"})
    assert cancelled.json() == {"count": 2}
    assert mine.post("/v1/jobs/retry", json={}).json() == {"count": 1, "left": 0}
    assert mine.post("/v1/jobs/cancel", json={}).status_code == 422  # cancelling everything needs an agent
    assert mine.post("/v1/jobs/retry", json={"agent": "nope"}).status_code == 404
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('root', scope='admin')}"})
    assert admin.post("/v1/jobs/retry", json={"agent": "echo"}).json() == {"count": 1, "left": 0}  # theirs
    assert store.get_job(theirs)["status"] == "queued"
    assert admin.post("/v1/jobs/cancel", json={"agent": "echo"}).json() == {"count": 2}
    actions = [(e["action"], e["target"]) for e in store.list_audit(10, action="job.")]
    assert ("job.retry", "echo") in actions and ("job.cancel", "echo") in actions


def test_the_jobs_of_an_agent_no_longer_served_stay_their_owners_to_see_and_cancel(
        serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """An agent removed from the project (a deploy without it) left its queued jobs queued for ever: no worker
    claims them, yet they counted in the owner's ``max_waiting_jobs``, and the owner got 404 for each and did not
    see them listed, so a key at its cap could not find what to cancel. Now they are listed, shown and
    cancelled (one by one, or all of that agent's); a retry is a 409 saying why; another key sees none."""
    from halguru.store import open_store

    server = serve(worker=False, max_waiting_jobs=2)
    secret = api_key("a")
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"})
    theirs = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('b')}"})
    owner = f"key:{secret.split('_')[1]}"
    gone = [open_store().enqueue_job("run", "gone", {"input": f"{i}", "conversation_id": None}, owner=owner)[0]["id"]
            for i in range(2)]  # queued while `gone` was served
    refused = mine.post("/v1/jobs", json={"agent": "echo", "input": "more"})
    assert refused.status_code == 429  # the cap counts them...
    listed = mine.get("/v1/jobs").json()["data"]
    assert sorted(j["id"] for j in listed) == sorted(gone)  # ...and now the owner sees them
    assert mine.get(f"/v1/jobs/{gone[0]}").json()["agent"] == "gone"
    assert theirs.get("/v1/jobs").json()["data"] == [] and theirs.get(f"/v1/jobs/{gone[0]}").status_code == 404
    assert mine.post(f"/v1/jobs/{gone[0]}/cancel").json()["status"] == "cancelled"
    retry = mine.post(f"/v1/jobs/{gone[0]}/retry")
    assert retry.status_code == 409 and "no longer served" in retry.json()["error"]["message"]
    assert mine.post("/v1/jobs/cancel", json={"agent": "gone"}).json() == {"count": 1}
    typo = mine.post("/v1/jobs/cancel", json={"agent": "gone"})  # none of its jobs queued now: as any unknown name
    assert typo.status_code == 404, typo.text
    assert mine.post("/v1/jobs", json={"agent": "echo", "input": "more"}).status_code == 202
