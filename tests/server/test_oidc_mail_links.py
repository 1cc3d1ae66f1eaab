"""OIDC accounts and the mailed password-reset links, against ``oidc-provider-mock`` and a real SMTP server.

A person whose email changed at their provider: before, the account kept the address it was created with, and
once the provider gave that address to someone else (people leave, addresses are reused), a password reset asked
for the old address mailed the newcomer a link that set a password on this account, and signed them in to it.

An account that signs in only through its provider: before, a reset link gave it a password, and the mailbox
alone then signed in past everything the provider decides (its second factor, a person it removed, the
``allowed_domains`` narrowed since).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from halguru_server.identity import accounts, oidc

from tests.channels.mailpeers import SmtpRecorder
from tests.server.conftest import Server
from tests.server.localaccounts import post_form, smtp_server_fixture, smtp_settings
from tests.server.test_oidc import ANN, mock_config, mock_sign_in, signed_in

__all__ = ["smtp_server_fixture"]  # pytest finds it here
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")  # the mock provider's own
MOVED = {**ANN, "email": "ann@newco.example"}


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    oidc.clear_caches()
    yield
    oidc.clear_caches()


@pytest.fixture
def mock_issuer() -> Iterator[str]:
    import warnings

    import authlib.deprecate  # noqa: F401  (it sets its warnings to "always" when first imported)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import oidc_provider_mock
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def site(serve: Callable[..., Server], smtp_server: SmtpRecorder,
         mock_issuer: str) -> Iterator[tuple[Server, httpx.Client]]:
    server = serve(auth={"oidc": [mock_config(mock_issuer), {**mock_config(mock_issuer), "name": "other"}],
                         "smtp": smtp_settings(smtp_server)})
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30) as client:
        yield server, client


def test_the_account_follows_a_new_verified_email(site: tuple[Server, httpx.Client], mock_issuer: str,
                                                  smtp_server: SmtpRecorder) -> None:
    server, client = site
    store = server.state.store
    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    early = accounts.issue_token(store, "reset", ann["id"], 3600)  # a link mailed to the old address
    again = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", MOVED))
    assert again["id"] == ann["id"] and again["email"] == "ann@newco.example" and again["email_verified"]
    assert store.user_by_email("ann@example.com") is None
    assert accounts.consume_token(store, early, "reset") is None
    [event] = store.list_audit(10, action="user.email")
    assert event["details"] == {"from": "ann@example.com", "to": "ann@newco.example", "via": "mock"}

    # a reset asked for the old address mails nobody; one for the new address reaches ann
    assert post_form(client, "/auth/reset", "/auth/reset", email="ann@example.com").status_code == 200
    assert post_form(client, "/auth/reset", "/auth/reset", email="ann@newco.example").status_code == 200
    mails = smtp_server.wait_for(1)
    assert [m["To"] for m in mails] == ["ann@newco.example"]


def test_an_email_the_provider_does_not_verify_changes_nothing(site: tuple[Server, httpx.Client],
                                                              mock_issuer: str) -> None:
    server, client = site
    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    again = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", {**MOVED, "email_verified": False}))
    assert again["email"] == "ann@example.com" == server.state.store.get_user(ann["id"])["email"]


def test_an_address_another_account_has_is_not_taken(site: tuple[Server, httpx.Client], mock_issuer: str) -> None:
    server, client = site
    store = server.state.store
    bob = accounts.create_user(store, "ann@newco.example", password="bob's own password", email_verified=True)
    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    again = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", MOVED))  # still signs in
    assert again["id"] == ann["id"] and again["email"] == "ann@example.com"
    assert store.user_by_email("ann@newco.example")["id"] == bob["id"]
    assert store.list_audit(10, action="user.email") == []


def test_only_the_identity_that_gave_the_address_moves_it(site: tuple[Server, httpx.Client],
                                                         mock_issuer: str) -> None:
    """An account signed in through two providers follows the one its address came from; the other's
    different address does not flip it back and forth."""
    server, client = site
    store = server.state.store
    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    store.link_identity("other", "ann-other", ann["id"], "ann@other.example")
    httpx.put(f"{mock_issuer}/users/ann-other", json={**ANN, "email": "ann@other.example"}).raise_for_status()
    start = client.get("/auth/oidc/other/login")
    back = httpx.post(start.headers["location"], data={"sub": "ann-other"}).headers["location"]
    assert signed_in(server, client.get(back))["email"] == "ann@example.com"
    assert signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", MOVED))["email"] == "ann@newco.example"


def test_an_account_that_signs_in_through_its_provider_gets_no_password_by_mail(
        site: tuple[Server, httpx.Client], mock_issuer: str, smtp_server: SmtpRecorder) -> None:
    server, client = site
    store, settings = server.state.store, server.state.settings.auth
    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    early = accounts.issue_token(store, "reset", ann["id"], 3600)  # mailed before the account was linked
    asked = post_form(client, "/auth/reset", "/auth/reset", email="ann@example.com")
    assert asked.status_code == 200 and "If that address belongs to an account" in asked.text
    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "ann@example.com" and mail["Subject"] == "Your halguru sign-in"
    assert "signs in through mock" in mail.get_content() and "token=" not in mail.get_content()

    page = f"/auth/reset?token={early}"
    spent = post_form(client, page, "/auth/reset/set", token=early, password="mallory's new password")
    assert spent.status_code == 400 and "Link not valid" in spent.text
    assert store.get_user(ann["id"])["password_hash"] is None
    with pytest.raises(accounts.SignInFailed):
        accounts.authenticate(store, "ann@example.com", "mallory's new password", settings)

    # an account made without a password and never linked (`halguru users create --no-password`) still sets one
    accounts.create_user(store, "bo@example.com", email_verified=True)
    post_form(client, "/auth/reset", "/auth/reset", email="bo@example.com")
    mails = smtp_server.wait_for(2)
    assert mails[1]["To"] == "bo@example.com" and "/auth/reset?token=" in mails[1].get_content()
