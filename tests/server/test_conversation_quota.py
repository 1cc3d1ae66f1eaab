"""``max_conversations``: one key could store conversations without end (each a row, its messages, its runs);
past the cap, starting one more is a 409 ``too_many_conversations`` on every route that starts one, and a
deleted conversation frees its place. Other keys are not held."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


def test_a_key_past_max_conversations_gets_409_until_it_deletes_one(
        serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    server = serve(max_conversations=2, worker=False)
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('a')}"})
    theirs = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('b')}"})
    made = [mine.post("/v1/conversations", json={"agent": "echo"}) for _ in range(2)]
    assert [r.status_code for r in made] == [201, 201]
    refused = mine.post("/v1/conversations", json={"agent": "echo"})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["type"] == "too_many_conversations"
    assert "you keep 2 conversations" in error["message"] and "delete some" in error["message"]
    assert "Retry-After" not in refused.headers  # waiting frees nothing: the clients must not retry it
    # an OpenAI-style chat that continues none starts a conversation too: refused in OpenAI's error shape
    chat = mine.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 409 and chat.json()["error"]["code"] == "too_many_conversations", chat.text
    # so does a job queued without a conversation (its run would start one)
    job = mine.post("/v1/jobs", json={"agent": "echo", "input": "later"})
    assert job.status_code == 409 and job.json()["error"]["type"] == "too_many_conversations", job.text
    assert mine.get("/v1/jobs").json()["data"] == []
    assert len(mine.get("/v1/conversations").json()["data"]) == 2  # nothing half-stored
    assert theirs.post("/v1/conversations", json={"agent": "echo"}).status_code == 201
    assert mine.delete(f"/v1/conversations/{made[0].json()['id']}").status_code == 204
    assert mine.post("/v1/conversations", json={"agent": "echo"}).status_code == 201


def test_no_cap_by_default(client: httpx.Client) -> None:
    assert all(client.post("/v1/conversations", json={"agent": "echo"}).status_code == 201 for _ in range(5))


def test_a_removed_agents_conversations_do_not_count(serve: Callable[..., Any], api_key: Callable[..., str]) -> None:
    """An agent removed in a deploy leaves its conversations in the store, where their owner can no longer reach
    them (404, unlisted) to delete them: they must not hold the owner's places for ever."""
    from halguru.store import open_store

    server = serve(max_conversations=2, worker=False)
    secret = api_key("a")
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"})
    for i in range(2):  # made while `gone` was served
        open_store().create_conversation(f"conv_gone{i}", "gone", owner=f"key:{secret.split('_')[1]}")
    assert [mine.post("/v1/conversations", json={"agent": "echo"}).status_code for _ in range(3)] == [201, 201, 409]
    job = mine.post("/v1/jobs", json={"agent": "echo", "input": "later"})
    assert job.status_code == 409 and job.json()["error"]["type"] == "too_many_conversations"
