"""An answer cut short (stopped, failed, limited) says so when its conversation is shown again: the messages API
gives each message its run's status, and the web chat marks the answer (it looked complete after a reload)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser, open_chat  # noqa: F401  (the fixture)


def stored_status(store: Any, conversation_id: str) -> str:
    """The conversation's one run's status once it has ended (its messages are stored then)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = list(store.run_statuses(conversation_id).values())
        if statuses and statuses[0] != "running":
            return statuses[0]
        time.sleep(0.05)
    raise AssertionError(f"the run of {conversation_id} did not end")


def test_messages_say_whether_their_run_ended_whole(client: httpx.Client) -> None:
    whole = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    run_id = client.post(f"/v1/conversations/{whole}/messages", json={"content": "hi"}).json()["run_id"]
    messages = client.get(f"/v1/conversations/{whole}/messages").json()["data"]
    assert [(m["role"], m["run_id"], m["run_status"]) for m in messages] == [("user", run_id, "ok"),
                                                                            ("assistant", run_id, "ok")]
    cut = client.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    with client.stream("POST", f"/v1/conversations/{cut}/messages", json={"content": "go", "stream": True}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and "word3" in line:
                break  # the client leaves mid-answer: the run is cancelled, with what it wrote so far kept
    assert stored_status(client.server.state.store, cut) == "cancelled"  # type: ignore[attr-defined]
    answer = client.get(f"/v1/conversations/{cut}/messages").json()["data"][-1]
    assert answer["role"] == "assistant" and answer["content"].startswith("word0 word1")
    assert answer["run_status"] == "cancelled" and answer["run_id"].startswith("run_")


def test_the_chat_marks_a_stopped_answer_when_it_is_shown_again(serve: Any, browser: Any) -> None:  # noqa: F811
    server = serve()
    page = open_chat(browser, server)
    page.select_option("#agent", "echo")
    ask(page, "whole", "You said: whole")
    page.select_option("#agent", "slow")
    page.fill("#input", "stop me")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant", has_text="word2").wait_for()
    page.click("#stop")
    stopped = page.locator(".msg.assistant").last
    expect(stopped.locator(".error")).to_have_text("⚠ This answer was stopped before it finished.")
    conversation = page.evaluate("localStorage.getItem('halguru.conversation.slow')")
    assert stored_status(server.state.store, conversation) == "cancelled"
    page.reload()  # shown again: marked as it was live
    answer = page.locator(".msg.assistant")
    expect(answer).to_have_count(1, timeout=WAIT_MS)
    expect(answer).to_contain_text("word0 word1 word2")
    expect(answer.locator(".error")).to_have_text("⚠ This answer was stopped before it finished.")
    page.select_option("#agent", "echo")  # a whole answer has no mark
    page.locator(".msg.assistant", has_text="You said: whole").wait_for()
    assert page.locator(".error, .failed").count() == 0
