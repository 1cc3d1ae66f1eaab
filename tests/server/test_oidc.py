"""OIDC sign-in through a real uvicorn against real providers on loopback.

The happy path and the account rules run against ``oidc-provider-mock`` (a real OpenID provider: discovery,
JWKS, the code flow with its own sign-in form). The token-level negatives, in the spirit of the OpenID RP
conformance suite, run against ``oidc_peer.FakeProvider``, a real HTTP provider whose ID tokens each test forges.
Every refusal is checked to sign nobody in (no session cookie) and to answer one clear line.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from halguru_server.identity import oidc, websessions

from tests.server.conftest import Server
from tests.server.oidc_peer import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeProvider,
    b64,
    hmac_with_public_key,
    s256,
    unsigned,
)

Site = Callable[..., tuple[Server, httpx.Client]]
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")  # the mock provider's own


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    oidc.clear_caches()  # ports are reused between tests: a cached document or key set would be another's
    yield
    oidc.clear_caches()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def site(serve: Callable[..., Server]) -> Iterator[Site]:
    """A halguru server with these OIDC providers, and a browser-like client (cookies, no auto-redirects)."""
    clients: list[httpx.Client] = []

    def make(*providers: dict[str, Any], **auth: Any) -> tuple[Server, httpx.Client]:
        server = serve(auth={"oidc": list(providers), **auth})
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        return server, client

    yield make
    for client in clients:
        client.close()


def fake_config(fake: FakeProvider, **overrides: Any) -> dict[str, Any]:
    return {"name": "fake", "issuer": fake.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            **overrides}


def login(client: httpx.Client, provider: str = "fake", next: str = "/chat") -> dict[str, str]:
    """Start a sign-in; the authorization request's parameters (state, nonce, code_challenge...)."""
    response = client.get(f"/auth/oidc/{provider}/login", params={"next": next})
    assert response.status_code == 303, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def answer(client: httpx.Client, fake: FakeProvider, make: Callable[[str], str], provider: str = "fake",
           html: bool = False) -> httpx.Response:
    """One whole sign-in whose ID token ``make(nonce)`` writes; the callback's response."""
    params = login(client, provider)
    fake.id_token = make(params["nonce"])
    headers = {"Accept": "text/html"} if html else {}
    return client.get(f"/auth/oidc/{provider}/callback", params={"code": "c0de", "state": params["state"]},
                      headers=headers)


def signed_in(server: Server, response: httpx.Response) -> Any:
    """The user the response's session cookie signs in, or None."""
    cookie = response.cookies.get(websessions.COOKIE)
    found = websessions.verify(server.state.store, cookie, server.state.settings.auth) if cookie else None
    return found[1] if found else None


def refused(server: Server, response: httpx.Response, fragment: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert websessions.COOKIE not in response.cookies
    body = response.json()["error"]
    assert body["type"] == "sign_in_refused"
    assert fragment in body["message"], body["message"]
    assert "Traceback" not in response.text and "\n" not in body["message"]
    assert server.state.store.list_users() == []


# -- the happy path against a real provider (oidc-provider-mock) -------------------------------------------
@pytest.fixture
def mock_issuer() -> Iterator[str]:
    import warnings

    import authlib.deprecate  # noqa: F401  (it sets its warnings to "always" when first imported)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the mock's own use of authlib.jose
        import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def mock_config(issuer: str, **overrides: Any) -> dict[str, Any]:
    return {"name": "mock", "issuer": issuer, "client_id": "halguru", "client_secret": "s3cret", **overrides}


def mock_sign_in(client: httpx.Client, issuer: str, sub: str, claims: dict[str, Any], next: str = "/chat",
                 action: str | None = None) -> httpx.Response:
    """Sign in as ``sub`` (with these claims) through the provider's own form; the callback's response."""
    httpx.put(f"{issuer}/users/{quote(sub, safe='')}", json=claims).raise_for_status()
    start = client.get("/auth/oidc/mock/login", params={"next": next})
    assert start.status_code == 303, start.text
    form = {"sub": sub} if action is None else {"action": action}
    authorized = httpx.post(start.headers["location"], data=form)
    assert authorized.status_code == 302, authorized.text
    back = authorized.headers["location"]
    assert urlsplit(back).path == "/auth/oidc/mock/callback"
    return client.get(back)


ANN = {"email": "ann@example.com", "email_verified": True, "name": "Ann"}


def test_sign_in_with_a_real_provider(site: Site, mock_issuer: str) -> None:
    server, client = site(mock_config(mock_issuer, default_role="developer"))
    response = mock_sign_in(client, mock_issuer, "ann-sub", ANN, next="/chat?agent=echo")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/chat?agent=echo"
    user = signed_in(server, response)
    assert user["email"] == "ann@example.com" and user["email_verified"] and user["role"] == "developer"
    assert user["name"] == "Ann"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{websessions.COOKIE}="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    store = server.state.store
    assert [i["user_id"] for i in store.list_identities(user["id"])] == [user["id"]]

    again = mock_sign_in(client, mock_issuer, "ann-sub", ANN)  # linked by (provider, sub): the same user
    assert signed_in(server, again)["id"] == user["id"]
    assert again.cookies[websessions.COOKIE] != response.cookies[websessions.COOKIE]  # a new session each time
    assert len(store.list_users()) == 1
    logged = [(e["actor"], e["action"], e["details"].get("via")) for e in reversed(store.list_audit())]
    assert logged == [(f"user:{user['id']}", "user.create", "mock"),
                      *[(f"user:{user['id']}", "auth.sign_in", "/auth/oidc/mock/callback")] * 2]


def test_a_callback_works_once(site: Site, mock_issuer: str) -> None:
    _, client = site(mock_config(mock_issuer))
    httpx.put(f"{mock_issuer}/users/ann-sub", json=ANN).raise_for_status()
    start = client.get("/auth/oidc/mock/login")
    back = httpx.post(start.headers["location"], data={"sub": "ann-sub"}).headers["location"]
    assert client.get(back).status_code == 303
    replay = client.get(back)  # the same state (and code) again
    assert replay.status_code == 400 and "used already" in replay.json()["error"]["message"]
    assert websessions.COOKIE not in replay.cookies


def test_the_provider_denying_signs_nobody_in(site: Site, mock_issuer: str) -> None:
    server, client = site(mock_config(mock_issuer))
    response = mock_sign_in(client, mock_issuer, "ann-sub", ANN, action="deny")
    refused(server, response, "did not sign you in (access_denied)", 403)


def test_an_unverified_email_is_not_linked(site: Site, mock_issuer: str) -> None:
    from halguru_server.identity import accounts

    server, client = site(mock_config(mock_issuer, link_by_email=True))
    store = server.state.store
    ann = accounts.create_user(store, "ann@example.com", role="admin", password="correct horse battery")
    response = mock_sign_in(client, mock_issuer, "mallory", {**ANN, "email_verified": False})
    user = signed_in(server, response)
    assert user["id"] != ann["id"] and user["email"] is None and user["role"] == "user"
    assert store.list_identities(ann["id"]) == []


def test_a_verified_email_links_only_when_allowed(site: Site, mock_issuer: str) -> None:
    from halguru_server.identity import accounts

    server, client = site(mock_config(mock_issuer, link_by_email=True),
                          {**mock_config(mock_issuer), "name": "nolink"})
    store = server.state.store
    ann = accounts.create_user(store, "ann@example.com", role="operator")
    assert signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))["id"] == ann["id"]
    assert [i["provider"] for i in store.list_identities(ann["id"])] == ["mock"]

    httpx.put(f"{mock_issuer}/users/other-sub", json=ANN).raise_for_status()
    start = client.get("/auth/oidc/nolink/login")  # link_by_email off: the same verified email is refused
    back = httpx.post(start.headers["location"], data={"sub": "other-sub"}).headers["location"]
    response = client.get(back)
    assert response.status_code == 403 and "exists already" in response.json()["error"]["message"]
    assert len(store.list_users()) == 1


@pytest.mark.parametrize("link_by_email", [True, False])
def test_a_sign_up_nobody_confirmed_goes_to_the_verified_owner_without_its_password(
        site: Site, mock_issuer: str, link_by_email: bool) -> None:
    """Mallory registers ann's address with a password of hers (open registration; the account waits for its
    confirmation link). Ann signs in with her provider, which vouches for the address. Linked as it was, ann
    used mallory's account, and once ann clicked the confirmation mail mallory's password signed in to it;
    without ``link_by_email`` the sign-up locked ann out of the provider's sign-in. Now ann gets the account,
    and what mallory set (password, pending links, sessions) is gone."""
    from halguru_server.identity import accounts

    server, client = site(mock_config(mock_issuer, link_by_email=link_by_email))
    store, settings = server.state.store, server.state.settings.auth
    squat = accounts.create_user(store, "ann@example.com", password="mallory's password 1")
    link = accounts.issue_token(store, "verify", squat["id"], 3600, {"email": "ann@example.com"})
    mallory = websessions.issue(store, squat["id"], settings)[0]

    ann = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    assert ann["id"] == squat["id"] and ann["email_verified"] and ann["password_hash"] is None
    with pytest.raises(accounts.SignInFailed):
        accounts.authenticate(store, "ann@example.com", "mallory's password 1", settings)
    assert accounts.consume_token(store, link, "verify") is None
    assert websessions.verify(store, mallory, settings) is None
    assert [e["action"] for e in store.list_audit(10, action="user.")] == ["user.take_over"]
    assert signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))["id"] == ann["id"]


def test_a_domain_not_allowed_is_refused_with_a_page(site: Site, mock_issuer: str) -> None:
    server, client = site(mock_config(mock_issuer, allowed_domains=["example.com"]))
    client.headers["Accept"] = "text/html"
    response = mock_sign_in(client, mock_issuer, "eve", {"email": "eve@evil.test", "email_verified": True})
    assert response.status_code == 403 and response.headers["content-type"].startswith("text/html")
    assert "your email domain may not sign in here" in response.text and "Traceback" not in response.text
    assert server.state.store.list_users() == []
    ok = mock_sign_in(client, mock_issuer, "ann-sub", ANN)
    assert signed_in(server, ok)["email"] == "ann@example.com"
    audit = server.state.store.list_audit(10, action="auth.")  # newest first
    assert [e["action"] for e in audit] == ["auth.sign_in", "auth.sign_in_failed"]
    assert audit[1]["target"] == "mock" and "domain" in audit[1]["details"]["reason"]


def test_disabled_users_and_closed_sites_are_refused(site: Site, mock_issuer: str) -> None:
    from halguru_server.identity import accounts

    server, client = site(mock_config(mock_issuer), {**mock_config(mock_issuer), "name": "closed",
                                                     "create_users": False})
    user = signed_in(server, mock_sign_in(client, mock_issuer, "ann-sub", ANN))
    accounts.disable_user(server.state.store, user["id"])
    response = mock_sign_in(client, mock_issuer, "ann-sub", ANN)
    assert response.status_code == 403 and "disabled" in response.json()["error"]["message"]

    start = client.get("/auth/oidc/closed/login")
    back = httpx.post(start.headers["location"], data={"sub": "bob-sub"}).headers["location"]
    response = client.get(back)
    assert response.status_code == 403 and "no account for you" in response.json()["error"]["message"]


@pytest.mark.parametrize("next_url", ["//evil.example", "/\\evil.example", "https:evil.example",
                                      "javascript:alert(1)", "/%2F%2Fevil.example", "/%252F%252Fevil.example",
                                      "/\t/evil.example", "https://evil.example/"])
def test_the_return_url_stays_on_this_server(site: Site, mock_issuer: str, next_url: str) -> None:
    server, client = site(mock_config(mock_issuer))
    response = mock_sign_in(client, mock_issuer, "ann-sub", ANN, next=next_url)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert signed_in(server, response) is not None


# -- token-level negatives (a real HTTP provider whose ID tokens the test forges) ------------------------------
def test_a_good_token_signs_in_with_pkce_state_and_nonce(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    params = login(client)
    assert params["code_challenge_method"] == "S256" and len(params["state"]) >= 40 and len(params["nonce"]) >= 40
    assert set(params["scope"].split()) == {"openid", "email", "profile"}
    fake.id_token = fake.sign(fake.claims(params["nonce"]))
    response = client.get("/auth/oidc/fake/callback", params={"code": "c0de", "state": params["state"]})
    assert response.status_code == 303 and response.headers["location"] == "/chat"
    assert signed_in(server, response)["email"] == "ann@example.com"
    sent = fake.token_requests[-1]
    assert s256(sent["code_verifier"]) == params["code_challenge"]  # PKCE: the verifier behind the challenge
    assert sent["code"] == "c0de" and sent["redirect_uri"] == params["redirect_uri"]
    assert sent["authorization"].startswith("Basic ")  # client_secret_basic, the secret never in the URL


def test_es256_tokens_are_accepted(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    response = answer(client, fake, lambda n: fake.sign(fake.claims(n), fake.ec_key, "ES256", "e1"))
    assert signed_in(server, response) is not None


def _other_rsa_key() -> Any:
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048, {"kid": "k1"}, private=True)


_ATTACKER = _other_rsa_key()


def _self_signed(fake: FakeProvider, nonce: str, **header: Any) -> str:
    """Signed with the attacker's own key, which the header points at: only the provider's JWKS counts."""
    return fake.sign(fake.claims(nonce), _ATTACKER, kid="attacker", **header)


def _public_pem(fake: FakeProvider) -> bytes:
    return fake.key.as_pem(private=False)


FORGERIES: dict[str, tuple[Callable[[FakeProvider, str], str], str]] = {
    "wrong iss": (lambda f, n: f.sign(f.claims(n, iss="https://evil.example")), "iss is not this provider"),
    "wrong aud": (lambda f, n: f.sign(f.claims(n, aud="someone-else")), "aud is not valid here"),
    "several aud, no azp": (lambda f, n: f.sign(f.claims(n, aud=[CLIENT_ID, "other"])), "azp is not this server"),
    "azp of another client": (lambda f, n: f.sign(f.claims(n, azp="other")), "azp is not this server"),
    "expired": (lambda f, n: f.sign(f.claims(n, exp=int(time.time()) - 61, iat=int(time.time()) - 600)),
                "has expired"),
    "issued in the future": (lambda f, n: f.sign(f.claims(n, iat=int(time.time()) + 300)), "iat is not valid"),
    "not yet valid (nbf)": (lambda f, n: f.sign(f.claims(n, nbf=int(time.time()) + 300)), "nbf is not valid"),
    "no exp": (lambda f, n: f.sign(f.claims(n, exp=None)), "has no exp"),
    "no iat": (lambda f, n: f.sign(f.claims(n, iat=None)), "has no iat"),
    "no sub": (lambda f, n: f.sign(f.claims(n, sub=None)), "has no sub"),
    "no nonce": (lambda f, n: f.sign(f.claims(None)), "nonce is not this sign-in's"),
    "another nonce": (lambda f, n: f.sign(f.claims("a-nonce-of-another-sign-in")), "nonce is not this sign-in's"),
    "bad signature": (lambda f, n: f.sign(f.claims(n), _other_rsa_key()), "signature does not verify"),
    "tampered payload": (lambda f, n: _tamper(f.sign(f.claims(n))), "signature does not verify"),
    "alg none": (lambda f, n: unsigned(f.claims(n)), "algorithm 'none' is not accepted"),
    "HS256 with the public key": (lambda f, n: hmac_with_public_key(f.claims(n), _public_pem(f)),
                                  "algorithm 'HS256' is not accepted"),
    "alg not advertised (RS512)": (lambda f, n: f.sign(f.claims(n), alg="RS512"), "'RS512' is not accepted"),
    "RSA key named for EC alg": (lambda f, n: _relabel(f.sign(f.claims(n)), "ES256"), "does not publish"),
    "unknown kid": (lambda f, n: f.sign(f.claims(n), _other_rsa_key(), kid="k9"), "does not publish"),
    "key embedded (jwk)": (lambda f, n: _self_signed(f, n, jwk=_ATTACKER.as_dict(private=False)), "does not publish"),
    "key set elsewhere (jku)": (lambda f, n: _self_signed(f, n, jku="http://127.0.0.1:9/jwks"), "does not publish"),
    "not a JWS": (lambda f, n: "not.a-token", "not a signed JWT"),
    "an encrypted token (JWE)": (lambda f, n: "a.b.c.d.e", "not a signed JWT"),
}


def _tamper(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "admin"
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def _relabel(token: str, alg: str) -> str:
    """The header claims another algorithm (and the RSA key's kid) than the signature was made with."""

    _, body, sig = token.split(".")
    head = b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
    return f"{head}.{body}.{sig}"


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_forged_or_wrong_id_token_is_refused(site: Site, fake: FakeProvider, case: str) -> None:
    make, fragment = FORGERIES[case]
    server, client = site(fake_config(fake))
    response = answer(client, fake, lambda nonce: make(fake, nonce))
    refused(server, response, fragment)


def test_a_nonce_is_good_for_one_sign_in(site: Site, fake: FakeProvider) -> None:
    _, client = site(fake_config(fake))
    first = login(client)
    fake.id_token = fake.sign(fake.claims(first["nonce"]))
    assert client.get("/auth/oidc/fake/callback", params={"code": "c", "state": first["state"]}).status_code == 303
    replayed = fake.id_token  # the same ID token (and nonce) again, in a new sign-in
    second = login(client)
    fake.id_token = replayed
    response = client.get("/auth/oidc/fake/callback", params={"code": "c", "state": second["state"]})
    assert response.status_code == 400 and "nonce is not this sign-in's" in response.json()["error"]["message"]


def test_rotated_keys_are_refetched_once(site: Site, fake: FakeProvider) -> None:
    from joserfc.jwk import RSAKey

    server, client = site(fake_config(fake))
    assert signed_in(server, answer(client, fake, lambda n: fake.sign(fake.claims(n)))) is not None
    assert fake.jwks_fetches == 1
    new = RSAKey.generate_key(2048, {"kid": "k2"}, private=True)
    fake.published = [new]  # the provider rotated: k1 is gone, k2 is new
    response = answer(client, fake, lambda n: fake.sign(fake.claims(n), new, kid="k2"))
    assert signed_in(server, response) is not None and fake.jwks_fetches == 2  # the new kid: one refetch
    assert signed_in(server, answer(client, fake, lambda n: fake.sign(fake.claims(n), new, kid="k2"))) is not None
    assert fake.jwks_fetches == 2  # known now: no fetch
    stranger = RSAKey.generate_key(2048, {"kid": "k3"}, private=True)
    response = answer(client, fake, lambda n: fake.sign(fake.claims(n), stranger, kid="k3"))
    assert response.status_code == 400 and "does not publish" in response.json()["error"]["message"]
    assert fake.jwks_fetches == 3  # refetched once, then refused
    old = answer(client, fake, lambda n: fake.sign(fake.claims(n), kid="k1"))  # the retired key
    assert old.status_code == 400 and websessions.COOKIE not in old.cookies


# -- state and the flow ------------------------------------------------------------------------------------------
def _good(fake: FakeProvider, client: httpx.Client) -> dict[str, str]:
    params = login(client)
    fake.id_token = fake.sign(fake.claims(params["nonce"]))
    return params


def test_a_callback_without_state_or_with_a_forged_one_is_refused(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    _good(fake, client)
    refused(server, client.get("/auth/oidc/fake/callback", params={"code": "c"}), "has no state")
    refused(server, client.get("/auth/oidc/fake/callback", params={"code": "c", "state": "x" * 43}),
            "expired or was used already")
    assert fake.token_requests == []  # no code was exchanged for either


def test_a_state_is_single_use(site: Site, fake: FakeProvider) -> None:
    _, client = site(fake_config(fake))
    params = _good(fake, client)
    query = {"code": "c", "state": params["state"]}
    assert client.get("/auth/oidc/fake/callback", params=query).status_code == 303
    again = client.get("/auth/oidc/fake/callback", params=query)
    assert again.status_code == 400 and "used already" in again.json()["error"]["message"]
    assert len(fake.token_requests) == 1


def test_a_failed_callback_uses_the_state_up_too(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    params = login(client)
    fake.id_token = unsigned(fake.claims(params["nonce"]))
    query = {"code": "c", "state": params["state"]}
    assert client.get("/auth/oidc/fake/callback", params=query).status_code == 400
    fake.id_token = fake.sign(fake.claims(params["nonce"]))  # a good token now: the state is spent all the same
    refused(server, client.get("/auth/oidc/fake/callback", params=query), "used already")


def test_a_callback_in_another_browser_is_refused(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    params = _good(fake, client)  # the attacker starts a sign-in (with their account at the provider) ...
    with httpx.Client(base_url=server.url) as victim:  # ... and lures a victim's browser to its callback
        response = victim.get("/auth/oidc/fake/callback", params={"code": "c", "state": params["state"]})
    refused(server, response, "started in another browser")


def test_a_link_scanner_opening_the_callback_first_leaves_the_sign_in_to_its_browser(site: Site,
                                                                                    fake: FakeProvider) -> None:
    """A mail scanner or prefetcher (another browser, without the flow's cookie) that opened the callback URL
    first spent the state: the real sign-in then said "expired or was used already"."""
    server, client = site(fake_config(fake))
    params = _good(fake, client)
    query = {"code": "c", "state": params["state"]}
    with httpx.Client(base_url=server.url) as scanner:
        refused(server, scanner.get("/auth/oidc/fake/callback", params=query), "started in another browser")
    assert fake.token_requests == []  # the scanner's visit exchanged no code
    response = client.get("/auth/oidc/fake/callback", params=query)
    assert response.status_code == 303 and signed_in(server, response) is not None
    again = client.get("/auth/oidc/fake/callback", params=query)  # still single use
    assert again.status_code == 400 and "used already" in again.json()["error"]["message"]


def test_a_state_from_another_provider_is_refused(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake), fake_config(fake, name="other"))
    params = _good(fake, client)
    response = client.get("/auth/oidc/other/callback", params={"code": "c", "state": params["state"]})
    refused(server, response, "started with another provider")


def test_a_sign_in_expires(site: Site, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oidc, "FLOW_TTL", 0.5)
    server, client = site(fake_config(fake))
    params = _good(fake, client)
    time.sleep(1.0)
    refused(server, client.get("/auth/oidc/fake/callback", params={"code": "c", "state": params["state"]}),
            "expired or was used already")


def test_a_callback_without_code_is_refused(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    params = _good(fake, client)
    refused(server, client.get("/auth/oidc/fake/callback", params={"state": params["state"]}), "has no code")


def test_a_provider_error_is_refused(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    fake.id_token = None  # the token endpoint answers invalid_grant
    params = login(client)
    refused(server, client.get("/auth/oidc/fake/callback", params={"code": "c", "state": params["state"]}),
            "refused the sign-in code (invalid_grant)")


def test_discovery_naming_another_issuer_is_refused(site: Site, fake: FakeProvider) -> None:
    fake.discovery_issuer = "https://evil.example"  # a mix-up: the document is not this issuer's
    server, client = site(fake_config(fake))
    response = client.get("/auth/oidc/fake/login")
    refused(server, response, "names another issuer", 502)
    assert websessions.COOKIE not in response.cookies


def test_an_unknown_provider_is_404(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    for path in ("/auth/oidc/nope/login", "/auth/oidc/nope/callback?state=x&code=y"):
        refused(server, client.get(path), "no such sign-in provider", 404)


def test_the_refusal_page_is_one_line_of_html(site: Site, fake: FakeProvider) -> None:
    _, client = site(fake_config(fake))
    response = answer(client, fake, lambda n: unsigned(fake.claims(n)), html=True)
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert "algorithm &#39;none&#39; is not accepted" in response.text or "algorithm 'none'" in response.text
    assert "Traceback" not in response.text and 'href="/auth/login"' in response.text


# -- Entra-style multi-tenant issuers ------------------------------------------------------------------------------
def _tenant_site(site: Site, fake: FakeProvider, **overrides: Any) -> tuple[Server, httpx.Client]:
    fake.discovery_issuer = f"{fake.issuer}/{{tenantid}}/v2.0"  # as login.microsoftonline.com/common/v2.0 says
    return site(fake_config(fake, issuer=f"{fake.issuer}/common/v2.0", **overrides))


def _tenant_token(fake: FakeProvider, nonce: str, iss_tenant: str, tid: str | None) -> str:
    return fake.sign(fake.claims(nonce, iss=f"{fake.issuer}/{iss_tenant}/v2.0", tid=tid))


def test_a_multi_tenant_issuer_takes_the_token_tenant(site: Site, fake: FakeProvider) -> None:
    server, client = _tenant_site(site, fake, allowed_tenants=["t-1"])
    response = answer(client, fake, lambda n: _tenant_token(fake, n, "t-1", "t-1"))
    assert signed_in(server, response) is not None


@pytest.mark.parametrize(("iss_tenant", "tid", "fragment", "status"), [
    ("t-2", "t-1", "iss is not this provider", 400),  # iss of one tenant, tid of another
    ("t-1", None, "has no tenant", 400),
    ("t-2", "t-2", "organization (tenant) may not sign in", 403),  # a tenant not allowed
])
def test_a_multi_tenant_token_must_name_an_allowed_tenant(site: Site, fake: FakeProvider, iss_tenant: str,
                                                         tid: str | None, fragment: str, status: int) -> None:
    server, client = _tenant_site(site, fake, allowed_tenants=["t-1"])
    response = answer(client, fake, lambda n: _tenant_token(fake, n, iss_tenant, tid))
    refused(server, response, fragment, status)


@pytest.mark.parametrize("make", [lambda f, n: unsigned(f.claims(n)),
                                  lambda f, n: hmac_with_public_key(f.claims(n), _public_pem(f))],
                         ids=["alg none", "HS256 with the public key"])
def test_none_and_hmac_are_refused_even_when_advertised(site: Site, fake: FakeProvider,
                                                        make: Callable[[FakeProvider, str], str]) -> None:
    fake.algorithms = ("RS256", "HS256", "none")  # a provider (or a mix-up) advertising them changes nothing
    server, client = site(fake_config(fake))
    refused(server, answer(client, fake, lambda n: make(fake, n)), "is not accepted")


def test_a_crafted_error_text_is_not_echoed(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake))
    params = login(client)
    words = "Your account is locked. Call +1 555 0100 now"
    response = client.get("/auth/oidc/fake/callback", params={"state": params["state"], "error": words})
    refused(server, response, "did not sign you in (error)", 403)
    assert "555" not in response.text


def test_sign_in_starts_are_rate_limited(serve: Callable[..., Server], fake: FakeProvider) -> None:
    server = serve(auth={"oidc": [fake_config(fake)]}, public_rate_per_minute=2)
    with httpx.Client(base_url=server.url) as client:
        codes = [client.get("/auth/oidc/fake/login").status_code for _ in range(3)]
    assert codes == [303, 303, 429]


@pytest.mark.parametrize(("trusted", "scheme"), [(["127.0.0.1/32"], "https"), ([], "http")])
def test_behind_a_tls_proxy_the_provider_sends_the_browser_back_over_https(
        serve: Callable[..., Server], fake: FakeProvider, trusted: list[str], scheme: str) -> None:
    """Without ``public_url``, behind a proxy that ends TLS: the redirect URI said http, so the provider refused it
    (an https one registered) or sent the code back over plain http. A client nobody trusts cannot ask for https."""
    server = serve(auth={"oidc": [fake_config(fake)]}, trusted_proxies=trusted)
    with httpx.Client(base_url=server.url, headers={"X-Forwarded-Proto": "https"}) as client:
        start = client.get("/auth/oidc/fake/login")
        params = dict(parse_qsl(urlsplit(start.headers["location"]).query))
        assert params["redirect_uri"] == f"{scheme}://{server.url.partition('://')[2]}/auth/oidc/fake/callback"
        assert ("Secure" in start.headers["set-cookie"]) == (scheme == "https")
        flow = start.headers["set-cookie"].split(";")[0].split("=", 1)[1]  # Secure: httpx sends it back over https only
        client.cookies.set("halguru_oidc", flow)
        fake.id_token = fake.sign(fake.claims(params["nonce"]))
        done = client.get("/auth/oidc/fake/callback", params={"code": "c0de", "state": params["state"]})
    assert done.status_code == 303 and f"{websessions.COOKIE}=" in done.headers["set-cookie"], done.text
    assert fake.token_requests[-1]["redirect_uri"] == params["redirect_uri"]


def test_openid_is_always_asked_for(site: Site, fake: FakeProvider) -> None:
    _, client = site(fake_config(fake, scopes=["email"]))
    assert login(client)["scope"].split() == ["openid", "email"]


def _meta(issuer: str) -> oidc.Metadata:
    return oidc.Metadata(issuer=issuer, authorization_endpoint=f"{issuer}/a", token_endpoint=f"{issuer}/t",
                         jwks_uri=f"{issuer}/k", algorithms=("RS256",), auth_methods=("client_secret_basic",))


def test_google_tokens_may_name_the_bare_issuer() -> None:
    from halguru_server.identity.settings import OidcProvider

    google = OidcProvider(name="google", client_id="cid")
    now = int(time.time())
    claims = {"iss": "accounts.google.com", "aud": "cid", "sub": "1", "iat": now, "exp": now + 60, "nonce": "n"}
    oidc.check_claims(google, _meta(oidc.GOOGLE_ISSUER), claims, "n")
    with pytest.raises(oidc.OidcError, match="iss is not this provider"):
        oidc.check_claims(google, _meta(oidc.GOOGLE_ISSUER), {**claims, "iss": "evil.example"}, "n")
    with pytest.raises(oidc.OidcError, match="iss is not this provider"):  # only Google's own issuer has two names
        oidc.check_claims(google, _meta("https://id.example.com"), claims, "n")


def test_leeway_is_sixty_seconds() -> None:
    from halguru_server.identity.settings import OidcProvider

    config, meta, now = OidcProvider(name="corp", client_id="cid", issuer="https://id.example.com"), \
        _meta("https://id.example.com"), int(time.time())
    claims = {"iss": meta.issuer, "aud": "cid", "sub": "1", "nonce": "n"}
    oidc.check_claims(config, meta, {**claims, "iat": now + 50, "exp": now - 50}, "n", now=now)  # skew forgiven
    with pytest.raises(oidc.OidcError, match="expired"):
        oidc.check_claims(config, meta, {**claims, "iat": now - 600, "exp": now - 70}, "n", now=now)
    with pytest.raises(oidc.OidcError, match="iat is not valid"):
        oidc.check_claims(config, meta, {**claims, "iat": now + 70, "exp": now + 600}, "n", now=now)


@pytest.mark.parametrize(("claims", "email"), [
    ({"email": "Ann@Example.com", "email_verified": True}, "ann@example.com"),
    ({"email": "ann@example.com", "email_verified": "true"}, "ann@example.com"),
    ({"email": "ann@example.com", "xms_edov": True}, "ann@example.com"),  # Entra: domain owner verified
    ({"email": "ann@example.com", "email_verified": False}, None),
    ({"email": "ann@example.com", "email_verified": "yes"}, None),
    ({"email": "ann@example.com"}, None),  # not said: not verified
    ({"email": "ann@example.com", "email_verified": False, "xms_edov": True}, None),
    ({"email_verified": True}, None),
])
def test_only_a_verified_email_counts(claims: dict[str, Any], email: str | None) -> None:
    assert oidc.verified_email(claims) == email


def test_a_second_factor_still_owed_goes_through_the_sign_in_page(site: Site, fake: FakeProvider) -> None:
    server, client = site(fake_config(fake, default_role="admin"))  # admins must use 2FA (the default rule)
    response = answer(client, fake, lambda n: fake.sign(fake.claims(n)))
    assert response.status_code == 303 and response.headers["location"] == "/auth/login?next=%2Fchat"
    cookie = response.cookies[websessions.COOKIE]
    session, user = websessions.verify(server.state.store, cookie, server.state.settings.auth)
    assert not session["mfa_done"] and user["role"] == "admin"
    onwards = client.get(response.headers["location"])  # the sign-in page sends it on to enrol TOTP
    assert onwards.status_code == 303 and onwards.headers["location"].startswith("/auth/2fa")
    auth = server.state.settings.auth
    server.state.store.record_login_failure(user["id"], auth.login_max_failures, 30, 900)
    answer(client, fake, lambda n: fake.sign(fake.claims(n)))  # signing in again does not wipe the failures
    assert server.state.store.get_user(user["id"])["failed_logins"] == 1
