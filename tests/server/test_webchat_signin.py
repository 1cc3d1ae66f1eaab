"""The web chat for signed-in users, in real Chromium: sign-in-only agents, history across devices, sign-out."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, browser  # noqa: F401  (the fixture)


def _session_cookie(server, user_id: str) -> dict:
    """A signed-in browser's cookie, as a finished sign-in leaves it (the sign-in pages have their own tests)."""
    from halguru_server.identity import websessions

    secret, _ = websessions.issue(server.state.store, user_id, server.state.settings.auth)
    return {"name": websessions.COOKIE, "value": secret, "url": server.url}


def _user(server, email: str = "ann@example.com") -> str:
    from halguru_server.identity import accounts

    return accounts.create_user(server.state.store, email, role="user", name="Ann")["id"]


def test_anonymous_visitors_see_public_agents_and_a_sign_in_link(serve, browser) -> None:  # noqa: F811
    server = serve()
    page = browser.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).to_have_count(2, timeout=WAIT_MS)  # echo, slow: not `private`
    link = page.locator("#account a", has_text="Sign in")
    assert link.get_attribute("href") == "/auth/login?next=%2Fchat%2F"
    assert page.locator("#history").is_hidden()


def test_a_slow_list_for_the_agent_shown_first_does_not_replace_the_chosen_agents(serve, browser) -> None:  # noqa: F811
    """The page loads the first agent's conversations, then the chosen agent's: when the first list came back
    last (a loaded server), it replaced the chosen agent's, and the conversation was missing from its history
    (seen in CI). Only the list of the agent chosen now is drawn."""
    server = serve()
    user_id = _user(server)
    store = server.state.store
    store.create_conversation("conv_mine", "private", "hello from the laptop", owner=f"user:{user_id}")
    context = browser.new_context()
    context.add_cookies([_session_cookie(server, user_id)])
    page = context.new_page()
    held: list = []
    page.route("**/chat/api/conversations?agent=echo*", lambda route: held.append(route))  # answered later
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).to_have_count(3, timeout=WAIT_MS)
    deadline_ms = WAIT_MS
    while not held and deadline_ms > 0:
        page.wait_for_timeout(50)
        deadline_ms -= 50
    assert held, "the first agent's list was never asked for"
    page.select_option("#agent", "private")
    option = page.locator("#history option", has_text="hello from the laptop")
    expect(option).to_have_count(1, timeout=WAIT_MS)
    for route in held:
        route.continue_()  # the first agent's (empty) list arrives last
    page.wait_for_timeout(500)
    expect(option).to_have_count(1)
    assert page.locator("#agent").input_value() == "private"


def test_signed_in_user_chats_with_a_sign_in_agent_and_finds_it_on_another_device(serve, browser) -> None:  # noqa: F811
    server = serve()
    user_id = _user(server)
    laptop = browser.new_context()
    laptop.add_cookies([_session_cookie(server, user_id)])
    page = laptop.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#account")).to_contain_text("Signed in as Ann", timeout=WAIT_MS)
    assert page.locator("#key-button").is_hidden()
    expect(page.locator("#agent option")).to_have_count(3, timeout=WAIT_MS)  # `private` too
    page.select_option("#agent", "private")
    page.fill("#input", "hello from the laptop")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant", has_text="You said: hello from the laptop").wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    (conversation,) = server.state.store.list_conversations(agent="private")
    assert conversation["owner"] == f"user:{user_id}"
    # another device: same user, its own session; the conversation is in its history, by its first message
    phone = browser.new_context(viewport={"width": 360, "height": 640})
    phone.add_cookies([_session_cookie(server, user_id)])
    other = phone.new_page()
    other.goto(f"{server.url}/chat/")
    expect(other.locator("#agent option")).to_have_count(3, timeout=WAIT_MS)
    other.select_option("#agent", "private")
    option = other.locator("#history option", has_text="hello from the laptop")
    expect(option).to_have_count(1, timeout=WAIT_MS)
    other.select_option("#history", conversation["id"])
    other.locator(".msg.assistant", has_text="You said: hello from the laptop").wait_for()
    # sign out on the phone: its session ends server-side; the laptop's goes on
    other.click("#account button")
    expect(other.locator("#account a", has_text="Sign in")).to_have_count(1, timeout=WAIT_MS)
    expect(other.locator("#agent option")).to_have_count(2, timeout=WAIT_MS)
    assert not [c for c in phone.cookies() if c["name"] == "halguru_session"]  # cleared in the browser too
    from halguru_server.identity import websessions

    live = websessions.list_sessions(server.state.store, user_id, server.state.settings.auth)
    assert len(live) == 1  # and ended on the server: only the laptop's is left
    page.reload()
    expect(page.locator("#account")).to_contain_text("Signed in as Ann", timeout=WAIT_MS)


def test_history_lists_only_ones_own_conversations_even_for_an_operator(serve) -> None:
    from halguru_server.identity import accounts

    server = serve()
    ann = _user(server)
    boss = accounts.create_user(server.state.store, "op@example.com", role="operator")["id"]
    clients = {}
    for who in (ann, boss):
        cookie = _session_cookie(server, who)
        client = httpx.Client(base_url=server.url, cookies={cookie["name"]: cookie["value"]},
                              headers={"Origin": server.url})
        clients[who] = client
        csrf = client.get("/auth/me").json()["csrf"]
        client.headers["X-CSRF-Token"] = csrf
        made = client.post("/chat/api/conversations", json={"agent": "echo", "title": f"by {who}"})
        assert made.status_code == 201, made.text
    for who, client in clients.items():
        titles = [c["title"] for c in client.get("/chat/api/conversations").json()["data"]]
        assert titles == [f"by {who}"]
    # the operator's role still sees everyone's through the API
    assert len(clients[boss].get("/v1/conversations").json()["data"]) == 2
    # a signed-in state change without the CSRF token is refused
    del clients[ann].headers["X-CSRF-Token"]
    refused = clients[ann].post("/chat/api/conversations", json={"agent": "echo"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
