"""Anonymous web-chat sessions outlive a restart, and a page whose session no longer verifies starts a new one
(it sent the dead token on every call, so even the public agents' list was refused until site data was cleared)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser, open_chat  # noqa: F401  (the fixture)


def test_a_restart_without_session_secret_keeps_the_visitors_sessions(serve: Any) -> None:
    before = serve()  # no session_secret: the one kept in the store
    token = httpx.post(f"{before.url}/chat/api/session").json()["token"]
    session = {"X-Chat-Session": token}
    conversation = httpx.post(f"{before.url}/chat/api/conversations", json={"agent": "echo"}, headers=session)
    assert conversation.status_code == 201, conversation.text
    before.stop()
    after = serve()  # the restart: a new app on the same store
    messages = httpx.get(f"{after.url}/chat/api/conversations/{conversation.json()['id']}/messages", headers=session)
    assert messages.status_code == 200, messages.text
    assert httpx.get(f"{after.url}/chat/api/agents", headers=session).status_code == 200


def test_an_operators_session_secret_comes_first(serve: Any) -> None:
    from halguru_server import sessions

    server = serve(session_secret="the operator's own")
    token = httpx.post(f"{server.url}/chat/api/session").json()["token"]
    assert sessions.verify("the operator's own", token) is not None
    assert sessions.verify(sessions.stored_secret(server.state.store), token) is None


def test_a_page_whose_session_no_longer_verifies_starts_a_new_one(serve: Any, browser: Any) -> None:  # noqa: F811
    server = serve()
    page = open_chat(browser, server)
    ask(page, "before", "You said: before")
    old_token = page.evaluate("localStorage.getItem('halguru.session')")
    assert old_token and page.evaluate("localStorage.getItem('halguru.conversation.echo')")

    server.state.settings.session_secret = "rotated"  # the operator changed it: the stored token is dead
    page.reload()
    expect(page.locator("#agent option")).to_have_count(2, timeout=WAIT_MS)  # the public agents, not none
    expect(page.locator("#status")).to_contain_text("session has ended")
    expect(page.locator("#key-form")).to_be_hidden()
    assert page.locator(".msg").count() == 0  # the old session's conversation is gone with it
    assert page.evaluate("localStorage.getItem('halguru.conversation.echo')") is None
    ask(page, "after", "You said: after")
    assert page.evaluate("localStorage.getItem('halguru.session')") not in (None, old_token)

    server.state.settings.session_secret = "rotated again"  # now while the page is open: the next send still works
    ask(page, "again", "You said: again")
    expect(page.locator("#status")).to_contain_text("new conversation")
    assert page.locator(".msg").count() == 2 and page.locator(".failed").count() == 0
    conversations = server.state.store.list_conversations(agent="echo")
    assert sorted(c["messages"] for c in conversations) == [2, 2, 2]


def test_another_site_cannot_create_sessions_on_its_visitors_behalf(serve: Any, agents_dir: Any) -> None:
    """A page elsewhere posting to /chat/api/session would spend the visitor's address's rate limit: refused."""
    import yaml

    spec_path = agents_dir / "echo" / "agent.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["metadata"]["embed_origins"] = ["https://shop.example"]
    spec_path.write_text(yaml.safe_dump(spec))
    server = serve()
    url = f"{server.url}/chat/api/session"
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = httpx.post(url, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["error"]["type"] == "cross_site"
    for headers in ({}, {"Origin": server.url}, {"Origin": "https://shop.example"},
                    {"Sec-Fetch-Site": "same-origin"}):
        assert httpx.post(url, headers=headers).status_code == 201, headers


def test_an_anonymous_visitor_goes_back_to_an_earlier_conversation(serve: Any, browser: Any) -> None:  # noqa: F811
    """Only signed-in people had the list of their conversations: a visitor's "New conversation" lost the one
    before for good (the server kept it, for their session, but the page no longer named it)."""
    server = serve()
    page = open_chat(browser, server)
    assert page.locator("#history").is_hidden()  # nothing to list yet
    ask(page, "first chat", "You said: first chat")
    first = page.url.split("conversation=")[1]
    page.keyboard.press("Alt+n")
    ask(page, "second chat", "You said: second chat")
    history = page.get_by_label("Your conversations")
    expect(history).to_be_visible()
    assert [t.split(" · ")[0] for t in history.locator("option").all_inner_texts()] == [
        "Your conversations…", "second chat", "first chat"]
    history.select_option(first)
    expect(page.locator(".msg.user")).to_have_text(["first chat"], timeout=WAIT_MS)
    ask(page, "back in the first", "You said: back in the first")
    assert len(server.state.store.conversation_messages(first)) == 4
    other = browser.new_page()  # another browser (no session of its own yet) lists none of them
    other.goto(f"{server.url}/chat/")
    expect(other.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    assert other.locator("#history").is_hidden()
