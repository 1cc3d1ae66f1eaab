"""A stateless OpenAI client sends the whole chat with every request: its chat is one stored conversation that
grows by the new messages only (each request stored the whole history again, one conversation per turn). Only
the same owner's chat with the same agent and the same earlier messages is continued; an edited history, a
second client with the same history at the same time, or another key's, gets a conversation of its own."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from halguru.store import open_store


@pytest.fixture
def oai(openai_client):
    return openai_client


def _turn(oai, messages: list[dict], text: str, stream: bool = False, model: str = "echo") -> str:
    """One turn as a stateless client takes it: the whole chat and the new message; the answer is appended."""
    messages.append({"role": "user", "content": text})
    if stream:
        chunks = oai.chat.completions.create(model=model, messages=messages, stream=True)
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = oai.chat.completions.create(model=model, messages=messages).choices[0].message.content
    messages.append({"role": "assistant", "content": answer})
    return answer


def _stored(conversation: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in open_store().get_messages(conversation)]


def test_a_stateless_chat_is_one_conversation_that_grows_by_its_new_messages(oai) -> None:
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(6):
        _turn(oai, messages, f"turn {i}", stream=i % 2 == 1)  # streamed and whole turns continue alike
    [conversation] = oai.server.state.store.list_conversations()
    assert _stored(conversation["id"]) == [(m["role"], m["content"]) for m in messages]  # each message once
    assert conversation["title"] == "turn 0"
    listed = httpx.get(f"{oai.base_url}conversations", headers={"Authorization": f"Bearer {oai.api_key}"}).json()
    assert [c["id"] for c in listed["data"]] == [conversation["id"]]
    assert len(oai.server.state.store.list_runs(conversation_id=conversation["id"])) == 6
    found = oai.server.state.store.search_conversations(channel="openai")
    assert [c["id"] for c in found] == [conversation["id"]]  # the console lists it under the openai channel


def test_messages_added_since_the_last_answer_are_added_before_the_new_one(oai) -> None:
    messages: list[dict] = []
    _turn(oai, messages, "first")
    messages.append({"role": "user", "content": "an aside the client sent without asking"})
    _turn(oai, messages, "second")
    [conversation] = oai.server.state.store.list_conversations()
    assert _stored(conversation["id"]) == [(m["role"], m["content"]) for m in messages]


def test_an_edited_history_or_another_agent_starts_a_new_conversation(oai) -> None:
    messages: list[dict] = []
    _turn(oai, messages, "first")
    _turn(oai, messages, "second")
    edited = [dict(m) for m in messages]
    edited[0]["content"] = "first, edited"
    _turn(oai, edited, "third")
    other = [dict(m) for m in messages]
    _turn(oai, other, "third", model="slow")
    conversations = {c["agent"]: c for c in oai.server.state.store.list_conversations(limit=10)}
    assert len(oai.server.state.store.list_conversations(limit=10)) == 3
    assert _stored(conversations["slow"]["id"])[:4] == [(m["role"], m["content"]) for m in messages]
    assert [(m["role"], m["content"]) for m in edited] in [_stored(c["id"]) for c in
                                                         oai.server.state.store.list_conversations(agent="echo")]
    _turn(oai, messages, "fourth")  # the original chat still continues its own conversation
    assert len(oai.server.state.store.list_conversations(limit=10)) == 3


def test_another_keys_identical_chat_is_never_continued(oai, api_key) -> None:
    messages: list[dict] = []
    _turn(oai, messages, "same words")
    other = openai.OpenAI(base_url=str(oai.base_url), api_key=api_key("other"), max_retries=0)
    copied = [dict(m) for m in messages]
    _turn(other, copied, "mine now")
    owners = sorted(c["owner"] for c in oai.server.state.store.list_conversations(limit=10))
    assert len(owners) == 2 and owners[0] != owners[1]
    first = next(c for c in oai.server.state.store.list_conversations(limit=10) if len(_stored(c["id"])) == 2)
    assert _stored(first["id"]) == [("user", "same words"), ("assistant", "You said: same words")]


def test_two_clients_sending_the_same_history_at_once_each_get_an_answer(oai) -> None:
    """The first to come continues the conversation; the other, which arrives while that turn is answered, gets
    a conversation of its own holding the history (no 409: the two chats have parted)."""
    messages: list[dict] = []
    _turn(oai, messages, "start", model="slow")
    answers: list[str] = []
    errors: list[BaseException] = []

    def send(text: str) -> None:
        try:
            answers.append(_turn(oai, [dict(m) for m in messages], text, model="slow"))
        except BaseException as exc:  # collected; asserted empty
            errors.append(exc)

    clients = [threading.Thread(target=send, args=(f"branch {i}",)) for i in range(2)]
    for client in clients:
        client.start()
        time.sleep(0.2)
    for client in clients:
        client.join(60)
    assert not errors and len(answers) == 2
    stored = [_stored(c["id"]) for c in oai.server.state.store.list_conversations(limit=10)]
    assert len(stored) == 2 and all(s[:2] == [(m["role"], m["content"]) for m in messages] for s in stored)
    assert sorted(len(s) for s in stored) == [4, 4]


def _held(state, conversation_id: str) -> bool:
    """Whether a request holds the conversation (its thread set aside while it is answered)."""
    return bool(state.store._rows("SELECT 1 FROM channel_threads WHERE conversation_id = ? AND thread LIKE '~%'",
                                  [conversation_id]))


ASIDE = [{"role": "user", "content": "an aside"}]
TOOL_LOOP = [{"role": "assistant", "content": None, "tool_calls": [
                 {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]


@pytest.mark.parametrize("added", [[], ASIDE, TOOL_LOOP], ids=["nothing", "aside", "tool-loop"])
def test_a_turn_given_up_in_the_queue_leaves_its_conversation_to_the_retry(oai, added: list[dict]) -> None:
    """Its run never started, so nothing was added but the messages the client sent before its new one: the
    client's retry of the same turn continues the chat. With such messages (an aside, a tool loop) the retry
    started a new conversation, leaving the first one with them and no answer."""
    state = oai.server.state
    state.settings.concurrency = 1  # before the model's queue is made: it keeps its size
    messages: list[dict] = []
    _turn(oai, messages, "first", model="slow")
    [chat] = state.store.list_conversations()
    headers = {"Authorization": f"Bearer {oai.api_key}"}
    messages += added
    retry = [*messages, {"role": "user", "content": "second"}]
    with httpx.stream("POST", f"{oai.base_url}chat/completions", headers=headers, timeout=30, json={
            "model": "slow", "stream": True, "messages": [{"role": "user", "content": "busy"}]}) as running:
        lines = running.iter_lines()  # kept: a dropped iterator would close the stream
        next(line for line in lines if '"content": "w' in line)  # it holds the only place
        with pytest.raises(httpx.ReadTimeout):  # queued behind it, then the client leaves
            httpx.post(f"{oai.base_url}chat/completions", headers=headers, timeout=1.5,
                       json={"model": "slow", "messages": retry})
        deadline = time.monotonic() + 10
        while state.gate.queues[state.agents["slow"].model].depth or _held(state, chat["id"]):
            assert time.monotonic() < deadline  # the server hands the conversation back once it sees the client left
            time.sleep(0.05)
    assert _stored(chat["id"]) == [(m["role"], m["content"] or "") for m in messages]  # no turn was added
    _turn(oai, messages, "second", model="slow")
    chats = [c for c in state.store.list_conversations(limit=10) if _stored(c["id"])[0][1] != "busy"]
    assert [c["id"] for c in chats] == [chat["id"]]
    assert _stored(chat["id"]) == [(m["role"], m["content"] or "") for m in messages]


def test_a_chats_title_is_its_first_words_on_one_line(oai) -> None:
    """The title made from the message is folded as a title sent by a client is: a pasted multi-line message
    listed its line breaks in every conversation list."""
    _turn(oai, [], "  Summarise this:\r\n\r\nQ3 revenue\tgrew 4% " + "and more " * 20)
    [conversation] = oai.server.state.store.list_conversations()
    assert conversation["title"] == ("Summarise this: Q3 revenue grew 4% " + "and more " * 20)[:80].rstrip()
