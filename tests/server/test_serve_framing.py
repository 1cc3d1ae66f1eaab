"""Clickjacking: no page of the server can be framed by another site, except an agent's embeddable chat by the
origins its agent.yaml lists."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml


def test_pages_without_a_policy_of_their_own_cannot_be_framed(serve, agents_dir: Path) -> None:
    (agents_dir / "widget").mkdir()
    (agents_dir / "widget" / "agent.yaml").write_text(yaml.safe_dump({
        "name": "widget", "model": "scripted", "instructions": "Hi.",
        "metadata": {"web_chat": "public", "embed_origins": ["https://shop.example"]}}))
    url = serve().url
    for path in ("/status", "/swagger"):  # they had no CSP and no X-Frame-Options: any site could frame them
        page = httpx.get(f"{url}{path}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    chat = httpx.get(f"{url}/chat/")  # a page with its own policy keeps it, alone
    assert chat.headers.get_list("content-security-policy") == [chat.headers["content-security-policy"]]
    assert "script-src 'self'" in chat.headers["content-security-policy"]
    embed = httpx.get(f"{url}/chat/embed/widget")  # the embeddable chat stays embeddable where it says
    assert "frame-ancestors https://shop.example" in embed.headers["content-security-policy"]
    assert "x-frame-options" not in embed.headers
    assert "content-security-policy" not in httpx.get(f"{url}/healthz").headers  # JSON is left as it was


def test_an_upstream_app_behind_the_auth_proxy_keeps_its_own_framing_headers(serve) -> None:
    """An internal app may frame its own pages: halguru adds no policy to what it answers."""
    from halguru_server.identity import accounts, websessions
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.server.conftest import Server, free_port

    page = Starlette(routes=[Route("/{path:path}", lambda request: HTMLResponse("<iframe src=/inner></iframe>"))])
    upstream = Server(page, free_port()).start()
    try:
        server = serve(auth={"proxy": {"upstream": upstream.url, "prefix": "/apps/wiki", "role": "operator"}})
        user = accounts.create_user(server.state.store, "op@example.com", role="operator")
        secret, _ = websessions.issue(server.state.store, user["id"], server.state.settings.auth, mfa_done=True)
        answer = httpx.get(f"{server.url}/apps/wiki/", cookies={websessions.COOKIE: secret})
        assert answer.status_code == 200 and "<iframe" in answer.text
        assert "content-security-policy" not in answer.headers and "x-frame-options" not in answer.headers
    finally:
        upstream.stop()
