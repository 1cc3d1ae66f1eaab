"""A smaller version of scripts/bench/bench_serve.py's load run, in key mode: 20 concurrent clients over
several keys, 120 JSON answers and 80 streams on a scripted agent. Nothing may fail: no 5xx (503 queue-full
aside), no cut stream, no run left `running`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
from _load import load, stuck_runs  # the bench's load generator, from its folder


@pytest.mark.timeout(180)
def test_concurrent_clients_in_key_mode_get_no_server_error_and_leave_no_run_running(serve, api_key) -> None:
    server = serve(queue_size=64)
    headers = [{"Authorization": f"Bearer {api_key(f'load{i}')}"} for i in range(4)]
    figures = asyncio.run(load(server.url, headers, clients=20, json_requests=120, streams=80, deadline_s=120))
    figures.stuck_runs = stuck_runs(server.state.store)
    assert figures.server_errors == [], figures.summary()
    assert figures.unstarted == 0 and figures.cut_streams == 0 and figures.stuck_runs == 0, figures.summary()
    assert figures.statuses[200] + figures.statuses[503] == 200 and figures.statuses[201] == 200
