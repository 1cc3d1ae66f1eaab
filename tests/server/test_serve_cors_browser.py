"""A web page on another origin calls the OpenAI endpoint from real headless Chromium: allowed only for the origins
in ``cors_origins`` (it had no CORS at all, so no browser client elsewhere could call the API), refused without
the setting, preflight included (an Authorization header and a JSON body make every such call preflighted)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import free_port
from tests.server.test_console_browser import ARGS, CHROMIUM

CALL = """async ([url, key]) => {
  try {
    const r = await fetch(url + "/v1/chat/completions", {method: "POST", headers: {
      "Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: JSON.stringify({model: "echo", messages: [{role: "user", content: "hi from a page"}]})});
    return {status: r.status, id: r.headers.get("x-request-id"), body: await r.json()};
  } catch (e) { return {error: String(e)}; }
}"""


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """A plain page served on its own loopback port: another origin than the API's."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<!doctype html><title>client</title><p>client</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _call_from_page(browser: Any, origin: str, api: str, key: str) -> dict[str, Any]:
    page = browser.new_page()
    page.goto(f"{origin}/index.html")
    return page.evaluate(CALL, [api, key])


def test_a_page_of_an_allowed_origin_calls_the_api_and_others_are_refused(serve, api_key, browser,
                                                                         page_origin) -> None:
    import httpx

    key = api_key()
    allowed = serve(cors_origins=[page_origin])
    answer = _call_from_page(browser, page_origin, allowed.url, key)
    assert answer.get("status") == 200, answer
    assert answer["body"]["choices"][0]["message"]["content"] == "You said: hi from a page"
    assert answer["id"]  # an exposed header: a client can quote it
    wrong_key = _call_from_page(browser, page_origin, allowed.url, "hg_wrong")
    assert wrong_key.get("status") == 401 and wrong_key["body"]["error"]["code"] == "invalid_api_key", wrong_key
    # the preflight itself, as the browser sent it
    preflight = httpx.options(f"{allowed.url}/v1/chat/completions", headers={
        "Origin": page_origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == page_origin
    other = httpx.options(f"{allowed.url}/v1/chat/completions", headers={
        "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    default = serve()  # no cors_origins: the browser refuses the call, after a preflight that ran nothing
    runs = len(default.state.store.list_runs(agent="echo"))
    refused = _call_from_page(browser, page_origin, default.url, key)
    assert "Failed to fetch" in refused.get("error", ""), refused
    assert len(default.state.store.list_runs(agent="echo")) == runs == 1


def test_an_origin_that_can_never_match_is_refused_at_start() -> None:
    from halguru_server.settings import load_settings

    from halguru.errors import HalguruError

    for origin in ("http://localhost:3000/", "localhost:3000", "http://a.example/app"):
        with pytest.raises(HalguruError, match="is not an origin: write scheme://host"):
            load_settings(cors_origins=[origin])
    assert load_settings(cors_origins=["https://app.example", "http://127.0.0.1:5173", "*"]).cors_origins[2] == "*"
