"""OIDC sign-in in real headless Chromium (Debian's /usr/bin/chromium) against oidc-provider-mock: the button
on the sign-in page, the provider's own form, and back signed in. What httpx cannot show: the browser sends the
SameSite=Lax flow cookie on the provider's cross-site redirect back (the provider is on ``localhost``, halguru
on ``127.0.0.1``: two sites), and keeps the session cookie it is given."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import Server

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 20_000


@pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
def test_sign_in_with_a_provider_in_a_browser(serve: Callable[..., Server]) -> None:
    import authlib.deprecate  # noqa: F401  (it sets its warnings to "always" when first imported)
    from playwright.sync_api import expect, sync_playwright

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the mock's own use of authlib.jose
        import oidc_provider_mock

    assert Path(CHROMIUM).exists(), "install Debian's chromium (./scripts/test does, as root)"
    with oidc_provider_mock.run_server_in_thread() as provider:
        issuer = f"http://localhost:{provider.server_port}"
        httpx.put(f"{issuer}/users/ann-sub", json={"email": "ann@example.com", "email_verified": True,
                                                   "name": "Ann"}).raise_for_status()
        server = serve(auth={"oidc": [{"name": "mock", "label": "Mock IdP", "issuer": issuer,
                                       "client_id": "halguru", "client_secret": "s3cret"}]})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"{server.url}/auth/login?next=/auth/account")
            page.get_by_role("link", name="Sign in with Mock IdP").click()
            page.get_by_placeholder("sub").fill("ann-sub")  # the provider's own sign-in form
            page.get_by_role("button", name="Authorize").click()
            expect(page.locator("#who")).to_have_text("ann@example.com", timeout=WAIT_MS)
            assert page.url == f"{server.url}/auth/account"
            cookies = {c["name"]: c for c in page.context.cookies(f"{server.url}/auth/oidc/mock/callback")}
            session = cookies["halguru_session"]
            assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/"
            assert cookies["halguru_oidc"]["path"] == "/auth/oidc" and cookies["halguru_oidc"]["httpOnly"]
            browser.close()
