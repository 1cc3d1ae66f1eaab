"""Threads a request claims (the OpenAI endpoint's stateless chats), on SQLite and PostgreSQL: only the owner's
conversation is found, one of several racing claims wins (two connections), a claimed thread is found by no one
until it is set again, and a thread two conversations reach keeps its first one."""

from __future__ import annotations

from typing import Any

from tests.store.races import race


def _filed(store: Any, conv: str, thread: str, owner: str | None = "key:a") -> None:
    store.create_conversation(conv, "echo", owner=owner)
    store.set_thread("openai", "echo", conv, thread)


def test_a_claim_finds_only_the_owners_conversation_of_that_agent(store) -> None:
    _filed(store, "conv_a", "h1")
    assert store.claim_thread("openai", "echo", ["h1"], "key:b") is None  # another owner's: never
    assert store.claim_thread("openai", "other", ["h1"], "key:a") is None  # another agent's
    assert store.claim_thread("openai", "echo", ["h1"], None) is None  # the CLI's (--dev) are not the key's
    assert store.claim_thread("openai", "echo", ["nope", "h1"], "key:a") == ("h1", "conv_a")  # first that exists
    assert store.claim_thread("openai", "echo", ["h1"], "key:a") is None  # claimed: found no more
    store.set_thread("openai", "echo", "conv_a", "h2")
    assert store.claim_thread("openai", "echo", ["h1"], "key:a") is None  # its old thread is gone
    assert store.claim_thread("openai", "echo", ["h2"], "key:a") == ("h2", "conv_a")


def test_the_first_thread_asked_for_wins_and_a_taken_over_conversation_is_left_alone(store) -> None:
    _filed(store, "conv_short", "h1")
    _filed(store, "conv_long", "h3")
    assert store.claim_thread("openai", "echo", ["h3", "h1"], "key:a") == ("h3", "conv_long")
    store.take_over("conv_short", "operator")
    assert store.claim_thread("openai", "echo", ["h1"], "key:a") is None  # an operator answers it now


def test_a_thread_another_conversation_holds_stays_with_it(store) -> None:
    _filed(store, "conv_1", "same")
    _filed(store, "conv_2", "same")  # the same messages in a second conversation: the first keeps them
    assert store.claim_thread("openai", "echo", ["same"], "key:a") == ("same", "conv_1")
    assert store.claim_thread("openai", "echo", ["same"], "key:a") is None
    # both are still listed under the channel, and go with their conversation
    assert {c["id"] for c in store.search_conversations(channel="openai")} == {"conv_1", "conv_2"}
    store.delete_conversation("conv_2")
    store.set_thread("openai", "echo", "conv_2", "later")  # a deleted conversation gets no thread back
    assert store.claim_thread("openai", "echo", ["later"], "key:a") is None


def test_concurrent_claims_of_one_thread_let_exactly_one_through(store_factory) -> None:
    stores = [store_factory(), store_factory()]  # two connections: two processes' views of one database
    for round_ in range(5):
        _filed(stores[0], f"conv_{round_}", f"h{round_}")
        thread = f"h{round_}"
        results = race(stores, lambda store, thread=thread: store.claim_thread("openai", "echo", [thread], "key:a"))
        assert len(results) == 8 and [r for r in results if r is not None] == [(f"h{round_}", f"conv_{round_}")]
