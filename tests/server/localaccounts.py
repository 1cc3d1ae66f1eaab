"""Shared by the local-account tests: a server with local sign-in and an aiosmtpd SMTP server capturing its mail,
users made through ``accounts``, and the bits of the pages a client needs (CSRF token, links in mail).

Test modules import the fixtures (``accounts_server_fixture``...); pytest knows them by their short names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.channels.mailpeers import SmtpRecorder, smtp_server_fixture
from tests.server.conftest import Server

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LINK = re.compile(r"(https?://\S+/auth/(?:verify|reset)\?token=[A-Za-z0-9_%-]+)")
__all__ = ["smtp_server_fixture"]


@dataclass
class Accounts:
    """A running server with local accounts, and the SMTP server its mail goes to."""

    server: Server
    smtp: SmtpRecorder

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client that sends this server's Origin on every request, as a browser does on its form posts."""
        return httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=30, **kwargs)

    def user(self, email: str, *, role: str = "user", verified: bool = True) -> dict[str, Any]:
        from halguru_server.identity import accounts

        return dict(accounts.create_user(self.server.state.store, email, role=role, password=PASSWORD,
                                         email_verified=verified))

    def link(self, count: int, to: str) -> str:
        """The link in the ``count``-th mail (1-based) received, which must be addressed to ``to``."""
        mails = self.smtp.wait_for(count)
        assert len(mails) >= count, [m["Subject"] for m in mails]
        mail = mails[count - 1]
        assert mail["To"] == to
        found = _LINK.search(mail.get_content())
        assert found, mail.get_content()
        return found.group(1)


def smtp_settings(smtp: SmtpRecorder) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": smtp.port, "sender": "halguru@example.com", "starttls": False}


@pytest.fixture(name="accounts_server")
def accounts_server_fixture(serve: Callable[..., Server],
                            smtp_server: SmtpRecorder) -> Iterator[Callable[..., Accounts]]:
    """Start a server with local accounts (open registration, mail to ``smtp_server``); auth settings
    overridable."""

    def start(trusted_proxies: list[str] | None = None, **auth: Any) -> Accounts:
        settings = {"registration": "open", "smtp": smtp_settings(smtp_server), **auth}
        return Accounts(serve(auth=settings, trusted_proxies=trusted_proxies or []), smtp_server)

    yield start


def csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def post_form(client: httpx.Client, page_path: str, action: str, **fields: str) -> httpx.Response:
    """Open ``page_path`` (for its CSRF token and cookie) and post its form to ``action`` with ``fields``."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf_token": csrf(page), **fields})


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return post_form(client, "/auth/login", "/auth/login", email=email, password=password, next="/auth/account")


def totp_now(secret: str, ahead: int = 0) -> str:
    """The TOTP code ``ahead`` steps from now (each step is accepted once, so a second sign-in takes the next)."""
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)
