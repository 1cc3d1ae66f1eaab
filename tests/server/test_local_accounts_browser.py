"""Local accounts in real headless Chromium (Debian's /usr/bin/chromium, never `playwright install`), with the
mail captured by aiosmtpd: register, confirm by the mailed link, enrol TOTP (the code computed with pyotp from
the key the page shows), sign out and in with password and code, a recovery code once, lockout; and a form on
another origin that posts to the server is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.server.localaccounts import (
    PASSWORD,
    Accounts,
    accounts_server_fixture,
    smtp_server_fixture,
    totp_now,
)

__all__ = ["accounts_server_fixture", "smtp_server_fixture"]  # pytest finds them here
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000
EMAIL = "jo@example.com"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (./scripts/test does, as root)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _sign_in(page: Page, url: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/auth/login?next=/auth/account")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _code(page: Page, code: str) -> None:
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(code)
    page.get_by_role("button", name="Continue").click()


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).last.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=WAIT_MS)


def test_register_confirm_enrol_totp_and_sign_in_with_codes(accounts_server, browser) -> None:
    accounts: Accounts = accounts_server()
    page = browser.new_page()
    page.goto(f"{accounts.url}/auth/login")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password (at least").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible(timeout=WAIT_MS)
    page.goto(accounts.link(1, EMAIL))
    expect(page.get_by_role("heading", name="Email confirmed")).to_be_visible(timeout=WAIT_MS)

    _sign_in(page, accounts.url)
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
    cookie = next(c for c in page.context.cookies() if c["name"] == "halguru_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/" and not cookie["secure"]
    page.get_by_role("link", name="Two-factor sign-in: off").click()
    expect(page.locator(".qr svg")).to_be_visible(timeout=WAIT_MS)
    secret = page.locator("#secret").inner_text()
    page.get_by_label("Your password").fill(PASSWORD)  # a signed-in browser's cookie alone does not turn it on
    page.get_by_label("Code", exact=True).fill(totp_now(secret))
    page.get_by_role("button", name="Turn two-factor sign-in on").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="Continue").click()
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
    _sign_out(page)

    _sign_in(page, accounts.url)
    _code(page, totp_now(secret, ahead=1))  # the enrolment's step is spent: the next one
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
    _sign_out(page)
    for attempt in range(2):  # a recovery code signs in once
        _sign_in(page, accounts.url)
        _code(page, codes[0])
        if attempt == 0:
            expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
            _sign_out(page)
    expect(page.get_by_role("alert")).to_contain_text("not right", timeout=WAIT_MS)
    _code(page, codes[1])
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)


def test_lockout_after_repeated_wrong_passwords(accounts_server, browser) -> None:
    accounts: Accounts = accounts_server(login_max_failures=3)
    accounts.user(EMAIL)
    page = browser.new_page()
    for _ in range(3):
        _sign_in(page, accounts.url, "not the password")
        expect(page.get_by_role("alert")).to_contain_text("wrong email or password", timeout=WAIT_MS)
    _sign_in(page, accounts.url)  # the right password, but locked
    expect(page.get_by_role("alert")).to_contain_text("wrong email or password", timeout=WAIT_MS)
    assert not [c for c in page.context.cookies() if c["name"] == "halguru_session"]


class _Attacker(BaseHTTPRequestHandler):
    """Another origin's page whose form posts to the server (no CSRF token: it cannot read one)."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<!doctype html><form method="post" action="{self.target}/auth/logout-everywhere">'
                '<button>Win a prize</button></form>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_form_on_another_site_cannot_sign_the_user_out(accounts_server, browser) -> None:
    accounts: Accounts = accounts_server()
    accounts.user(EMAIL)
    page = browser.new_page()
    _sign_in(page, accounts.url)
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
    handler = type("Attacker", (_Attacker,), {"target": accounts.url})
    evil = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # same site, other origin: the cookie rides along
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        page.get_by_role("button", name="Win a prize").click()
        expect(page.get_by_role("heading", name="Request refused")).to_be_visible(timeout=WAIT_MS)
    finally:
        evil.shutdown()
        evil.server_close()
    page.goto(f"{accounts.url}/auth/account")
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)


def _session_cookie(page: Page) -> dict[str, Any] | None:
    return next((dict(c) for c in page.context.cookies() if c["name"] == "halguru_session"), None)


def test_sign_in_replaces_a_planted_session_and_sign_out_ends_it_on_the_server(accounts_server, browser) -> None:
    accounts: Accounts = accounts_server()
    accounts.user(EMAIL)
    context = browser.new_context()
    planted = "planted-by-an-attacker-0123456789abcdef"
    context.add_cookies([{"name": "halguru_session", "value": planted, "url": accounts.url}])
    page = context.new_page()
    _sign_in(page, accounts.url)
    expect(page.locator("#who")).to_have_text(EMAIL, timeout=WAIT_MS)
    cookie = _session_cookie(page)
    assert cookie is not None and cookie["value"] != planted  # a new session id at sign-in
    _sign_out(page)
    assert _session_cookie(page) is None
    replay = browser.new_context()  # the old cookie, put back by hand: the server has revoked it
    replay.add_cookies([{"name": "halguru_session", "value": cookie["value"], "url": accounts.url}])
    again = replay.new_page()
    again.goto(f"{accounts.url}/auth/account")
    expect(again.get_by_role("heading", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    replay.close()
    context.close()


def test_a_password_reset_revokes_the_api_keys_when_its_box_is_ticked(accounts_server, browser) -> None:
    """The mailed link's form, in Chromium: the box is reachable by its label, and ticked, the account's keys
    stop working along with its sessions."""
    import httpx
    from halguru_server.keys import create_key

    accounts: Accounts = accounts_server()
    user = accounts.user(EMAIL)
    secret = create_key(accounts.server.state.store, "laptop", user_id=user["id"])[1]
    page = browser.new_page()
    page.goto(f"{accounts.url}/auth/reset")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button").first.click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible(timeout=WAIT_MS)
    page.goto(accounts.link(1, EMAIL))
    page.get_by_label("New password").fill("a brand new password")
    page.get_by_label("Also revoke this account's API keys").check()
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_text("Its API keys were revoked (1).")).to_be_visible(timeout=WAIT_MS)
    assert httpx.get(f"{accounts.url}/v1/agents", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
