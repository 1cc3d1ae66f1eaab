"""Auth proxy mode: a real upstream app on loopback behind `halguru serve`'s sign-in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.server.conftest import Server, free_port


async def echo(request: Request) -> Response:
    """The upstream: says what it received (headers, path, body) and sets a cookie of its own."""
    if request.url.path == "/go-home":
        return RedirectResponse(f"http://127.0.0.1:{request.url.port}/home", status_code=302)
    body = (await request.body()).decode()
    response = JSONResponse({"path": request.url.path, "raw_path": request.scope["raw_path"].decode(),
                             "query": request.url.query, "body": body,
                             "headers": dict(request.headers)})
    response.set_cookie("app_a", "1")
    response.set_cookie("app_b", "2")
    response.raw_headers.append((b"content-disposition", 'attachment; filename="日本-café.pdf"'.encode()))
    return response


@pytest.fixture
def upstream():
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"])])
    server = Server(app, free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def proxied(serve, upstream):
    server = serve(auth={"proxy": {"upstream": upstream.url, "prefix": "/apps/wiki", "role": "operator"}})
    return server


class _LengthOnlyEcho(BaseHTTPRequestHandler):
    """A plain http.server app, as many small internal apps are: it reads a body by Content-Length only."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        out = json.dumps({"body": body, "content-length": self.headers.get("content-length"),
                          "transfer-encoding": self.headers.get("transfer-encoding")}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _LengthOnlyEcho)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _signed_in(server: Server, role: str, *, mfa_done: bool = True) -> httpx.Client:
    from halguru_server.identity import accounts, websessions

    state = server.state
    user = accounts.create_user(state.store, f"{role}@example.com", role=role, name=f"The {role}")
    secret, _ = websessions.issue(state.store, user["id"], state.settings.auth, mfa_done=mfa_done)
    return httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret, "theirs": "kept"})


def test_signed_in_operator_reaches_the_upstream_as_themself(proxied):
    with _signed_in(proxied, "operator") as client:
        got = client.post("/apps/wiki/pages/1?x=2", content="hello",
                          headers={"Origin": proxied.url, "X-Forwarded-User": "admin@evil",
                                   "X-Forwarded-Groups": "admin", "Remote-User": "root"})
    assert got.status_code == 200, got.text
    seen = got.json()
    assert (seen["path"], seen["query"], seen["body"]) == ("/pages/1", "x=2", "hello")
    headers = seen["headers"]
    assert headers["x-forwarded-email"] == "operator@example.com"
    assert headers["x-forwarded-groups"] == "operator"  # the client's spoofed one is gone
    assert headers["x-forwarded-user"].startswith("usr_")
    assert headers["x-forwarded-prefix"] == "/apps/wiki"
    assert "remote-user" not in headers
    assert headers["cookie"] == "theirs=kept"  # halguru's session cookie never reaches the upstream
    cookies = got.headers.get_list("set-cookie")
    assert {"app_a=1; Path=/; SameSite=lax", "app_b=2; Path=/; SameSite=lax"} <= set(cookies)  # both kept


def test_without_a_session_browsers_go_to_sign_in_and_others_get_401(proxied):
    page = httpx.get(f"{proxied.url}/apps/wiki/doc?a=1", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/login?next=%2Fapps%2Fwiki%2Fdoc%3Fa%3D1"
    api = httpx.get(f"{proxied.url}/apps/wiki/doc", cookies={"halguru_session": "forged"})
    assert api.status_code == 401
    assert "sign in" in api.json()["error"]["message"]


def test_role_below_the_least_or_second_factor_pending_is_refused(proxied):
    with _signed_in(proxied, "user") as client:
        assert client.get("/apps/wiki/").status_code == 403
    with _signed_in(proxied, "admin", mfa_done=False) as client:
        assert client.get("/apps/wiki/").status_code == 401


def test_cross_site_state_change_refused_and_redirects_rewritten(proxied, upstream):
    with _signed_in(proxied, "operator") as client:
        assert client.post("/apps/wiki/x", content="a", headers={"Origin": "https://evil.example"}).status_code == 403
        assert client.post("/apps/wiki/x", content="a").status_code == 403  # no Origin at all
        moved = client.get("/apps/wiki/go-home")
    assert moved.status_code == 302
    assert moved.headers["location"] == "/apps/wiki/home"


def test_upstream_down_is_a_clear_502(serve):
    server = serve(auth={"proxy": {"upstream": f"http://127.0.0.1:{free_port()}", "prefix": "/apps/x"}})
    with _signed_in(server, "user") as client:
        got = client.get("/apps/x/")
    assert got.status_code == 502
    assert "did not answer" in json.loads(got.text)["error"]["message"]


def test_identity_headers_spelt_with_underscores_or_forwarded_never_reach_the_upstream(proxied):
    """WSGI and CGI servers read ``X_Forwarded_User`` as ``X-Forwarded-User`` and join it with the proxy's
    (wsgiref: ``"usr_admin,usr_me"``); ``Forwarded`` and ``X-Real-IP`` would name another client."""
    with _signed_in(proxied, "operator") as client:
        got = client.get("/apps/wiki/whoami", headers={
            "X_Forwarded_User": "usr_admin", "X_Forwarded_Groups": "admin", "x_forwarded_email": "a@evil",
            "Forwarded": "for=10.0.0.1;proto=https", "X-Real-IP": "10.0.0.1", "X-Forwarded-Port": "443",
            "X-App-Thing": "kept"})
    headers = got.json()["headers"]
    assert not [k for k in headers if "_" in k], headers
    assert not {"forwarded", "x-real-ip", "x-forwarded-port"} & set(headers)
    assert headers["x-forwarded-groups"] == "operator" and headers["x-app-thing"] == "kept"
    assert "transfer-encoding" not in headers  # a GET without a body is not sent chunked
    assert len(got.headers.get_list("date")) == 1 and len(got.headers.get_list("server")) == 1


def test_a_form_post_reaches_an_http_server_upstream_whole(serve, plain_upstream):
    """The client's Content-Length is passed on (the body is not re-sent chunked, which http.server,
    wsgiref and the like read as an empty body, or answer early and hang up: a 502)."""
    server = serve(auth={"proxy": {"upstream": plain_upstream, "prefix": "/apps/wiki", "role": "operator"}})
    with _signed_in(server, "operator") as client:
        for _ in range(3):
            got = client.post("/apps/wiki/save", data={"title": "hello", "body": "world"},
                              headers={"Origin": server.url})
            assert got.status_code == 200, got.text
            assert got.json() == {"body": "title=hello&body=world", "content-length": "22",
                                  "transfer-encoding": None}


def test_the_upstream_gets_the_path_as_sent_below_its_own_path(serve, upstream):
    """An encoded slash stays one segment, a double slash stays in the path (it was read as a host and dropped,
    so `//x/y` reached `/y`), the query is kept as sent; dot segments that would climb out of the upstream's
    own path are refused without reaching it."""
    server = serve(auth={"proxy": {"upstream": f"{upstream.url}/wiki", "prefix": "/apps/wiki", "role": "user"}})
    with _signed_in(server, "operator") as client:
        for sent, arrived in [("/apps/wiki/projects/group%2Fname", "/wiki/projects/group%2Fname"),
                              ("/apps/wiki//x/y", "/wiki//x/y"), ("/apps/wiki", "/wiki/"),
                              ("/apps/wiki/caf%C3%A9%20au%20lait", "/wiki/caf%C3%A9%20au%20lait")]:
            answer = client.get(sent, params={"q": "a&b", "n": "1"})
            assert answer.status_code == 200, (sent, answer.text)
            assert (answer.json()["raw_path"], answer.json()["query"]) == (arrived, "q=a%26b&n=1"), sent
        for climbing in ("/apps/wiki/%2e%2e/admin", "/apps/wiki/a/%2E%2E/%2e%2e/admin", "/apps/wiki/%2e/x"):
            refused = client.get(httpx.URL(server.url).copy_with(raw_path=climbing.encode()))
            assert refused.status_code == 400, (climbing, refused.text)
            assert refused.json()["error"]["type"] == "auth_proxy"


def test_a_slow_session_lookup_does_not_hold_up_other_requests(proxied, monkeypatch):
    """Each proxied request looked its session up on the event loop: with the store answering in 0.5 s (a busy
    PostgreSQL), 8 requests at once took 8 × 0.5 s, one after the other, and so did everything else the server
    was asked meanwhile. The lookup now runs off the loop, as the guards' does."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    store = proxied.state.store
    real = store.get_web_session
    monkeypatch.setattr(store, "get_web_session", lambda id_hash: time.sleep(0.5) or real(id_hash))
    with _signed_in(proxied, "operator") as client:
        cookies = dict(client.cookies)

    def one(_: int) -> int:
        return httpx.get(f"{proxied.url}/apps/wiki/page", cookies=cookies, timeout=30).status_code

    assert one(0) == 200  # the first request also starts the upstream client
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8
    took = time.monotonic() - started
    assert took < 3, f"8 proxied requests at once took {took:.1f} s"  # one after the other: 4 s at least


def test_behind_a_tls_proxy_the_upstream_hears_the_browsers_scheme_and_address(serve, upstream):
    """halguru behind a TLS-terminating proxy (``trusted_proxies``): the upstream was told http and the proxy's
    address, so its redirects and absolute links sent browsers to http:// and its logs named the proxy."""
    server = serve(auth={"proxy": {"upstream": upstream.url, "prefix": "/apps/wiki", "role": "operator"}},
                   trusted_proxies=["127.0.0.1/32"])
    with _signed_in(server, "operator") as client:
        behind = client.get("/apps/wiki/", headers={"X-Forwarded-Proto": "https",
                                                    "X-Forwarded-For": "203.0.113.7"}).json()["headers"]
    assert (behind["x-forwarded-proto"], behind["x-forwarded-for"]) == ("https", "203.0.113.7")
    plain = serve(auth={"proxy": {"upstream": upstream.url, "prefix": "/apps/wiki", "role": "operator"}})
    with _signed_in(plain, "admin") as client:  # (one store: another user) a client nobody trusts: ignored
        direct = client.get("/apps/wiki/", headers={"X-Forwarded-Proto": "https",
                                                    "X-Forwarded-For": "203.0.113.7"}).json()["headers"]
    assert (direct["x-forwarded-proto"], direct["x-forwarded-for"]) == ("http", "127.0.0.1")


def test_a_name_or_header_beyond_ascii_reaches_the_upstream(proxied):
    """A user named José (or 日本), or a browser header with a byte past ASCII, got a 500 on every proxied
    request (the headers were re-encoded as ASCII); a name with a line break, a 502 "did not answer". The
    upstream gets the name in UTF-8 (as oauth2-proxy sends it) and the browser's header byte for byte."""
    from halguru_server.identity import accounts, websessions

    state = proxied.state
    for name, sent in (("José 日本", "José 日本"),
                       ("Eve\r\nX-Forwarded-Groups: admin", "Eve X-Forwarded-Groups: admin")):
        user = accounts.create_user(state.store, f"{len(name)}@example.com", role="operator", name=name)
        secret, _ = websessions.issue(state.store, user["id"], state.settings.auth, mfa_done=True)
        with httpx.Client(base_url=proxied.url, cookies={websessions.COOKIE: secret}) as browser:
            answer = browser.get("/apps/wiki/page", headers={"x-note": "caf\xe9".encode("latin-1")})
        assert answer.status_code == 200, answer.text
        got = answer.json()["headers"]
        assert got["x-forwarded-preferred-username"].encode("latin-1").decode() == sent
        assert got["x-forwarded-groups"] == "operator" and got["x-note"] == "caf\xe9"


def test_an_upstream_header_past_ascii_reaches_the_browser_byte_for_byte(proxied):
    """An upstream answering with a UTF-8 header (a download's Content-Disposition filename, as Go and Node apps
    send it) gave a 500 for a character past latin-1, and other bytes re-encoded."""
    with _signed_in(proxied, "operator") as client:
        answer = client.get("/apps/wiki/report")
    assert answer.status_code == 200, answer.text
    raw = dict(answer.headers.raw)[b"content-disposition"]
    assert raw == 'attachment; filename="日本-café.pdf"'.encode()
