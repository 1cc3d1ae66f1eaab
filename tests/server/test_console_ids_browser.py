"""What an operator does with the ids of the console in real Chromium: paste one (a conversation's or a run's,
from a user's report or a log line) into the conversation search to open it, and copy one from a page (a
"Copy" button next to each conversation, run and job id) into a ticket or a CLI command."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.server.test_console_browser import WAIT_MS, _admin_page, browser  # noqa: F401  (the fixture)


def _chat(server, api_key) -> tuple[str, str]:
    """A conversation with one run: its id and the run's."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        conversation = c.post("/v1/conversations", json={"agent": "echo", "title": "Parcel"}).json()["id"]
        assert c.post(f"/v1/conversations/{conversation}/messages", json={"content": "hi"}).status_code == 200
    return conversation, server.state.store.list_runs(limit=1, conversation_id=conversation)[0]["id"]


def test_a_run_id_pasted_into_the_search_opens_its_conversation(serve, api_key, browser) -> None:  # noqa: F811
    server = serve()
    conversation, run_id = _chat(server, api_key)
    page = _admin_page(browser, server)
    page.goto(f"{server.url}/admin/conversations")
    box = page.get_by_label("Text, or a conversation or run id")
    box.fill(run_id)
    box.press("Enter")
    expect(page).to_have_url(f"{server.url}/admin/conversations/{conversation}", timeout=WAIT_MS)
    expect(page.locator("section", has=page.locator(f"h3:has-text('{run_id}')"))).to_have_count(1)


def test_the_copy_buttons_put_the_id_on_the_clipboard(serve, api_key, browser) -> None:  # noqa: F811
    server = serve()
    conversation, run_id = _chat(server, api_key)
    job = server.state.store.enqueue_job("run", "echo", {"input": "later"}, delay=3600)[0]["id"]
    page = _admin_page(browser, server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.goto(f"{server.url}/admin/conversations/{conversation}")
    for name, value in ((f"Copy conversation id {conversation}", conversation), (f"Copy run id {run_id}", run_id)):
        button = page.get_by_role("button", name=name, exact=True)
        button.focus()
        page.keyboard.press("Enter")  # from the keyboard, as a click
        expect(button).to_have_text("Copied", timeout=WAIT_MS)
        assert page.evaluate("navigator.clipboard.readText()") == value
    page.goto(f"{server.url}/admin/jobs")
    page.get_by_role("button", name=f"Copy job id {job}", exact=True).click()
    expect(page.get_by_role("button", name=f"Copy job id {job}", exact=True)).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == job
    assert not page.errors  # type: ignore[attr-defined]
