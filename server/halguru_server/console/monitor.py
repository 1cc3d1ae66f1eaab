"""What the monitoring page and ``GET /v1/monitoring`` show: each served agent's numbers over a window, from
the store's aggregates (``halguru.store.sql_stats``), plus this replica's queue depth and each agent's version
(a content hash of its folder)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends

from halguru.store.sql_stats import LATENCY_BOUNDS_MS, StatsMixin
from halguru_server.errors import ApiError
from halguru_server.identity.guards import require
from halguru_server.ops import model_label
from halguru_server.state import Principal, ServerState

WINDOWS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
BUCKETS = 24
RATE_WINDOW_S = 300  # runs per minute: over the last 5 minutes
REUSE_FACTOR = 4  # a read of the store's sums serves viewers for 4 times what it took (see _aggregates)
REUSED_READ_S = 0.25  # ... if it took this long: a faster one is made again for every request
_SKIP = {".git", "__pycache__", ".venv", "node_modules", ".halguru"}
RECHECK_S = 10.0  # an agent folder's files are listed again after this long (see folder_version)
_versions: dict[str, tuple[float, tuple[int, float], str]] = {}


async def every_agent(caller: Annotated[Principal, Depends(require("metrics:read"))]) -> Principal:
    """``metrics:read`` for numbers that cover every agent (monitoring, analytics): not for a key limited to
    some agents (``--agents``), which must not learn the others' names, models and errors."""
    if caller.key is not None and caller.key.agents:
        raise ApiError(403, f"this API key may use only {', '.join(caller.key.agents)}; monitoring and analytics "
                            "cover every agent: use a key without an agent list", "forbidden")
    return caller


def stats_store(state: ServerState) -> StatsMixin:
    """The store, with the console's aggregates (both SQL backends have them)."""
    return cast(StatsMixin, state.store)


def folder_version(path: Path, now: float | None = None) -> str:
    """The first 12 hex digits of a SHA-256 over the folder's files (names and contents), cached until a file
    changes (count or newest modification). The files are listed at most every ``RECHECK_S`` seconds (``now``:
    ``time.monotonic()``): each live refresh of each open monitoring page asked, and an agent with 10,000
    documents in its folder took 0.3 s to list each time."""
    root = path if path.is_dir() else path.parent
    now = time.monotonic() if now is None else now
    cached = _versions.get(str(root))
    if cached is not None and now - cached[0] < RECHECK_S:
        return cached[2]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _SKIP & set(p.relative_to(root).parts))
    signature = (len(files), max((p.stat().st_mtime for p in files), default=0.0))
    if cached is not None and cached[1] == signature:
        _versions[str(root)] = (now, signature, cached[2])
        return cached[2]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    version = digest.hexdigest()[:12]
    _versions[str(root)] = (now, signature, version)
    return version


def snapshot(state: ServerState, window: str = "1h", now: float | None = None) -> dict[str, Any]:
    """Agents (every served one, and any other with runs in the window), totals, timeline and histogram."""
    window = window if window in WINDOWS else "1h"
    span = WINDOWS[window]
    now, sums = _aggregates(state, window) if now is None else (now, _read_aggregates(state, span, now))
    since = now - span
    stats = {row["agent"]: row for row in sums["stats"]}
    agents = []
    for name in sorted(set(state.agents) | set(stats)):
        agents.append(_agent_row(state, name, stats.get(name), sums["recent"].get(name, 0),
                                 sums["quantiles"].get(name), sums["errors"].get(name)))
    bucket_s = span / BUCKETS
    timeline = [{"start": since + i * bucket_s, "runs": 0, "errors": 0} for i in range(BUCKETS)]
    for row in sums["timeline"]:
        slot = timeline[min(BUCKETS - 1, max(0, int(row["bucket"])))]
        slot["runs"] += int(row["runs"])
        slot["errors"] += int(row["errors"] or 0)
    runs = sum(a["runs"] for a in agents)
    failed = sum(a["errors"] for a in agents)
    return {"window": window, "since": since, "now": now, "agents": agents,
            "totals": {"runs": runs, "errors": failed, "error_rate": failed / runs if runs else 0.0,
                       "runs_per_min": sum(a["runs_per_min"] for a in agents),
                       "tokens": sum(a["tokens"] for a in agents),
                       "queued": sum(state.gate.depth(m) for m in {s.model for s in state.agents.values()})},
            "timeline": timeline, "latency": {"bounds_ms": list(LATENCY_BOUNDS_MS), "counts": sums["histogram"]}}


def _read_aggregates(state: ServerState, span: int, now: float) -> dict[str, Any]:
    """The store's sums over the window ending ``now``: what a snapshot costs (seconds at 100k runs)."""
    store, since = stats_store(state), now - span
    return {"stats": store.agent_stats(since),
            "recent": {row["agent"]: row["runs"] for row in store.agent_stats(now - RATE_WINDOW_S)},
            "quantiles": store.run_percentiles(since), "errors": store.last_errors(since),
            "timeline": store.run_timeline(since, span / BUCKETS), "histogram": store.latency_histogram(since)}


@dataclass
class _Sums:
    lock: threading.Lock = field(default_factory=threading.Lock)
    read_at: float = -1e9  # monotonic
    took: float = 0.0
    now: float = 0.0
    value: dict[str, Any] = field(default_factory=dict)


_sums: dict[tuple[int, str], _Sums] = {}
_sums_lock = threading.Lock()


def _aggregates(state: ServerState, window: str) -> tuple[float, dict[str, Any]]:
    """The window's sums and when they were read. Viewers asking at once wait for one read, and a read is
    reused for ``REUSE_FACTOR`` times what it took: the live part refreshes every few seconds per open page, and
    at ~100k runs in the window each read takes seconds, so a few open pages kept the store busy. A read under
    ``REUSED_READ_S`` is not reused: what a run just did shows at once."""
    key = (id(state.store), window)
    with _sums_lock:
        if len(_sums) > 64 and key not in _sums:  # stores of apps gone (tests make many)
            _sums.clear()
        sums = _sums.setdefault(key, _Sums())
    with sums.lock:
        started = time.monotonic()
        if sums.took < REUSED_READ_S or started - sums.read_at >= sums.took * REUSE_FACTOR:
            sums.now = time.time()
            sums.value = _read_aggregates(state, WINDOWS[window], sums.now)
            sums.read_at, sums.took = started, time.monotonic() - started
        return sums.now, sums.value


def _version(state: ServerState, name: str, served: Any) -> str:
    """A published agent's version and bundle hash (``v3 1a2b3c4d5e6f``); else its folder's hash."""
    deployed = state.agents.deployed.get(name)
    if deployed is not None:
        return f"v{deployed.version} {deployed.sha256[:12]}"
    return folder_version(Path(served.agent.path)) if served and served.agent.path else ""


def _agent_row(state: ServerState, name: str, stats: dict[str, Any] | None, recent: int,
               quantiles: list[float] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    served = state.agents.get(name)
    runs = int(stats["runs"]) if stats else 0
    errors = int(stats["errors"] or 0) if stats else 0
    running = int(stats["running"] or 0) if stats else 0
    queued = state.gate.depth(served.model) if served else 0
    if served is None:
        status = "not served"
    elif state.draining:
        status = "draining"
    else:
        status = "busy" if running or queued else "idle"
    return {
        "agent": name, "model": model_label(served.model) if served else "", "served": served is not None,
        "version": _version(state, name, served),
        "state": status, "runs": runs, "errors": errors, "error_rate": errors / runs if runs else 0.0,
        "runs_per_min": recent / (RATE_WINDOW_S / 60), "running": running, "queued": queued,
        "p50_ms": quantiles[0] if quantiles else None, "p95_ms": quantiles[1] if quantiles else None,
        "tokens": int((stats["prompt_tokens"] or 0) + (stats["completion_tokens"] or 0)) if stats else 0,
        "last_error": {"run_id": error["id"], "error": error["error"] or "", "at": error["started"]}
        if error else None,
    }
