"""The bundled web chat in real headless Chromium (Debian's /usr/bin/chromium, never `playwright install`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# Waits go through locators: page.wait_for_function evaluates a string, which the chat's
# Content-Security-Policy (no unsafe-eval) rightly refuses once Playwright has to poll.
WAIT_MS = 20_000
MARKDOWN = ("**bold** and [a link](https://example.com) <img src=x onerror=alert(1)> <b>raw</b> "
            "![pic](https://example.com/p.png)")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (./scripts/test does, as root)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def open_chat(browser, server):
    """A new page on the server's web chat, once it lists the agents."""
    page = browser.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    return page


def ask(page, text: str, answer: str) -> None:
    """Send ``text`` with Enter; return once the answer containing ``answer`` has ended."""
    page.fill("#input", text)
    page.keyboard.press("Enter")
    page.locator(".msg.assistant", has_text=answer).wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)


def test_chat_streams_renders_markdown_safely_and_survives_reload(serve, agents_dir: Path, browser) -> None:
    script = agents_dir.parent / "md.yaml"
    script.write_text(yaml.safe_dump([MARKDOWN]))
    spec = yaml.safe_load((agents_dir / "echo" / "agent.yaml").read_text())
    (agents_dir / "echo" / "agent.yaml").write_text(yaml.safe_dump({**spec, "model": f"scripted:{script}"}))
    server = serve()  # keys required: the public `echo` chat still opens without one
    page = browser.new_page(viewport={"width": 375, "height": 667})  # a phone
    remote: list[str] = []
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(server.url) else None)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    assert page.eval_on_selector_all("#agent option", "os => os.map(o => o.value)") == ["echo", "slow"]
    # keyboard only: the message box has focus; Enter sends
    page.keyboard.type("show me markdown")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    answer.locator("strong").wait_for()
    assert answer.locator("strong").inner_text() == "bold"
    link = answer.locator("a", has_text="a link")
    assert link.get_attribute("href") == "https://example.com/" and "noopener" in link.get_attribute("rel")
    assert answer.locator("img, b").count() == 0  # no raw HTML, no remote image
    assert "<img src=x onerror=alert(1)>" in answer.inner_text()
    assert answer.locator("a", has_text="image: pic").count() == 1
    assert not dialogs and not remote
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # fits the phone
    # a reload keeps the conversation (once the answer is complete, and so stored)
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    page.reload()
    page.locator(".msg.user", has_text="show me markdown").wait_for()
    assert page.locator(".msg.assistant strong").inner_text() == "bold"
    # second turn, sent with the button, continues the same conversation
    page.fill("#input", "second turn")
    page.click("#send")
    page.locator(".msg.assistant strong").nth(1).wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    assert page.locator(".msg").count() == 4
    # Alt+N: a new, empty conversation, focus back in the message box
    page.keyboard.press("Alt+n")
    assert page.locator(".msg").count() == 0
    assert page.evaluate("document.activeElement.id") == "input"
    page.keyboard.type("fresh")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant strong").wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    conversations = server.state.store.list_conversations(agent="echo")
    assert sorted(c["messages"] for c in conversations) == [2, 4]


def test_key_only_agents_ask_for_a_key(serve, api_key, browser) -> None:
    server = serve(web_chat="key")
    (server.state.agents["echo"]).web_chat = "key"
    (server.state.agents["slow"]).web_chat = "key"
    page = browser.new_page()
    page.goto(f"{server.url}/chat/")
    page.locator("#key-form").wait_for()
    assert "API key" in page.locator("#status").inner_text()
    page.fill("#key", api_key(agents=["private"]))
    page.keyboard.press("Enter")
    expect(page.locator("#agent option")).to_have_count(1, timeout=WAIT_MS)
    page.fill("#input", "secret hello")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant", has_text="You said: secret hello").wait_for()


def test_dev_mode_shows_no_key_or_sign_in_controls(serve, browser) -> None:
    """`halguru serve --dev` takes no keys and has no accounts: its chat offered "API key" and "Sign in",
    neither of which does anything there. /auth/me says ``via: dev``; the page says dev mode instead."""
    page = open_chat(browser, serve(dev=True))
    expect(page.locator("#account")).to_have_text("Dev mode: no sign-in or keys", timeout=WAIT_MS)
    expect(page.locator("#key-button")).to_be_hidden()
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#account a", has_text="Sign in")).to_have_count(0)
    ask(page, "hello", "You said: hello")


def test_wrong_key_says_so_and_still_shows_public_agents_and_failed_sends_say_why(serve, browser) -> None:
    server = serve(public_rate_per_minute=3)  # a session, a conversation and one message a minute
    page = browser.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("#key-form")).to_be_hidden()  # public agents: no key bar until asked for
    expect(page.locator("#key-button")).to_be_visible()
    page.click("#key-button")
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key", "hg_wrong_key")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Invalid key", timeout=WAIT_MS)
    expect(page.locator("#agent option")).to_have_count(2)  # the public agents, still
    expect(page.locator("#key-form")).to_be_hidden()
    page.fill("#input", "first")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant", has_text="You said: first").wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    page.fill("#input", "second")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("too many requests", timeout=WAIT_MS)
    assert page.input_value("#input") == "second"  # refused, so back in the box, not drawn as sent
    expect(page.locator(".msg.user")).to_have_text(["first"])


def test_favicon_and_static_files_are_served_safely(serve) -> None:
    import httpx

    server = serve()
    icon = httpx.get(f"{server.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    for path in ("/chat/static/chat.js", "/chat/static/chat.css", "/chat/static/favicon.svg", "/chat/"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff", path
    assert 'rel="icon"' in httpx.get(f"{server.url}/chat/").text


def test_swagger_renders_offline_from_the_apps_own_files(serve, browser) -> None:
    server = serve()
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_here(route) -> None:  # the network beyond this server is gone: any such request fails
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(f"{server.url}/swagger")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("halguru", timeout=WAIT_MS)
    expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".opblock").count() > 10
    assert page.get_by_text("/v1/conversations/{conversation_id}/messages", exact=True).count() >= 1
    page.locator(".btn.authorize").click()  # a key can be given once, for every route that takes one
    page.locator(".modal-ux input").fill("hg_example")
    page.locator(".modal-ux .btn.authorize").click()
    expect(page.locator(".modal-ux .btn-done")).to_be_visible(timeout=WAIT_MS)
    assert elsewhere == []
