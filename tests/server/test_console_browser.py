"""The admin console in real headless Chromium (Debian's /usr/bin/chromium, never `playwright install`): an
admin (signed in with a session cookie: the sign-in pages have their own browser tests) watches a run appear
in monitoring without reloading, changes a user's role, verifies the audit chain; every page of the console's
own sections is screenshot at desktop (1280 px) and phone (375 px) width, without horizontal overflow and
with a label on every form field, into $HALGURU_TEST_ARTIFACTS (else the test's tmp dir)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000
PAGES = {"monitoring": "/admin", "users": "/admin/users", "audit": "/admin/audit", "security": "/admin/security",
         "analytics": "/admin/analytics", "status": "/admin/status", "jobs": "/admin/jobs",
         "opt-outs": "/admin/opt-outs"}


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (./scripts/test does, as root)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HALGURU_TEST_ARTIFACTS") or tmp_path) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _admin_page(browser: Any, server: Any, width: int = 1280, scheme: str = "light", zone: str | None = None) -> Page:
    """A browser page signed in as a new admin (a web session's cookie); ``scheme``: the system's colour scheme;
    ``zone``: the viewer's time zone (else the machine's)."""
    from halguru_server.identity import websessions

    state = server.state
    user = state.store.user_by_email("root@example.com") or state.store.create_user(
        "usr_root", "root@example.com", "Root", "admin")
    state.store.update_user(user["id"], totp_enabled=True)  # 2FA on (the session has passed it)
    secret, _ = websessions.issue(state.store, user["id"], state.settings.auth)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, timezone_id=zone)
    context.add_cookies([{"name": websessions.COOKIE, "value": secret, "url": server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def test_monitoring_shows_a_new_run_live_then_a_role_changes_and_the_chain_verifies(serve, api_key,
                                                                                     browser) -> None:
    server = serve()
    page = _admin_page(browser, server)
    page.goto(f"{server.url}/admin?window=15m")
    runs = page.locator('tr[data-agent="echo"] td.runs')
    expect(runs).to_have_text("0", timeout=WAIT_MS)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        conversation = c.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        assert c.post(f"/v1/conversations/{conversation}/messages", json={"content": "hi"}).status_code == 200
    expect(runs).to_have_text("1", timeout=WAIT_MS)  # no reload: console.js swapped the live part in
    expect(page.locator("#live-stamp")).to_contain_text("Updated", timeout=WAIT_MS)

    store = server.state.store
    other = store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Role of jo@example.com").select_option("operator")
    page.locator(f'tr[data-user="{other["id"]}"]').get_by_role("button", name="Set role").click()
    expect(page.get_by_label("Role of jo@example.com")).to_have_value("operator", timeout=WAIT_MS)
    assert store.get_user(other["id"])["role"] == "operator"

    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit")).to_contain_text("user.role", timeout=WAIT_MS)
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verify-result")).to_contain_text("intact", timeout=WAIT_MS)
    expect(page.get_by_role("status")).to_contain_text("audit chain intact", timeout=WAIT_MS)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [1280, 375])
def test_every_console_page_fits_the_screen(serve, browser, artifacts: Path, width: int) -> None:
    server = serve()
    page = _admin_page(browser, server, width)
    for name, path in PAGES.items():
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        assert page.locator("header.top nav a[aria-current=page]").count() == 1, (path, page.title())
        unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(el => !el.labels.length && !el.getAttribute('aria-label')).map(el => el.name)""")
        assert not unlabelled, f"{path}: form fields without a label: {unlabelled}"
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
        assert overflow <= width, f"{path} at {width} px is {overflow} px wide"
    page.keyboard.press("Tab")  # the first stop is the skip link, then the navigation
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_a_signed_out_monitoring_page_goes_to_sign_in_instead_of_showing_it_inside(serve, browser) -> None:
    server = serve()
    page = _admin_page(browser, server)
    page.goto(f"{server.url}/admin")
    expect(page.locator("#live-stamp")).to_contain_text("Updated", timeout=WAIT_MS)
    server.state.store.revoke_web_sessions(server.state.store.user_by_email("root@example.com")["id"])
    expect(page).to_have_url(f"{server.url}/auth/login?next=%2Fadmin", timeout=WAIT_MS)
    assert page.locator("#live").count() == 0


def test_a_table_wider_than_a_phone_scrolls_from_the_keyboard(serve, browser) -> None:
    """At 360 px a wide table scrolls sideways in its box, which the keyboard could not reach on a page with no
    link or button in the table (axe: scrollable-region-focusable, serious, on 9 of 11 pages); now the box is a
    tab stop named after the table's caption while it scrolls, and only then."""
    server = serve()
    page = _admin_page(browser, server, 360)
    page.goto(f"{server.url}/admin/status")
    region = page.get_by_role("region", name="Components")
    expect(region).to_have_count(1, timeout=WAIT_MS)
    region.focus()
    assert page.evaluate("document.activeElement.tabIndex") == 0
    page.keyboard.press("ArrowRight")  # scrolls the table sideways (the browser may do it a frame or two later)
    page.wait_for_function("el => el.scrollLeft > 0", arg=region.element_handle(), timeout=WAIT_MS)
    page.set_viewport_size({"width": 1280, "height": 900})  # fits now: no tab stop, no region
    expect(page.get_by_role("region", name="Components")).to_have_count(0)
    assert page.locator(".table-wrap[tabindex]").count() == 0
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_the_live_monitoring_table_keeps_its_sideways_scroll_and_the_keyboard_focus(serve, browser) -> None:
    """Every 3 s the live part was swapped in anew: on a phone the agents table scrolled sideways snapped back
    to its start, and a keyboard user in it was thrown back to the page's start."""
    server = serve()
    page = _admin_page(browser, server, 360)
    page.goto(f"{server.url}/admin")
    stamp = page.locator("#live-stamp")
    expect(stamp).to_contain_text("Updated", timeout=WAIT_MS)
    table = page.locator("#live .table-wrap")
    table.evaluate("el => { el.scrollLeft = 60; }")
    before = stamp.inner_text()
    expect(stamp).not_to_have_text(before, timeout=WAIT_MS)  # swapped in again since
    assert table.evaluate("el => el.scrollLeft") == 60
    table.focus()
    page.wait_for_timeout(4000)  # more than a refresh's 3 s
    assert page.evaluate("document.activeElement.closest('#live .table-wrap') !== null")
    page.keyboard.press("Tab")  # leaving it: the updates go on
    before = stamp.inner_text()
    expect(stamp).not_to_have_text(before, timeout=WAIT_MS)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_chart_text_is_legible_on_a_phone(serve, agents_dir: Path, browser) -> None:
    """A chart is drawn 480 units wide and shrunk to the screen: on a 360 px phone its text was under 7 px."""
    (agents_dir / "an-agent-named-at-20").mkdir()
    (agents_dir / "an-agent-named-at-20" / "agent.yaml").write_text("name: an-agent-named-at-20\nmodel: scripted\n")
    server = serve()
    page = _admin_page(browser, server, 360)
    page.goto(f"{server.url}/admin")
    texts = page.locator("figure.chart svg text")
    expect(texts.first).to_be_visible(timeout=WAIT_MS)
    sizes = texts.evaluate_all("ts => ts.map(t => parseFloat(getComputedStyle(t).fontSize) * "  # px on screen
                               "t.ownerSVGElement.getBoundingClientRect().width / "
                               "t.ownerSVGElement.viewBox.baseVal.width)")
    assert min(sizes) >= 9, sizes
    name = page.locator("figure.chart svg text", has_text="an-agent-named-at-20")  # whole, not cut at the left
    assert name.evaluate("t => t.getBoundingClientRect().left >= t.ownerSVGElement.getBoundingClientRect().left")


# WCAG's contrast of every visible text on the page (its colour, an SVG text's fill, against the first background
# behind it), and of the marks that are no text (form fields' borders, chart bars) against theirs: what falls
# under AA (4.5:1 for text, 3:1 for large text and such marks), as "selector text: ratio".
LOW_CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ratio = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
  const behind = (el) => {
    for (el = el.parentElement; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const own = (el) => rgb(getComputedStyle(el).backgroundColor);
  const back = (el) => { const c = own(el); return c.length < 4 || c[3] > 0 ? c : behind(el); };
  const shown = (el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden'
    && !el.closest('.visually-hidden, .skip, option, title');
  const low = [];
  const say = (el, what, r, need) => {
    const name = `${el.tagName.toLowerCase()}.${el.className.baseVal ?? el.className}`;
    if (r < need) low.push(`${name} ${what}: ${r.toFixed(2)}`);
  };
  for (const el of document.body.querySelectorAll('*')) {
    if (!shown(el)) continue;
    const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (text) {
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && style.fontWeight >= 700);
      const fg = el instanceof SVGElement ? rgb(style.fill) : rgb(style.color);
      say(el, JSON.stringify(el.textContent.trim().slice(0, 20)), ratio(fg, back(el)), large ? 3 : 4.5);
    }
    if (el.matches('input:not([type=hidden]), select, textarea, button')) {
      say(el, 'border', ratio(rgb(style.borderTopColor), behind(el)), 3);
    }
    if (el.matches('svg rect.s1, svg rect.s2, svg rect.s3')) {
      say(el, 'mark', ratio(rgb(style.fill), behind(el.ownerSVGElement)), 3);
    }
  }
  return [...new Set(low)];
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_console_page_is_readable_in_the_system_s_colour_scheme(serve, api_key, browser, artifacts: Path,
                                                                      scheme: str) -> None:
    """The console was always light: an operator whose system is dark (the web chat follows it) got a white page
    at night. It follows prefers-color-scheme now, and every text and mark on every page stays within AA."""
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        conversation = c.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        assert c.post(f"/v1/conversations/{conversation}/messages", json={"content": "hi"}).status_code == 200
    server.state.store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    server.state.store.enqueue_job("run", "echo", {"input": "Summarise the day"}, delay=3600)  # a row, a button
    server.state.store.set_opt_out("twilio", "echo", "+15550001111", "+15557654321", "STOP")  # and another
    page = _admin_page(browser, server, scheme=scheme)
    pages = {**PAGES, "conversations": "/admin/conversations", "approvals": "/admin/approvals", "jobs": "/admin/jobs",
             "deployments": "/admin/deployments", "conversation": f"/admin/conversations/{conversation}"}
    for name, path in pages.items():
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        page.wait_for_load_state("networkidle")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(21, 21, 21)" if scheme == "dark" else "rgb(246, 247, 249)"), path
        page.screenshot(path=str(artifacts / f"{name}-{scheme}.png"), full_page=True)
        assert not page.evaluate(LOW_CONTRAST), (path, page.evaluate(LOW_CONTRAST))
    assert not page.errors, page.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [1280, 375])
def test_a_very_long_user_name_or_email_keeps_the_users_pages_within_the_screen(serve, browser, width: int) -> None:
    """A 200-character email and a name of 400 letters without a space: the users page was 6,639 px wide at
    1280 (each row's hidden "Role of ..." label, absolutely placed, escaped its table's scrolling box) and the
    user's own page 10,366 px (its heading did not wrap); both fit now, the table scrolling in its box."""
    server = serve()
    store = server.state.store
    store.create_user("usr_long", "x" * 200 + "@example.com", "Jo", "user")
    store.create_user("usr_name", None, "W" * 400, "user")
    page = _admin_page(browser, server, width)
    for path in ("/admin/users", "/admin/users/usr_long", "/admin/users/usr_name"):
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{path} at {width} px is {overflow} px wide"
    page.goto(f"{server.url}/admin/users")
    assert page.locator('tr[data-user="usr_long"] a').evaluate("a => a.getBoundingClientRect().width") <= width
    assert not page.errors, page.errors  # type: ignore[attr-defined]


# Each "YYYY-MM-DD HH:MM:SS" shown, and whether it or its column's header or its card's label says UTC.
TIMES = r"""() => {
  const stamp = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/;
  const found = [];
  for (const cell of document.querySelectorAll('main td, main dd, main p')) {
    if (!stamp.test(cell.textContent) || cell.querySelector('td, dd')) continue;
    let label = '';
    if (cell.tagName === 'TD') {
      const table = cell.closest('table');
      label = table.tHead.rows[0].cells[cell.cellIndex].textContent;
    } else if (cell.tagName === 'DD') {
      label = cell.previousElementSibling.textContent;
    }
    found.push({text: cell.textContent.trim().slice(0, 60), label, utc: /UTC/.test(label + cell.textContent)});
  }
  return found;
}"""


def test_every_time_the_console_shows_says_it_is_utc(serve, api_key, browser) -> None:
    """Times are shown in UTC: the jobs and audit pages said so, but a conversation's messages and activity,
    the conversations list, runs to resume, a user's last sign-in, keys and sessions did not, and an operator
    east or west of Greenwich read them as local times (and the date filters as local days)."""
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        conversation = c.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        assert c.post(f"/v1/conversations/{conversation}/messages", json={"content": "hi"}).status_code == 200
    store = server.state.store
    jo = store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    store.update_user(jo["id"], last_login=1_700_000_000.0)
    from halguru_server.identity import websessions
    from halguru_server.keys import create_key

    websessions.issue(store, jo["id"], server.state.settings.auth)
    create_key(store, "jo-key", None, None, "user", user_id=jo["id"])
    page = _admin_page(browser, server)
    seen = []
    for path in ("/admin/conversations", f"/admin/conversations/{conversation}", "/admin/users",
                 f"/admin/users/{jo['id']}", "/admin/jobs", "/admin/audit", "/admin/deployments", "/admin/status"):
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        found = page.evaluate(TIMES)
        seen += [f["text"] for f in found]
        assert all(f["utc"] for f in found), (path, [f for f in found if not f["utc"]])
    assert len(seen) >= 8, seen
    page.goto(f"{server.url}/admin/conversations")
    assert "UTC" in page.get_by_label("Active from").evaluate("el => el.labels[0].textContent")


def test_a_window_out_of_range_is_refused_by_the_form_before_it_is_sent(serve, browser) -> None:
    """The analytics and security windows are number fields with no bounds: a 0 (or 500) typed in was sent and
    answered with an error page; the fields carry the server's bounds now, and the browser asks for a valid one."""
    server = serve()
    page = _admin_page(browser, server)
    for path, label, name, bad, good in (("/admin/analytics", "Window (days)", "days", "0", "30"),
                                         ("/admin/security", "Window (days)", "days", "91", "30"),
                                         ("/admin/security", "Keys unused for (days)", "unused", "0", "60")):
        page.goto(f"{server.url}{path}")
        field = page.get_by_label(label)
        field.fill(bad)
        page.get_by_role("button", name="Show").click()
        assert not field.evaluate("el => el.validity.valid")
        assert page.url == f"{server.url}{path}"  # not sent
        field.fill(good)
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(rf"\?(.*&)?{name}={good}(&|$)"), timeout=WAIT_MS)
        expect(page.get_by_label(label)).to_have_value(good)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_a_conversation_of_an_agent_with_a_long_name_fits_a_phone(serve, agents_dir: Path, api_key, browser) -> None:
    """An agent's name may be 100 characters without a space: its card on the conversation's page ran past the
    screen (832 px wide at 375 with a 60-character name); it wraps now."""
    name = "a" * 60
    (agents_dir / name).mkdir()
    (agents_dir / name / "agent.yaml").write_text(f"name: {name}\nmodel: scripted\ninstructions: Echo.\n")
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        conversation = c.post("/v1/conversations", json={"agent": name}).json()["id"]
    page = _admin_page(browser, server, 375)
    page.goto(f"{server.url}/admin/conversations/{conversation}")
    expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, f"the conversation's page at 375 px is {overflow} px wide"


def test_each_row_s_button_is_named_after_its_row(serve, browser) -> None:
    """Every queued job had a button named "Cancel" and every user one named "Disable": a screen reader's list
    of buttons read "Cancel, Cancel, Cancel" with nothing to tell them apart. Each says whose it is now (each
    agent's "Serve v1" too)."""
    server = serve()
    store = server.state.store
    jobs = [store.enqueue_job("run", "echo", {"input": f"job {i}"}, delay=3600)[0] for i in range(2)]
    store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    page = _admin_page(browser, server)
    page.goto(f"{server.url}/admin/jobs")
    for job in jobs:
        expect(page.get_by_role("button", name=f"Cancel {job['id']}", exact=True)).to_have_count(1)
    page.goto(f"{server.url}/admin/users")
    expect(page.get_by_role("button", name="Disable jo@example.com", exact=True)).to_have_count(1)
    expect(page.get_by_role("button", name="Set role for jo@example.com", exact=True)).to_have_count(1)
    for agent in ("echo", "private"):  # two versions each: "Serve v1" twice, one per agent
        for _ in range(2):
            store.create_deployment(agent, "ab" * 32, {"model": "scripted"}, b"bundle", None)
    page.goto(f"{server.url}/admin/deployments")
    for agent in ("echo", "private"):
        expect(page.get_by_role("button", name=f"Serve v1 {agent}", exact=True)).to_have_count(1)


def test_times_show_in_the_viewers_time_zone_with_the_utc_value_on_hover(serve, browser, monkeypatch) -> None:
    import types
    from datetime import UTC, datetime

    from halguru import audit
    from halguru.store import sql_audit

    server = serve()
    noon = datetime(2026, 11, 2, 12, tzinfo=UTC).timestamp()
    monkeypatch.setattr(sql_audit, "time", types.SimpleNamespace(time=lambda: noon))
    audit.record(server.state.store, "cli:root", "user.role", "usr_x", {"role": "operator"}, None)
    monkeypatch.undo()
    jo = server.state.store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    server.state.store.update_user(jo["id"], last_login=noon)
    page = _admin_page(browser, server, zone="Asia/Kolkata")  # UTC+5:30
    page.goto(f"{server.url}/admin/audit?action=user.role")
    cell = page.locator("#audit tbody tr").first.locator("time")
    expect(cell).to_have_text(re.compile(r"^2026-11-02 17:30:00 (GMT\+5:30|IST)$"), timeout=WAIT_MS)
    assert cell.get_attribute("title") == "2026-11-02 12:00:00 UTC"
    assert "(UTC)" not in page.locator("#audit thead").inner_text()
    page.goto(f"{server.url}/admin/users?q=jo%40example.com")
    expect(page.locator("tbody time").first).to_have_text(re.compile(r"^2026-11-02 17:30:00 "), timeout=WAIT_MS)
    # conversations, a conversation's messages and the jobs were UTC only, under "(UTC)" headings
    server.state.store.create_conversation("conv_times", "echo")
    server.state.store.append_message("conv_times", "user", "hello")
    server.state.store.enqueue_job("run", "echo", {"input": "hi"})
    for path in ("/admin/conversations", "/admin/conversations/conv_times", "/admin/jobs"):
        page.goto(f"{server.url}{path}")
        stamp = page.locator("main time").first
        expect(stamp).to_have_text(re.compile(r" (GMT\+5:30|IST)$"), timeout=WAIT_MS)
        assert (stamp.get_attribute("title") or "").endswith(" UTC")
        assert "(UTC)" not in page.locator("main table").first.inner_text()
    assert page.errors == []  # type: ignore[attr-defined]


def test_signing_out_a_users_session_or_revoking_their_key_asks_first_and_names_what(serve, browser) -> None:
    from halguru_server.identity import websessions
    from halguru_server.keys import create_key

    server = serve()
    store = server.state.store
    jo = store.create_user("usr_jo", "jo@example.com", "Jo", "user")
    _, session = websessions.issue(store, jo["id"], server.state.settings.auth)
    create_key(store, "laptop", None, None, "user", user_id=jo["id"])
    page = _admin_page(browser, server)
    page.goto(f"{server.url}/admin/users/usr_jo")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.get_by_role("button", name=f"Sign out session {websessions.session_id(session)}").click()
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    assert asked == ["Sign this browser out? Whoever uses it must sign in again."]
    assert len(websessions.list_sessions(store, jo["id"], server.state.settings.auth)) == 1  # dismissed: kept
    page.once("dialog", lambda d: answer(d, True))
    page.get_by_role("button", name="Revoke key laptop").click()
    expect(page.get_by_text("revoked")).to_be_visible(timeout=WAIT_MS)
    assert asked[-1] == "Revoke the key laptop? Whatever uses it stops working."
