"""The console's conversations and approvals in real Chromium, signed in as an admin: find a conversation by
its text, take it over (the user's message waits for a person), answer, hand it back (the agent answers
again), and approve a paused tool call with edited arguments, then find the decision in the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.server.test_console_browser import artifacts  # noqa: F401  (the fixture)
from tests.server.test_runs_api import MAILER_TOOLS, script, send, write_project
from tests.server.test_serve_webchat import WAIT_MS, browser  # noqa: F401  (the fixture)
from tests.server.test_webchat_signin import _session_cookie


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """`echo` (the scripted model echoes) and `mailer` (send_email waits for approval; its script in mailer.yaml)."""
    root = tmp_path / "agents"
    (root / "echo").mkdir(parents=True)
    (root / "echo" / "agent.yaml").write_text("name: echo\nmodel: scripted\ninstructions: Echo.\n")
    write_project(root / "mailer", {"name": "mailer", "model": f"scripted:{tmp_path / 'mailer.yaml'}",
                                    "tools": ["send_email"], "approvals": ["send_email"]}, MAILER_TOOLS)
    return root


def _people(server) -> tuple[str, httpx.Client]:
    """An admin's id, and a user's API client."""
    from halguru_server.identity import accounts
    from halguru_server.keys import create_key

    store = server.state.store
    admin = accounts.create_user(store, "root@example.com", role="admin", name="Root")["id"]
    store.set_totp(admin, "JBSWY3DPEHPK3PXP", enabled=True)  # admins sign in with a second factor
    ann = accounts.create_user(store, "ann@example.com", role="user", name="Ann")["id"]
    key = create_key(store, "ann", scope="admin", user_id=ann)[1]
    return admin, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def user_id(server, email: str) -> str:
    return server.state.store.user_by_email(email)["id"]


def _ann_in_chat(server, browser, conv: str, title: str) -> Any:  # noqa: F811
    """Ann's web chat (signed in), showing conversation ``conv`` picked from her history by its ``title``."""
    chat = browser.new_context()
    chat.add_cookies([_session_cookie(server, user_id(server, "ann@example.com"))])
    user = chat.new_page()
    user.goto(f"{server.url}/chat/")
    expect(user.locator("#history option", has_text=title)).to_have_count(1, timeout=WAIT_MS)
    user.select_option("#history", conv)
    return user


def test_find_take_over_answer_and_hand_back_a_conversation(serve, browser) -> None:  # noqa: F811
    server = serve(worker=False)
    admin, ann = _people(server)
    for text in ("Hello", "Where is parcel 4711?"):
        conv = ann.post("/v1/conversations", json={"agent": "echo", "title": text}).json()["id"]
        assert ann.post(f"/v1/conversations/{conv}/messages", json={"content": text}).status_code == 200
    context = browser.new_context()
    context.add_cookies([_session_cookie(server, admin)])
    page = context.new_page()
    page.goto(f"{server.url}/admin/conversations")
    page.fill("#f-q", "parcel 4711")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#conversations tbody tr")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    rows.first.get_by_role("link").click()
    expect(page.locator("#messages")).to_contain_text("Where is parcel 4711?", timeout=WAIT_MS)
    expect(page.locator("pre.trace").first).to_contain_text("input Where is parcel 4711?")  # logs show's tree
    page.get_by_role("button", name="Take over").click()
    expect(page.locator("#holder")).to_contain_text("a person", timeout=WAIT_MS)

    # Ann, in the web chat, writes in that conversation: it waits for a person, whose answer then shows up
    user = _ann_in_chat(server, browser, conv, "Where is parcel 4711?")
    user.locator(".msg.assistant", has_text="You said: Where is parcel 4711?").wait_for()
    user.fill("#input", "I want a human")
    user.keyboard.press("Enter")
    expect(user.locator(".msg.held")).to_contain_text("A person has taken this conversation over", timeout=WAIT_MS)
    assert len(server.state.store.list_runs(10, conversation_id=conv)) == 1  # the agent did not run
    expect(page.locator("#messages")).to_contain_text("I want a human", timeout=WAIT_MS)  # live, no reload
    page.fill("#reply-text", "Hi, this is Root: it ships today.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#messages tr[data-author]")).to_contain_text("it ships today", timeout=WAIT_MS)
    expect(user.locator(".msg.assistant", has_text="Hi, this is Root: it ships today.")).to_have_count(
        1, timeout=WAIT_MS)
    assert user.locator(".msg.human .who").inner_text() == "Operator"  # the user sees a person answered
    seen = ann.get(f"/v1/conversations/{conv}/messages").json()["data"]
    assert seen[-1] == {**seen[-1], "role": "assistant", "content": "Hi, this is Root: it ships today."}

    page.get_by_role("button", name="Hand back to the agent").click()
    expect(page.locator("#holder")).to_contain_text("the agent", timeout=WAIT_MS)
    again = ann.post(f"/v1/conversations/{conv}/messages", json={"content": "thanks"})
    assert again.status_code == 200 and again.json()["status"] == "ok"
    actions = [e["action"] for e in server.state.store.list_audit(10, action="conversation.")]
    assert actions == ["conversation.handback", "conversation.reply", "conversation.takeover"]


def test_approve_a_paused_call_with_edited_arguments_and_see_it_in_the_audit_log(
        serve, browser, agents_dir: Path) -> None:  # noqa: F811
    server = serve(worker=False)
    admin, ann = _people(server)
    script(agents_dir, send("ann@example.com"))
    conv = ann.post("/v1/conversations", json={"agent": "mailer"}).json()["id"]
    paused = ann.post(f"/v1/conversations/{conv}/messages", json={"content": "mail ann"}).json()
    assert paused["status"] == "paused"
    script(agents_dir, "Mail sent.")  # what the model says once the call has run
    context = browser.new_context(viewport={"width": 390, "height": 800})  # a phone
    context.add_cookies([_session_cookie(server, admin)])
    page = context.new_page()
    page.goto(f"{server.url}/admin/approvals")
    box = page.get_by_label("Arguments (JSON; edit before approving)")
    expect(box).to_have_value('{\n  "body": "hi",\n  "to": "ann@example.com"\n}', timeout=WAIT_MS)
    box.fill('{"to": "bob@example.com", "body": "hi"}')
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("p.notice")).to_contain_text("approved: continued as run_", timeout=WAIT_MS)
    expect(page.locator("p.notice")).to_contain_text("which ended ok")
    assert (agents_dir / "mailer" / "sent.log").read_text() == "bob@example.com: hi\n"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no layout overflow
    entries = page.request.get(f"{server.url}/v1/audit?action=run.").json()["data"]
    approve = next(e for e in entries if e["action"] == "run.approve")
    assert approve["target"] == paused["run_id"] and approve["actor"] == f"user:{admin}"
    assert approve["details"] == {**approve["details"], "edited": True, "tool": "send_email"}


@pytest.mark.parametrize("width", [1280, 375])
def test_the_conversation_and_approval_pages_fit_the_screen(serve, browser, agents_dir: Path, artifacts: Path,  # noqa: F811
                                                             width: int) -> None:
    server = serve(worker=False)
    admin, ann = _people(server)
    conv = ann.post("/v1/conversations", json={"agent": "echo", "title": "A rather long question"}).json()["id"]
    ann.post(f"/v1/conversations/{conv}/messages", json={"content": "word " * 60 + "x" * 200})
    script(agents_dir, send("ann@example.com"))
    paused = ann.post("/v1/conversations", json={"agent": "mailer"}).json()["id"]
    ann.post(f"/v1/conversations/{paused}/messages", json={"content": "mail ann"})
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies([_session_cookie(server, admin)])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for name, path in {"conversations": "/admin/conversations", "conversation": f"/admin/conversations/{conv}",
                       "approvals": "/admin/approvals"}.items():
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1")).to_be_visible(timeout=WAIT_MS)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
        assert overflow <= width, f"{path} at {width} px is {overflow} px wide"
    assert not errors, errors


def test_the_chat_reads_a_long_history_page_by_page_and_still_shows_a_persons_answers(serve, browser) -> None:  # noqa: F811
    """The history comes a page at a time (100 unless asked, at most 1000): the chat pages through all of it
    when it opens a conversation, and while a person holds it, its poll reads on from the last page it saw."""
    import time

    from halguru.jobs import takeover

    server = serve(worker=False)
    store = server.state.store
    _, ann = _people(server)
    conv = ann.post("/v1/conversations", json={"agent": "echo", "title": "long story"}).json()["id"]

    def add(first: int, count: int) -> None:
        with store._tx() as conn:
            conn.executemany("INSERT INTO messages (conversation_id, seq, role, content, created) "
                             "VALUES (?, ?, ?, ?, ?)", [(conv, i, "user" if i % 2 == 0 else "assistant", f"m{i}",
                                                         time.time()) for i in range(first, first + count)])

    add(0, 1200)  # 3 of the chat's pages
    takeover.take_over(store, conv, "Root")
    user = _ann_in_chat(server, browser, conv, "long story")
    expect(user.locator(".msg")).to_have_count(1200, timeout=WAIT_MS)
    assert user.locator(".msg").last.inner_text().endswith("m1199")
    user.fill("#input", "anyone there?")
    user.keyboard.press("Enter")  # held for the person: the chat polls for their answers
    expect(user.locator(".msg.held")).to_contain_text("A person has taken this conversation over", timeout=WAIT_MS)
    time.sleep(4)  # a poll has read to the end
    add(store.count_messages(conv), 350)  # past the page the poll had reached
    takeover.reply(store, conv, "Root", "Root here: all read.")
    expect(user.locator(".msg.assistant", has_text="Root here: all read.")).to_have_count(1, timeout=WAIT_MS)
    # each new answer shown once: the 600 of the history, the held notice, 175 added and the person's
    assert user.locator(".msg.assistant").count() == 600 + 1 + 175 + 1
