"""Refused requests (401, 403, 429) counted by the request middleware, per replica and in memory: by UTC day,
status, principal (``user:<id>``, ``key:<id>``, ``anon:<address>``) and route template, plus the latest ones.
Counting every refusal in the audit log would let anyone fill it; these counters are bounded instead
(``MAX_KEYS`` combinations, ``RECENT`` latest refusals) and kept on the app (``app.state.console_denials``).

When the combinations are full, the oldest day's make room (the page shows the latest days); when today's alone
fill them, a new one is counted under ``OTHERS``: every refusal is still in the day's totals, only who made it is
lost. Before, a full table counted nothing new for the rest of the process: a flood from many addresses (or weeks
of ordinary refusals, the day being part of each combination) left later attacks and later days uncounted."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

DENIED = (401, 403, 429)
MAX_KEYS = 5000
OTHERS = "others"  # the principal of the refusals counted once today's combinations fill the table
RECENT = 200
WEBHOOK_PREFIX = "/channels/"  # a refused webhook is a failed signature check (the channels answer 403 then)


class Denials:
    """The counters of one app."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int, str, str]] = Counter()  # (day, status, principal, route) -> n
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.lock = threading.Lock()

    def note(self, status: int, principal: str, method: str, route: str, now: float | None = None) -> None:
        now = now or time.time()
        day = int(now // 86400)
        key = (day, status, principal, f"{method} {route}")
        with self.lock:
            if key not in self.counts and not self._room(day):  # bounded: the day, 3 statuses, 2 route kinds
                key = (day, status, OTHERS, f"* {WEBHOOK_PREFIX}*" if route.startswith(WEBHOOK_PREFIX) else "* *")
            self.counts[key] += 1
            self.recent.append({"at": now, "status": status, "principal": principal, "route": f"{method} {route}"})

    def _room(self, day: int) -> bool:
        """Room for one more combination, the oldest day's dropped for it (never ``day``'s); under the lock."""
        while len(self.counts) >= MAX_KEYS:
            oldest = min(k[0] for k in self.counts)
            if oldest >= day:
                return False
            for old in [k for k in self.counts if k[0] == oldest]:
                del self.counts[old]
        return True

    def since(self, day: int) -> list[tuple[tuple[int, int, str, str], int]]:
        with self.lock:
            return [(k, n) for k, n in self.counts.items() if k[0] >= day]


def of(app: Any) -> Denials:
    """The app's counters (made on first use)."""
    found = getattr(app.state, "console_denials", None)
    if found is None:
        found = app.state.console_denials = Denials()
    return found


def note_request(scope: dict[str, Any], status: int, route: str) -> None:
    """The middleware's hook: count a refused request with who asked (the principal the request resolved,
    else the client's address)."""
    if status not in DENIED or "app" not in scope:
        return
    principal = scope.get("state", {}).get("principal")
    owner = getattr(principal, "owner", None) if principal is not None else None
    if owner is None:
        client = scope.get("client")
        owner = "dev" if getattr(principal, "dev", False) else f"anon:{client[0] if client else '?'}"
    of(scope["app"]).note(status, owner, scope.get("method", ""), route)
