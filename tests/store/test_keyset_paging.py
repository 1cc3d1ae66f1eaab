"""Listings page by keyset, not by offset: a conversation created or bumped to the top (a new message), or a job
queued, between two pages shifts nothing, so the next page neither repeats nor skips the items below it. Each
test runs on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from halguru.store import Store


def _conversations(store: Store, raw_sql, times: list[float]) -> list[str]:
    """Conversations last active at ``times`` (set directly: equal times must tie exactly); their ids."""
    ids = [f"conv_{i:02d}" for i in range(len(times))]
    for conversation_id, when in zip(ids, times, strict=True):
        store.create_conversation(conversation_id, "agent", conversation_id)
        raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (when, conversation_id))
    return ids


def _key(row) -> tuple[float, str]:
    return row["updated"], row["id"]


def test_a_conversation_bumped_between_pages_is_neither_repeated_nor_shifts_the_rest(store: Store,
                                                                                      raw_sql) -> None:
    ids = _conversations(store, raw_sql, [100.0 - i for i in range(6)])  # conv_00 newest
    first = store.list_conversations(3)
    assert [c["id"] for c in first] == ids[:3]
    store.append_message(ids[5], "user", "bump")  # the oldest moves to the top
    second = store.list_conversations(3, after=_key(first[-1]))
    assert [c["id"] for c in second] == ids[3:5]  # no repeat of conv_02; conv_05 is not in this pass
    assert store.list_conversations(3, after=_key(second[-1])) == []
    assert [c["id"] for c in store.list_conversations(1)] == [ids[5]]  # the next pass starts with it


def test_new_conversations_between_pages_do_not_repeat_the_last_page(store: Store, raw_sql) -> None:
    ids = _conversations(store, raw_sql, [100.0 - i for i in range(4)])
    first = store.list_conversations(2)
    store.create_conversation("conv_new1", "agent")
    store.create_conversation("conv_new2", "agent")
    assert [c["id"] for c in store.list_conversations(2, after=_key(first[-1]))] == ids[2:]


def test_conversations_with_the_same_time_page_in_id_order_each_once(store: Store, raw_sql) -> None:
    ids = _conversations(store, raw_sql, [50.0, 42.5, 42.5, 42.5, 10.0])
    seen, after = [], None
    while page := store.list_conversations(1, after=after, agents=["agent"]):
        seen.append(page[0]["id"])
        after = _key(page[0])
    assert seen == ids


def test_a_page_still_follows_when_its_last_conversation_was_deleted(store: Store, raw_sql) -> None:
    ids = _conversations(store, raw_sql, [100.0 - i for i in range(4)])
    first = store.list_conversations(2)
    store.delete_conversation(first[-1]["id"])
    assert [c["id"] for c in store.list_conversations(2, after=_key(first[-1]))] == ids[2:]


def test_the_console_search_pages_by_keyset_too(store: Store, raw_sql) -> None:
    ids = _conversations(store, raw_sql, [100.0 - i for i in range(5)])
    first = store.search_conversations(limit=2)
    store.append_message(ids[4], "user", "bump")
    second = store.search_conversations(limit=2, after=_key(first[-1]))
    assert [c["id"] for c in second] == ids[2:4]
    assert [c["id"] for c in store.search_conversations(limit=2, after=_key(second[-1]))] == []


def test_jobs_queued_between_pages_do_not_repeat_the_next_page(store: Store) -> None:
    jobs = [store.enqueue_job("run", "agent", {"input": str(i)}, delay=3600)[0] for i in range(5)]
    first = store.list_jobs(2)
    assert [j["id"] for j in first] == [jobs[4]["id"], jobs[3]["id"]]
    store.enqueue_job("run", "agent", {"input": "late"}, delay=3600)
    rest = store.list_jobs(10, before=first[-1]["seq"])
    assert [j["id"] for j in rest] == [jobs[2]["id"], jobs[1]["id"], jobs[0]["id"]]
