"""Renaming and deleting a conversation from the web chat (Debian's Chromium) and the API: before, the chat had
no way to do either (the API could delete, not rename), so a visitor's list only grew and every conversation was
titled by its first words."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser, open_chat  # noqa: F401  (the fixture)


def test_a_visitor_renames_then_deletes_a_conversation(serve: Any, browser: Any) -> None:  # noqa: F811
    server = serve()
    page = open_chat(browser, server)
    expect(page.locator("#rename")).to_be_hidden()  # nothing to rename yet
    ask(page, "plans for the trip", "You said: plans for the trip")
    conversation = page.url.split("conversation=")[1]
    expect(page.locator("#rename")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept("  Trip   to Lisbon "))
    page.click("#rename")
    expect(page.locator("#status")).to_have_text("Conversation renamed.", timeout=WAIT_MS)
    expect(page.locator("#history option:checked")).to_contain_text("Trip to Lisbon")
    assert server.state.store.get_conversation(conversation)["title"] == "Trip to Lisbon"

    page.once("dialog", lambda dialog: dialog.dismiss())  # Cancel keeps it
    page.click("#delete")
    assert server.state.store.get_conversation(conversation) is not None

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    expect(page.locator("#status")).to_have_text("Conversation deleted.", timeout=WAIT_MS)
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#delete")).to_be_hidden()
    assert server.state.store.get_conversation(conversation) is None
    page.reload()  # it does not come back
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(".msg")).to_have_count(0)
    ask(page, "a new start", "You said: a new start")  # and the chat goes on in a new conversation
    assert page.url.split("conversation=")[1] != conversation


def test_only_the_owner_renames_or_deletes_and_a_blank_title_is_one_line(serve: Any, api_key: Any) -> None:
    server = serve()
    key = api_key("alice")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as alice:
        conversation = alice.post("/v1/conversations", json={"agent": "echo", "title": "first"}).json()["id"]
        renamed = alice.patch(f"/v1/conversations/{conversation}", json={"title": "Quarterly report"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Quarterly report"
        blank = alice.patch(f"/v1/conversations/{conversation}", json={"title": " \t "})
        assert blank.status_code == 400 and blank.json()["error"]["message"] == (
            "give the conversation a title that is not blank")
    with httpx.Client(base_url=server.url) as stranger:  # an anonymous chat session of someone else's
        token = stranger.post("/chat/api/session").json()["token"]
        headers = {"X-Chat-Session": token}
        assert stranger.patch(f"/chat/api/conversations/{conversation}", json={"title": "mine"},
                              headers=headers).status_code == 404
        assert stranger.delete(f"/chat/api/conversations/{conversation}", headers=headers).status_code == 404
    assert server.state.store.get_conversation(conversation)["title"] == "Quarterly report"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as alice:
        assert alice.delete(f"/chat/api/conversations/{conversation}").status_code == 204
        assert alice.delete(f"/chat/api/conversations/{conversation}").status_code == 404
    assert [e["action"] for e in server.state.store.list_audit(action="conversation.")] == ["conversation.delete"]


def test_a_new_conversations_title_is_checked_as_a_rename_is(serve: Any, api_key: Any) -> None:
    """Creating a conversation stored its title as sent (a line break, only spaces, a NUL that the store keeps
    as U+FFFD while the answer showed it as sent), where a rename folds the spaces and refuses what it cannot
    store."""
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}) as client:
        made = client.post("/v1/conversations", json={"agent": "echo", "title": "  Trip\r\nto\u2028Lisbon  "})
        assert made.status_code == 201 and made.json()["title"] == "Trip to Lisbon"
        assert server.state.store.get_conversation(made.json()["id"])["title"] == "Trip to Lisbon"
        blank = client.post("/v1/conversations", json={"agent": "echo", "title": " \t "})
        assert blank.status_code == 201 and blank.json()["title"] == ""  # untitled, as with no title
        for path in ("/v1/conversations", "/chat/api/conversations"):
            refused = client.post(path, json={"agent": "echo", "title": "a\u0000b\x1b[2J"})
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["message"] == "the title has a control character (\\x00); remove it"
        conversation = made.json()["id"]
        renamed = client.patch(f"/v1/conversations/{conversation}", json={"title": "x\x07y"})
        assert renamed.status_code == 400 and "control character (\\x07)" in renamed.json()["error"]["message"]
        assert [c["title"] for c in client.get("/v1/conversations").json()["data"]] == ["", "Trip to Lisbon"]


def test_a_new_conversation_keeps_the_title_it_was_given_as_a_rename_does(serve: Any, api_key: Any) -> None:
    """Up to 200 characters are accepted both ways; creating one cut its title to 80 without a word."""
    server = serve()
    title = "Quarterly planning: " + "revenue, hiring and the roadmap for the next two quarters; " * 3
    assert 80 < len(title.strip()) <= 200
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}) as client:
        made = client.post("/v1/conversations", json={"agent": "echo", "title": title})
        assert made.status_code == 201 and made.json()["title"] == title.strip()
        renamed = client.patch(f"/v1/conversations/{made.json()['id']}", json={"title": title})
        assert renamed.json()["title"] == title.strip()
        assert client.get(f"/v1/conversations/{made.json()['id']}").json()["title"] == title.strip()


def test_a_conversation_deleted_elsewhere_is_said_so_and_the_message_kept(serve: Any, browser: Any) -> None:  # noqa: F811
    """Deleted in one tab (or on another device), the conversation stayed on the other tab's screen, and a message
    sent there was refused with "no conversation 'conv_…'"; sent again, it went to a new conversation drawn under
    the deleted one's messages."""
    server = serve()
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    ask(page, "plans for the trip", "You said: plans for the trip")
    other = context.new_page()
    other.goto(page.url)
    other.locator(".msg.user").wait_for()
    other.once("dialog", lambda dialog: dialog.accept())
    other.click("#delete")
    expect(other.locator("#status")).to_have_text("Conversation deleted.", timeout=WAIT_MS)
    # the first tab lets go of it at once: nothing of it is left on the screen
    expect(page.locator(".msg")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("deleted in another tab")
    expect(page.locator("#delete")).to_be_hidden()
    # deleted on another device (no tab to hear it): the message is kept, and why is said in words
    ask(page, "second try", "You said: second try")
    server.state.store.delete_conversation(page.url.split("conversation=")[1])
    page.fill("#input", "and then")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("This conversation was deleted", timeout=WAIT_MS)
    expect(page.locator("#status")).not_to_contain_text("conv_")
    expect(page.locator("#input")).to_have_value("and then")
    expect(page.locator(".msg")).to_have_count(0)
    ask(page, "and then", "You said: and then")  # sent again: a new conversation, alone on the screen
    expect(page.locator(".msg")).to_have_count(2)
    context.close()
