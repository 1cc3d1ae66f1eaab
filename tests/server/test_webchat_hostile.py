"""The web chat as a demanding (or hostile) user drives it in Debian's Chromium: odd first messages, many
conversations, spoofed links, code and tables a keyboard and a screen reader must reach."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser, open_chat  # noqa: F401  (the fixture)


@pytest.mark.parametrize("text", [
    "a" * 79 + "😀 and then some more words",  # the 80th character is half of an emoji's UTF-16 pair
    "build log: \x1b[31mERROR\x1b[0m at step 3",  # pasted terminal output, colours and all
], ids=["emoji-at-80", "terminal-escapes"])
def test_any_first_message_starts_a_conversation(serve: Any, browser: Any, text: str) -> None:  # noqa: F811
    """The chat titled a new conversation with the first message's first 80 UTF-16 units, as they were: an emoji
    across the 80th was cut in half (a lone surrogate) and an escape was kept, and the server refused the title
    (400): the first message could not be sent at all ("...; your message is back in the box")."""
    server = serve()
    page = open_chat(browser, server)
    page.fill("#input", text)
    page.keyboard.press("Enter")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(".msg.assistant").last).to_contain_text("You said:")
    expect(page.locator("#status")).to_have_text("")
    conversation = page.url.split("conversation=")[1]
    title = server.state.store.get_conversation(conversation)["title"]
    assert title and title.isprintable() and title.startswith(text[:5])
