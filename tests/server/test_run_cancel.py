"""Stopping a run by its id (``POST /v1/runs/{id}/cancel``, the web chat's ``/chat/api/runs/{id}/cancel``) and
messages sent with ``detach``: the run goes on when its client leaves, and only its owner stops it, on whichever
replica (two apps on one store, each on its own real uvicorn) runs it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from halguru.client import Client, ClientError
from halguru.store import open_store
from tests.server.conftest import Server
from tests.server.test_serve_api import new_conversation
from tests.server.test_sse_resume import iter_blocks as blocks
from tests.server.test_sse_resume import keyed, streaming

WHOLE = " ".join(f"word{i}" for i in range(60))


@pytest.fixture(autouse=True)
def slower(agents_dir: Any) -> None:
    """Agent ``slow`` takes 6 s to answer: time to stop it, reload a page or leave, with room to spare."""
    (agents_dir.parent / "slow.yaml").write_text(yaml.safe_dump([{"text": WHOLE, "token_delay": 0.1}]))


def _ended(run_id: str, timeout: float = 10) -> dict[str, Any]:
    """The run once its status is no longer running, as stored."""
    store = open_store()
    deadline = time.monotonic() + timeout
    while (run := store.get_run(run_id))["status"] == "running":
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)
    return dict(run)


def test_the_owner_stops_a_run_on_another_replica_and_only_the_owner(serve: Callable[..., Server],
                                                                     api_key: Callable[..., str]) -> None:
    secret, theirs = api_key(), api_key("stranger")
    one, two = keyed(serve(), secret), keyed(serve(), secret)
    conv = new_conversation(one, "slow")
    run_id, live, listener = streaming(one, f"/v1/conversations/{conv}/messages", {"content": "go"})

    with httpx.Client(base_url=two.base_url, headers={"Authorization": f"Bearer {theirs}"}, timeout=30) as stranger:
        refused = stranger.post(f"/v1/runs/{run_id}/cancel")
    assert refused.status_code == 404 and refused.json()["error"]["message"] == f"no run {run_id!r}"
    assert open_store().get_run(run_id)["status"] == "running"  # a stranger's cancel changed nothing

    asked = time.monotonic()
    stopped = two.post(f"/v1/runs/{run_id}/cancel")  # the run is on replica one
    took = time.monotonic() - asked
    listener.join(10)
    assert stopped.status_code == 200 and stopped.json() == {"run_id": run_id, "status": "cancelled"}
    assert took < 2, took
    run = _ended(run_id)
    assert run["status"] == "cancelled" and run["output"].startswith("word0") and run["output"] != WHOLE
    # its stream ends as any run's does: with run_finished, status cancelled, the answer so far
    assert live[-1]["event"] == "run_finished" and live[-1]["data"]["status"] == "cancelled"
    assert live[-1]["data"]["output"] == run["output"]
    # the turn so far is stored once: the question and the answer cut where it stopped
    messages = [(m["role"], m["content"]) for m in open_store().conversation_messages(conv)]
    assert messages == [("user", "go"), ("assistant", run["output"])]

    again = two.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["error"] == {
        "type": "not_running", "message": f"run {run_id} has already ended (cancelled): there is nothing to cancel"}
    with Client(str(two.base_url), secret, max_retries=0) as sdk, pytest.raises(ClientError) as ended:
        sdk.cancel(run_id)  # halguru.client says the same
    assert ended.value.status == 409 and "has already ended (cancelled)" in str(ended.value)
    assert one.post("/v1/runs/run_0123456789ab/cancel").status_code == 404


def test_a_detached_run_goes_on_when_its_stream_closes(serve: Callable[..., Server],
                                                       api_key: Callable[..., str]) -> None:
    """An API client that closes its stream still cancels its run (as before); one that sent ``detach`` leaves it
    running to its end, shown as ``running`` with the conversation's messages until then."""
    client = keyed(serve(), api_key())
    conv = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{conv}/messages",
                       json={"content": "go", "stream": True, "detach": True}) as response:
        for block in blocks(response):
            if block["event"] == "token":
                run_id = block["id"].split(":")[0]
                break
    page = client.get(f"/v1/conversations/{conv}/messages").json()
    assert page["data"] == [] and page["running"] == {"run_id": run_id, "input": "go"}
    run = _ended(run_id)
    assert run["status"] == "ok" and run["output"] == WHOLE
    page = client.get(f"/v1/conversations/{conv}/messages").json()
    assert [m["content"] for m in page["data"]] == ["go", WHOLE] and page["running"] is None

    conv = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True}) as r:
        for block in blocks(r):
            if block["event"] == "token":
                run_id = block["id"].split(":")[0]
                break
    assert _ended(run_id)["status"] == "cancelled"  # without detach: closing the stream stops the run


def test_a_chat_session_stops_only_its_own_runs(serve: Callable[..., Server]) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as mine, httpx.Client(base_url=server.url, timeout=30) as other:
        for http in (mine, other):
            http.headers["X-Chat-Session"] = http.post("/chat/api/session").json()["token"]
        conv = mine.post("/chat/api/conversations", json={"agent": "slow"}).json()["id"]
        run_id, _, listener = streaming(mine, f"/chat/api/conversations/{conv}/messages",
                                           {"content": "go", "detach": True})
        assert other.post(f"/chat/api/runs/{run_id}/cancel").status_code == 404
        stopped = mine.post(f"/chat/api/runs/{run_id}/cancel")
        listener.join(10)
        assert stopped.json() == {"run_id": run_id, "status": "cancelled"}
