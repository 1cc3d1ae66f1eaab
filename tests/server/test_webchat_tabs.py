"""Two tabs of one browser on the web chat (Debian's Chromium): each sends to the conversation it shows, a turn
answered in one is drawn in the other showing the same conversation, and a message into a conversation that is
answering in another tab is refused in the page's words, kept in the box."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser  # noqa: F401  (the fixture)


def _tab(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    return page


def test_each_tab_sends_to_the_conversation_it_shows_and_sees_the_others_turns(serve: Any, browser: Any) -> None:  # noqa: F811
    server = serve()
    context = browser.new_context()
    one = _tab(context, f"{server.url}/chat/")
    ask(one, "from one", "You said: from one")
    first = one.url.split("conversation=")[1]
    two = _tab(context, f"{server.url}/chat/")  # opens the same conversation
    expect(two.locator(".msg")).to_have_count(2, timeout=WAIT_MS)

    ask(one, "again from one", "You said: again from one")  # drawn in the other tab too, without a reload
    expect(two.locator(".msg.assistant", has_text="You said: again from one")).to_have_count(1, timeout=WAIT_MS)

    one.keyboard.press("Alt+n")  # tab one starts another conversation...
    ask(one, "a new one", "You said: a new one")
    ask(two, "from two", "You said: from two")  # ...tab two still sends to the one it shows
    store = server.state.store
    assert [m["content"] for m in store.conversation_messages(first) if m["role"] == "user"] == [
        "from one", "again from one", "from two"]
    second = one.url.split("conversation=")[1]
    assert [m["content"] for m in store.conversation_messages(second) if m["role"] == "user"] == ["a new one"]
    expect(one.locator(".msg.user")).to_have_text(["a new one"])  # tab one's own conversation is left as it is


def test_a_message_into_a_conversation_answering_in_another_tab_stays_in_the_box(serve: Any, browser: Any) -> None:  # noqa: F811
    server = serve()
    context = browser.new_context()
    one = _tab(context, f"{server.url}/chat/")
    one.select_option("#agent", "slow")
    ask(one, "hello", "word39")
    two = _tab(context, one.url)  # opened before the next answer began
    one.fill("#input", "a long one")
    one.keyboard.press("Enter")
    one.locator(".msg.assistant", has_text="word1").wait_for()  # answering now
    two.fill("#input", "meanwhile")
    two.keyboard.press("Enter")
    expect(two.locator("#status")).to_contain_text("An answer is still coming in this conversation", timeout=WAIT_MS)
    assert "conv_" not in two.locator("#status").inner_text()  # the page's words, not the server's ids
    assert two.input_value("#input") == "meanwhile"
    # a tab opened mid-answer shows the turn being answered (it follows it) and holds a message back itself
    three = _tab(context, one.url)
    expect(three.locator(".msg.user")).to_have_text(["hello", "a long one"], timeout=WAIT_MS)
    three.fill("#input", "meanwhile")
    three.keyboard.press("Enter")
    expect(three.locator("#status")).to_contain_text("An answer is still coming: send this when it has ended")
    assert three.input_value("#input") == "meanwhile"
