"""The console's refusal counters stay bounded and keep counting: a full table made room for nothing, so a flood
of refusals from many addresses (or weeks of ordinary ones) hid every later one from the Security page."""

from __future__ import annotations

import pytest
from halguru_server.console import denials

DAY = 86400.0


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> denials.Denials:
    monkeypatch.setattr(denials, "MAX_KEYS", 20)
    return denials.Denials()


def test_a_new_day_makes_room_by_dropping_the_oldest_days(small: denials.Denials) -> None:
    for i in range(20):  # day 100 filled the table
        small.note(401, f"anon:10.0.0.{i}", "GET", "/v1/agents", now=100 * DAY + i)
    small.note(401, "anon:203.0.113.9", "GET", "/v1/agents", now=101 * DAY)
    assert dict(small.since(101)) == {(101, 401, "anon:203.0.113.9", "GET /v1/agents"): 1}
    assert len(small.counts) <= 20


def test_a_flood_in_one_day_still_counts_every_refusal(small: denials.Denials) -> None:
    for i in range(30):  # 30 addresses, room for 20: the rest are counted, under "others"
        small.note(401, f"anon:10.0.0.{i}", "GET", "/v1/agents", now=100 * DAY + i)
    small.note(403, "anon:203.0.113.9", "POST", "/channels/{channel}/{agent}", now=100 * DAY + 40)
    counted = dict(small.since(100))
    assert sum(n for (_, status, _, _), n in counted.items() if status == 401) == 30
    assert counted[(100, 401, denials.OTHERS, "* *")] == 10
    assert counted[(100, 403, denials.OTHERS, f"* {denials.WEBHOOK_PREFIX}*")] == 1  # still a webhook's refusal
    assert len(small.counts) <= 22 and small.recent[-1]["principal"] == "anon:203.0.113.9"
