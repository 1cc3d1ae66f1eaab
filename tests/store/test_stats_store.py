"""The console's aggregates (``halguru.store.sql_stats``) on both backends: per-agent numbers, nearest-rank
percentiles, the timeline's floor (SQLite truncates, PostgreSQL rounds), the latency histogram, last errors,
daily counts, messages per channel, tools, tokens, handoffs and refused tool calls."""

from __future__ import annotations

import json
import time

from halguru.agents.events import ApprovalRejected, Handoff, RunFinished, ToolResult
from halguru.models.base import Message

DAY = 86400.0


def _runs(raw_sql, start: float) -> None:
    """20 runs of 'a' (durations 10..200 ms, one a second from ``start``; every 5th failed) and 3 of 'b'."""
    for i in range(20):
        status = "failed" if i % 5 == 4 else "ok"
        raw_sql("INSERT INTO runs (id, conversation_id, agent, model, input, status, error, started, duration_ms, "
                "prompt_tokens, completion_tokens) VALUES (?, ?, 'a', 'scripted', 'x', ?, ?, ?, ?, 10, 5)",
                (f"ra{i:02d}", f"ca{i:02d}", status, "boom" if status == "failed" else None, start + i,
                 10.0 * (i + 1)))
    for i, status in enumerate(["ok", "limited", "running"]):
        raw_sql("INSERT INTO runs (id, conversation_id, agent, model, input, status, started, duration_ms, "
                "lease_expires) VALUES (?, 'cb', 'b', 'scripted', 'x', ?, ?, ?, ?)",
                (f"rb{i}", status, start + 30 + i, None if status == "running" else 40000.0, time.time() + 60))


def test_agent_numbers_percentiles_timeline_histogram_and_last_error(store, raw_sql) -> None:
    start = 1_700_000_000.0
    _runs(raw_sql, start)
    stats = {r["agent"]: r for r in store.agent_stats(start - 1)}
    a, b = stats["a"], stats["b"]
    assert (a["runs"], a["errors"], a["ok"], a["prompt_tokens"], a["completion_tokens"]) == (20, 4, 16, 200, 100)
    assert (b["runs"], b["limited"], b["running"], b["errors"]) == (3, 1, 1, 0)
    assert store.run_percentiles(start - 1) == {"a": [100.0, 190.0], "b": [40000.0, 40000.0]}
    timeline = store.run_timeline(start - 0.5, 10.0)  # buckets of 10 s from half a second before the first
    assert [(r["bucket"], r["runs"], r["errors"]) for r in timeline] == [(0, 10, 2), (1, 10, 2), (3, 3, 0)]
    counts = store.latency_histogram(start - 1)
    assert counts[0] == 10 and counts[1] == 10 and counts[8] == 2 and sum(counts) == 22
    last = store.last_errors(start - 1)
    assert set(last) == {"a"} and (last["a"]["id"], last["a"]["error"]) == ("ra19", "boom")
    daily = store.day_rows(start - 1, start + DAY)["runs"]
    assert {(r["day"], r["agent"], r["runs"], r["conversations"]) for r in daily} == {
        (int(start // DAY), "a", 20, 20), (int(start // DAY), "b", 3, 1)}
    assert store.agent_stats(start + 100) == [] and store.run_percentiles(start + 100) == {}


def test_halguru_test_s_runs_are_left_out_as_halguru_logs_leaves_them(store, raw_sql) -> None:
    """A conversation test's run (deliberately failing, say) counted in the monitoring page's runs and errors
    while ``halguru logs`` left it out: 8 runs there against 5 in the logs."""
    start = 1_700_000_000.0
    _runs(raw_sql, start)
    raw_sql("UPDATE runs SET test = 1 WHERE id IN ('ra04', 'ra05', 'rb0')")  # as finish_run marks them
    stats = {r["agent"]: r for r in store.agent_stats(start - 1)}
    assert (stats["a"]["runs"], stats["a"]["errors"], stats["b"]["runs"]) == (18, 3, 2)
    assert sum(store.latency_histogram(start - 1)) == 19
    assert sum(r["runs"] for r in store.run_timeline(start - 0.5, 10.0)) == 20
    assert store.run_percentiles(start - 1)["b"] == [40000.0, 40000.0]
    raw_sql("UPDATE runs SET test = 1 WHERE id = 'ra19'")
    assert store.last_errors(start - 1)["a"]["id"] == "ra14"  # the newest failure not a test's


def test_messages_tools_tokens_handoffs_and_refused_calls(store) -> None:
    now = time.time()
    store.create_conversation("conv_1", "desk", "t")
    store.thread_conversation("twilio", "desk", "+1555", title="sms")
    store.start_run("run_1", "conv_1", "desk", "scripted", "hi")
    events = [Handoff(run_id="run_1", seq=0, from_agent="desk", to_agent="billing"),
              ApprovalRejected(run_id="run_1", seq=1, call_id="c1", name="refund", reason="no"),
              RunFinished(run_id="run_1", seq=2, status="ok", output="")]
    store.finish_run("run_1", "conv_1", events[-1].model_dump(), events,
                     [Message(role="user", content="hi"), Message(role="tool", content="1", name="lookup",
                                                                  tool_call_id="c0")])
    rows = store.day_rows(now - 60, now + 60)
    api = [m for m in rows["messages"] if m["channel"] == "api"]  # conv_1 was not started by the twilio thread
    assert api[0]["agent"] == "desk" and (api[0]["messages"], api[0]["user_messages"]) == (2, 1)
    assert [(t["tool"], t["agent"], t["calls"]) for t in rows["tools"]] == [("lookup", "desk", 1)]
    assert [(t["agent"], t["model"]) for t in rows["tokens"]] == [("desk", "scripted")]
    assert [(h["from"], h["to"], h["count"]) for h in rows["handoffs"]] == [("desk", "billing", 1)]
    refused = store.refused_tool_calls(now - 60)
    assert [(r["type"], r["agent"], r["run_id"]) for r in refused] == [("approval_rejected", "desk", "run_1")]


def test_sums_are_integers_and_every_tool_is_counted(store, raw_sql) -> None:
    """PostgreSQL's sum() of a BIGINT is NUMERIC (a Decimal, which json.dumps refuses), SQLite's an int; every tool
    comes back (the page's top 20 is cut in name order among tools called as often: ``analytics.report``)."""
    start = time.time() - 60
    _runs(raw_sql, start)
    store.create_conversation("conv_1", "desk", "t")
    store.start_run("run_1", "conv_1", "desk", "scripted", "hi")
    done = RunFinished(run_id="run_1", seq=0, status="ok", output="")
    store.finish_run("run_1", "conv_1", done.model_dump(), [done],
                     [Message(role="tool", content="1", name=f"tool{i:02d}", tool_call_id=f"c{i}")
                      for i in reversed(range(25))])
    a = next(r for r in store.agent_stats(start - 1) if r["agent"] == "a")
    rows = store.day_rows(start - 1, start + 120)
    day = [r["tokens"] for r in rows["runs"] if r["agent"] == "a"]  # two rows when a midnight falls among them
    use = [(r["prompt_tokens"], r["completion_tokens"]) for r in rows["tokens"] if r["agent"] == "a"]
    sums = [a["prompt_tokens"], a["completion_tokens"], sum(day), sum(p for p, _ in use), sum(c for _, c in use)]
    assert sums == [200, 100, 300, 200, 100] and all(type(n) is int for n in [*sums, *day, *(p for p, _ in use)])
    assert sorted(r["tool"] for r in rows["tools"]) == [f"tool{i:02d}" for i in range(25)]


def test_only_the_loops_own_refusal_counts_as_a_refused_call_whatever_its_case(store) -> None:
    """SQLite's LIKE ignores ASCII case, PostgreSQL's does not: an MCP server's "Unknown tool" error, or a
    result in capitals, counted as an allow-list refusal on SQLite only (and any result saying "unknown tool"
    on both)."""
    store.create_conversation("conv_1", "desk", "t")
    store.start_run("run_1", "conv_1", "desk", "scripted", "hi")
    results = ["error: unknown tool 'refund'; available: lookup", "error: Unknown tool: refund",
               "UNKNOWN TOOL", "no unknown tool here"]
    events = [ToolResult(run_id="run_1", seq=i, call_id=f"c{i}", name="t", content=text, is_error=True)
              for i, text in enumerate(results)]
    done = RunFinished(run_id="run_1", seq=len(events), status="ok", output="")
    store.finish_run("run_1", "conv_1", done.model_dump(), [*events, done], [])
    refused = store.refused_tool_calls(time.time() - 60)
    assert [json.loads(r["data"])["content"] for r in refused] == [results[0]]
