"""Attachments in the web chat: a file's text reaches the agent in that conversation only; limits hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Browser, FilePayload, expect

from tests.server.conftest import Server
from tests.server.test_serve_webchat import WAIT_MS, browser  # noqa: F401  (the fixture)

Serve = Callable[..., Server]
FACT = "The lighthouse keeper's cat is called Mandarin-7."


def _prompts(server: Server, conversation: str) -> list[str]:
    """Every message text the model was sent in the conversation's runs."""
    store = server.state.store
    texts: list[str] = []
    for run in store.list_runs(conversation_id=conversation):
        for event in store.get_events(run["id"]):
            if event["type"] == "model_call":
                texts += [str(m.get("content", "")) for m in event["messages"]]
    return texts


def test_an_attached_file_is_answered_from(serve: Serve, browser: Browser) -> None:  # noqa: F811
    server = serve()
    page = browser.new_page(viewport={"width": 320, "height": 640})
    page.goto(f"{server.url}/chat/")
    expect(page.locator("#agent option")).not_to_have_count(0, timeout=WAIT_MS)
    notes: FilePayload = {"name": "notes.md", "mimeType": "text/markdown", "buffer": f"# Notes\n\n{FACT}\n".encode()}
    page.set_input_files("#attach", files=[notes])
    expect(page.locator(".msg.attachment")).to_have_text("📎 notes.md", timeout=WAIT_MS)
    page.fill("#input", "What is the cat called?")
    page.press("#input", "Enter")
    page.locator(".msg.assistant").first.wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    conversation = page.evaluate("localStorage.getItem('halguru.conversation.echo')")
    assert any(FACT in text for text in _prompts(server, conversation))  # the model read the file
    page.reload()  # the history shows the attachment by name, not its text
    expect(page.locator(".msg.attachment")).to_have_text("📎 notes.md", timeout=WAIT_MS)
    assert FACT not in page.inner_text("#log")
    page.keyboard.press("Alt+n")  # a new conversation does not have it
    page.fill("#input", "What is the cat called?")
    page.press("#input", "Enter")
    page.locator(".msg.assistant").first.wait_for()
    expect(page.locator("[aria-busy]")).to_have_count(0, timeout=WAIT_MS)
    fresh = page.evaluate("localStorage.getItem('halguru.conversation.echo')")
    assert fresh != conversation and _prompts(server, fresh) and not any(FACT in t for t in _prompts(server, fresh))


def test_attachment_limits_are_the_servers(serve: Serve) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post("/chat/api/session").json()["token"]
        mine = {"X-Chat-Session": token}
        conv = http.post("/chat/api/conversations", json={"agent": "echo"}, headers=mine).json()["id"]

        def attach(name: str, body: bytes, headers: dict[str, Any] = mine, cid: str = conv) -> httpx.Response:
            return http.post(f"/chat/api/conversations/{cid}/attachments", params={"name": name}, content=body,
                             headers=headers)

        ok = attach("../../etc/facts.txt", FACT.encode())
        assert ok.status_code == 201 and ok.json()["name"] == "facts.txt" and ok.json()["kind"] == "text"
        assert attach("tool.exe", b"MZ...").json()["error"]["type"] == "unsupported_type"
        for nameless in ("", "  "):
            missing = attach(nameless, FACT.encode())
            assert missing.status_code == 400
            assert missing.json()["error"]["message"].startswith("the file's name is missing: add ?name=")
        unnamed = http.post(f"/chat/api/conversations/{conv}/attachments", content=b"x", headers=mine)
        assert unnamed.status_code == 400 and "?name=" in unnamed.json()["error"]["message"]
        assert attach("page.html", b"<p>hi</p>").status_code == 415
        assert attach("big.txt", b"x" * 1_000_001).status_code == 413
        assert attach("long.txt", b"word " * 11_000).json()["error"]["type"] == "attachment_too_long"
        assert attach("empty.md", b"  \n").json()["error"]["type"] == "unreadable_attachment"
        assert attach("bin.txt", b"\x00\x01\x02" * 10).status_code == 400
        fake = attach("fake.pdf", b"%PDF-1.4 not really")  # the parser's exception is not shown to a visitor
        assert fake.status_code == 400 and fake.json()["error"]["message"] == (
            "'fake.pdf' has no text to read: unreadable PDF"), fake.text
        other = http.post("/chat/api/session").json()["token"]
        assert attach("facts.txt", b"x", {"X-Chat-Session": other}).status_code == 404  # not their conversation
        messages = http.get(f"/chat/api/conversations/{conv}/messages", headers=mine).json()["data"]
        assert [m["content"].split("]")[0] for m in messages] == ["[Attached file: facts.txt"]


def test_a_conversation_deleted_while_its_file_is_read_is_a_404(serve: Serve, monkeypatch) -> None:
    """Nothing is stored then, so the answer is not 201 (with seq null) but the 404 of a missing conversation."""
    from halguru_server import attachments

    server = serve()
    load = attachments.load

    def load_while_deleted(path, data):  # the owner deletes the conversation while the file is parsed
        server.state.store.delete_conversation(conv)
        return load(path, data)

    monkeypatch.setattr(attachments, "load", load_while_deleted)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        mine = {"X-Chat-Session": http.post("/chat/api/session").json()["token"]}
        conv = http.post("/chat/api/conversations", headers=mine, json={"agent": "echo"}).json()["id"]
        gone = http.post(f"/chat/api/conversations/{conv}/attachments", params={"name": "a.txt"}, headers=mine,
                         content=FACT.encode())
        assert gone.status_code == 404 and gone.json()["error"]["message"] == f"no conversation {conv!r}"


def test_a_blank_message_is_refused_but_an_attachment_alone_is_not(serve: Serve) -> None:
    """The chat's own endpoint refuses "   " as the REST API does; a file needs no message beside it."""
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        mine = {"X-Chat-Session": http.post("/chat/api/session").json()["token"]}
        conversation = http.post("/chat/api/conversations", headers=mine, json={"agent": "echo"}).json()["id"]
        attached = http.post(f"/chat/api/conversations/{conversation}/attachments", params={"name": "a.txt"},
                             headers=mine, content=FACT.encode())
        assert attached.status_code == 201, attached.text
        blank = http.post(f"/chat/api/conversations/{conversation}/messages", headers=mine, json={"content": " \t"})
        assert blank.status_code == 422 and "only whitespace" in blank.json()["error"]["message"]
    assert server.state.store.list_runs(conversation_id=conversation) == []
