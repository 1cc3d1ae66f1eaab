"""The web chat as a screen reader, a keyboard and a phone use it (real headless Chromium)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.server.test_serve_webchat import WAIT_MS, browser, open_chat  # noqa: F401  (the fixture)

STATIC = Path(__file__).parents[2] / "server" / "halguru_server" / "static"


def test_the_chat_has_one_main_landmark_with_a_heading_holding_the_conversation_and_composer(
        serve: Any, browser: Any) -> None:  # noqa: F811
    """The page had no main landmark (<main role=log> is a log, not main), no heading, and the message box and
    its buttons were outside every landmark: a screen reader's landmark and heading keys found nothing to go to."""
    page = browser.new_page(viewport={"width": 360, "height": 640})  # a small phone
    page.goto(f"{serve().url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    main = page.get_by_role("main")
    expect(main).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_have_text("halguru chat")
    for part in (main.get_by_role("region", name="Conversation"), main.get_by_role("textbox", name="Message"),
                 main.get_by_role("button", name="Send"), main.get_by_role("button", name="Attach")):
        expect(part).to_have_count(1)
    expect(page.get_by_role("banner").get_by_role("combobox", name="Agent")).to_have_count(1)
    # on the phone: nothing scrolls sideways, and the whole composer is on the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for name in ("Send", "Attach"):
        box = main.get_by_role("button", name=name).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["y"] + box["height"] <= 640, name
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant").first.wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def chrome_name(page: Any, selector: str) -> str:
    """The accessible name Chromium gives the element (Playwright computes its own, which reads hidden labels)."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    tree = cdp.send("Accessibility.getPartialAXTree", {"nodeId": node, "fetchRelatives": False})
    return tree["nodes"][0].get("name", {}).get("value", "")


# Every change screen readers are told of: the text of each live region a change touched, once per batch of changes.
HEAR = """() => {
  window.heard = [];
  const live = (node) => {
    const el = node.nodeType === 1 ? node : node.parentElement;
    const region = el && el.closest('[aria-live], [role=log], [role=status], [role=alert]');
    return region && region.getAttribute('aria-live') !== 'off' ? region : null;
  };
  new MutationObserver((records) => {
    const regions = new Set(records.map((r) => live(r.target)).filter(Boolean));
    for (const region of regions) window.heard.push(region.textContent);
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
}"""


def test_a_streamed_answer_and_its_stop_are_each_heard_once(serve: Any, browser: Any) -> None:  # noqa: F811
    """The conversation was one live region: a screen reader was told of every chunk drawn while an answer
    streamed (dozens of times, each a longer part of the answer), and of a stopped answer's note twice."""
    page = open_chat(browser, serve())
    page.select_option("#agent", "slow")  # 40 words, one every 50 ms
    page.evaluate(HEAR)
    page.fill("#input", "count please")
    page.keyboard.press("Enter")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    heard = page.evaluate("window.heard")
    assert [h for h in heard if "word0" in h] == [" ".join(f"word{i}" for i in range(40))], heard
    page.evaluate("window.heard = []")
    page.fill("#input", "again")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("word3", timeout=WAIT_MS)
    page.keyboard.press("Escape")  # Stop
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(".msg.assistant").last).to_contain_text("stopped before it finished")
    heard = page.evaluate("window.heard")
    assert len([h for h in heard if "stopped" in h.lower()]) == 1, heard  # the status line's "Stopped."
    assert len([h for h in heard if "word0" in h]) == 1, heard  # what came before the stop, once


def test_sending_with_the_send_button_from_the_keyboard_puts_the_focus_on_stop(serve: Any, browser: Any) -> None:  # noqa: F811
    """Send is disabled while an answer comes: a keyboard user who had pressed it lost the focus to the page
    itself (a screen reader went back to the page's start), with Stop somewhere further on."""
    page = open_chat(browser, serve())
    page.select_option("#agent", "slow")
    page.fill("#input", "count please")
    page.focus("#send")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Stop")).to_be_focused()
    page.keyboard.press("Enter")  # stops it; the focus goes back to the message box
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    expect(page.locator(".msg.assistant").last).to_contain_text("stopped before it finished")


def signed_in_page(chromium: Any, server: Any, name: str, viewport: dict[str, int] | None = None) -> Any:
    """A new page on the chat (in a context of its own), signed in as a new user called ``name``."""
    from halguru_server.identity import websessions

    user = server.state.store.create_user("usr_jo", "jo@example.com", name, "user")
    secret, _ = websessions.issue(server.state.store, user["id"], server.state.settings.auth)
    context = chromium.new_context(viewport=viewport or {"width": 1280, "height": 720})
    context.add_cookies([{"name": websessions.COOKIE, "value": secret, "url": server.url}])
    page = context.new_page()
    page.secret = secret  # the sign-in's own secret: a test may end it
    page.goto(f"{server.url}/chat/")
    return page


def test_a_signed_in_phone_names_the_conversations_list(serve: Any, browser: Any) -> None:  # noqa: F811
    """Up to 480 px wide every label in the header was hidden, the 'Your conversations' one too (already only
    for screen readers): a signed-in phone's list of conversations had no name (axe select-name, critical)."""
    page = signed_in_page(browser, serve(), "Jo", {"width": 360, "height": 640})
    context = page.context
    expect(page.get_by_role("banner").get_by_role("button", name="Sign out")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#history")).to_be_visible()
    assert chrome_name(page, "#history") == "Your conversations"  # Chromium's own tree, as screen readers get it
    assert chrome_name(page, "#agent") == "Agent"
    assert not page.locator("label[for=agent]").is_visible()  # the phone's header keeps its room
    context.close()


def slow_link(page: Any) -> None:
    """The page's network as a slow mobile link: 400 ms each way, 50 kB/s."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 50_000})


def test_on_a_slow_link_the_chat_s_scripts_come_together(serve: Any, browser: Any) -> None:  # noqa: F811
    """markdown.js was asked for only once chat.js had come and been read: one more round trip before the chat
    opened (400 ms latency at 50 kB/s: 3.0 s to the agents list; now 2.6 s)."""
    server = serve()
    page = browser.new_page(viewport={"width": 360, "height": 640})
    slow_link(page)
    events: list[str] = []
    page.on("request", lambda r: events.append(f"ask {r.url.rsplit('/', 1)[-1]}"))
    page.on("requestfinished", lambda r: events.append(f"got {r.url.rsplit('/', 1)[-1]}"))
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    for module in ("markdown.js", *(p.name for p in sorted(STATIC.glob("chat-*.js")))):  # chat.js's imports
        assert events.index(f"ask {module}") < events.index("got chat.js"), (module, events)


# The contrast of each element's text with the background it is drawn on (WCAG's formula).
CONTRAST = """(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const s of selectors) {
    const el = document.querySelector(s);
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(behind(el))];
    out[s] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
}"""


def test_the_chat_is_dark_where_the_system_asks_for_it_and_stays_readable(serve: Any, browser: Any) -> None:  # noqa: F811
    """The chat was always light: a phone set to dark (at night) got a white page."""
    server = serve()
    context = browser.new_context(color_scheme="dark", viewport={"width": 360, "height": 640})
    page = context.new_page()
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    page.evaluate("""() => {  // a tool call and an error as the page draws them
      const tool = Object.assign(document.createElement('div'), { className: 'msg tool', textContent: '→ search' });
      const note = Object.assign(document.createElement('p'), { className: 'error', textContent: '⚠ failed' });
      document.querySelector('.msg.assistant').append(note);
      document.getElementById('log').append(tool);
      document.getElementById('status').textContent = 'Stopped.';
    }""")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 21, 21)"
    ratios = page.evaluate(CONTRAST, ["body", "#new", "#account a", "#input", ".msg.user", ".msg.assistant",
                                      ".msg.tool", ".msg .error", "#status"])
    assert all(r >= 4.5 for r in ratios.values()), ratios
    context.close()


def test_a_screen_reader_hears_who_wrote_each_message(serve: Any, browser: Any) -> None:  # noqa: F811
    """Who wrote a message (you or the agent) was told only by its colour and side: a screen reader read the
    conversation as one stream of text. Each message is now an article named after its writer."""
    page = open_chat(browser, serve())
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    for _ in range(2):  # as it came, and as a reload shows it again
        log = page.get_by_role("region", name="Conversation")
        expect(log.get_by_role("article", name="You")).to_have_text("hello", timeout=WAIT_MS)
        expect(log.get_by_role("article", name="echo")).to_contain_text("hello")
        assert chrome_name(page, ".msg.assistant") == "echo"
        page.reload()


def test_the_widget_bubble_s_name_starts_with_the_text_it_shows(serve: Any, browser: Any) -> None:  # noqa: F811
    """A bubble labelled data-label="Ask us" was named "Chat with echo": a voice-control user saying "press Ask
    us" pressed nothing (its name did not hold the words on it)."""
    server = serve()
    page = browser.new_page()
    for label, name in (("Ask us", "Ask us: chat with echo"), (None, "Chat with echo")):
        extra = f' data-label="{label}"' if label else ""
        page.set_content(f'<h1>A shop</h1><script src="{server.url}/chat/widget.js" data-agent="echo"{extra}></script>')
        bubble = page.get_by_role("button", name=name, exact=True)
        expect(bubble).to_have_text(label or "Chat", timeout=WAIT_MS)


def test_on_a_slow_link_the_chat_does_not_take_the_focus_from_where_the_user_went(serve: Any, browser: Any) -> None:  # noqa: F811
    """Once loaded the page put the focus in the message box: on a slow link a keyboard user who had already
    tabbed to the agent list (or a screen reader reading the header) was moved away from it."""
    server = serve()
    page = browser.new_page()
    slow_link(page)
    page.goto(f"{server.url}/chat/", wait_until="domcontentloaded")
    page.keyboard.press("Tab")
    expect(page.locator("#agent")).to_be_focused()
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)  # loaded meanwhile
    page.wait_for_timeout(500)
    expect(page.locator("#agent")).to_be_focused()
    page.reload()  # nobody went anywhere: the message box has the focus, ready to type into
    expect(page.get_by_role("textbox", name="Message")).to_be_focused(timeout=WAIT_MS)


def test_an_answer_that_ends_leaves_the_focus_where_the_user_went(serve: Any, browser: Any) -> None:  # noqa: F811
    """When an answer ended the page put the focus in the message box, from wherever the keyboard was: a user
    who had gone to a link or button while it streamed was moved away from it."""
    page = open_chat(browser, serve())
    page.select_option("#agent", "slow")
    page.fill("#input", "count please")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")  # from the message box back to the header's last stop
    expect(page.get_by_role("link", name="Sign in")).to_be_focused()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.get_by_role("link", name="Sign in")).to_be_focused()


def test_the_message_box_grows_with_its_text_and_is_small_again_once_sent(serve: Any, browser: Any) -> None:  # noqa: F811
    """The box kept two rows: a long message was seen two lines at a time, and a phone cut the box's own
    placeholder ("Message (Enter to send, Shift+Enter for a new line)") off after two of its three lines."""
    page = browser.new_page(viewport={"width": 375, "height": 667})
    page.goto(f"{serve().url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    box = page.locator("#input")
    sizes = "(e) => [e.offsetHeight, e.scrollHeight - e.clientHeight]"
    empty, hidden = box.evaluate(sizes)
    assert hidden == 0  # the whole placeholder shows
    for i in range(6):
        page.keyboard.type(f"line {i}")
        page.keyboard.press("Shift+Enter")
    grown, hidden = box.evaluate(sizes)
    assert grown > empty and hidden == 0  # all six lines in view
    for i in range(30):
        page.keyboard.type(f"more {i}")
        page.keyboard.press("Shift+Enter")
    tallest, hidden = box.evaluate(sizes)
    assert 0.35 * 667 < tallest <= 0.4 * 667 + 1 and hidden > 0  # 40% of the window at most, then it scrolls
    page.keyboard.press("Enter")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    assert box.evaluate(sizes) == [empty, 0]


def test_a_short_message_of_ones_own_is_a_bubble_at_the_right(serve: Any, browser: Any) -> None:  # noqa: F811
    """One's own message was a band 46rem wide (the whole width on a phone) whatever its length: "ok" sat at the
    left of a wide blue band, where the agent's answers are."""
    for width in (1280, 375):
        page = browser.new_page(viewport={"width": width, "height": 700})
        page.goto(f"{serve().url}/chat/")
        expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
        page.keyboard.type("ok")
        page.keyboard.press("Enter")
        expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
        log, mine = page.locator("#log").bounding_box(), page.locator(".msg.user").bounding_box()
        assert mine["width"] < 100, width
        assert abs((log["x"] + log["width"]) - (mine["x"] + mine["width"])) < 30, width  # at the right edge


def test_escape_closes_the_key_bar_and_gives_the_focus_back_to_its_button(serve: Any, browser: Any) -> None:  # noqa: F811
    """The API key bar opened from its button and closed only from it again: Escape did nothing, so a keyboard
    user who had opened it by mistake had to find the button again (Shift+Tab past the field and Save)."""
    page = open_chat(browser, serve())
    page.get_by_role("button", name="API key").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#key-form")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.type("hg_half_typed")
    page.keyboard.press("Escape")
    expect(page.locator("#key-form")).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "key-button"
    assert page.input_value("#key") == ""  # nothing half-typed kept, or saved
    assert page.evaluate("localStorage.getItem('halguru.key')") is None
