"""The web chat in real headless Chromium: a reload mid-answer loses nothing (the run goes on on the server, and the
page follows it to its end), and Stop stops the run on whichever replica runs it (two apps on one store: SQLite, and
PostgreSQL as several `halguru serve` replicas use)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from halguru.store import open_store
from tests.server.test_run_cancel import WHOLE, slower  # noqa: F401  (the fixture: a 6 s answer)
from tests.server.test_serve_webchat import WAIT_MS, browser  # noqa: F401  (the fixture)
from tests.server.test_webchat_resume import _send_slow


def _stored_turns() -> list[tuple[str, str, str | None]]:
    """Every message of every stored conversation: (role, content, its run's status)."""
    store = open_store()
    turns = []
    for conversation in store.list_conversations(100):
        statuses = store.run_statuses(conversation["id"])
        turns += [(m["role"], m["content"], statuses.get(m["run_id"] or ""))
                  for m in store.conversation_messages(conversation["id"])]
    return turns


def test_a_reload_mid_answer_shows_the_whole_answer_once(serve: Any, browser: Any) -> None:  # noqa: F811
    """The answer keeps being written while the page reloads; the reloaded page shows the question and follows
    the answer to its end: whole, once, and stored once (the reload stopped it: "This answer was stopped")."""
    server = serve()
    page = browser.new_page()
    _send_slow(page, server.url)
    expect(page.locator(".msg.assistant").last).to_contain_text("word3", timeout=WAIT_MS)
    page.reload()
    expect(page.locator(".msg.user")).to_have_text(["go"], timeout=WAIT_MS)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    expect(page.locator("#stop")).to_be_visible()  # still answering: Stop stops it here too
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    answers = page.locator(".msg.assistant")
    expect(answers).to_have_count(1)
    assert answers.inner_text().strip() == WHOLE and not answers.locator(".error").count()
    assert _stored_turns() == [("user", "go", "ok"), ("assistant", WHOLE, "ok")]
    page.reload()  # and once more, from the stored conversation
    expect(page.locator(".msg.assistant")).to_have_count(1, timeout=WAIT_MS)
    assert page.locator(".msg.assistant").inner_text().strip() == WHOLE and page.locator(".msg.user").count() == 1


@pytest.fixture
def replicas_store(backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The replicas' one store: SQLite in HALGURU_HOME, or an emptied PostgreSQL database."""
    if backend == "postgres":
        from tests.conftest import _empty_postgres

        url = request.getfixturevalue("postgres_url")
        _empty_postgres(url)
        monkeypatch.setenv("HALGURU_DATABASE_URL", url)
        from halguru.config import reset_settings

        reset_settings()
    yield backend


def test_stop_stops_the_run_on_the_replica_that_runs_it(serve: Any, browser: Any,  # noqa: F811
                                                        replicas_store: str) -> None:
    """The page is on replica one, its Stop reaches replica two (a load balancer's choice): the run, on replica
    one, ends cancelled within a second, with the answer so far stored and shown, said stopped."""
    one, two = (serve(session_secret="shared by the replicas") for _ in range(2))
    page = browser.new_page()
    cancels: list[str] = []

    def elsewhere(route: Any) -> None:
        cancels.append(route.request.url)
        route.continue_(url=route.request.url.replace(one.url, two.url))

    page.route("**/chat/api/runs/*/cancel", elsewhere)
    _send_slow(page, one.url)
    answer = page.locator(".msg.assistant").last
    expect(answer).to_contain_text("word3", timeout=WAIT_MS)
    clicked = time.monotonic()
    page.click("#stop")
    store = open_store()
    while not (runs := store.list_runs(1)) or runs[0]["status"] == "running":
        assert time.monotonic() - clicked < 5, "the run did not stop"
        time.sleep(0.02)
    took = time.monotonic() - clicked
    print(f"\nStop to the run's end ({replicas_store}, Stop on the other replica): {took:.2f} s")
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    run = store.get_run(runs[0]["id"])
    assert run["status"] == "cancelled" and run["output"] != WHOLE and took < 2
    assert len(cancels) == 1 and cancels[0].endswith(f"/chat/api/runs/{run['id']}/cancel")
    expect(answer.locator(".error")).to_have_text("⚠ This answer was stopped before it finished.")
    assert answer.inner_text().startswith(run["output"][:20])
    assert _stored_turns() == [("user", "go", "cancelled"), ("assistant", run["output"], "cancelled")]
    time.sleep(1)  # nothing goes on writing after the stop
    assert store.get_run(run["id"])["output"] == run["output"]
