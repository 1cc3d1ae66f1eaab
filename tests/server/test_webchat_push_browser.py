"""The web chat's notifications in real Chromium (Debian's): the "Notify me" toggle subscribes and the server
stores the subscription; a push delivered to the service worker (over the DevTools protocol, as a push service
would hand it to the browser) shows a notification, except for the conversation a focused window shows, which
reloads instead; turning it off deletes the subscription."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.server.conftest import Server
from tests.server.test_serve_webchat import ARGS, CHROMIUM, WAIT_MS
from tests.server.test_webchat_a11y import chrome_name
from tests.server.test_webchat_push import INSECURE, Browser, b64, signed_in
from tests.server.test_webchat_pwa import SW_READY
from tests.server.test_webchat_signin import _session_cookie

# Chromium subscribes through its own push service (Google's FCM), out of reach offline: pushManager.subscribe is
# the one thing stubbed. The stub hands the page a subscription with this test's endpoint and keys and records
# the options the page passed (the applicationServerKey must be the server's VAPID key).
STUB_SUBSCRIBE = """(() => {
  const saved = () => JSON.parse(localStorage.getItem("test.push") || "null");
  const fake = (json) => ({ endpoint: json.endpoint, toJSON: () => json,
    unsubscribe: async () => { localStorage.removeItem("test.push"); return true; } });
  window.__push = () => saved() && saved().options;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    const recorded = { userVisibleOnly: options.userVisibleOnly,
      key: btoa(String.fromCharCode(...key)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "") };
    localStorage.setItem("test.push", JSON.stringify({ options: recorded }));
    return fake(SUBSCRIPTION);
  };
  PushManager.prototype.getSubscription = async function () { return saved() ? fake(SUBSCRIPTION) : null; };
})();"""
NOTIFICATIONS = """() => navigator.serviceWorker.ready.then((r) => r.getNotifications())
  .then((all) => all.map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url })))"""


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[BrowserContext]:
    """Chromium with a profile on disk (service workers do not install in incognito contexts)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(tmp_path / "profile", executable_path=CHROMIUM, args=ARGS,
                                                       headless=True)
        yield context
        context.close()


def _registration_id(page: Any, cdp: Any, scope: str) -> str:
    """The service worker registration's id, as the DevTools protocol names it."""
    found: dict[str, str] = {}

    def updated(event: dict[str, Any]) -> None:
        for r in event["registrations"]:
            if r["scopeURL"] == scope and not r.get("isDeleted"):
                found["id"] = r["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    cdp.send("ServiceWorker.enable")
    for _ in range(100):  # the registrations are told as events, soon after
        if "id" in found:
            break
        page.wait_for_timeout(50)
    assert "id" in found, "no service worker registration for /chat/"
    return found["id"]


# Counts the notifications the service worker has finished showing. getNotifications() is read once that count
# moves, never while one is being shown: Chromium drops from its notification database any entry written but not
# yet on display when getNotifications() asks, so a read in that window loses the notification for good.
COUNT_SHOWN = """() => {
  const show = ServiceWorkerRegistration.prototype.showNotification;
  self.__shown = 0;
  ServiceWorkerRegistration.prototype.showNotification = function (...args) {
    return show.apply(this, args).finally(() => { self.__shown += 1; });
  };
}"""
SHOWN = "() => self.__shown"


def _count_shown(context: BrowserContext) -> Any:
    """The chat's running service worker, counting the notifications it shows (COUNT_SHOWN)."""
    workers = [w for w in context.service_workers if w.url.endswith("/chat/sw.js")]
    worker = workers[0] if workers else context.wait_for_event("serviceworker", timeout=WAIT_MS)
    worker.evaluate(COUNT_SHOWN)
    return worker


def test_notify_me_subscribes_and_pushes_show_unless_the_conversation_is_in_front(
        serve: Callable[..., Server], profile: BrowserContext) -> None:
    server = serve(worker=False, **INSECURE)
    ann, client = signed_in(server, "ann@example.com")
    other = client.post("/chat/api/conversations", json={"agent": "echo", "title": "Older chat"}).json()["id"]
    browser = Browser("http://127.0.0.1:9/push/ann-chromium")  # never posted to in this test
    profile.add_init_script(STUB_SUBSCRIBE.replace("SUBSCRIPTION", json.dumps(browser.subscription())))
    profile.grant_permissions(["notifications"], origin=server.url)
    profile.add_cookies([_session_cookie(server, ann)])
    page = profile.pages[0] if profile.pages else profile.new_page()
    page.goto(f"{server.url}/chat/")
    toggle = page.get_by_role("button", name="Notify me")
    expect(toggle).to_be_visible(timeout=WAIT_MS)
    assert toggle.get_attribute("aria-pressed") == "false"
    assert page.evaluate(SW_READY) is True

    toggle.focus()  # the keyboard alone turns it on
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)
    assert chrome_name(page, "#notify") == "Notify me"  # its drawn check mark is not read out ("✓ Notify me")
    expect(page.locator("#status")).to_contain_text("Notifications are on")
    served_key = client.get("/chat/api/push/key").json()["public_key"]
    assert page.evaluate("window.__push()") == {"userVisibleOnly": True, "key": served_key}
    [stored] = server.state.store.list_push_subscriptions(ann)
    assert (stored["endpoint"], stored["auth"]) == (browser.endpoint, b64(browser.auth))

    # an answer in the conversation the page shows: the page is in front, so it reloads and nothing pops up
    page.fill("#input", "hello")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant", has_text="You said: hello")).to_have_count(1, timeout=WAIT_MS)
    expect(page).to_have_url(f"{server.url}/chat/?agent=echo&conversation=" + page.url.split("conversation=")[1])
    shown = page.url.split("conversation=")[1]
    server.state.store.append_message(shown, "assistant", "An operator's answer.", author="user:op")
    cdp = profile.new_cdp_session(page)
    registration = _registration_id(page, cdp, f"{server.url}/chat/")
    page.bring_to_front()
    deliver = {"origin": server.url, "registrationId": registration}
    cdp.send("ServiceWorker.deliverPushMessage", {**deliver, "data": json.dumps(
        {"title": "echo: an operator answered", "body": "An operator's answer.", "tag": shown, "conversation": shown,
         "url": f"/chat/?agent=echo&conversation={shown}"})})
    expect(page.locator(".msg.human", has_text="An operator's answer.")).to_have_count(1, timeout=WAIT_MS)
    assert page.evaluate(NOTIFICATIONS) == []

    # an answer in another conversation: a notification, with what the server sent
    worker = _count_shown(profile)
    cdp.send("ServiceWorker.deliverPushMessage", {**deliver, "data": json.dumps(
        {"title": "echo answered", "body": "Your report is ready.", "tag": other, "conversation": other,
         "url": f"/chat/?agent=echo&conversation={other}"})})
    expect(page.locator("#log")).not_to_contain_text("Your report is ready.")
    for _ in range(WAIT_MS // 100):
        if worker.evaluate(SHOWN):
            break
        page.wait_for_timeout(100)
    notes = page.evaluate(NOTIFICATIONS)
    assert notes == [{"title": "echo answered", "body": "Your report is ready.", "tag": other,
                      "url": f"{server.url}/chat/?agent=echo&conversation={other}"}]

    # the address a notification opens shows that conversation
    page.goto(f"{server.url}/chat/?agent=echo&conversation={shown}")
    expect(page.locator(".msg.human", has_text="An operator's answer.")).to_have_count(1, timeout=WAIT_MS)

    # turned off: the server forgets this browser
    toggle = page.get_by_role("button", name="Notify me")
    expect(toggle).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)  # still on after a reload
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("Notifications are off.")
    assert server.state.store.list_push_subscriptions(ann) == []
