"""The web chat as an installable app and as a widget on other sites, in real Chromium (Debian's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, expect

from tests.server.conftest import Server, free_port
from tests.server.test_serve_webchat import ARGS, CHROMIUM, WAIT_MS, browser  # noqa: F401  (the fixture)

Serve = Callable[..., Server]
STATIC = Path(__file__).parents[2] / "server" / "halguru_server" / "static"
SW_READY = """() => navigator.serviceWorker.ready.then(() => navigator.serviceWorker.controller ? true
  : new Promise((done) => navigator.serviceWorker.addEventListener("controllerchange", () => done(true))))"""
CACHED = """async () => { const urls = [];
  for (const name of await caches.keys()) for (const r of await (await caches.open(name)).keys()) urls.push(r.url);
  return urls; }"""


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[BrowserContext]:
    """Chromium with a profile on disk: the `browser` fixture's contexts are incognito, where nothing installs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(tmp_path / "profile", executable_path=CHROMIUM, args=ARGS,
                                                       headless=True, viewport={"width": 320, "height": 640})
        yield context
        context.close()


def test_manifest_and_service_worker_make_it_installable_and_it_starts_offline(serve: Serve,
                                                                             profile: BrowserContext) -> None:
    server = serve()
    page = profile.new_page()  # 320 px wide: the narrowest phone
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    assert page.evaluate(SW_READY) is True  # a registered service worker controls the page
    cdp = page.context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == f"{server.url}/chat/manifest.webmanifest" and manifest["errors"] == []
    assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 320  # fits 320 px
    assert page.get_attribute("#announce", "aria-live") == "polite"  # an answer is heard once it has ended
    assert page.locator("#input").get_attribute("id") == page.locator("label[for=input]").get_attribute("for")
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant").first.wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    cached = page.evaluate(CACHED)
    assert f"{server.url}/chat/" in cached
    for script in ["markdown.js", *(p.name for p in sorted(STATIC.glob("chat*.js")))]:  # all the page's modules
        assert f"{server.url}/chat/static/{script}" in cached, script  # one missing: no offline start
    assert not [u for u in cached if "/api/" in u or "/auth/" in u or "/v1/" in u]  # never answers or chats
    profile.set_offline(True)  # the chat, open, says it lost the network
    expect(page.locator("#status")).to_have_text(
        "You are offline: your message stays in the box; send it when the network is back.")
    profile.set_offline(False)
    expect(page.locator("#status")).to_have_text("")
    server.stop()  # the network to the server is gone
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/chat/")
    page.goto(f"{server.url}/chat/")
    expect(page.get_by_role("heading", name="You are offline")).to_be_visible(timeout=WAIT_MS)
    assert page.evaluate("getComputedStyle(document.body).display") == "flex"  # the shell's styles, from cache
    assert page.locator("a", has_text="Try again").get_attribute("href") == "/chat/"
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


def test_app_files_have_their_types_headers_and_a_strict_policy(serve: Serve) -> None:
    server = serve()
    with httpx.Client(base_url=server.url) as http:
        manifest = http.get("/chat/manifest.webmanifest")
        assert manifest.headers["content-type"] == "application/manifest+json"
        assert manifest.json()["start_url"] == "/chat/" and manifest.json()["scope"] == "/chat/"
        worker = http.get("/chat/sw.js")
        assert worker.headers["content-type"].startswith("text/javascript")
        assert worker.headers["service-worker-allowed"] == "/chat/" and "__VERSION__" not in worker.text
        for path in ("/chat/", "/chat/offline", "/chat/sw.js"):
            csp = http.get(path).headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "worker-src 'self'" in csp and "unsafe" not in csp
        for icon in ("icon-192.png", "icon-512.png"):
            png = http.get(f"/chat/static/{icon}")
            assert png.headers["content-type"] == "image/png" and len(png.content) < 4096
        assert http.get("/chat/embed/echo").status_code == 404  # no embed_origins: not embeddable


class _Host:
    """A page on another loopback port with the widget's one script tag."""

    def __init__(self, port: int, server_url: str):
        page = (f'<!doctype html><title>shop</title><h1>A shop</h1>'
                f'<script src="{server_url}/chat/widget.js" data-agent="echo" async></script>').encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.url = f"http://127.0.0.1:{port}/"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def host() -> Iterator[Callable[[int, str], _Host]]:
    hosts: list[_Host] = []

    def start(port: int, server_url: str) -> _Host:
        hosts.append(_Host(port, server_url))
        return hosts[-1]

    yield start
    for h in hosts:
        h.httpd.shutdown()
        h.httpd.server_close()


def test_widget_chats_on_an_allowed_site_and_is_refused_on_another(serve: Serve, agents_dir: Path,
                                                                   browser: Browser,  # noqa: F811
                                                                   host: Callable[[int, str], _Host]) -> None:
    allowed_port, other_port = free_port(), free_port()
    spec_path = agents_dir / "echo" / "agent.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["metadata"]["embed_origins"] = [f"http://127.0.0.1:{allowed_port}"]
    spec_path.write_text(yaml.safe_dump(spec))
    server = serve()
    embed = httpx.get(f"{server.url}/chat/embed/echo")
    assert f"frame-ancestors http://127.0.0.1:{allowed_port};" not in embed.headers["content-security-policy"]
    assert embed.headers["content-security-policy"].endswith(f"frame-ancestors http://127.0.0.1:{allowed_port}")
    page = browser.new_page()
    page.goto(host(allowed_port, server.url).url)
    page.keyboard.press("Tab")  # the bubble is a button: keyboard users reach and open it
    assert page.evaluate("document.activeElement.getAttribute('aria-expanded')") == "false"
    page.keyboard.press("Enter")
    assert page.get_by_role("button", name="Chat with echo").get_attribute("aria-expanded") == "true"
    chat = page.frame_locator("iframe")
    expect(chat.locator("#agent option")).to_have_count(1, timeout=WAIT_MS)  # this agent only
    chat.locator("#input").fill("hello from the shop")
    chat.locator("#input").press("Enter")
    expect(chat.locator(".msg.assistant")).to_have_count(1, timeout=WAIT_MS)
    expect(chat.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    assert chat.locator("#agent").is_hidden()
    # the host page cannot read the conversation: the frame is another origin
    assert page.evaluate("document.querySelector('iframe').contentDocument") is None
    assert [c["agent"] for c in server.state.store.list_conversations(agent="echo")] == ["echo"]

    refused = browser.new_page()
    console: list[str] = []
    refused.on("console", lambda m: console.append(m.text))
    refused.goto(host(other_port, server.url).url)
    refused.get_by_role("button", name="Chat with echo").click()
    deadline = time.monotonic() + WAIT_MS / 1000
    while not any("frame-ancestors" in c for c in console) and time.monotonic() < deadline:
        refused.wait_for_timeout(100)
    assert any("frame-ancestors" in c for c in console), console
    assert refused.frame_locator("iframe").locator("#input").count() == 0
