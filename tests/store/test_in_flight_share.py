"""Serve processes share their requests in flight per client through the store (``max_in_flight`` across
replicas): each sees the others' live counts, never its own, and a killed process's counts expire."""

from __future__ import annotations

import time
from typing import Any


def test_each_process_sees_the_others_counts_until_they_expire(store_factory: Any) -> None:
    one, two = store_factory(), store_factory()  # two replicas' stores on one database
    assert one.share_in_flight("a", {"key:x": 2, "key:idle": 0}, ttl=30) == {}
    assert two.share_in_flight("b", {"key:x": 1, "key:y": 1}, ttl=30) == {"key:x": 2}
    assert one.share_in_flight("a", {"key:x": 1}, ttl=30) == {"key:x": 1, "key:y": 1}  # replaced, not added
    assert two.share_in_flight("c", {}, ttl=30) == {"key:x": 2, "key:y": 1}
    assert two.share_in_flight("b", {}, ttl=30) == {"key:x": 1}  # b's requests answered
    one.share_in_flight("killed", {"key:x": 5}, ttl=0.2)  # a process that shares no more (SIGKILL)
    assert two.share_in_flight("b", {}, ttl=30) == {"key:x": 6}
    time.sleep(0.3)
    assert two.share_in_flight("b", {}, ttl=30) == {"key:x": 1}
