"""The web chat as a demanding (or hostile) user drives it in Debian's Chromium: odd first messages, many
conversations, spoofed links, code and tables a keyboard and a screen reader must reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, ask, browser, open_chat  # noqa: F401  (the fixture)
from tests.server.test_webchat_a11y import chrome_name, signed_in_page


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


def test_a_visitor_with_many_conversations_reaches_the_oldest(serve: Any, browser: Any) -> None:  # noqa: F811
    """The list held the newest 50 and nothing said there were more: a visitor's 51st conversation back (and
    every one before it) could no longer be opened from the chat."""
    server = serve()
    page = open_chat(browser, server)
    ask(page, "the oldest plans", "You said: the oldest plans")
    oldest = page.url.split("conversation=")[1]
    owner = server.state.store.get_conversation(oldest)["owner"]
    for i in range(120):
        server.state.store.create_conversation(f"conv_{i:04x}{'0' * 20}", "echo", f"later chat {i}", owner=owner)
    page.click("#new")
    page.reload()
    history = page.get_by_role("combobox", name="Your conversations")
    expect(history.locator("option", has_text="later chat 119")).to_have_count(1, timeout=WAIT_MS)
    expect(history.locator("option", has_text="the oldest plans")).to_have_count(0)
    for shown in (100, 121):  # a page more each time it is chosen
        history.select_option(label="Older conversations…")
        expect(history.locator("option[value^=conv_]")).to_have_count(shown, timeout=WAIT_MS)
        expect(history).to_have_value("")
    expect(history.locator("option", has_text="Older conversations…")).to_have_count(0)  # that was all of them
    history.select_option(label=history.locator("option", has_text="the oldest plans").inner_text())
    expect(page.locator(".msg.user")).to_have_text("the oldest plans", timeout=WAIT_MS)


def answering(agents_dir: Path, answer: str) -> None:
    """The `echo` agent answers every message with ``answer`` (its scripted model)."""
    script = agents_dir.parent / "answer.yaml"
    script.write_text(yaml.safe_dump([answer]))
    spec = yaml.safe_load((agents_dir / "echo" / "agent.yaml").read_text())
    (agents_dir / "echo" / "agent.yaml").write_text(yaml.safe_dump({**spec, "model": f"scripted:{script}"}))


def scrolled(box: Any) -> None:
    """Wait (2 s at most) for ``box`` to have scrolled sideways: the browser may scroll smoothly."""
    for _ in range(40):
        if box.evaluate("b => b.scrollLeft") > 0:
            return
        box.page.wait_for_timeout(50)
    raise AssertionError("not scrolled")


CODE_AND_TABLE = ("Run this:\n\n```python\nprint('" + "x" * 300 + "')\n```\n\nand\n\n```\nls\n```\n\n"
                  "| name | value |\n|---|---|\n| " + "z" * 300 + " | 1 |\n")


def test_code_blocks_and_tables_are_named_regions_a_keyboard_can_scroll(
        serve: Any, agents_dir: Path, browser: Any) -> None:  # noqa: F811
    """A code block (and a wide table's box) scrolls sideways on a phone, but had no name and no way in from the
    keyboard: a screen reader said nothing of what it was, and its end could not be scrolled to without a mouse.
    Its Copy button was "Copy code" for every block alike."""
    answering(agents_dir, CODE_AND_TABLE)
    page = browser.new_page(viewport={"width": 360, "height": 640})
    page.goto(f"{serve().url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    ask(page, "show me", "Run this")
    answer = page.locator(".msg.assistant").last
    assert chrome_name(page, ".msg.assistant pre") == "Code: python"
    assert chrome_name(page, ".msg.assistant pre:nth-of-type(2)") == "Code"
    assert chrome_name(page, ".msg.assistant .table") == "Table"
    expect(answer.get_by_role("region", name="Code: python")).to_have_count(1)
    expect(answer.get_by_role("button", name="Copy code: python")).to_have_count(1)
    pre = answer.locator("pre").first
    pre.focus()
    expect(pre).to_be_focused()
    for box in (pre, answer.locator(".table")):  # the keyboard scrolls each sideways
        box.focus()
        page.keyboard.press("ArrowRight")
        scrolled(box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


@pytest.mark.parametrize("text", ["https://bank.example login", "Log in at www.bank.example now"])
def test_a_link_whose_text_names_another_site_shows_where_it_goes(
        serve: Any, agents_dir: Path, browser: Any, text: str) -> None:  # noqa: F811
    """Only a text that was an address and nothing else was checked against where the link went: with a word
    beside it ("[https://bank.example login](https://evil.example/)") it read as the bank's."""
    answering(agents_dir, f"Please [{text}](https://evil.example/steal) to go on.")
    page = open_chat(browser, serve())
    ask(page, "where do I log in", "to go on")
    link = page.locator(".msg.assistant a")
    expect(link).to_have_count(1)
    expect(link).to_contain_text("evil.example")
    assert link.get_attribute("href") == "https://evil.example/steal"


def test_a_person_whose_sign_in_ended_is_told_to_sign_in_again(serve: Any, browser: Any) -> None:  # noqa: F811
    """A sign-in that ended while the chat was open (expired, or signed out on another device) answered the next
    message with "no conversation 'conv_…'", forgot the conversation shown, and still said "Signed in as Jo"."""
    from halguru_server.identity import websessions

    server = serve()
    page = signed_in_page(browser, server, "Jo")
    secret, context = page.secret, page.context
    expect(page.locator("#account")).to_contain_text("Signed in as Jo", timeout=WAIT_MS)
    ask(page, "my plans", "You said: my plans")
    conversation = page.url.split("conversation=")[1]
    websessions.revoke(server.state.store, secret)  # signed out elsewhere
    page.fill("#input", "and more plans")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("sign in again", timeout=WAIT_MS)
    expect(page.locator("#status")).not_to_contain_text("conv_")
    expect(page.locator("#input")).to_have_value("and more plans")  # nothing lost
    expect(page.locator("#account").get_by_role("link", name="Sign in")).to_be_visible()
    assert page.evaluate("localStorage.getItem('halguru.conversation.echo')") == conversation  # kept for later
    context.close()


def test_an_address_with_a_user_name_before_its_host_is_no_link(
        serve: Any, agents_dir: Path, browser: Any) -> None:  # noqa: F811
    """"https://bank.example@evil.example/" reads as the bank's but goes to evil.example (what comes before the "@"
    is a user name): it was a link, drawn as its text, both bare and as a Markdown link's target."""
    answering(agents_dir, "Log in at https://bank.example@evil.example/login or "
                          "[the bank](https://bank.example:x@evil.example/) or https://bank.example/help.")
    page = open_chat(browser, serve())
    ask(page, "where do I log in", "Log in at")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_contain_text("https://bank.example@evil.example/login")
    expect(answer.locator("a")).to_have_count(1)
    assert answer.locator("a").get_attribute("href") == "https://bank.example/help"


def test_with_the_server_gone_the_conversation_actions_say_so_in_words(serve: Any, browser: Any) -> None:  # noqa: F811
    """Renaming, deleting or opening a conversation while the server could not be reached said only "Failed to
    fetch" (the browser's words for it)."""
    server = serve()
    page = open_chat(browser, server)
    ask(page, "plans", "You said: plans")
    server.stop()
    page.once("dialog", lambda dialog: dialog.accept("Trip"))
    page.click("#rename")
    expect(page.locator("#status")).to_have_text("The server could not be reached: try again in a moment.",
                                                 timeout=WAIT_MS)
    page.evaluate("document.getElementById('status').textContent = ''")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    expect(page.locator("#status")).to_have_text("The server could not be reached: try again in a moment.",
                                                 timeout=WAIT_MS)
    expect(page.locator(".msg")).to_have_count(2)  # still shown: nothing was deleted


def test_a_key_with_a_character_no_key_has_is_refused_where_it_is_typed(serve: Any, browser: Any) -> None:  # noqa: F811
    """A key with a character a header cannot carry (the placeholder's "…" typed along, a smart quote pasted)
    was saved, and every call after it failed in the browser before it was sent: the agents list was empty and
    the status said only what fetch had thrown, until the site's data was cleared."""
    server = serve()
    page = open_chat(browser, server)
    page.click("#key-button")
    page.fill("#key", "hg_…abc”")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(
        "That is not an API key: a key has no spaces and only ASCII characters; paste it again.")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key")).to_be_focused()
    assert page.evaluate("localStorage.getItem('halguru.key')") is None
    expect(page.locator("#agent option")).to_have_count(2)  # the public agents, still
    page.evaluate("localStorage.setItem('halguru.key', 'hg_…abc')")  # one saved by an earlier version
    page.reload()
    expect(page.locator("#agent option")).to_have_count(2, timeout=WAIT_MS)


def test_at_200_percent_zoom_the_conversation_keeps_half_the_window(serve: Any, browser: Any) -> None:  # noqa: F811
    """At 200% zoom (a 1280×800 window is 640×400 CSS pixels, as a phone held sideways is) a signed-in person's
    header took three rows, "Signed in as" and their name one of them: the conversation had 40% of the window."""
    page = signed_in_page(browser, serve(), "Josephine Longname-Example", {"width": 640, "height": 400})
    context = page.context
    expect(page.locator("#account")).to_contain_text("Signed in as Josephine", timeout=WAIT_MS)
    ask(page, "plans", "You said: plans")
    box = page.locator("#log").bounding_box()
    assert box and box["height"] >= 200, box
    assert chrome_name(page, "#account a") == "Josephine Longname-Example"  # the whole name, for a screen reader
    assert page.evaluate("document.documentElement.scrollWidth") <= 640
    context.close()


def test_arrowing_through_the_conversations_opens_none_until_enter_or_leaving(serve: Any, browser: Any) -> None:  # noqa: F811
    """Chromium fires `change` at each arrow key on a closed list: a keyboard user looking through the
    conversations opened each one on the way (and the agents list switched agent at each arrow), a change of
    context on input (WCAG 3.2.2). The conversation arrowed to opens on Enter, or when focus leaves the list."""
    server = serve()
    page = open_chat(browser, server)
    ask(page, "the older chat", "You said: the older chat")
    page.click("#new")
    ask(page, "the newer chat", "You said: the newer chat")
    newer = page.url
    history = page.get_by_role("combobox", name="Your conversations")
    expect(history.locator("option", has_text="the older chat")).to_have_count(1, timeout=WAIT_MS)
    history.focus()
    page.keyboard.press("ArrowDown")  # the newest is shown; below it, the older one
    expect(history).to_have_value(server.state.store.list_conversations(2)[1]["id"])
    page.wait_for_timeout(500)
    expect(page.locator(".msg.user")).to_have_text("the newer chat")  # still the one shown
    assert page.url == newer
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user")).to_have_text("the older chat", timeout=WAIT_MS)
    page.keyboard.press("ArrowUp")  # back to the newer one, then away: leaving the list opens it
    page.wait_for_timeout(500)
    expect(page.locator(".msg.user")).to_have_text("the older chat")
    page.keyboard.press("Tab")
    expect(page.locator(".msg.user")).to_have_text("the newer chat", timeout=WAIT_MS)
