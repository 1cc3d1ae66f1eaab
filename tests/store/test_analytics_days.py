"""The analytics kept per closed day (``halguru.store.sql_analytics``) on both backends: after each kind of write
that changes a closed day (a run spanning midnight finishing, a deleted conversation, a retention purge, a
channel thread bound later, a handoff recorded late, a row another program writes), the kept numbers are those
computed again from the rows."""

from __future__ import annotations

import time
from typing import Any

DAY = 86400


def _same(store) -> dict[str, Any]:
    """The kept numbers, after asserting they are what computing them again gives."""
    today = int(time.time() // DAY)
    kept, fresh = (store.analytics_rows(today - 13, keep=keep) for keep in (True, False))
    as_sets = [{kind: sorted(tuple(sorted(row.items())) for row in rows) for kind, rows in found.items()}
               for found in (kept, fresh)]
    assert as_sets[0] == as_sets[1]
    return as_sets[0]


def _conversation(raw_sql, cid: str, agent: str, at: float, status: str = "ok", tool: bool = False) -> None:
    raw_sql("INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, 't', ?, ?)",
            (cid, agent, at, at))
    raw_sql("INSERT INTO runs (id, conversation_id, agent, model, input, status, started, prompt_tokens, "
            "completion_tokens) VALUES (?, ?, ?, 'scripted', 'x', ?, ?, 10, 5)", (f"run_{cid}", cid, agent, status, at))
    raw_sql("INSERT INTO messages (conversation_id, seq, role, content, run_id, created) VALUES (?, 0, 'user', 'q', "
            "?, ?)", (cid, f"run_{cid}", at))
    if tool:
        raw_sql("INSERT INTO messages (conversation_id, seq, role, content, name, run_id, created) VALUES "
                "(?, 1, 'tool', '1', 'lookup', ?, ?)", (cid, f"run_{cid}", at + 1))


def _kept_days(raw_sql) -> int:
    return int(raw_sql("SELECT count(*) FROM analytics_days")[0][0])


def test_kept_days_follow_every_write_that_changes_a_closed_day(store, raw_sql) -> None:
    today = int(time.time() // DAY)
    for i in range(12):  # two a day, five days back to two
        _conversation(raw_sql, f"c{i}", "desk" if i % 3 else "sales", (today - 5 + i // 4) * DAY + 3600 * (i + 1),
                      tool=i % 2 == 0)
    midnight = (today - 2) * DAY - 10  # a run started 10 s before a midnight, still running after it
    _conversation(raw_sql, "late", "desk", midnight, status="running")
    raw_sql("INSERT INTO messages (conversation_id, seq, role, content, run_id, created) VALUES ('late', 1, "
            "'assistant', 'a', 'run_late', ?)", (midnight + 20,))
    first = _same(store)
    assert _kept_days(raw_sql) >= 12  # the closed days of the window are kept now
    assert _same(store) == first  # read from what was kept

    raw_sql("UPDATE runs SET status = 'ok' WHERE id = 'run_late'")  # the run ends after midnight
    second = _same(store)
    ok = [next(dict(r)["ok"] for r in found["runs"] if ("day", today - 3) in r and ("agent", "desk") in r)
          for found in (first, second)]
    assert ok[1] == ok[0] + 1

    assert store.delete_conversation("c5")
    third = _same(store)
    assert third != second

    raw_sql("INSERT INTO channel_threads (channel, agent, thread, conversation_id) VALUES ('twilio', 'desk', "
            "'+1555', 'c1')")  # an old conversation bound to a channel later: its messages move channel
    fourth = _same(store)
    assert any(("channel", "twilio") in r for r in fourth["messages"])

    raw_sql("INSERT INTO events (run_id, seq, type, step, ts, data) VALUES ('run_c2', 0, 'handoff', 0, ?, ?)",
            (time.time(), '{"from_agent": "desk", "to_agent": "billing"}'))
    fifth = _same(store)
    assert [dict(r)["count"] for r in fifth["handoffs"]] == [1]

    raw_sql("INSERT INTO messages (conversation_id, seq, role, content, name, created) VALUES ('c9', 5, 'tool', "
            "'1', 'search', ?)", ((today - 3) * DAY + 7200,))  # another program adds a message to a closed day
    assert any(("tool", "search") in r for r in _same(store)["tools"])

    store.prune_runs((today - 3) * DAY)  # retention: the runs before three days ago, their conversations
    sixth = _same(store)
    assert not [r for r in sixth["runs"] if dict(r)["day"] < today - 3] and sixth != fifth


def test_today_is_read_live_and_old_kept_days_are_dropped(store, raw_sql) -> None:
    now = time.time()
    _conversation(raw_sql, "now", "desk", now - 1)
    before = _same(store)
    _conversation(raw_sql, "now2", "desk", now)  # today: no mark, and none needed
    after = _same(store)
    assert after != before
    assert not raw_sql("SELECT day FROM analytics_marks WHERE day = ?", (int(now // DAY),))
    raw_sql("INSERT INTO analytics_days (day, version, data) VALUES (1, 0, '{}')")
    _conversation(raw_sql, "old", "desk", now - 5 * DAY)  # a closed day changed: computed again and kept
    _same(store)
    assert not raw_sql("SELECT day FROM analytics_days WHERE day = 1")


def test_a_days_handoffs_are_read_from_their_own_index(store, raw_sql, monkeypatch) -> None:
    """The live day's handoffs were found by reading every event (~30 a run): 360 ms of a late UTC day with
    3,000,000 events on PostgreSQL. They come from an index of the handoff events alone (its plan, with
    PostgreSQL's sequential scans off as a large table would have them cost), and are still counted."""
    now = time.time()
    for i in range(3):
        _conversation(raw_sql, f"conv_h{i}", "support", now - 60)
        raw_sql("INSERT INTO events (run_id, seq, type, step, ts, data) VALUES (?, 1, 'handoff', 0, ?, ?)",
                (f"run_conv_h{i}", now, '{"from_agent": "support", "to_agent": "docs"}'))
    read: list[tuple[str, list[Any]]] = []
    rows = store._rows
    monkeypatch.setattr(store, "_rows", lambda sql, params=(): read.append((sql, list(params))) or rows(sql, params))
    found = store.day_rows(now - DAY, now + DAY)
    assert [(h["from"], h["to"], h["count"]) for h in found["handoffs"]] == [("support", "docs", 3)]
    sql, params = next((sql, params) for sql, params in read if "'handoff'" in sql)
    postgres = hasattr(store, "url")
    with store._tx() as conn:
        if postgres:
            conn.execute("SET LOCAL enable_seqscan = off")
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        plan = " / ".join(str(list(row)) for row in conn.execute(explain + sql, params))
    assert "events_handoffs" in plan, plan
