"""The web chat in real headless Chromium gets back into an answer whose stream broke: it follows the run from
its last event id on another replica (two apps on one store), and shows the whole answer."""

from __future__ import annotations

import threading
from typing import Any

from playwright.sync_api import expect

from tests.server.conftest import Server, free_port
from tests.server.test_serve_webchat import WAIT_MS, browser  # noqa: F401  (the fixture)

WHOLE = " ".join(f"word{i}" for i in range(40))


def _send_slow(page: Any, url: str) -> None:
    """Ask agent ``slow`` on the chat page at ``url``."""
    page.goto(f"{url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    page.select_option("#agent", "slow")
    page.fill("#input", "go")
    page.click("#send")


def _ask_slow(page: Any, url: str) -> None:
    """Ask agent ``slow`` on the chat page at ``url`` and wait until the answer is done."""
    _send_slow(page, url)
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)


def _until_try_again(page: Any, url: str) -> Any:
    """Ask agent ``slow`` at ``url`` with its stream cut and the server unreachable after (a fake clock), until
    the page gives up reconnecting; returns its Try again button."""
    page.clock.install()
    page.route("**/chat/api/conversations/*/messages", lambda route: route.fulfill(
        response=(response := route.fetch()), body="\n\n".join(response.text().split("\n\n")[:4]) + "\n\n"))
    page.route("**/chat/api/runs/*/events", lambda route: route.abort("connectionrefused"))
    _send_slow(page, url)
    expect(page.locator("#status")).to_contain_text("reconnecting", timeout=WAIT_MS)
    again = page.get_by_role("button", name="Try again")
    for _ in range(20):  # each wait's timer, then its refused request
        if again.count():
            break
        page.clock.run_for(16_000)
        page.wait_for_timeout(100)
    return again


def test_a_broken_stream_is_resumed_on_another_replica(serve: Any, browser: Any) -> None:  # noqa: F811
    one, two = (serve(session_secret="shared by the replicas") for _ in range(2))  # else two refuses the session
    page = browser.new_page()
    resumed: list[dict[str, str]] = []

    def cut(route: Any) -> None:  # a proxy that loses replica one after the first events of the answer
        response = route.fetch()
        blocks = response.text().split("\n\n")
        route.fulfill(response=response, body="\n\n".join(blocks[:4]) + "\n\n")

    def elsewhere(route: Any) -> None:  # the reconnect lands on replica two
        resumed.append(route.request.headers)
        route.continue_(url=route.request.url.replace(one.url, two.url))

    page.route("**/chat/api/conversations/*/messages", cut)
    page.route("**/chat/api/runs/*/events", elsewhere)
    _ask_slow(page, one.url)
    answer = page.locator(".msg.assistant").last
    assert answer.inner_text().strip() == WHOLE  # whole, not cut off
    assert "cut off" not in answer.inner_text() and not answer.locator(".error").count()
    assert len(resumed) == 1 and resumed[0]["last-event-id"].startswith("run_")


def test_an_answer_whose_server_died_says_so_in_the_pages_words(serve: Any, browser: Any) -> None:  # noqa: F811
    """After a kill -9 and a restart the resumed stream ends with the server's fatal error for API clients
    ("run ... ended interrupted without finishing (its process stopped); GET /v1/runs/... shows what it did"),
    which the page showed a visitor as it was."""
    from halguru_server.follow import error_event

    server = serve()
    page = browser.new_page()

    def cut(route: Any) -> None:  # the server dies after the first events of the answer
        response = route.fetch()
        route.fulfill(response=response, body="\n\n".join(response.text().split("\n\n")[:4]) + "\n\n")

    def restarted(route: Any) -> None:  # the restarted server found the run interrupted (its process stopped)
        run_id = route.request.url.split("/runs/")[1].split("/")[0]
        body = error_event("interrupted", f"run {run_id} ended interrupted without finishing (its process "
                                          f"stopped); GET /v1/runs/{run_id} shows what it did", f"{run_id}:end")
        route.fulfill(status=200, body=body, headers={"Content-Type": "text/event-stream"})

    page.route("**/chat/api/conversations/*/messages", cut)
    page.route("**/chat/api/runs/*/events", restarted)
    _ask_slow(page, server.url)
    note = page.locator(".msg.assistant .error").last
    expect(note).to_have_text("⚠ This answer was cut off when the server stopped.")


def test_an_answer_arrives_after_its_server_restarts(agents_dir: Any, browser: Any) -> None:  # noqa: F811
    """The page's stream breaks mid-answer as its server stops; the server is back 6 s later on the same port and
    home (a restart that loads a real model takes longer): the page says it is reconnecting, then shows the whole
    answer. It gave up after 5 tries 1 s apart ("The answer was cut off; send the message again.")."""
    from halguru_server import ServerSettings, create_app

    def app() -> Any:  # a fresh process's settings: the visitor's session secret is the one kept in the store
        return create_app(ServerSettings(agents=[agents_dir]))

    port = free_port()
    servers = [Server(app(), port).start()]
    restart = threading.Timer(6, lambda: servers.append(Server(app(), port).start()))
    page = browser.new_page()

    def cut(route: Any) -> None:  # the page never gets the answer's end: its server stops
        response = route.fetch()
        route.fulfill(response=response, body="\n\n".join(response.text().split("\n\n")[:4]) + "\n\n")
        servers[0].stop()
        restart.start()

    page.route("**/chat/api/conversations/*/messages", cut)
    try:
        _send_slow(page, servers[0].url)
        expect(page.locator("#status")).to_contain_text("reconnecting", timeout=WAIT_MS)
        expect(page.locator("[aria-busy]")).to_have_count(0, timeout=40_000)
        answer = page.locator(".msg.assistant").last
        assert answer.inner_text().strip() == WHOLE and not answer.locator(".error").count()
        assert len(servers) == 2 and page.locator("#status").inner_text() == ""
    finally:
        if restart.is_alive():
            restart.join()
        for server in servers:
            server.stop()


def test_after_two_minutes_unreachable_a_button_tries_again(serve: Any, browser: Any) -> None:  # noqa: F811
    """The page stops reconnecting after about two minutes (a fake clock here), says the server could not be
    reached, and its Try again button follows the run again: the whole answer arrives."""
    page = browser.new_page()
    again = _until_try_again(page, serve().url)
    note = page.locator(".msg.assistant .error").last
    expect(note).to_contain_text("The server could not be reached")
    page.unroute("**/chat/api/runs/*/events")
    again.click()
    page.clock.run_for(2_000)
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    answer = page.locator(".msg.assistant").last
    assert answer.inner_text().strip() == WHOLE and not answer.locator(".error").count()


def test_a_run_the_server_will_not_give_ends_the_reconnecting_at_once(serve: Any, browser: Any) -> None:  # noqa: F811
    """A resume refused for good (404: the run is not this visitor's, or gone) is said under the answer at once,
    not waited on for two minutes as if the server were away."""
    server = serve()
    page = browser.new_page()
    page.route("**/chat/api/conversations/*/messages", lambda route: route.fulfill(
        response=(response := route.fetch()), body="\n\n".join(response.text().split("\n\n")[:4]) + "\n\n"))
    page.route("**/chat/api/runs/*/events", lambda route: route.fulfill(
        status=404, json={"error": {"type": "not_found", "message": "no run run_x"}}))
    _send_slow(page, server.url)
    expect(page.locator(".msg.assistant .error").last).to_have_text("⚠ no run run_x", timeout=5_000)
    expect(page.locator("#status")).to_have_text("no run run_x")
    assert not page.get_by_role("button", name="Try again").count() and not page.locator("[aria-busy]").count()


def test_tabs_reconnect_at_moments_of_their_own(serve: Any, browser: Any) -> None:  # noqa: F811
    """Every tab's stream breaks at once when its server goes away: each wait is drawn (half to one and a half
    times the backoff), or all the tabs came back at the same moments (1, 3, 7... s after the break)."""
    server = serve()
    page = browser.new_page()
    page.add_init_script("Math.random = () => 0")  # the shortest draw: half the first second
    page.route("**/chat/api/conversations/*/messages", lambda route: route.fulfill(
        response=(response := route.fetch()), body="\n\n".join(response.text().split("\n\n")[:4]) + "\n\n"))
    page.route("**/chat/api/runs/*/events", lambda route: route.abort("connectionrefused"))
    _send_slow(page, server.url)
    expect(page.locator("#status")).to_contain_text("reconnecting in 0.5 s", timeout=WAIT_MS)
    page.click("#stop")


def test_try_again_from_the_keyboard_keeps_the_focus(serve: Any, browser: Any) -> None:  # noqa: F811
    """Try again, pressed with Enter, went away with its note: the focus fell to the page itself (a screen reader
    back at the page's start) while the page reconnected. Now it is on Stop, then back in the message box."""
    page = browser.new_page()
    again = _until_try_again(page, serve().url)
    again.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Stop")).to_be_focused()
    page.unroute("**/chat/api/runs/*/events")
    page.clock.run_for(2_000)
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    assert page.locator(".msg.assistant").last.inner_text().strip() == WHOLE
