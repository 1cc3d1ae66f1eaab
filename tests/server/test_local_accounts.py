"""Local accounts over HTTP against a real uvicorn, with aiosmtpd on loopback capturing the mail: registration
modes, email verification, password reset, lockout, 2FA required by role, session fixation, CSRF and sign-out.
The same journey in real Chromium is test_local_accounts_browser.py."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.server.localaccounts import (
    PASSWORD,
    Accounts,
    accounts_server_fixture,
    csrf,
    post_form,
    sign_in,
    smtp_server_fixture,
    totp_now,
)

__all__ = ["accounts_server_fixture", "smtp_server_fixture"]  # pytest finds them here
COOKIE = "halguru_session"


def _signed_in(client: httpx.Client, email: str) -> bool:
    page = client.get("/auth/account")
    return page.status_code == 200 and email in page.text


def test_register_verify_sign_in_and_sign_out_revokes_the_session(accounts_server) -> None:
    accounts: Accounts = accounts_server()
    with accounts.client() as client:
        done = post_form(client, "/auth/register", "/auth/register", email="Ann@Example.com", name="Ann",
                         password=PASSWORD)
        assert done.status_code == 200 and "Check your mail" in done.text
        link = accounts.link(1, "ann@example.com")
        assert link.startswith(accounts.url + "/auth/verify?token=")
        refused = sign_in(client, "ann@example.com")  # not confirmed yet: a new link goes out
        assert refused.status_code == 403 and COOKIE not in refused.cookies
        accounts.link(2, "ann@example.com")
        assert client.get(link).status_code == 200
        assert client.get(link).status_code == 400  # single use
        signed = sign_in(client, "ann@example.com")
        assert signed.status_code == 303 and signed.headers["location"] == "/auth/account"
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert re.search(r"halguru_session=[^;]+;", cookie)
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax"} <= flags and "secure" not in flags  # plain http here
        old = client.cookies[COOKIE]
        assert _signed_in(client, "ann@example.com")
        out = client.post("/auth/logout", data={"csrf_token": csrf(client.get("/auth/account"))})
        assert out.status_code == 303
    with accounts.client(cookies={COOKIE: old}) as replay:  # the old cookie, replayed: revoked server-side
        assert replay.get("/auth/account").headers["location"].startswith("/auth/login")


def test_registration_closed_and_by_invitation(accounts_server) -> None:
    from halguru_server.identity import accounts as rules

    closed = accounts_server(registration="closed")
    with closed.client() as client:
        assert client.get("/auth/register").status_code == 404
        assert "Create an account" not in client.get("/auth/login").text
    invited = accounts_server(registration="invite")
    store = invited.server.state.store
    token = rules.issue_token(store, "invite", None, 3600, {"email": "bo@example.com", "role": "developer"})
    with invited.client() as client:
        assert client.get("/auth/register").status_code == 403
        wrong = post_form(client, f"/auth/register?invite={token}", "/auth/register", invite=token,
                          email="eve@example.com", password=PASSWORD)
        assert wrong.status_code == 403  # an invitation for another address (and now spent)
        token = rules.issue_token(store, "invite", None, 3600, {"email": "bo@example.com", "role": "developer"})
        made = post_form(client, f"/auth/register?invite={token}", "/auth/register", invite=token,
                         email="bo@example.com", password=PASSWORD)
        assert made.status_code == 201, made.text  # the invitation came by mail: the address is confirmed
        user = store.user_by_email("bo@example.com")
        assert user is not None and user["role"] == "developer" and user["email_verified"]
        assert sign_in(client, "bo@example.com").status_code == 303


def test_an_existing_email_registers_like_a_new_one_and_its_owner_is_told(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("cy@example.com")
    with accounts.client() as client:
        page = post_form(client, "/auth/register", "/auth/register", email="cy@example.com", password=PASSWORD * 2)
        assert page.status_code == 200 and "Check your mail" in page.text
    mail = accounts.smtp.wait_for(1)[0]
    assert "has one already" in mail.get_content() and "/auth/reset" in mail.get_content()
    assert len(accounts.server.state.store.list_users()) == 1


@pytest.mark.parametrize("look_alike", ["\uff43y@example.com", "CY@EXAMPLE.COM", "\uff23\uff39@example.com"])
def test_an_address_written_in_look_alike_letters_is_the_account_it_looks_like(accounts_server,
                                                                              look_alike: str) -> None:
    accounts = accounts_server()
    accounts.user("cy@example.com")
    with accounts.client() as client:
        page = post_form(client, "/auth/register", "/auth/register", email=look_alike, password=PASSWORD * 2)
        assert page.status_code == 200 and "Check your mail" in page.text
    mail = accounts.smtp.wait_for(1)[0]
    assert mail["To"] == "cy@example.com" and "has one already" in mail.get_content()
    assert [u["email"] for u in accounts.server.state.store.list_users()] == ["cy@example.com"]


@pytest.mark.parametrize("hidden", ["cy\u200b@example.com", "c\u202ey@example.com", "cy@exam\u00adple.com",
                                    "cy\x00@example.com", "cy@example.com\u200e", "cy\ufeff@example.com"])
def test_an_address_with_invisible_characters_is_refused(accounts_server, hidden: str) -> None:
    accounts = accounts_server()
    accounts.user("cy@example.com")
    with accounts.client() as client:
        page = post_form(client, "/auth/register", "/auth/register", email=hidden, password=PASSWORD * 2)
        assert page.status_code == 400 and "invalid email address" in page.text
    assert [u["email"] for u in accounts.server.state.store.list_users()] == ["cy@example.com"]


def test_reset_mails_only_real_accounts_says_the_same_and_signs_out_everywhere(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("di@example.com")
    with accounts.client() as elsewhere, accounts.client() as client:
        assert sign_in(elsewhere, "di@example.com").status_code == 303
        unknown = post_form(client, "/auth/reset", "/auth/reset", email="nobody@example.com")
        known = post_form(client, "/auth/reset", "/auth/reset", email="di@example.com")
        assert unknown.status_code == known.status_code == 200 and unknown.text == known.text
        link = accounts.link(1, "di@example.com")
        assert len(accounts.smtp.received) == 1
        path = link.removeprefix(accounts.url)
        token = path.split("token=")[1]
        assert client.get(path).status_code == 200  # opening the link spends nothing
        short = post_form(client, path, "/auth/reset/set", token=token, password="short")
        assert short.status_code == 400
        done = post_form(client, path, "/auth/reset/set", token=token, password="a brand new password")
        assert done.status_code == 200 and "Password changed" in done.text
        again = post_form(client, path, "/auth/reset/set", token=token, password="yet another password")
        assert again.status_code == 400
        assert not _signed_in(elsewhere, "di@example.com")
        assert sign_in(client, "di@example.com").status_code == 401
        assert sign_in(client, "di@example.com", "a brand new password").status_code == 303
    user_id = accounts.server.state.store.user_by_email("di@example.com")["id"]
    resets = [e for e in accounts.server.state.store.list_audit(100) if e["action"] == "auth.password_reset"]
    assert [(e["actor"], e["target"], e["details"]) for e in resets] == [  # once: the spent link's retry is not
        (f"user:{user_id}", user_id, {"signed_out": "everywhere", "keys_revoked": 0})]


def test_a_password_reset_can_revoke_the_accounts_api_keys(accounts_server) -> None:
    """Whoever took an account over may have made API keys with it: signing every browser out left those keys
    working. The reset form offers to revoke them too; left unticked, the page says how many still work."""
    from halguru_server.keys import create_key

    accounts = accounts_server()
    user = accounts.user("di@example.com")
    store = accounts.server.state.store
    secrets = [create_key(store, name, user_id=user["id"])[1] for name in ("laptop", "taken-over")]

    def works(secret: str) -> bool:
        answer = httpx.get(f"{accounts.url}/v1/agents", headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code in (200, 401), answer.text
        return answer.status_code == 200

    def reset(count: int, **revoke: str) -> httpx.Response:
        with accounts.client() as client:
            post_form(client, "/auth/reset", "/auth/reset", email="di@example.com")
            path = accounts.link(count, "di@example.com").removeprefix(accounts.url)
            form = client.get(path)
            assert 'name="revoke_keys"' in form.text
            return client.post("/auth/reset/set", data={"csrf_token": csrf(form), "token": path.split("token=")[1],
                                                        "password": "a brand new password", **revoke})

    kept = reset(1)
    assert kept.status_code == 200 and "Its API keys still work (2)" in kept.text
    assert all(works(secret) for secret in secrets)
    revoked = reset(2, revoke_keys="yes")
    assert revoked.status_code == 200 and "Its API keys were revoked (2)" in revoked.text
    assert not any(works(secret) for secret in secrets)
    details = [e["details"] for e in store.list_audit(100) if e["action"] == "auth.password_reset"]
    assert sorted(d["keys_revoked"] for d in details) == [0, 2]


def test_lockout_after_n_failures_answers_like_an_unknown_account(accounts_server) -> None:
    accounts = accounts_server(login_max_failures=3)
    accounts.user("ed@example.com")
    with accounts.client() as client:
        unknown = sign_in(client, "nobody@example.com", "wrong password!")
        answers = [sign_in(client, "ed@example.com", "wrong password!") for _ in range(3)]
        locked = sign_in(client, "ed@example.com")  # the right password, while locked
        assert {r.status_code for r in [unknown, *answers, locked]} == {401}
        message = re.compile(r'<p class="error" role="alert">(.*?)</p>')
        assert len({message.search(r.text).group(1) for r in [unknown, *answers, locked]}) == 1  # type: ignore[union-attr]
        assert COOKIE not in client.cookies


def test_one_address_gets_at_most_five_account_mails_an_hour_and_its_newest_link_works(accounts_server) -> None:
    """The per-client limit alone let anyone send an address 20 reset mails a minute from each of their
    addresses; past the cap nothing is sent and, checked first, the last link sent is not voided."""
    accounts = accounts_server()
    accounts.user("di@example.com")
    accounts.user("jo@example.com")
    with accounts.client() as client:
        for _ in range(7):
            assert post_form(client, "/auth/reset", "/auth/reset", email="di@example.com").status_code == 200
        post_form(client, "/auth/reset", "/auth/reset", email="jo@example.com")
        accounts.smtp.wait_for(6)
        time.sleep(0.5)  # the requests past the cap have had their turn
        mails = accounts.smtp.received
        # each request's mail goes out in its own background task: they may arrive in any order
        assert sorted(m["To"] for m in mails) == ["di@example.com"] * 5 + ["jo@example.com"]
        paths = [accounts.link(n, "di@example.com").removeprefix(accounts.url)
                 for n, mail in enumerate(mails, 1) if mail["To"] == "di@example.com"]
        answers = [post_form(client, path, "/auth/reset/set", token=path.split("token=")[1],
                             password="a brand new password").status_code for path in paths]
        assert sorted(answers) == [200, 400, 400, 400, 400]  # the newest link works (each voids the older)


def test_a_locked_out_owner_gets_back_in_by_a_password_reset(accounts_server) -> None:
    """Anyone who knows an address can keep its account locked with a wrong guess now and then: the mailed
    reset link proves the owner and ends the lock (the guesser's count starts again from nothing)."""
    accounts = accounts_server(login_max_failures=3)
    accounts.user("ed@example.com")
    with accounts.client() as client:
        for _ in range(3):
            sign_in(client, "ed@example.com", "wrong password!")
        assert sign_in(client, "ed@example.com").status_code == 401  # locked
        post_form(client, "/auth/reset", "/auth/reset", email="ed@example.com")
        path = accounts.link(1, "ed@example.com").removeprefix(accounts.url)
        done = post_form(client, path, "/auth/reset/set", token=path.split("token=")[1],
                         password="a brand new password")
        assert done.status_code == 200
        assert sign_in(client, "ed@example.com", "a brand new password").status_code == 303


def test_a_role_that_requires_2fa_must_enrol_before_anything_else(accounts_server) -> None:
    accounts = accounts_server(require_2fa_roles=["admin"])
    accounts.user("fay@example.com", role="admin")
    with accounts.client() as client:
        first = sign_in(client, "fay@example.com")
        assert first.headers["location"].startswith("/auth/2fa")
        pending = client.cookies[COOKIE]
        assert client.get("/auth/account").headers["location"] == "/auth/login/code"
        page = client.get("/auth/2fa")
        assert page.status_code == 200 and "requires two-factor" in page.text and "<svg" in page.text
        assert "<?xml" not in page.text
        secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        wrong = client.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": "000000"})
        assert wrong.status_code == 400 and secret in wrong.text  # the same secret, shown again
        done = client.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(secret)})
        assert done.status_code == 200
        codes = re.findall(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>", done.text)
        assert len(codes) == 10
        assert client.cookies[COOKIE] != pending  # a new session once both factors passed
        assert _signed_in(client, "fay@example.com")
    with accounts.client(cookies={COOKIE: pending}) as replay:
        assert replay.get("/auth/account").headers["location"].startswith("/auth/login")


def test_2fa_on_and_off_and_the_factor_a_sign_in_used_are_audited_and_on_the_security_page(accounts_server,
                                                                                             api_key) -> None:
    """Turning 2FA on was only an ``auth.sign_in`` (via /auth/2fa/enable), turning it off was not recorded at
    all, and a sign-in with a recovery code looked like one with a TOTP code."""
    from halguru_server.identity import accounts as rules

    accounts = accounts_server()
    store = accounts.server.state.store
    lee, may = accounts.user("lee@example.com"), accounts.user("may@example.com")
    with accounts.client() as client:  # lee turns 2FA on, then signs in with a TOTP code
        assert sign_in(client, "lee@example.com").status_code == 303
        page = client.get("/auth/2fa")
        secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        enabled = client.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(secret),
                                                       "password": PASSWORD})
        assert enabled.status_code == 200
    with accounts.client() as client:
        assert sign_in(client, "lee@example.com").headers["location"].startswith("/auth/login/code")
        signed = post_form(client, "/auth/login/code", "/auth/login/code", code=totp_now(secret, ahead=1))
        assert signed.status_code == 303
    may_secret = rules.totp_begin(store, may["id"])  # may has 2FA, lost her phone: a recovery code, then off
    recovery = rules.totp_confirm(store, may["id"], totp_now(may_secret))
    with accounts.client() as client:
        assert sign_in(client, "may@example.com").headers["location"].startswith("/auth/login/code")
        assert post_form(client, "/auth/login/code", "/auth/login/code", code=recovery[0]).status_code == 303
        off = post_form(client, "/auth/2fa", "/auth/2fa/disable", code=totp_now(may_secret, ahead=1))
        assert off.headers["location"] == "/auth/account"
    said = [(e["target"], e["action"], e["details"].get("factor")) for e in reversed(store.list_audit(100))
            if e["action"].startswith(("auth.", "user.2fa"))]
    assert said == [(lee["id"], "auth.sign_in", None), (lee["id"], "user.2fa_enable", None),
                    (lee["id"], "auth.sign_in", "totp"), (lee["id"], "auth.sign_in", "totp"),
                    (may["id"], "auth.sign_in", "recovery_code"), (may["id"], "user.2fa_disable", None)], said
    assert all(e["actor"] == f"user:{e['target']}" for e in store.list_audit(100))
    admin = {"Authorization": f"Bearer {api_key(scope='admin')}"}
    report = httpx.get(f"{accounts.url}/v1/security", headers=admin).json()
    assert [(e["event"], e["user"]) for e in report["second_factor"]] == [
        ("2fa_disable", "may@example.com"), ("recovery_code_sign_in", "may@example.com"),
        ("2fa_enable", "lee@example.com")]
    page = httpx.get(f"{accounts.url}/admin/security", headers=admin).text
    assert "2FA turned off" in page and "Signed in with a recovery code" in page and "2FA turned on" in page


def test_sign_in_starts_a_new_session_and_a_planted_cookie_is_not_kept(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("gus@example.com")
    with accounts.client() as client:
        client.cookies.set(COOKIE, "planted-by-an-attacker-0123456789abcdef", domain="127.0.0.1")
        token = csrf(client.get("/auth/login"))
        fields = {"csrf_token": token, "email": "gus@example.com", "password": PASSWORD}
        assert client.post("/auth/login", data=fields).status_code == 303
        first = client.cookies[COOKIE]
        assert first != "planted-by-an-attacker-0123456789abcdef"
        assert client.post("/auth/login", data=fields).status_code == 303  # a second tab's form
        second = client.cookies[COOKIE]
        assert second != first
    with accounts.client(cookies={COOKIE: first}) as replay:  # the session signed in over is gone
        assert not _signed_in(replay, "gus@example.com")


def test_cross_site_and_tokenless_posts_are_refused(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("hal@example.com")
    with accounts.client() as client:
        page = client.get("/auth/login")
        token = csrf(page)
        fields = {"email": "hal@example.com", "password": PASSWORD}
        evil = client.post("/auth/login", data={"csrf_token": token, **fields},
                           headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and COOKIE not in evil.cookies
        assert client.post("/auth/login", data=fields).status_code == 403  # no token
        assert client.post("/auth/login", data={"csrf_token": "x" * 32, **fields}).status_code == 403
        assert client.post("/auth/login", data={"csrf_token": token, **fields},
                           headers={"Origin": ""}).status_code == 403  # neither Origin nor Referer
        assert sign_in(client, "hal@example.com").status_code == 303
        account = client.get("/auth/account")
        assert client.post("/auth/logout-everywhere", data={"csrf_token": csrf(account)},
                           headers={"Origin": "http://evil.example"}).status_code == 403
        assert client.post("/auth/logout", data={}).status_code == 403
        assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 403  # the pre-sign-in one
        assert _signed_in(client, "hal@example.com")


def test_the_account_page_lists_sessions_and_signs_out_one_or_all(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("ivy@example.com")
    with accounts.client() as laptop, accounts.client() as phone, accounts.client() as tablet:
        for client in (laptop, phone, tablet):
            assert sign_in(client, "ivy@example.com").status_code == 303
        page = laptop.get("/auth/account")
        ids = re.findall(r'name="session" value="([0-9a-f]+)"', page.text)
        assert len(ids) == 2 and "this browser" in page.text  # the others can be signed out
        revoked = laptop.post("/auth/sessions/revoke", data={"csrf_token": csrf(page), "session": ids[0]})
        assert revoked.status_code == 303
        assert [_signed_in(c, "ivy@example.com") for c in (phone, tablet)].count(True) == 1
        page = laptop.get("/auth/account")
        out = laptop.post("/auth/logout-everywhere", data={"csrf_token": csrf(page)})
        assert out.status_code == 200
        assert not any(_signed_in(c, "ivy@example.com") for c in (laptop, phone, tablet))


def test_pages_are_escaped_script_free_and_not_cached(accounts_server) -> None:
    accounts = accounts_server(oidc=[{"name": "corp", "issuer": "https://id.example.com", "client_id": "halguru",
                                      "label": "Corp <SSO>"}])
    with accounts.client() as client:
        page = client.get("/auth/login", params={"next": "/chat/<script>alert(1)</script>"})
        assert "<script" not in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "same-origin"
        far = client.get("/auth/login", params={"next": "//evil.example/"})
        assert 'name="next" value="/"' in far.text
        assert client.get("/chat/static/auth.css").status_code == 200
        login = client.get("/auth/login", params={"next": "/auth/account"})
        assert '<a href="/auth/oidc/corp/login?next=/auth/account">Sign in with Corp &lt;SSO&gt;</a>' in login.text


def test_wrong_codes_lock_the_account_and_a_half_signed_in_browser_shows_on_the_account_page(accounts_server) -> None:
    from halguru_server.identity import accounts as rules

    accounts = accounts_server(login_max_failures=2)
    user = accounts.user("kim@example.com")
    store = accounts.server.state.store
    secret = rules.totp_begin(store, user["id"])
    rules.totp_confirm(store, user["id"], totp_now(secret))
    with accounts.client() as owner, accounts.client() as thief:
        assert sign_in(owner, "kim@example.com").headers["location"] == "/auth/login/code?next=%2Fauth%2Faccount"
        done = post_form(owner, "/auth/login/code?next=/auth/account", "/auth/login/code",
                         code=totp_now(secret, ahead=1), next="/auth/account")
        assert done.headers["location"] == "/auth/account"
        assert sign_in(thief, "kim@example.com").status_code == 303  # the password is known...
        assert thief.get("/auth/account").headers["location"] == "/auth/login/code"
        assert "Password only" in owner.get("/auth/account").text  # ...and its owner can see it
        wrong = post_form(thief, "/auth/login/code", "/auth/login/code", code="123456")
        assert wrong.status_code == 401 and "not right" in wrong.text
        locked = post_form(thief, "/auth/login/code", "/auth/login/code", code="654321")
        assert locked.status_code == 401 and rules.SIGN_IN_FAILED in locked.text  # the sign-in starts over
        assert thief.get("/auth/login/code").headers["location"].startswith("/auth/login")
        assert sign_in(thief, "kim@example.com").status_code == 401  # locked, even with the password
        assert _signed_in(owner, "kim@example.com")


def test_behind_a_tls_proxy_cookies_are_secure_and_the_https_origin_is_the_one_accepted(accounts_server) -> None:
    accounts = accounts_server(trusted_proxies=["127.0.0.1"])
    accounts.user("lu@example.com")
    host = accounts.url.removeprefix("http://")
    with httpx.Client(base_url=accounts.url, timeout=30, headers={"X-Forwarded-Proto": "https"}) as client:
        page = client.get("/auth/login")
        assert "secure" in page.headers["set-cookie"].lower()  # the pre-sign-in CSRF cookie
        token = page.cookies["halguru_csrf"]
        fields = {"csrf_token": token, "email": "lu@example.com", "password": PASSWORD}
        cookie = {"Cookie": f"halguru_csrf={token}"}  # httpx keeps Secure cookies off plain http
        plain = client.post("/auth/login", data=fields, headers={"Origin": accounts.url, **cookie})
        assert plain.status_code == 403  # the browser is on https://: an http:// origin is not this page
        signed = client.post("/auth/login", data=fields, headers={"Origin": f"https://{host}", **cookie})
        assert signed.status_code == 303
        session = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= {f.strip().lower() for f in session.split(";")}


def test_a_mail_server_that_is_down_is_said_plainly_and_signing_in_sends_the_link_again(accounts_server) -> None:
    from tests.channels.mailpeers import free_port

    accounts = accounts_server(smtp={"host": "127.0.0.1", "port": free_port(), "sender": "halguru@example.com",
                                     "starttls": False})
    with accounts.client() as client:
        page = post_form(client, "/auth/register", "/auth/register", email="mo@example.com", password=PASSWORD)
        assert page.status_code == 201 and "could not be sent" in page.text
        again = sign_in(client, "mo@example.com")
        assert again.status_code == 403 and "could not be sent" in again.text


def test_an_operator_invites_from_the_shell_and_the_link_registers_once(accounts_server, cli) -> None:
    accounts = accounts_server(registration="invite")
    link = cli("users", "invite", "Nia@Example.com", "--role", "operator", "--url", accounts.url).stdout.strip()
    assert link.startswith(f"{accounts.url}/auth/register?invite=")
    cli("users", "invite", "x@example.com", "--role", "wizard", code=1)
    path = link.removeprefix(accounts.url)
    token = path.split("invite=")[1]
    with accounts.client() as client:
        made = post_form(client, path, "/auth/register", invite=token, email="nia@example.com", password=PASSWORD)
        assert made.status_code == 201
        again = post_form(client, path, "/auth/register", invite=token, email="nia@example.com", password=PASSWORD)
        assert again.status_code == 403
        assert sign_in(client, "nia@example.com").status_code == 303
    user = accounts.server.state.store.user_by_email("nia@example.com")
    assert user is not None and user["role"] == "operator"


def test_one_address_trying_many_accounts_is_slowed_down(accounts_server) -> None:
    accounts = accounts_server(login_rate_per_minute=4)
    accounts.user("fay@example.com")
    with accounts.client() as client:
        tries = [sign_in(client, f"user{i}@example.com", "guessed password") for i in range(4)]
        assert {r.status_code for r in tries} == {401}
        refused = sign_in(client, "fay@example.com")  # even the right password waits now
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
        assert "Too many sign-in attempts" in refused.text
        assert COOKIE not in client.cookies


def test_a_role_change_signs_the_person_out_and_a_2fa_role_makes_them_enrol(accounts_server) -> None:
    from halguru_server.identity import accounts as people

    accounts = accounts_server(require_2fa_roles=["admin"])
    accounts.user("gus@example.com")
    with accounts.client() as client:
        assert sign_in(client, "gus@example.com").headers["location"] == "/auth/account"
        assert client.get("/v1/agents").status_code == 200  # a user: no second factor needed
        people.set_role(accounts.server.state.store, "gus@example.com", "admin")
        assert client.get("/v1/agents").status_code == 401  # signed out by the change
        assert sign_in(client, "gus@example.com").headers["location"].startswith("/auth/2fa")  # enrol first
        assert client.get("/v1/agents").status_code == 401


def test_a_grown_require_2fa_roles_signs_out_those_without_2fa_at_start(accounts_server) -> None:
    from halguru_server import create_app
    from halguru_server.identity import websessions

    accounts = accounts_server(require_2fa_roles=[])
    store, auth = accounts.server.state.store, accounts.server.state.settings.auth
    op = accounts.user("op@example.com", role="operator")
    secret, _ = websessions.issue(store, op["id"], auth)
    assert websessions.verify(store, secret, auth) is not None
    settings = accounts.server.state.settings.model_copy(
        update={"auth": auth.model_copy(update={"require_2fa_roles": ["operator"]})})
    create_app(settings)  # a restart with the setting grown
    assert websessions.verify(store, secret, auth) is None


def test_a_signed_in_person_changes_their_password_and_their_other_browsers_are_signed_out(accounts_server) -> None:
    accounts = accounts_server()
    accounts.user("hal@example.com")
    with accounts.client() as laptop, accounts.client() as phone:
        sign_in(laptop, "hal@example.com")
        sign_in(phone, "hal@example.com")
        new = "a much better passphrase"
        for fields, why in (({"current": "not it at all", "new": new, "confirm": new}, "not right"),
                            ({"current": PASSWORD, "new": new, "confirm": new + "!"}, "differ"),
                            ({"current": PASSWORD, "new": "short", "confirm": "short"}, "at least")):
            refused = post_form(laptop, "/auth/account", "/auth/password", **fields)
            assert refused.status_code == 400 and why in refused.text
        changed = post_form(laptop, "/auth/account", "/auth/password", current=PASSWORD, new=new, confirm=new)
        assert changed.status_code == 200 and "1 other browser(s) signed out" in changed.text
        assert phone.get("/auth/account").status_code == 303  # signed out: back to sign-in
        assert laptop.get("/auth/account").status_code == 200  # this browser stays
    with accounts.client() as fresh:
        assert sign_in(fresh, "hal@example.com").status_code == 401  # the old password is gone
        assert sign_in(fresh, "hal@example.com", new).status_code == 303


def test_without_public_url_a_strangers_host_header_never_names_a_mail_links_host(accounts_server, serve,
                                                                                   smtp_server, caplog) -> None:
    """docs/identity.md: without auth.public_url a link is built from the request's Host, which a stranger
    sets. serve warns at start; a Host that is neither loopback nor --host gets no mail (same page); with
    --host or public_url the link names that host, whatever Host the request said."""
    from tests.server.localaccounts import smtp_settings

    caplog.set_level("WARNING", logger="halguru.server")
    accounts = accounts_server()
    assert any("auth.public_url is not" in r.getMessage() for r in caplog.records)  # the start-up warning
    accounts.user("di@example.com")
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    with httpx.Client(base_url=accounts.url, headers=evil) as stranger, accounts.client() as local:
        tricked = post_form(stranger, "/auth/reset", "/auth/reset", email="di@example.com")
        honest = post_form(local, "/auth/reset", "/auth/reset", email="nobody@example.com")
        assert tricked.status_code == 200 and tricked.text == honest.text  # it says nothing either way
        registered = post_form(stranger, "/auth/register", "/auth/register", email="eve@example.com",
                               password=PASSWORD)
        assert registered.status_code == 201 and "could not be sent" in registered.text
        again = post_form(stranger, "/auth/register", "/auth/register", email="di@example.com", password=PASSWORD)
        assert again.status_code == 200
        assert accounts.smtp.wait_for(1, seconds=1.0) == []
        assert any("'evil.example'" in r.getMessage() and "auth.public_url" in r.getMessage() for r in caplog.records)
        post_form(local, "/auth/reset", "/auth/reset", email="di@example.com")
        assert accounts.link(1, "di@example.com").startswith(accounts.url + "/auth/reset?token=")

    named = Accounts(serve(host="halguru.lan", auth={"registration": "open", "smtp": smtp_settings(smtp_server)}),
                     smtp_server)
    lan = {"Host": "halguru.lan:8000", "Origin": "http://halguru.lan:8000"}
    with httpx.Client(base_url=named.url, headers=lan) as client:
        post_form(client, "/auth/reset", "/auth/reset", email="di@example.com")
        assert named.link(2, "di@example.com").startswith("http://halguru.lan:8000/auth/reset?token=")

    caplog.clear()
    public = Accounts(serve(auth={"registration": "open", "smtp": smtp_settings(smtp_server),
                                  "public_url": "https://halguru.example.com"}), smtp_server)
    assert not any("auth.public_url is not" in r.getMessage() for r in caplog.records)
    with httpx.Client(base_url=public.url, headers=evil) as stranger:
        post_form(stranger, "/auth/reset", "/auth/reset", email="di@example.com")
        assert public.link(3, "di@example.com").startswith("https://halguru.example.com/auth/reset?token=")


def test_a_refused_account_mail_is_logged_in_the_servers_words(smtp_server, caplog) -> None:
    """The log line was smtplib's repr: "SMTPRecipientsRefused: {'gone@example.org': (550, b'5.1.1 No such...')}"."""
    import asyncio
    import logging
    import smtplib

    import pytest
    from halguru_server.identity import mailer
    from halguru_server.identity.settings import AuthSettings

    from tests.server.localaccounts import smtp_settings

    smtp_server.refuse.add("gone@example.org")
    auth = AuthSettings.model_validate({"smtp": smtp_settings(smtp_server)})
    with caplog.at_level(logging.WARNING, "halguru.server.identity"), pytest.raises(smtplib.SMTPRecipientsRefused):
        asyncio.run(mailer.send(auth, "gone@example.org", "Reset", "a link"))
    (line,) = [r.getMessage() for r in caplog.records if "account mail" in r.getMessage()]
    assert line == "account mail to gone@example.org failed: gone@example.org refused: 550 5.1.1 No such user here"


def _at_once(accounts: Accounts, path: str, posts: list[tuple[dict[str, str], dict[str, str]]]) -> list[int]:
    """Post each (cookies, form) to ``path`` at the same moment, from a client of its own; the statuses."""
    import threading

    start, answers = threading.Barrier(len(posts)), []

    def post(cookies: dict[str, str], data: dict[str, str]) -> None:
        with httpx.Client(base_url=accounts.url, headers={"Origin": accounts.url}, cookies=cookies,
                          timeout=300) as client:  # 40 argon2 checks (or as long a wait) on a busy machine
            start.wait()
            answers.append(client.post(path, data=data).status_code)

    threads = [threading.Thread(target=post, args=each) for each in posts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_a_burst_of_concurrent_code_guesses_gets_no_more_tries_than_the_lockout_allows(accounts_server,
                                                                                        monkeypatch) -> None:
    """The code step has no per-address limit, so the lockout is all that bounds guessing: a thief who knows the
    password and sends 40 codes at once had 21 of them checked (the lock was read before any of them counted).
    Each guess now counts before it is checked: 3 are, the rest are refused as locked."""
    from halguru_server.identity import accounts as rules

    accounts = accounts_server(login_max_failures=3, lockout_base=600)  # no lock ends during the burst
    user = accounts.user("kim@example.com")
    store = accounts.server.state.store
    secret = rules.totp_begin(store, user["id"])
    rules.totp_confirm(store, user["id"], totp_now(secret))
    checked: list[str] = []
    real = rules.verify_second_factor
    monkeypatch.setattr(rules, "verify_second_factor", lambda s, u, code: checked.append(code) or real(s, u, code))
    with accounts.client() as thief:
        assert sign_in(thief, "kim@example.com").status_code == 303
        token, cookies = csrf(thief.get("/auth/login/code")), dict(thief.cookies)
    answers = _at_once(accounts, "/auth/login/code", [(cookies, {"csrf_token": token, "code": f"{n:06d}"})
                                                       for n in range(40)])
    assert answers == [401] * 40
    assert len(checked) == 3, f"{len(checked)} of 40 guesses were checked"
    assert store.get_user(user["id"])["locked_until"] > time.time()


def test_a_burst_of_concurrent_password_guesses_gets_no_more_tries_than_the_lockout_allows(accounts_server,
                                                                                            monkeypatch) -> None:
    """The per-address limit bounds one address; the per-account lockout is what bounds many (here one address
    with a high limit stands for 40): of 40 passwords sent at once, 8 were checked against an account that locks
    after 3. Each now counts before it is checked, and the owner's right password still signs in once the lock
    has passed."""
    from halguru_server.identity import accounts as rules

    accounts = accounts_server(login_max_failures=3, login_rate_per_minute=1000, lockout_base=600)
    user = accounts.user("kim@example.com")
    store = accounts.server.state.store
    checked: list[str] = []
    real = rules.verify_password
    monkeypatch.setattr(rules, "verify_password", lambda s, u, p: checked.append(p) or real(s, u, p))
    posts = []
    for n in range(40):
        with accounts.client() as client:
            token = csrf(client.get("/auth/login"))
            posts.append((dict(client.cookies), {"csrf_token": token, "email": "kim@example.com",
                                                 "password": f"wrong guess {n:04d}"}))
    assert _at_once(accounts, "/auth/login", posts) == [401] * 40
    assert len(checked) == 3, f"{len(checked)} of 40 guesses were checked"
    store.unlock_user(user["id"])  # as when the lock has passed
    with accounts.client() as owner:
        assert sign_in(owner, "kim@example.com").status_code == 303
    assert store.get_user(user["id"])["failed_logins"] == 0


def test_a_signed_in_browser_cannot_guess_the_authenticator_code_without_limit(accounts_server) -> None:
    """Whoever holds a signed-in browser (a stolen cookie) could guess the account's TOTP code at /auth/2fa/enable
    (which, for an account with 2FA on, hands out new recovery codes and signs every other browser out) and at
    /auth/2fa/disable as fast as the server answered: 20 wrong codes, 20 checked. Now 5 a minute per account,
    as for the password change."""
    from halguru_server.identity import accounts as rules

    accounts = accounts_server()
    user = accounts.user("kim@example.com")
    store = accounts.server.state.store
    secret = rules.totp_begin(store, user["id"])
    rules.totp_confirm(store, user["id"], totp_now(secret))
    with accounts.client() as thief:
        assert sign_in(thief, "kim@example.com").status_code == 303
        code = totp_now(secret, ahead=1)
        assert post_form(thief, "/auth/login/code", "/auth/login/code", code=code).status_code == 303
        token = csrf(thief.get("/auth/account"))
        answers = [thief.post(f"/auth/2fa/{action}", data={"csrf_token": token, "code": f"{n:06d}"}).status_code
                   for n in range(10) for action in ("enable", "disable")]
        assert answers == [400] * 5 + [429] * 15
        assert "Too many codes" in thief.post("/auth/2fa/disable", data={"csrf_token": token, "code": "1"}).text
    assert store.get_user(user["id"])["totp_enabled"]


def test_a_password_tried_first_by_guessers_is_refused_everywhere_one_is_set(accounts_server) -> None:
    """Any ten characters went: ``1234567890``, ``qwertyuiop``, ``aaaaaaaaaa`` or the address itself, the first
    guesses of anyone who tries (NIST SP 800-63B asks for such a check). Refused at registration, at a reset and
    at a change, with one line; a reset link survives a refused password."""
    accounts = accounts_server()
    weak = ["1234567890", "QwertyuioP", "aaaaaaaaaa", "abababababab", "password123", "0987654321",
            "reset.owner1", "reset.owner1@example.com"]
    with accounts.client() as client:
        for password in weak:
            page = post_form(client, "/auth/register", "/auth/register", email="reset.owner1@example.com",
                             password=password)
            assert page.status_code == 400 and "among the first ones tried" in page.text, password
        assert accounts.server.state.store.user_by_email("reset.owner1@example.com") is None
        accounts.user("reset.owner1@example.com")
        post_form(client, "/auth/reset", "/auth/reset", email="reset.owner1@example.com")
        path = accounts.link(1, "reset.owner1@example.com").removeprefix(accounts.url)
        token = path.split("token=")[1]
        refused = post_form(client, path, "/auth/reset/set", token=token, password="Reset.Owner1")
        assert refused.status_code == 400 and "among the first ones tried" in refused.text
        assert post_form(client, path, "/auth/reset/set", token=token,
                         password="a brand new password").status_code == 200
        assert sign_in(client, "reset.owner1@example.com", "a brand new password").status_code == 303
        changed = post_form(client, "/auth/account", "/auth/password", current="a brand new password",
                            new="qwertyuiop", confirm="qwertyuiop")
        assert changed.status_code == 400 and "among the first ones tried" in changed.text


def test_a_stolen_cookie_alone_cannot_put_an_authenticator_on_the_account(accounts_server) -> None:
    """Turning 2FA on from a signed-in browser took only a code from the secret the page shows: whoever held the
    cookie enrolled their own authenticator, every other browser (the owner's) was signed out, and the owner's
    password no longer signed in without that authenticator's code (only an admin's 2FA reset let them back)."""
    accounts = accounts_server()
    accounts.user("ola@example.com")
    store = accounts.server.state.store
    with accounts.client() as thief:
        assert sign_in(thief, "ola@example.com").status_code == 303
        page = thief.get("/auth/2fa")
        assert 'name="password"' in page.text
        secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        for password in ("", "not her password"):
            refused = thief.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(secret),
                                                            "password": password})
            assert refused.status_code == 400 and "password is not right" in refused.text
        assert not store.user_by_email("ola@example.com")["totp_enabled"]
        done = thief.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(secret),
                                                     "password": PASSWORD})
        assert done.status_code == 200 and store.user_by_email("ola@example.com")["totp_enabled"]


def test_the_authenticator_secret_a_browser_is_shown_is_its_own(accounts_server) -> None:
    """The pending TOTP secret was the account's: whoever held another of its sessions (a stolen cookie) opened
    /auth/2fa, read the secret, and once the owner turned 2FA on with it (their password and a code) that
    holder had the owner's second factor. Each browser's enrolment now shows a secret of its own."""
    accounts = accounts_server()
    accounts.user("pia@example.com")
    store = accounts.server.state.store
    secret_of = re.compile(r'<code id="secret">([A-Z2-7]+)</code>')
    with accounts.client() as thief, accounts.client() as owner:
        assert sign_in(thief, "pia@example.com").status_code == 303
        assert sign_in(owner, "pia@example.com").status_code == 303
        seen = secret_of.search(thief.get("/auth/2fa").text).group(1)  # type: ignore[union-attr]
        page = owner.get("/auth/2fa")
        shown = secret_of.search(page.text).group(1)  # type: ignore[union-attr]
        assert shown != seen
        assert secret_of.search(owner.get("/auth/2fa").text).group(1) == shown  # a reload: the same one
        # the thief's failed post shows no secret but its own either
        wrong = thief.post("/auth/2fa/enable", data={"csrf_token": csrf(thief.get("/auth/2fa")), "code": "000000",
                                                     "password": "not hers"})
        assert wrong.status_code == 400 and shown not in wrong.text
        # a code from the thief's secret does not turn 2FA on for the owner's
        done = owner.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(seen),
                                                    "password": PASSWORD})
        assert done.status_code == 400 and not store.user_by_email("pia@example.com")["totp_enabled"]
        done = owner.post("/auth/2fa/enable", data={"csrf_token": csrf(page), "code": totp_now(shown),
                                                    "password": PASSWORD})
        assert done.status_code == 200 and store.user_by_email("pia@example.com")["totp_enabled"]
        assert store.user_by_email("pia@example.com")["totp_secret"] == shown


def test_a_stranger_locking_the_account_does_not_keep_out_the_owners_browser(accounts_server) -> None:
    """Anyone who knows an address locked its account with a few wrong passwords, the owner's own browser too,
    and kept it locked with a guess now and then. A browser that signed in to the account before gets tries of its
    own while the lock lasts; the stranger's, and any other new browser, stay locked out."""
    accounts = accounts_server(login_max_failures=3, login_rate_per_minute=100)
    accounts.user("ed@example.com")
    with accounts.client() as owner, accounts.client() as laptop, accounts.client() as stranger, \
            accounts.client() as newcomer:
        for browser in (owner, laptop):
            assert sign_in(browser, "ed@example.com").status_code == 303
            browser.post("/auth/logout", data={"csrf_token": csrf(browser.get("/auth/account"))})
        for _ in range(4):
            assert sign_in(stranger, "ed@example.com", "wrong password!").status_code == 401
        assert sign_in(stranger, "ed@example.com").status_code == 401  # locked: the right password too
        assert sign_in(newcomer, "ed@example.com").status_code == 401
        # a known browser's own tries are few: a thief of its cookie cannot guess on through the lock
        assert [sign_in(laptop, "ed@example.com", "wrong password!").status_code for _ in range(3)] == [401] * 3
        assert sign_in(laptop, "ed@example.com").status_code == 401
        assert sign_in(owner, "ed@example.com").status_code == 303 and _signed_in(owner, "ed@example.com")


def test_a_stranger_guessing_between_the_owners_password_and_code_does_not_shut_the_owner_out(
        accounts_server) -> None:
    """With 2FA, the owner's known browser passed the password through a stranger's lock, but one more wrong guess
    of the stranger's before the owner's code locked the account again, and the code step refused the owner."""
    import pyotp

    accounts = accounts_server(login_max_failures=3, login_rate_per_minute=100)
    accounts.user("ida@example.com")
    store = accounts.server.state.store
    from halguru_server.identity import accounts as rules

    user = store.user_by_email("ida@example.com")
    secret = rules.totp_begin(store, user["id"])
    recovery = rules.totp_confirm(store, user["id"], totp_now(secret))
    with accounts.client() as owner, accounts.client() as stranger:
        assert sign_in(owner, "ida@example.com").headers["location"].startswith("/auth/login/code")
        code = owner.get("/auth/login/code")
        assert post_form(owner, "/auth/login/code", "/auth/login/code", code=recovery[0],
                         next="/auth/account").status_code == 303
        owner.post("/auth/logout", data={"csrf_token": csrf(owner.get("/auth/account"))})
        for _ in range(4):
            assert sign_in(stranger, "ida@example.com", "wrong password!").status_code == 401
        assert sign_in(owner, "ida@example.com").headers["location"].startswith("/auth/login/code")
        sign_in(stranger, "ida@example.com", "wrong password!")  # between the owner's two steps
        code = owner.get("/auth/login/code")
        wrong = owner.post("/auth/login/code", data={"csrf_token": csrf(code), "code": "000000"
                                                     if pyotp.TOTP(secret).now() != "000000" else "111111"})
        assert wrong.status_code == 401 and "not right" in wrong.text  # a slip: still on the code page
        done = owner.post("/auth/login/code", data={"csrf_token": csrf(code), "code": totp_now(secret, 1),
                                                    "next": "/auth/account"})
        assert done.status_code == 303 and _signed_in(owner, "ida@example.com")


def test_signing_out_everywhere_forgets_the_known_browsers(accounts_server) -> None:
    """A browser once signed in got tries of its own through a lock, and "sign out everywhere" (what an owner does
    who fears a thief) left it so: the thief's browser kept them. Now it forgets them all."""
    accounts = accounts_server(login_max_failures=3, login_rate_per_minute=100)
    accounts.user("uma@example.com")
    with accounts.client() as thief, accounts.client() as owner, accounts.client() as stranger:
        assert sign_in(thief, "uma@example.com").status_code == 303
        assert sign_in(owner, "uma@example.com").status_code == 303
        done = owner.post("/auth/logout-everywhere", data={"csrf_token": csrf(owner.get("/auth/account"))})
        assert done.status_code == 200 and "Signed out everywhere" in done.text
        for _ in range(4):
            sign_in(stranger, "uma@example.com", "wrong password!")
        assert sign_in(thief, "uma@example.com").status_code == 401  # locked, and no longer a known browser
        assert sign_in(owner, "uma@example.com").status_code == 401  # the owner's too: a reset gets them in
