"""Aggregates over runs for the admin console (either backend): per-agent numbers, latency percentiles, a
timeline, a latency histogram, the last error of each agent (the analytics page's daily
counts: ``sql_analytics``). Each is one query that the
database answers from its indexes (``runs_started``, ``runs_status``) without sending the rows over, so the
monitoring page stays fast with many stored runs (scripts/bench/bench_console.py measures it).

Written in the SQL both databases speak: window functions for percentiles, and a floor that holds on both
(SQLite's CAST truncates, PostgreSQL's rounds: ``_FLOOR`` corrects the latter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from halguru.store.sql_analytics import ERR as _ERR
from halguru.store.sql_analytics import FLOOR as _FLOOR
from halguru.store.sql_analytics import SUM as _SUM
from halguru.store.sql_analytics import AnalyticsMixin

ERROR_STATUSES = ("failed", "interrupted")
"""What counts as an error in the console's numbers (``limited`` and ``cancelled`` are outcomes, not faults)."""
_REFUSED = "error: unknown tool '"  # a tool result's start when the loop refused a call (loop.py)
_TOKENS = f"{_SUM.format('prompt_tokens')} AS prompt_tokens, {_SUM.format('completion_tokens')} AS completion_tokens"
LATENCY_BOUNDS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
"""The latency histogram's upper bounds (ms); one more bucket holds the rest."""


class StatsMixin(AnalyticsMixin):
    """Read-only aggregates of ``runs`` (a finished run has ``duration_ms``; running ones count as runs), leaving
    out ``halguru test``'s runs as ``halguru logs`` does: a conversation test's deliberate failures are not the
    service's errors."""

    def agent_stats(self, since: float) -> list[dict[str, Any]]:
        """Per agent, runs started since ``since``: runs, errors, ok, limited, running, tokens in and out, the
        mean duration (ms) and the latest start."""
        return self._rows(
            f"SELECT agent, count(*) AS runs, sum({_ERR}) AS errors, "
            "sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok, "
            "sum(CASE WHEN status = 'limited' THEN 1 ELSE 0 END) AS limited, "
            "sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running, "
            f"{_TOKENS}, avg(duration_ms) AS mean_ms, max(started) AS last_started "
            "FROM runs WHERE started >= ? AND test = 0 GROUP BY agent ORDER BY agent", (since,))

    def run_percentiles(self, since: float, quantiles: Sequence[float] = (0.5, 0.95)) -> dict[str, list[float]]:
        """Per agent, the duration (ms) at each quantile (nearest rank) of the runs finished since ``since``."""
        ranks = " OR ".join(f"rn = {_FLOOR.format(x=f'(n * {q:.4f} + 0.9999)')}" for q in quantiles)
        rows = self._rows(
            "SELECT agent, n, rn, duration_ms FROM (SELECT agent, duration_ms, "
            "ROW_NUMBER() OVER (PARTITION BY agent ORDER BY duration_ms) AS rn, "
            "COUNT(*) OVER (PARTITION BY agent) AS n FROM runs WHERE started >= ? AND test = 0 "
            "AND duration_ms IS NOT NULL) t "
            f"WHERE {ranks} ORDER BY agent, rn", (since,))
        found: dict[str, dict[int, float]] = {}
        for row in rows:
            found.setdefault(row["agent"], {})[int(row["rn"])] = float(row["duration_ms"])
        result: dict[str, list[float]] = {}
        for agent, by_rank in found.items():
            n = next(int(r["n"]) for r in rows if r["agent"] == agent)
            result[agent] = [by_rank[max(1, min(n, int(n * q + 0.9999)))] for q in quantiles]
        return result

    def run_timeline(self, since: float, bucket_s: float) -> list[dict[str, Any]]:
        """Runs and errors per time bucket (``bucket``: 0 for the one starting at ``since``), buckets with
        none left out."""
        bucket = _FLOOR.format(x="((started - ?) / ?)")
        return self._rows(
            f"SELECT bucket, count(*) AS runs, sum(err) AS errors FROM (SELECT {bucket} AS bucket, {_ERR} AS err "
            "FROM runs WHERE started >= ? AND test = 0) t GROUP BY bucket ORDER BY bucket",
            (since, bucket_s, since, bucket_s, since, bucket_s, since))

    def latency_histogram(self, since: float, bounds: Sequence[int] = LATENCY_BOUNDS_MS) -> list[int]:
        """How many runs finished since ``since`` took at most each bound (ms), and more than the last."""
        cases = " ".join(f"WHEN duration_ms <= {int(b)} THEN {i}" for i, b in enumerate(bounds))
        rows = self._rows(
            f"SELECT CASE {cases} ELSE {len(bounds)} END AS bucket, count(*) AS runs FROM runs "
            "WHERE started >= ? AND test = 0 AND duration_ms IS NOT NULL GROUP BY 1", (since,))
        counts = [0] * (len(bounds) + 1)
        for row in rows:
            counts[int(row["bucket"])] = int(row["runs"])
        return counts

    def last_errors(self, since: float) -> dict[str, dict[str, Any]]:
        """Each agent's latest failed or interrupted run since ``since``: its id, error and start."""
        rows = self._rows(
            "SELECT agent, id, error, started FROM (SELECT agent, id, error, started, ROW_NUMBER() OVER "
            "(PARTITION BY agent ORDER BY started DESC) AS rn FROM runs WHERE status IN ('failed', 'interrupted') "
            "AND started >= ? AND test = 0) t WHERE rn = 1", (since,))
        return {row["agent"]: row for row in rows}

    def refused_tool_calls(self, since: float, limit: int = 100) -> list[dict[str, Any]]:
        """Tool calls refused since ``since``, newest first: a human's rejection (``approval_rejected``) or a
        tool outside the agent's allow-list (its ``tool_result`` is the loop's "error: unknown tool 'NAME'"; the
        ``replace`` makes the match case-sensitive on SQLite, whose LIKE ignores ASCII case: an MCP server's
        "Unknown tool" error counted there only); ``data`` is the event's JSON text."""
        return self._rows(
            "SELECT e.ts, e.type, e.run_id, r.agent, e.data FROM events e JOIN runs r ON r.id = e.run_id "
            "WHERE r.started >= ? AND r.test = 0 AND (e.type = 'approval_rejected' OR (e.type = 'tool_result' "
            "AND e.data LIKE ? AND replace(e.data, ?, '') <> e.data)) ORDER BY e.ts DESC LIMIT ?",
            (since, f"%{_REFUSED}%", _REFUSED, limit))
