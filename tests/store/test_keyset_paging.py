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


def _users(store: Store, raw_sql, names: list[str], created: list[float]) -> list[str]:
    """Users named ``names`` created at ``created`` (set directly: equal times must tie exactly); their ids."""
    ids = [f"usr_{i:02d}" for i in range(len(names))]
    for user_id, name, when in zip(ids, names, created, strict=True):
        assert store.create_user(user_id, f"{name.lower()}@example.com", name, "user") is not None
        raw_sql("UPDATE users SET created = ? WHERE id = ?", (when, user_id))
    return ids


def _created(row) -> tuple[float, str]:
    return row["created"], row["id"]


def test_users_page_oldest_first_and_one_created_between_pages_is_neither_repeated_nor_skipped(
        store: Store, raw_sql) -> None:
    ids = _users(store, raw_sql, ["Ann", "Bob", "Cat", "Dan", "Eve"], [10.0, 20.0, 20.0, 20.0, 30.0])
    first = store.list_users(2)
    assert [u["id"] for u in first] == ids[:2]
    assert store.create_user("usr_new", "new@example.com", "New", "user") is not None  # created now: the newest
    seen, after = [u["id"] for u in first], _created(first[-1])
    while page := store.list_users(2, after=after):
        seen += [u["id"] for u in page]
        after = _created(page[-1])
    assert seen == [*ids, "usr_new"]  # the ties at 20.0 in id order, each once; the new user at the end
    assert [u["id"] for u in store.list_users()] == seen  # no limit: everyone, as before


def test_users_search_by_email_or_name_in_any_case_and_pages_on(store: Store, raw_sql) -> None:
    ids = _users(store, raw_sql, ["Zoë", "Anna", "Joanna", "Bob", "Hannah"], [1.0, 2.0, 3.0, 4.0, 5.0])
    store.update_user(ids[3], name="Bob ANNex")
    assert [u["id"] for u in store.list_users(text="ANN")] == [ids[1], ids[2], ids[3], ids[4]]
    first = store.list_users(2, text="ann")
    assert [u["id"] for u in first] == ids[1:3]
    assert [u["id"] for u in store.list_users(2, text="ann", after=_created(first[-1]))] == ids[3:5]
    assert [u["id"] for u in store.list_users(text="ZOË")] == [ids[0]]  # folded beyond ASCII
    assert [u["id"] for u in store.list_users(text="@EXAMPLE.com")] == ids
    assert store.list_users(text="%") == [] and store.list_users(text="_") == []  # LIKE's own characters, as typed


def _many_conversations(raw_sql, first: int, last: int) -> None:
    """Conversations ``first``..``last`` of agents a and b (one SQL statement), the later the newer, with a message
    each."""
    numbers = f"WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n WHERE i < {last}) "
    raw_sql(numbers + "INSERT INTO conversations (id, agent, title, created, updated) SELECT 'conv_' || i, "
                      "CASE WHEN i = i / 2 * 2 THEN 'a' ELSE 'b' END, 't', i, i FROM n")
    raw_sql(numbers + "INSERT INTO messages (conversation_id, seq, role, content, created) "
                      "SELECT 'conv_' || i, 0, 'user', 'hi', i FROM n")


def _fastest_ms(call, repeat: int = 7) -> float:
    import time

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def test_the_newest_page_of_several_agents_costs_the_same_with_many_more_conversations(store: Store,
                                                                                       raw_sql) -> None:
    # the API's and the console's listings name every served agent; each agent's newest are read from its index
    # (they were all gathered, counted and sorted: 30x slower with 100 times as many conversations)
    _many_conversations(raw_sql, 1, 200)
    listings = {"list": lambda: store.list_conversations(20, agents=["a", "b", "gone"]),
                "search": lambda: store.search_conversations(agents=["a", "b", "gone"], limit=20)}
    few = {name: _fastest_ms(call) for name, call in listings.items()}
    _many_conversations(raw_sql, 201, 20_000)
    for name, call in listings.items():
        page = call()
        assert [c["id"] for c in page] == [f"conv_{i}" for i in range(20_000, 19_980, -1)], name
        assert {c["messages"] for c in page} == {1}
        many = _fastest_ms(call)
        assert many < 5 * few[name] + 2, (name, few[name], many)
    after = store.list_conversations(20, agents=["a", "b"])[-1]
    assert [c["id"] for c in store.list_conversations(2, agents=["b", "a"], after=(after["updated"], after["id"]))] \
        == ["conv_19980", "conv_19979"]


def test_a_listing_naming_more_agents_than_it_reads_apart_pages_the_same(store: Store, raw_sql) -> None:
    from halguru.store.sql_base import MAX_AGENT_BRANCHES

    _many_conversations(raw_sql, 1, 30)
    names = ["b", *(f"other{i}" for i in range(MAX_AGENT_BRANCHES)), "a"]  # one IN past the branches' cap
    for listing in (lambda after: store.list_conversations(4, agents=names, after=after),
                    lambda after: store.search_conversations(agents=names, limit=4, after=after)):
        seen, after = [], None
        while page := listing(after):
            seen += [c["id"] for c in page]
            after = _key(page[-1])
        assert seen == [f"conv_{i}" for i in range(30, 0, -1)]
