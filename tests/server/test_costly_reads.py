"""Costly reads (analytics, searching every conversation, exports) take a few places of their own: fifty of them at
once leave the threads that every other route runs on free, and one that waits too long is 503 with
Retry-After."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


@pytest.mark.timeout(120)
def test_fifty_slow_analytics_requests_do_not_hold_up_a_one_row_read(serve, api_key, monkeypatch) -> None:
    from halguru_server import costly
    from halguru_server.console import analytics

    report = analytics.report

    def slow_report(*args, **kwargs):  # as a report over a busy store's window takes, on the thread it runs on
        time.sleep(1.5)
        return report(*args, **kwargs)

    monkeypatch.setattr(analytics, "report", slow_report)
    monkeypatch.setattr(costly, "WAIT_S", 1.0)
    server = serve(max_in_flight=0)  # the costly places alone (one key's fifty at once are 429 past the cap)
    headers = {"Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]

        def ask(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as own:
                return own.get("/v1/analytics", params={"days": 30})

        with ThreadPoolExecutor(50) as pool:
            answers = pool.map(ask, range(50))
            time.sleep(0.5)  # all fifty sent and waiting
            started = time.monotonic()
            read = client.get(f"/v1/conversations/{conversation}")
            took = time.monotonic() - started
            answers = list(answers)
    assert read.status_code == 200 and took < 1.0, took
    statuses = sorted({a.status_code for a in answers})
    assert statuses == [200, 503], statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["Retry-After"] == "10" and busy.json()["error"]["type"] == "busy"
    assert "try again shortly" in busy.json()["error"]["message"]
