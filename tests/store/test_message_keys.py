"""The messages endpoint's idempotency keys in the store, on SQLite and PostgreSQL: one claim wins among concurrent
ones (two connections), a released claim can be taken again, old and abandoned claims are taken anew, keys go with
their conversation and are pruned after a day."""

from __future__ import annotations

import time
from typing import Any

from halguru.store.sql_message_keys import KEY_TTL, STALE_CLAIM
from tests.store.races import race

KEY = ("alice", "conv_1", "k")


def _conversation(store: Any, conv: str = "conv_1") -> None:
    store.create_conversation(conv, "echo", owner="alice")


def test_concurrent_claims_of_one_key_let_exactly_one_through(store_factory) -> None:
    stores = [store_factory(), store_factory()]  # two connections: two processes' views of one database
    _conversation(stores[0])
    for round_ in range(5):
        key = ("alice", "conv_1", f"k{round_}")
        results = race(stores, lambda store, key=key: store.claim_message_key(*key, "hash"))
        assert len(results) == 8 and results.count(None) == 1, results
        assert all(r["status"] == "claimed" and r["request_hash"] == "hash" for r in results if r is not None)


def test_a_claim_moves_to_run_or_held_and_only_an_unstarted_one_is_released(store) -> None:
    _conversation(store)
    assert store.claim_message_key(*KEY, "h1") is None
    assert store.claim_message_key(*KEY, "h2")["request_hash"] == "h1"  # the first request's
    assert store.release_message_key(*KEY)
    assert store.claim_message_key(*KEY, "h2") is None  # released: a new first request
    store.start_run("run_abc123", "conv_1", "echo", "scripted", "hi", owner="alice", existing=True)
    assert store.start_message_key(*KEY, "run_abc123")
    assert not store.release_message_key(*KEY)  # its run started: the key stays used
    record = store.claim_message_key(*KEY, "h2")
    assert record is not None and (record["status"], record["run_id"]) == ("run", "run_abc123")
    other = ("alice", "conv_1", "held")
    assert store.claim_message_key(*other, "h") is None and store.hold_message_key(*other)
    assert store.claim_message_key(*other, "h")["status"] == "held"
    assert not store.start_message_key(*other, "run_x")


def test_old_abandoned_and_orphaned_keys_are_claimed_anew_and_pruned(store, raw_sql) -> None:
    _conversation(store)
    now = time.time()
    assert store.claim_message_key(*KEY, "h") is None
    store.start_message_key(*KEY, "run_gone")  # no such run (pruned): the key is free again
    assert store.claim_message_key(*KEY, "h2") is None
    raw_sql("UPDATE message_keys SET created = ?", (now - STALE_CLAIM - 1,))  # a claim whose process died
    assert store.claim_message_key(*KEY, "h3") is None
    store.create_conversation("conv_2", "echo", owner="alice")
    assert store.claim_message_key("alice", "conv_2", "k", "h") is None
    raw_sql("UPDATE message_keys SET status = 'held', created = ? WHERE conversation_id = 'conv_1'",
            (now - KEY_TTL - 1,))
    assert store.claim_message_key(*KEY, "h4") is None  # a day old: a new key
    raw_sql("UPDATE message_keys SET created = ? WHERE conversation_id = 'conv_1'", (now - KEY_TTL - 1,))
    store.prune_runs(now - 3600)
    assert raw_sql("SELECT conversation_id FROM message_keys") == [("conv_2",)]
    raw_sql("UPDATE message_keys SET created = ?", (now - KEY_TTL - 1,))
    assert store.prune_message_keys() == 1
    assert raw_sql("SELECT count(*) FROM message_keys") == [(0,)]


def test_deleting_a_conversation_deletes_its_keys(store, raw_sql) -> None:
    _conversation(store)
    store.create_conversation("conv_2", "echo", owner="alice")
    store.claim_message_key(*KEY, "h")
    store.claim_message_key("alice", "conv_2", "k", "h")
    store.delete_conversation("conv_1")
    assert raw_sql("SELECT conversation_id FROM message_keys") == [("conv_2",)]
