"""Web Push (either backend; see ``sql_base``): the browsers that asked the web chat to notify their user, and
the server's own key pairs (the VAPID key that signs every push), kept in the database so every replica sharing
it signs with the same key (a browser's subscription is bound to the public key it subscribed with).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from halguru.store.records import PushSubscriptionRecord
from halguru.store.sql_base import SQLBase

_COLUMNS = "endpoint, user_id, p256dh, auth, session, created, last_success, last_failure, failures"


def _record(row: dict[str, Any]) -> PushSubscriptionRecord:
    return PushSubscriptionRecord(endpoint=row["endpoint"], user_id=row["user_id"], p256dh=row["p256dh"],
                                  auth=row["auth"], session=row["session"], created=row["created"],
                                  last_success=row["last_success"], last_failure=row["last_failure"],
                                  failures=int(row["failures"]))


class PushMixin(SQLBase):
    """The ``push_subscriptions`` and ``server_secrets`` tables."""

    def save_push_subscription(self, endpoint: str, user_id: str, p256dh: str, auth: str, session: str | None,
                               keep: int = 20) -> None:
        """Subscribe (again): an endpoint is one browser, so a second user signing in there takes it over; the
        user's oldest subscriptions beyond ``keep`` are dropped."""
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "push", user_id)
            conn.execute(f"INSERT INTO push_subscriptions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, 0) "
                         "ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh, "
                         "auth = excluded.auth, session = excluded.session, failures = 0",
                         (endpoint, user_id, p256dh, auth, session, now))
            rows = conn.execute("SELECT endpoint FROM push_subscriptions WHERE user_id = ? ORDER BY created DESC, "
                                "endpoint", (user_id,)).fetchall()
            for row in rows[keep:]:
                conn.execute("DELETE FROM push_subscriptions WHERE endpoint = ?", (row[0],))

    def list_push_subscriptions(self, user_id: str) -> list[PushSubscriptionRecord]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM push_subscriptions WHERE user_id = ? ORDER BY created",
                          (user_id,))
        return [_record(r) for r in rows]

    def delete_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool:
        """Unsubscribe one browser (only if it is ``user_id``'s, when given); whether it was there."""
        sql, params = "DELETE FROM push_subscriptions WHERE endpoint = ?", [endpoint]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        with self._tx() as conn:
            return bool(conn.execute(sql, params).rowcount)

    def record_push(self, endpoint: str, ok: bool) -> None:
        """A push's outcome at the push service: when it last worked, or failed and how many times in a row."""
        with self._tx() as conn:
            if ok:
                conn.execute("UPDATE push_subscriptions SET last_success = ?, failures = 0 WHERE endpoint = ?",
                             (time.time(), endpoint))
            else:
                conn.execute("UPDATE push_subscriptions SET last_failure = ?, failures = failures + 1 "
                             "WHERE endpoint = ?", (time.time(), endpoint))

    def server_secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret ``name``, made with ``make()`` the first time it is asked for; two replicas asking at
        once both get the one stored first."""
        rows = self._rows("SELECT value FROM server_secrets WHERE name = ?", (name,))
        if rows:
            return str(rows[0]["value"])
        value = make()
        with self._tx() as conn:
            conn.execute("INSERT INTO server_secrets (name, value, created) VALUES (?, ?, ?) "
                         "ON CONFLICT (name) DO NOTHING", (name, value, time.time()))
        return str(self._rows("SELECT value FROM server_secrets WHERE name = ?", (name,))[0]["value"])
